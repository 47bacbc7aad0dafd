//! One decode worker as the server sees it: a child process of the same
//! binary, started with its pipes and nothing else, its limits set from
//! outside (`prlimit(2)`), spoken to through non-blocking pipes under
//! deadlines, and always killed and reaped in the end. How it ended is a
//! [`Failure`] when it did not answer. Every `unsafe` call of the parent's
//! side is here, each with the reason it is sound.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The hidden subcommand that runs a worker (`colorsort decode-worker PID`).
pub const COMMAND: &str = "decode-worker";

/// The exit status of a worker whose allocation failed against its memory
/// limit.
pub const EXIT_OUT_OF_MEMORY: i32 = 86;
/// The exit status of a worker started by a process other than its parent,
/// or whose parent died before it could ask to die with it.
pub const EXIT_ORPHAN: i32 = 87;
/// The exit status of a worker that could not install its sandbox.
pub const EXIT_NO_SANDBOX: i32 = 88;

/// Address space a worker has besides its input and its decode: the
/// mapped binary, the stack, the allocator's own slack. It is charged to
/// the budget with every decode, so that whatever a worker can make
/// resident is charged; an idle worker (a few hundred kilobytes of its
/// own) is limited to it.
pub const OVERHEAD: u64 = 8 << 20;

/// The variable that carries a fault to inject into test builds' workers.
#[cfg(debug_assertions)]
pub(super) const FAULT_VARIABLE: &str = "COLORSORT_WORKER_FAULT";

/// Why a worker gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An allocation failed against its memory limit.
    Memory {
        /// The limit it ran into, in bytes.
        limit: u64,
    },
    /// It did not answer before its deadline, or ran out of CPU time, and
    /// was killed.
    Time {
        /// The deadline.
        limit: Duration,
    },
    /// The sandbox killed it for a system call it may not make.
    Syscall,
    /// It died of a signal (a segfault, an abort, a stack overflow).
    Crash {
        /// The signal.
        signal: i32,
    },
    /// It exited without an answer, or its answer was malformed.
    Malformed {
        /// Its exit status, if it exited by itself.
        status: Option<i32>,
    },
}

impl Failure {
    /// Every reason, in the order of [`Failure::index`]: the `reason`
    /// label of the metrics.
    pub const REASONS: [&'static str; 5] = ["memory", "time", "syscall", "crash", "malformed"];

    /// The position of this failure's reason in [`Failure::REASONS`].
    pub fn index(self) -> usize {
        match self {
            Failure::Memory { .. } => 0,
            Failure::Time { .. } => 1,
            Failure::Syscall => 2,
            Failure::Crash { .. } => 3,
            Failure::Malformed { .. } => 4,
        }
    }

    /// The `reason` label of the metrics and the word the log uses.
    pub fn reason(self) -> &'static str {
        Failure::REASONS[self.index()]
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Memory { limit } => write!(
                f,
                "the decode worker ran into its memory limit of {limit} bytes"
            ),
            Failure::Time { limit } => write!(
                f,
                "the decode worker was killed at its deadline of {:.1} s",
                limit.as_secs_f64()
            ),
            Failure::Syscall => f.write_str(
                "the decode worker was killed by its sandbox for a forbidden system call",
            ),
            Failure::Crash { signal } => {
                write!(f, "the decode worker died of signal {signal}")
            }
            Failure::Malformed { status: Some(s) } => {
                write!(
                    f,
                    "the decode worker exited with status {s} without an answer"
                )
            }
            Failure::Malformed { status: None } => {
                f.write_str("the decode worker sent a malformed answer")
            }
        }
    }
}

/// Why talking to a worker stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// The deadline passed.
    Timeout,
    /// The worker closed its end, or its answer ended early.
    Closed,
}

/// A running worker.
pub(super) struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Its memory limit now.
    memory: u64,
}

impl Process {
    /// Starts `program` as a worker, with no environment, its standard
    /// input and output piped to this process and its standard error
    /// discarded; then sets its limits, before it can have read a byte:
    /// address space [`OVERHEAD`] (raised per decode, up to `most`), CPU
    /// time `cpu` (then killed), no core dumps.
    pub(super) fn spawn(program: &Path, most: u64, cpu: Duration) -> io::Result<Process> {
        let mut command = Command::new(program);
        command
            .arg(COMMAND)
            .arg(std::process::id().to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        #[cfg(debug_assertions)]
        if let Some(fault) = std::env::var_os(FAULT_VARIABLE) {
            command.env(FAULT_VARIABLE, fault);
        }
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            kill(&mut child);
            return Err(io::Error::other("worker started without its pipes"));
        };
        let mut process = Process {
            child,
            stdin,
            stdout,
            memory: OVERHEAD,
        };
        let cpu = cpu.as_secs().saturating_add(1);
        let limited = (|| {
            set_nonblocking(process.stdin.as_raw_fd())?;
            set_nonblocking(process.stdout.as_raw_fd())?;
            process.limit(libc::RLIMIT_CORE, 0, 0)?;
            process.limit(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1))?;
            process.limit(libc::RLIMIT_AS, OVERHEAD, most.max(OVERHEAD))
        })();
        match limited {
            Ok(()) => Ok(process),
            Err(e) => {
                kill(&mut process.child);
                Err(e)
            }
        }
    }

    /// Sets its address-space limit to `charged` bytes (within the most it
    /// was started with).
    pub(super) fn allow(&mut self, charged: u64) -> io::Result<()> {
        self.limit_soft(libc::RLIMIT_AS, charged)?;
        self.memory = charged;
        Ok(())
    }

    /// Writes all of `bytes` to the worker's input by `deadline`.
    pub(super) fn write_all(&mut self, mut bytes: &[u8], deadline: Instant) -> Result<(), Stop> {
        use std::io::Write;
        while !bytes.is_empty() {
            match self.stdin.write(bytes) {
                Ok(0) => return Err(Stop::Closed),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_ready(self.stdin.as_raw_fd(), libc::POLLOUT, deadline)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Stop::Closed),
            }
        }
        Ok(())
    }

    /// Fills `buf` from the worker's output by `deadline`.
    pub(super) fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), Stop> {
        use std::io::Read;
        let mut filled = 0;
        while filled < buf.len() {
            match self.stdout.read(&mut buf[filled..]) {
                Ok(0) => return Err(Stop::Closed),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_ready(self.stdout.as_raw_fd(), libc::POLLIN, deadline)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Stop::Closed),
            }
        }
        Ok(())
    }

    /// Ends the worker after `stop` (or after a malformed answer, `None`)
    /// and says why it failed: at a deadline, the deadline; else how it
    /// ended. A worker whose output closed has exited (its sandbox lets it
    /// close nothing), and a kill does not change how an exiting process
    /// ends; the kill bounds the wait if it had not.
    pub(super) fn fail(&mut self, stop: Option<Stop>, deadline: Duration) -> Failure {
        if matches!(stop, Some(Stop::Timeout)) {
            kill(&mut self.child);
            return Failure::Time { limit: deadline };
        }
        if stop.is_none() {
            kill(&mut self.child);
            return Failure::Malformed { status: None };
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => ending(status, self.memory, deadline),
            Err(_) => Failure::Malformed { status: None },
        }
    }

    fn limit(&self, resource: LimitResource, soft: u64, hard: u64) -> io::Result<()> {
        let limit = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard,
        };
        self.prlimit(resource, &limit)
    }

    fn limit_soft(&self, resource: LimitResource, soft: u64) -> io::Result<()> {
        let mut old = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: prlimit64 with a null new limit only writes the current
        // one into `old`, a valid rlimit64 we own.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                self.child.id() as libc::pid_t,
                resource,
                std::ptr::null::<libc::rlimit64>(),
                &raw mut old,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let limit = libc::rlimit64 {
            rlim_cur: soft.min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        self.prlimit(resource, &limit)
    }

    fn prlimit(&self, resource: LimitResource, limit: &libc::rlimit64) -> io::Result<()> {
        // SAFETY: prlimit64 reads one rlimit64 through a valid pointer and
        // writes nothing (the old limit is not asked for). The pid is our
        // own unreaped child's, so it names no other process.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                self.child.id() as libc::pid_t,
                resource,
                std::ptr::from_ref(limit),
                std::ptr::null_mut::<libc::rlimit64>(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Process {
    /// Kills the worker if it still runs, and reaps it; again is harmless.
    pub(super) fn end(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for Process {
    /// A worker never outlives its handle.
    fn drop(&mut self) {
        self.end();
    }
}

/// The resource argument of `prlimit64`, whose C type differs between C
/// libraries.
#[cfg(target_env = "gnu")]
type LimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type LimitResource = libc::c_int;

/// Kills `child` (if it still runs) and reaps it.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Why a worker that ended by itself, under a memory limit of `memory`
/// bytes and a deadline, gave no answer.
fn ending(status: ExitStatus, memory: u64, deadline: Duration) -> Failure {
    match (status.code(), status.signal()) {
        (Some(EXIT_OUT_OF_MEMORY), _) => Failure::Memory { limit: memory },
        (_, Some(libc::SIGSYS)) => Failure::Syscall,
        // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.
        (_, Some(libc::SIGXCPU | libc::SIGKILL)) => Failure::Time { limit: deadline },
        (_, Some(signal)) => Failure::Crash { signal },
        (code, None) => Failure::Malformed { status: code },
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor that the caller's pipe keeps open,
    // reading and setting plain integer flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is ready for `events`, or `deadline` passes.
fn wait_ready(fd: RawFd, events: libc::c_short, deadline: Instant) -> Result<(), Stop> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::Timeout);
        }
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        let mut poll = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd that we own, for a
        // descriptor the caller's pipe keeps open.
        let rc = unsafe { libc::poll(&raw mut poll, 1, ms) };
        if rc > 0 {
            // Ready, or hung up or in error: the read or write says which.
            return Ok(());
        }
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(Stop::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_told_apart() {
        let deadline = Duration::from_secs(3);
        let cases = [
            (
                ExitStatus::from_raw(EXIT_OUT_OF_MEMORY << 8),
                Failure::Memory { limit: 7 },
            ),
            (ExitStatus::from_raw(libc::SIGSYS), Failure::Syscall),
            (
                ExitStatus::from_raw(libc::SIGXCPU),
                Failure::Time { limit: deadline },
            ),
            (
                ExitStatus::from_raw(libc::SIGKILL),
                Failure::Time { limit: deadline },
            ),
            (
                ExitStatus::from_raw(libc::SIGSEGV),
                Failure::Crash {
                    signal: libc::SIGSEGV,
                },
            ),
            (
                ExitStatus::from_raw(libc::SIGABRT),
                Failure::Crash {
                    signal: libc::SIGABRT,
                },
            ),
            (
                ExitStatus::from_raw(0),
                Failure::Malformed { status: Some(0) },
            ),
            (
                ExitStatus::from_raw(101 << 8),
                Failure::Malformed { status: Some(101) },
            ),
        ];
        for (status, failure) in cases {
            assert_eq!(ending(status, 7, deadline), failure, "{status:?}");
        }
    }

    #[test]
    fn every_failure_has_its_own_reason() {
        let failures = [
            Failure::Memory { limit: 1 },
            Failure::Time {
                limit: Duration::ZERO,
            },
            Failure::Syscall,
            Failure::Crash { signal: 11 },
            Failure::Malformed { status: None },
        ];
        for (i, f) in failures.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(Failure::REASONS[i], f.reason());
        }
    }
}
