//! The connection registry: one slot per live connection, the connection
//! cap, eviction (of the connection idle longest, else the reply unread
//! longest, else the upload furthest behind the minimum rate) to make room
//! for a newcomer, eviction of the upload furthest behind to free memory,
//! the gate that closes filing at the end of a stop's grace, and the view
//! of every connection that a stop needs.

use crate::config::EVICTION_WAIT;
use crate::metrics::Eviction;
use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What a connection's thread reports of itself without taking the
/// registry's lock, for eviction to read.
pub(super) struct Activity {
    /// The registry's clock: times below are milliseconds after it.
    epoch: Instant,
    /// Payload bytes received of the current upload.
    progress: AtomicU64,
    /// Bytes of the memory budget the current upload's payload holds.
    reserved: AtomicU64,
    /// When the reply being written started, plus one; 0 when none is.
    writing_since: AtomicU64,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        Activity {
            epoch,
            progress: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            writing_since: AtomicU64::new(0),
        }
    }

    /// Records the payload bytes received so far, and the memory they hold.
    pub(super) fn set_progress(&self, received: u64, reserved: u64) {
        self.progress.store(received, Ordering::Relaxed);
        self.reserved.store(reserved, Ordering::Relaxed);
    }

    /// Records that a reply is being written (`true`) or is written.
    pub(super) fn set_writing(&self, writing: bool) {
        let since = if writing {
            let ms = self.epoch.elapsed().as_millis();
            u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
        } else {
            0
        };
        self.writing_since.store(since, Ordering::Relaxed);
    }

    /// How long the reply being written has waited, if one is.
    fn writing_for(&self, now: Instant) -> Option<Duration> {
        let since = self.writing_since.load(Ordering::Relaxed).checked_sub(1)?;
        let now = u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).ok()?;
        Some(Duration::from_millis(now.saturating_sub(since)))
    }
}

/// The live connections, for the connection cap, eviction and shutdown.
pub(super) struct Registry {
    cap: usize,
    /// The minimum payload rate, bytes per second: an upload more than
    /// `grace` behind it may be evicted when the registry is full and
    /// nothing is idle, or when memory is short.
    min_rate: u64,
    /// How far behind an upload, or how long unread a reply, before its
    /// connection may be evicted.
    grace: Duration,
    epoch: Instant,
    state: Mutex<RegistryState>,
    changed: Condvar,
    /// Mirrors `state.stopping`, read without the lock by the accept loop.
    stopping: AtomicBool,
}

/// What the registry's lock guards.
#[derive(Default)]
struct RegistryState {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    stopping: bool,
    /// Past a stop's grace: no upload may begin to be filed.
    filing_closed: bool,
}

/// One live connection's slot.
struct Entry {
    /// A handle on the socket, to shut it down from outside its thread.
    socket: Option<TcpStream>,
    /// When the connection started waiting for a request line, if it is:
    /// from its accept until a line of it is read, then from each reply on.
    idle_since: Option<Instant>,
    /// The connection has had a request answered. Among idle connections,
    /// those that never completed a request (what a slowloris crowd is
    /// made of) are evicted first.
    served: bool,
    /// When the connection's current payload started, and its SIZE, while
    /// it is in an upload.
    payload: Option<(Instant, u64)>,
    /// What the connection's thread reports without the lock.
    activity: Arc<Activity>,
    /// The connection is filing an upload (from its decision to file until
    /// its reply is written).
    filing: bool,
    evicted: Option<Eviction>,
}

impl Entry {
    /// How far the payload being received is behind the minimum rate, in
    /// bytes, counted from `grace` after its start; `None` if it is not
    /// behind (or not receiving a payload).
    fn behind(&self, min_rate: u64, grace: Duration, now: Instant) -> Option<u64> {
        let (started, size) = self.payload?;
        let received = self.activity.progress.load(Ordering::Relaxed);
        let elapsed = now.saturating_duration_since(started).checked_sub(grace)?;
        let due = u64::try_from(elapsed.as_millis().saturating_mul(u128::from(min_rate)) / 1000)
            .unwrap_or(u64::MAX)
            .min(size);
        (received < due).then(|| due - received)
    }

    /// How long past `grace` the reply being written has gone unread, if it
    /// has.
    fn unread(&self, grace: Duration, now: Instant) -> Option<Duration> {
        self.activity
            .writing_for(now)?
            .checked_sub(grace)
            .filter(|d| !d.is_zero())
    }

    /// Marks the connection evicted and shuts its socket so that its thread
    /// notices: the read side for a connection reading (its read returns
    /// end of input; the thread says why and exits), both for one blocked
    /// in a write to a client that does not read.
    fn evict(&mut self, why: Eviction) {
        self.evicted = Some(why);
        let how = match why {
            Eviction::Unread => Shutdown::Both,
            Eviction::Idle | Eviction::SlowUpload | Eviction::Memory => Shutdown::Read,
        };
        if let Some(socket) = &self.socket {
            let _ = socket.shutdown(how);
        }
    }
}

/// Frees a registry slot when its connection thread ends, however it ends.
pub(super) struct Slot<'a> {
    conns: &'a Registry,
    id: u64,
}

impl<'a> Slot<'a> {
    /// Guards the slot `id` of `conns`.
    pub(super) fn new(conns: &'a Registry, id: u64) -> Slot<'a> {
        Slot { conns, id }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.conns.release(self.id);
    }
}

impl Registry {
    pub(super) fn new(cap: usize, min_rate: u64, grace: Duration) -> Registry {
        Registry {
            cap,
            min_rate,
            grace,
            epoch: Instant::now(),
            state: Mutex::default(),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for `stream`, evicting a connection if the registry is
    /// full: the one idle longest, else the one whose reply has gone unread
    /// longest, else the upload furthest behind the minimum rate. `None` if
    /// no slot could be had. Returns the slot's id, idle from now on, and
    /// the activity its connection reports to.
    pub(super) fn register(&self, stream: &TcpStream) -> Option<(u64, Arc<Activity>)> {
        let mut state = self.lock();
        if state.stopping {
            return None;
        }
        if state.conns.len() >= self.cap {
            let (victim, why) = self.victim(&state)?;
            state.conns.get_mut(&victim)?.evict(why);
            let (next, _) = self
                .changed
                .wait_timeout_while(state, EVICTION_WAIT, |s| s.conns.len() >= self.cap)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if state.conns.len() >= self.cap {
                return None;
            }
        }
        state.next_id += 1;
        let id = state.next_id;
        let activity = Arc::new(Activity::new(self.epoch));
        let entry = Entry {
            socket: stream.try_clone().ok(),
            // Idle from the start: no line of it has been read. Its thread
            // may not run for a while on a loaded machine, and a slot
            // nobody can evict until then would turn newcomers away.
            idle_since: Some(Instant::now()),
            served: false,
            payload: None,
            activity: Arc::clone(&activity),
            filing: false,
            evicted: None,
        };
        state.conns.insert(id, entry);
        Some((id, activity))
    }

    /// The connection to evict for a newcomer, and why. Idle connections
    /// cost the server nothing to drop; a client that does not read its
    /// replies, or trickles an upload, is dropped only when every slot is
    /// taken by a request, so that none of them can lock everyone else out.
    fn victim(&self, state: &RegistryState) -> Option<(u64, Eviction)> {
        let now = Instant::now();
        let candidates = || state.conns.iter().filter(|(_, e)| e.evicted.is_none());
        let idle = candidates()
            .filter_map(|(id, e)| e.idle_since.map(|since| (e.served, since, *id)))
            .min()
            .map(|(_, _, id)| (id, Eviction::Idle));
        let unread = || {
            candidates()
                .filter_map(|(id, e)| e.unread(self.grace, now).map(|d| (d, *id)))
                .max()
                .map(|(_, id)| (id, Eviction::Unread))
        };
        let slow = || {
            candidates()
                .filter_map(|(id, e)| e.behind(self.min_rate, self.grace, now).map(|b| (b, *id)))
                .max()
                .map(|(_, id)| (id, Eviction::SlowUpload))
        };
        idle.or_else(unread).or_else(slow)
    }

    /// Evicts, to free memory for connection `for_id`, the upload holding
    /// memory that is furthest behind the minimum rate (past the grace).
    /// Returns false if no upload qualifies.
    pub(super) fn evict_for_memory(&self, for_id: u64) -> bool {
        let mut state = self.lock();
        let now = Instant::now();
        let victim = state
            .conns
            .iter()
            .filter(|(id, e)| {
                **id != for_id
                    && e.evicted.is_none()
                    && e.activity.reserved.load(Ordering::Relaxed) > 0
            })
            .filter_map(|(id, e)| e.behind(self.min_rate, self.grace, now).map(|b| (b, *id)))
            .max()
            .map(|(_, id)| id);
        match victim.and_then(|id| state.conns.get_mut(&id)) {
            Some(entry) => {
                entry.evict(Eviction::Memory);
                true
            }
            None => false,
        }
    }

    pub(super) fn release(&self, id: u64) {
        self.lock().conns.remove(&id);
        self.changed.notify_all();
    }

    /// Marks a connection idle (waiting for a request line) or busy. Returns
    /// false if the server is stopping and an idle connection should close.
    pub(super) fn set_idle(&self, id: u64, idle: bool) -> bool {
        let mut state = self.lock();
        if idle && state.stopping {
            return false;
        }
        if let Some(e) = state.conns.get_mut(&id) {
            // One idle already keeps its time: a new connection has been
            // idle since its accept, not since its thread first ran.
            e.idle_since = if idle {
                e.idle_since.or_else(|| Some(Instant::now()))
            } else {
                None
            };
        }
        true
    }

    /// Records that a connection started (`Some((start, size))`) or ended
    /// (`None`) receiving a payload.
    pub(super) fn set_payload(&self, id: u64, payload: Option<(Instant, u64)>) {
        if let Some(e) = self.lock().conns.get_mut(&id) {
            e.payload = payload;
        }
    }

    /// Records that a connection had a request answered.
    pub(super) fn mark_served(&self, id: u64) {
        if let Some(e) = self.lock().conns.get_mut(&id) {
            e.served = true;
        }
    }

    /// Why the connection was evicted, if it was.
    pub(super) fn evicted(&self, id: u64) -> Option<Eviction> {
        self.lock().conns.get(&id).and_then(|e| e.evicted)
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Lets connection `id` begin filing an upload, until
    /// [`end_filing`](Registry::end_filing); false once a stop's grace is
    /// over, when nothing more may be filed.
    pub(super) fn begin_filing(&self, id: u64) -> bool {
        let mut state = self.lock();
        if state.filing_closed {
            return false;
        }
        if let Some(e) = state.conns.get_mut(&id) {
            e.filing = true;
        }
        true
    }

    /// Records that connection `id` has filed and answered, if it was
    /// filing.
    pub(super) fn end_filing(&self, id: u64) {
        let mut state = self.lock();
        if let Some(e) = state.conns.get_mut(&id).filter(|e| e.filing) {
            e.filing = false;
            drop(state);
            self.changed.notify_all();
        }
    }

    /// Refuses every filing from now on, and waits up to `limit` for those
    /// under way to finish and be answered; returns how many are left.
    pub(super) fn close_filing(&self, limit: Duration) -> usize {
        let mut state = self.lock();
        state.filing_closed = true;
        let filing = |s: &RegistryState| s.conns.values().filter(|e| e.filing).count();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, limit, |s| filing(s) > 0)
            .unwrap_or_else(PoisonError::into_inner);
        filing(&state)
    }

    /// Refuses new connections and ends idle ones; busy ones finish their
    /// request first.
    pub(super) fn stop(&self) {
        let mut state = self.lock();
        state.stopping = true;
        self.stopping.store(true, Ordering::Release);
        for e in state.conns.values().filter(|e| e.idle_since.is_some()) {
            if let Some(socket) = &e.socket {
                let _ = socket.shutdown(Shutdown::Read);
            }
        }
    }

    /// Shuts every remaining connection down, busy or not.
    pub(super) fn close_all(&self) {
        for e in self.lock().conns.values() {
            if let Some(socket) = &e.socket {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// Waits until no connection is left or `limit` passes; returns how many
    /// are left.
    pub(super) fn wait_empty(&self, limit: Duration) -> usize {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, limit, |s| !s.conns.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        state.conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    const GRACE: Duration = Duration::from_secs(1);

    fn entry(start: Instant, received: u64, size: u64) -> Entry {
        let activity = Activity::new(start);
        activity.set_progress(received, 0);
        Entry {
            socket: None,
            idle_since: None,
            served: false,
            payload: Some((start, size)),
            activity: Arc::new(activity),
            filing: false,
            evicted: None,
        }
    }

    /// `n` accepted server-side sockets, each with its client end.
    fn sockets(n: usize) -> Vec<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (0..n)
            .map(|_| {
                let client = TcpStream::connect(addr).unwrap();
                (client, listener.accept().unwrap().0)
            })
            .collect()
    }

    #[test]
    fn slow_uploads_are_behind_only_past_their_grace() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        // (received, size, seconds since the payload started, behind by)
        let cases = [
            (0, 1000, 0, None),
            (0, 1000, 1, None),
            (0, 1000, 2, Some(100)),
            (50, 1000, 2, Some(50)),
            (100, 1000, 2, None),
            (0, 1000, 100, Some(1000)),
            (999, 1000, 100, Some(1)),
            (1000, 1000, 100, None),
        ];
        for (received, size, secs, want) in cases {
            assert_eq!(
                entry(start, received, size).behind(100, GRACE, at(secs)),
                want,
                "{received}/{size} after {secs}s"
            );
        }
        let idle = Entry {
            payload: None,
            ..entry(start, 0, 0)
        };
        assert_eq!(idle.behind(100, GRACE, at(100)), None);
    }

    #[test]
    fn replies_are_unread_only_past_their_grace() {
        let start = Instant::now();
        let e = entry(start, 0, 0);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(e.unread(GRACE, at(5000)), None, "not writing");
        // Writing since 0 ms after the epoch.
        e.activity.writing_since.store(1, Ordering::Relaxed);
        // (milliseconds after the epoch, unread past the grace)
        let cases = [
            (0, None),
            (1000, None),
            (1500, Some(500)),
            (9000, Some(8000)),
        ];
        for (ms, want) in cases {
            let want = want.map(Duration::from_millis);
            assert_eq!(e.unread(GRACE, at(ms)), want, "{ms} ms");
        }
        e.activity.set_writing(false);
        assert_eq!(e.unread(GRACE, at(9000)), None);
        e.activity.set_writing(true);
        assert!(e.activity.writing_for(Instant::now()).is_some());
    }

    #[test]
    fn eviction_spares_idle_connections_that_were_served() {
        let accepted = sockets(3);
        let registry = Registry::new(2, 1000, GRACE);
        let (served, _) = registry.register(&accepted[0].1).unwrap();
        registry.set_idle(served, true);
        registry.mark_served(served);
        thread::sleep(Duration::from_millis(5));
        let (fresh, _) = registry.register(&accepted[1].1).unwrap();
        registry.set_idle(fresh, true);
        // Full: the newcomer evicts the never-served connection, though the
        // served one has been idle longer. No thread frees the slot here, so
        // the newcomer itself is then refused.
        assert!(registry.register(&accepted[2].1).is_none());
        assert_eq!(registry.evicted(fresh), Some(Eviction::Idle));
        assert_eq!(registry.evicted(served), None);
    }

    #[test]
    fn a_connection_whose_thread_has_not_run_is_idle() {
        let accepted = sockets(2);
        let registry = Registry::new(1, 1000, GRACE);
        let (waiting, _) = registry.register(&accepted[0].1).unwrap();
        // Full, and no thread has marked anything: the newcomer evicts the
        // connection nothing was read from, rather than being turned away.
        // No thread frees the slot here, so the newcomer is then refused.
        assert!(registry.register(&accepted[1].1).is_none());
        assert_eq!(registry.evicted(waiting), Some(Eviction::Idle));
    }

    #[test]
    fn a_connection_is_idle_since_its_accept_not_since_its_thread_ran() {
        let accepted = sockets(3);
        let registry = Registry::new(2, 1000, GRACE);
        let (first, _) = registry.register(&accepted[0].1).unwrap();
        thread::sleep(Duration::from_millis(5));
        let (second, _) = registry.register(&accepted[1].1).unwrap();
        // The first one's thread runs last.
        registry.set_idle(second, true);
        registry.set_idle(first, true);
        assert!(registry.register(&accepted[2].1).is_none());
        assert_eq!(registry.evicted(first), Some(Eviction::Idle));
        assert_eq!(registry.evicted(second), None);
    }

    #[test]
    fn a_client_that_does_not_read_is_evicted_when_full() {
        let accepted = sockets(3);
        let registry = Registry::new(2, 1000, Duration::from_millis(1));
        // Both slots in a request: one writing a reply nobody reads, one
        // receiving a payload at the rate it should.
        let (writer, activity) = registry.register(&accepted[0].1).unwrap();
        registry.set_idle(writer, false);
        activity.set_writing(true);
        let (uploader, _) = registry.register(&accepted[1].1).unwrap();
        registry.set_idle(uploader, false);
        registry.set_payload(uploader, Some((Instant::now(), 1 << 30)));
        let until = Instant::now() + Duration::from_secs(5);
        while registry.lock().conns[&writer]
            .unread(registry.grace, Instant::now())
            .is_none()
        {
            assert!(Instant::now() < until, "never unread");
            thread::yield_now();
        }
        assert!(registry.register(&accepted[2].1).is_none());
        assert_eq!(registry.evicted(writer), Some(Eviction::Unread));
        assert_eq!(registry.evicted(uploader), None);
    }

    #[test]
    fn memory_goes_to_whoever_is_furthest_behind() {
        let accepted = sockets(4);
        let registry = Registry::new(10, 1000, Duration::from_millis(1));
        let long_ago = Instant::now() - Duration::from_secs(60);
        // (received, reserved): behind by 60 000 less what was received.
        let holders = [(50_000, 65_536), (10_000, 65_536), (0, 0)];
        let ids: Vec<u64> = holders
            .iter()
            .zip(&accepted)
            .map(|(&(received, reserved), (_, socket))| {
                let (id, activity) = registry.register(socket).unwrap();
                registry.set_payload(id, Some((long_ago, 1 << 30)));
                activity.set_progress(received, reserved);
                id
            })
            .collect();
        let (me, _) = registry.register(&accepted[3].1).unwrap();
        // The one with nothing reserved frees nothing, however far behind.
        assert!(registry.evict_for_memory(me));
        assert_eq!(registry.evicted(ids[1]), Some(Eviction::Memory));
        assert!(registry.evict_for_memory(me));
        assert_eq!(registry.evicted(ids[0]), Some(Eviction::Memory));
        assert!(!registry.evict_for_memory(me), "no one left to evict");
        assert_eq!(registry.evicted(ids[2]), None);
    }

    #[test]
    fn filing_closes_after_what_is_under_way() {
        let accepted = sockets(2);
        let registry = Arc::new(Registry::new(10, 1000, GRACE));
        let (a, _) = registry.register(&accepted[0].1).unwrap();
        let (b, _) = registry.register(&accepted[1].1).unwrap();
        assert!(registry.begin_filing(a));
        assert_eq!(registry.close_filing(Duration::from_millis(20)), 1);
        assert!(!registry.begin_filing(b), "closed");
        let ender = {
            let registry = Arc::clone(&registry);
            thread::spawn(move || registry.end_filing(a))
        };
        assert_eq!(registry.close_filing(Duration::from_secs(5)), 0);
        ender.join().unwrap();
    }
}
