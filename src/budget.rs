//! Memory accounting and decode turns, shared by everything that decodes
//! images for someone: the server's connections, the gallery's thumbnail
//! threads and `colorsort classify -j N`.
//!
//! A [`Budget`] is a number of bytes that a caller reserves before it
//! allocates them, and gives back by dropping its [`Reservation`]. The
//! server refuses what does not fit ([`Budget::try_reserve`]); a batch job
//! waits for room instead ([`Budget::reserve`]). A [`DecodeGate`] lets as
//! many large decodes run at once as it has turns, usually one per CPU;
//! smaller decodes skip it. The two go together as [`Guards`].
//!
//! [`default_limit`] sizes a budget that was not configured: where the
//! process runs under a cgroup memory limit (a container started with
//! `--memory`), a share of that limit, so that the budget fits the container
//! instead of getting the process OOM-killed. A server's sockets are
//! charged to that limit too, for their kernel buffers: [`fitted_server`]
//! counts them first.

use crate::config::{
    DEFAULT_MAX_MEMORY, LISTEN_BACKLOG, MAX_LINGERING, MEMORY_LIMIT_SHARE, MEMORY_OVERHEAD,
    SOCKET_LIMIT_SHARE, SOCKET_MEMORY,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Bytes of memory in use by payloads and decoded pixels, against a limit.
pub struct Budget {
    limit: u64,
    used: Mutex<u64>,
    /// Signalled whenever bytes are given back.
    freed: Condvar,
}

/// A reservation against a [`Budget`], given back on drop.
#[must_use = "the bytes are given back when the reservation is dropped"]
pub struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
}

/// How long a reservation may wait for room.
#[derive(Clone, Copy)]
enum Wait {
    Never,
    Until(Instant),
    Forever,
}

impl Budget {
    /// A budget of `limit` bytes, none of them reserved.
    pub fn new(limit: u64) -> Budget {
        Budget {
            limit,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        *self.lock()
    }

    /// A reservation of nothing yet, to grow as memory is needed.
    pub fn empty(&self) -> Reservation<'_> {
        Reservation {
            budget: self,
            bytes: 0,
        }
    }

    /// Reserves `bytes`, or `None` if that would go over the limit now.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        self.reservation(bytes, Wait::Never)
    }

    /// Reserves `bytes`, waiting as long as it takes for others to give
    /// enough back; `None` at once if `bytes` is over the whole limit and so
    /// could never fit.
    pub fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        self.reservation(bytes, Wait::Forever)
    }

    /// Reserves `bytes`, waiting up to `wait` for others to give enough
    /// back; `None` if they did not.
    pub fn reserve_within(&self, bytes: u64, wait: Duration) -> Option<Reservation<'_>> {
        self.reservation(bytes, deadline(wait))
    }

    fn reservation(&self, bytes: u64, wait: Wait) -> Option<Reservation<'_>> {
        // Built only once taken: dropping a reservation gives its bytes back.
        self.take(bytes, wait).then(|| Reservation {
            budget: self,
            bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `bytes` to what is used if it fits, waiting as `wait` allows.
    fn take(&self, bytes: u64, wait: Wait) -> bool {
        if bytes > self.limit {
            return false;
        }
        let fits = |used: &u64| used.checked_add(bytes).is_some_and(|t| t <= self.limit);
        let mut used = self.lock();
        while !fits(&used) {
            used = match wait {
                Wait::Never => return false,
                Wait::Forever => self
                    .freed
                    .wait(used)
                    .unwrap_or_else(PoisonError::into_inner),
                Wait::Until(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.freed
                        .wait_timeout(used, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        *used += bytes;
        true
    }

    fn give_back(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut used = self.lock();
        *used = used.saturating_sub(bytes);
        drop(used);
        // Waiters want different amounts: let each check.
        self.freed.notify_all();
    }
}

impl Reservation<'_> {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds `more` bytes to this reservation if they fit now; false (and
    /// the reservation unchanged) if not.
    pub fn try_grow(&mut self, more: u64) -> bool {
        self.grow(more, Wait::Never)
    }

    /// Adds `more` bytes, waiting up to `wait` for others to give enough
    /// back; false (and the reservation unchanged) if they did not.
    pub fn grow_within(&mut self, more: u64, wait: Duration) -> bool {
        self.grow(more, deadline(wait))
    }

    fn grow(&mut self, more: u64, wait: Wait) -> bool {
        let grown = self.budget.take(more, wait);
        if grown {
            self.bytes += more;
        }
        grown
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

fn deadline(wait: Duration) -> Wait {
    Instant::now()
        .checked_add(wait)
        .map_or(Wait::Forever, Wait::Until)
}

/// Lets as many large decodes run at once as it has turns.
///
/// Decoding is CPU-bound, so more large decodes at once than cores finish
/// no sooner, hold more memory, and crowd out small ones: with eight large
/// images decoding on two cores, a thumbnail-sized upload would get a ninth
/// of the CPU. Behind the gate, large images queue for the cores and small
/// ones, which skip it, still get their turn at once.
pub struct DecodeGate {
    /// Decodes that may take more memory than this take a turn.
    large: u64,
    free: Mutex<usize>,
    freed: Condvar,
}

/// A turn at the [`DecodeGate`], given back on drop.
#[must_use = "the turn is given back when it is dropped"]
pub struct Turn<'a>(&'a DecodeGate);

impl DecodeGate {
    /// A gate of `turns` turns (at least one) for decodes that may take more
    /// than `large` bytes.
    pub fn new(turns: usize, large: u64) -> DecodeGate {
        DecodeGate {
            large,
            free: Mutex::new(turns.max(1)),
            freed: Condvar::new(),
        }
    }

    /// A gate with one turn per CPU this process may run on.
    pub fn per_cpu(large: u64) -> DecodeGate {
        DecodeGate::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            large,
        )
    }

    /// Waits for a turn if a decode that may take `peak` bytes is large; a
    /// smaller one needs no turn (`None`).
    pub fn enter_if_large(&self, peak: u64) -> Option<Turn<'_>> {
        (peak > self.large).then(|| self.enter())
    }

    /// Waits for a turn. Turns are held only while decoding, which always
    /// ends, so the wait is bounded by the decodes ahead.
    pub fn enter(&self) -> Turn<'_> {
        let free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let mut free = self
            .freed
            .wait_while(free, |f| *f == 0)
            .unwrap_or_else(PoisonError::into_inner);
        *free -= 1;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

/// The memory budget and the decode gate that every decode for someone
/// else is held to: one pair per server, gallery build or classify run.
pub struct Guards {
    /// What payloads, files and decodes reserve before they take it.
    pub budget: Budget,
    /// Where large decodes take turns.
    pub gate: DecodeGate,
}

impl Guards {
    /// A budget of `limit` bytes, and a gate of one turn per CPU for
    /// decodes that may take more than `large` bytes.
    pub fn per_cpu(limit: u64, large: u64) -> Guards {
        Guards {
            budget: Budget::new(limit),
            gate: DecodeGate::per_cpu(large),
        }
    }
}

/// A cgroup memory limit this process runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLimit {
    /// The limit, in bytes.
    pub bytes: u64,
    /// The file it was read from.
    pub file: PathBuf,
}

/// The budget to use when none is configured: [`DEFAULT_MAX_MEMORY`], or,
/// under a cgroup memory limit, [`fitted`] to it if that is less. Returns
/// the limit it was fitted to, if any, for the log.
pub fn default_limit() -> (u64, Option<ContainerLimit>) {
    match container_limit() {
        Some(limit) => (fitted(limit.bytes), Some(limit)),
        None => (DEFAULT_MAX_MEMORY, None),
    }
}

/// The budget for a process under a memory limit of `limit` bytes: the
/// limit divided by [`MEMORY_LIMIT_SHARE`] less [`MEMORY_OVERHEAD`] (but
/// never less than half that share, for small limits), and never more than
/// [`DEFAULT_MAX_MEMORY`]: a container only ever lowers the default.
pub fn fitted(limit: u64) -> u64 {
    let share = limit / MEMORY_LIMIT_SHARE;
    share
        .saturating_sub(MEMORY_OVERHEAD)
        .max(share / 2)
        .min(DEFAULT_MAX_MEMORY)
}

/// Sockets a server with `connections` slots may have open at once: one
/// per slot, as many again closing lingeringly after an error (at most
/// [`MAX_LINGERING`]), and the listen backlog. Each holds up to
/// [`SOCKET_MEMORY`] of kernel memory for its buffers.
pub fn sockets(connections: usize) -> u64 {
    let connections = u64::try_from(connections).unwrap_or(u64::MAX);
    connections
        .saturating_add(connections.min(MAX_LINGERING as u64))
        .saturating_add(u64::from(LISTEN_BACKLOG))
}

/// What a memory limit fits for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerFit {
    /// The memory budget.
    pub budget: u64,
    /// The connection cap.
    pub connections: usize,
    /// Kernel memory its sockets may hold, at most, in whole MiB.
    pub sockets: u64,
}

/// Fits a server that wants `connections` slots to a memory limit of
/// `limit` bytes, which the kernel charges with its sockets' buffers too:
/// as many connections as want them (at least one) while their
/// [`sockets`] take at most the limit divided by [`SOCKET_LIMIT_SHARE`];
/// then the budget [`fitted`] to what the limit leaves.
pub fn fitted_server(limit: u64, connections: usize) -> ServerFit {
    let room = limit / SOCKET_LIMIT_SHARE / SOCKET_MEMORY;
    let mut fit = connections.max(1);
    if sockets(fit) > room {
        // sockets() grows by two a connection up to MAX_LINGERING, then by
        // one: count back from the most sockets the room holds.
        let spare = room.saturating_sub(u64::from(LISTEN_BACKLOG));
        let most = if spare >= 2 * MAX_LINGERING as u64 {
            spare - MAX_LINGERING as u64
        } else {
            spare / 2
        };
        fit = usize::try_from(most).unwrap_or(usize::MAX).clamp(1, fit);
    }
    let mib = 1 << 20;
    let held = sockets(fit)
        .saturating_mul(SOCKET_MEMORY)
        .div_ceil(mib)
        .saturating_mul(mib);
    ServerFit {
        budget: fitted(limit.saturating_sub(held)),
        connections: fit,
        sockets: held,
    }
}

/// The lowest memory limit of this process's cgroups (v1 `memory` or v2),
/// counting every ancestor cgroup up to the mount's root; `None` where
/// there is none, or cgroups cannot be read (not Linux).
pub fn container_limit() -> Option<ContainerLimit> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    limit_files(&cgroups, &mounts)
        .into_iter()
        .filter_map(|file| {
            let bytes = parse_limit(&fs::read_to_string(&file).ok()?)?;
            Some(ContainerLimit { bytes, file })
        })
        .min_by_key(|l| l.bytes)
}

/// Limits from this value up mean "unlimited": cgroup v1 writes no limit as
/// the largest page-aligned `i64` (9223372036854771712 with 4 KiB pages, a
/// little less with larger pages), far above any real memory.
const UNLIMITED_FROM: u64 = 1 << 62;

/// A cgroup memory limit file's value in bytes; `None` for no limit (`max`,
/// or v1's huge sentinel) or for anything unreadable.
fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse::<u64>().ok().filter(|&n| n < UNLIMITED_FROM)
}

/// The files that may hold a memory limit of this process, for the
/// contents of `/proc/self/cgroup` and `/proc/self/mountinfo`: for each
/// memory hierarchy (the v2 one, or the v1 one with the `memory`
/// controller), the limit file of the process's cgroup and of each of its
/// ancestors within the mount.
fn limit_files(cgroups: &str, mountinfo: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in cgroups.lines() {
        // hierarchy-ID:controller-list:cgroup-path
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (v2, file) = if id == "0" && controllers.is_empty() {
            (true, "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (false, "memory.limit_in_bytes")
        } else {
            continue;
        };
        let Some((root, mount)) = cgroup_mount(mountinfo, v2) else {
            continue;
        };
        // The process's cgroup as seen from the mount: the mount's root is
        // a cgroup too (a container's own, without a cgroup namespace).
        let relative = path.strip_prefix(root.as_str()).unwrap_or(path);
        let mut dir = mount.join(relative.trim_start_matches('/'));
        loop {
            files.push(dir.join(file));
            if dir == mount || !dir.pop() {
                break;
            }
        }
    }
    files
}

/// The root and mount point of the cgroup v2 mount, or of the v1 mount of
/// the `memory` controller, from `/proc/self/mountinfo`; the usual place
/// under `/sys/fs/cgroup` if mountinfo could not be read.
fn cgroup_mount(mountinfo: &str, v2: bool) -> Option<(String, PathBuf)> {
    let found = mountinfo.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS
        let (mine, theirs) = line.split_once(" - ")?;
        let mut mine = mine.split(' ');
        let root = mine.nth(3)?;
        let point = mine.next()?;
        let mut theirs = theirs.split(' ');
        let kind = theirs.next()?;
        let options = theirs.nth(1).unwrap_or("");
        let wanted = if v2 {
            kind == "cgroup2"
        } else {
            kind == "cgroup" && options.split(',').any(|o| o == "memory")
        };
        wanted.then(|| (root.to_string(), PathBuf::from(point)))
    });
    found.or_else(|| {
        if !mountinfo.is_empty() {
            return None;
        }
        let point = if v2 {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/memory"
        };
        Path::new(point)
            .is_dir()
            .then(|| ("/".to_string(), PathBuf::from(point)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::thread;

    #[test]
    fn decode_gate_admits_as_many_as_it_has_turns() {
        let gate = Arc::new(DecodeGate::new(2, 0));
        let (a, b) = (gate.enter(), gate.enter());
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                let _turn = gate.enter();
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "a third decode must wait"
        );
        drop(a);
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "a freed turn admits it"
        );
        waiter.join().unwrap();
        drop(b);
        assert_eq!(*gate.free.lock().unwrap(), 2);
    }

    #[test]
    fn budget_reserves_and_releases() {
        let budget = Budget::new(100);
        let a = budget.try_reserve(60).unwrap();
        assert!(budget.try_reserve(41).is_none());
        let b = budget.try_reserve(40).unwrap();
        assert!(budget.try_reserve(1).is_none());
        drop(a);
        assert!(budget.try_reserve(60).is_some());
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.try_reserve(u64::MAX).is_none());
        assert!(budget.reserve(101).is_none(), "never fits: no wait");
    }

    #[test]
    fn reservations_grow_only_within_the_limit() {
        let budget = Budget::new(100);
        let mut r = budget.empty();
        assert!(r.try_grow(10));
        // (more, grows, bytes held after)
        let cases = [
            (50, true, 60),
            (41, false, 60),
            (40, true, 100),
            (1, false, 100),
        ];
        for (more, grows, after) in cases {
            assert_eq!(r.try_grow(more), grows, "grow by {more}");
            assert_eq!((r.bytes(), budget.used()), (after, after), "grow by {more}");
        }
        assert!(!r.grow_within(u64::MAX, Duration::from_millis(1)));
        drop(r);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn waiting_reservations_get_what_others_give_back() {
        let budget = Arc::new(Budget::new(100));
        let held = budget.try_reserve(80).unwrap();
        assert!(
            budget
                .reserve_within(30, Duration::from_millis(50))
                .is_none(),
            "nothing was given back in time"
        );
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || {
                let r = budget.reserve(30).unwrap();
                tx.send(r.bytes()).unwrap();
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(held);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(30));
        waiter.join().unwrap();
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn limit_files_parse() {
        // (contents, limit in bytes)
        let cases = [
            ("max\n", None),
            ("max", None),
            ("268435456\n", Some(268_435_456)),
            ("  1073741824  ", Some(1 << 30)),
            ("0", Some(0)),
            // cgroup v1's "no limit", with 4 KiB and with 64 KiB pages.
            ("9223372036854771712\n", None),
            ("9223372036854710272", None),
            ("18446744073709551615", None),
            ("", None),
            ("-1", None),
            ("256M", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_limit(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_budget_fits_a_limit() {
        let mib = 1 << 20;
        // (cgroup limit, budget)
        let cases = [
            (256 * mib, 64 * mib),
            (512 * mib, 192 * mib),
            (128 * mib, 32 * mib),
            (64 * mib, 16 * mib),
            (0, 0),
            (2048 * mib, 960 * mib),
            (4096 * mib, DEFAULT_MAX_MEMORY),
            (u64::MAX, DEFAULT_MAX_MEMORY),
        ];
        for (limit, budget) in cases {
            assert_eq!(fitted(limit), budget, "limit {limit}");
        }
    }

    #[test]
    fn a_server_fits_its_sockets_then_its_budget() {
        let mib = 1 << 20;
        // (cgroup limit, connections wanted, budget, connections, socket MiB)
        let cases = [
            (256 * mib, 1024, 48 * mib, 140, 64),
            (512 * mib, 1024, 128 * mib, 435, 128),
            (1024 * mib, 1024, 338 * mib, 1024, 220),
            (2048 * mib, 1024, 850 * mib, 1024, 220),
            (4096 * mib, 1024, DEFAULT_MAX_MEMORY, 1024, 220),
            (2048 * mib, 5000, 704 * mib, 2892, 512),
            (256 * mib, 10, 58 * mib, 10, 24),
            // Small limits keep one connection, and a quarter of what is
            // left as budget.
            (64 * mib, 1024, 43 * mib / 4, 1, 21),
            (0, 1024, 0, 1, 21),
        ];
        for (limit, wanted, budget, connections, socket_mib) in cases {
            let fit = fitted_server(limit, wanted);
            let want = ServerFit {
                budget,
                connections,
                sockets: socket_mib * mib,
            };
            assert_eq!(fit, want, "limit {limit}, {wanted} connections");
            // Whatever the fit, the sockets take no more than their share
            // of the limit, unless one connection alone is over it.
            assert!(
                connections == 1
                    || sockets(connections) * SOCKET_MEMORY <= limit / SOCKET_LIMIT_SHARE,
                "limit {limit}"
            );
        }
    }

    #[test]
    fn limit_files_follow_cgroup_and_mountinfo() {
        let v1_mount = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        // A v1 container without a cgroup namespace: the mount's root is
        // the container's own cgroup.
        let docker_v1 = "41 40 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid master:16 - cgroup cgroup rw,memory\n";
        let v2_mount =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let files = |cgroup: &str, mounts: &str| -> Vec<String> {
            limit_files(cgroup, mounts)
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        };
        // (/proc/self/cgroup, /proc/self/mountinfo, files to read)
        let cases: [(&str, &str, &[&str]); 5] = [
            (
                "4:memory:/a/b\n1:cpu:/\n0::/\n",
                v1_mount,
                &[
                    "/sys/fs/cgroup/memory/a/b/memory.limit_in_bytes",
                    "/sys/fs/cgroup/memory/a/memory.limit_in_bytes",
                    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                ],
            ),
            (
                "9:cpuacct,memory:/docker/abc\n",
                docker_v1,
                &["/sys/fs/cgroup/memory/memory.limit_in_bytes"],
            ),
            (
                "0::/system.slice/x.service\n",
                v2_mount,
                &[
                    "/sys/fs/cgroup/system.slice/x.service/memory.max",
                    "/sys/fs/cgroup/system.slice/memory.max",
                    "/sys/fs/cgroup/memory.max",
                ],
            ),
            // A v2 container with its own cgroup namespace.
            ("0::/\n", v2_mount, &["/sys/fs/cgroup/memory.max"]),
            // No memory controller, and a line that is not one.
            ("3:cpu:/x\ngarbage\n", v1_mount, &[]),
        ];
        for (cgroup, mounts, want) in cases {
            assert_eq!(files(cgroup, mounts), want, "{cgroup:?}");
        }
    }

    #[test]
    fn only_large_decodes_take_a_turn() {
        let large = 16 << 20;
        let gate = DecodeGate::new(1, large);
        // (peak bytes, takes a turn); each turn is given back at once.
        let cases = [(0, false), (large, false), (large + 1, true)];
        for (peak, takes) in cases {
            assert_eq!(gate.enter_if_large(peak).is_some(), takes, "peak {peak}");
        }
        assert_eq!(*gate.free.lock().unwrap(), 1);
    }
}
