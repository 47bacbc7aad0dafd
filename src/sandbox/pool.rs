//! The workers ready to decode: a few started ahead of need by one
//! long-lived thread, so that starting a process is off an upload's path,
//! each handed out once and never reused, and at most a fixed number alive
//! at once, idle or busy.
//!
//! The starting thread is the workers' parent thread: a worker dies when
//! it ends (`PR_SET_PDEATHSIG`), that is when the [`Pool`] is dropped or
//! the process dies.

use super::process::Process;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the starting thread waits after a worker failed to start
/// before it tries again.
const RETRY: Duration = Duration::from_millis(250);

/// What the pool starts, and how many.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// The binary to run as a worker.
    pub(super) program: PathBuf,
    /// Workers alive at most, idle and busy.
    pub(super) max: usize,
    /// Workers kept started ahead of need.
    pub(super) idle: usize,
    /// The most memory a worker may ever be allowed, besides its overhead.
    pub(super) most: u64,
    /// A worker's CPU time limit.
    pub(super) cpu: Duration,
}

/// Workers started and waiting, and the count of all alive.
struct State {
    idle: Vec<Process>,
    /// Idle, busy, and being started.
    alive: usize,
    /// Why the last start failed, until one succeeds.
    failed: Option<String>,
    stopping: bool,
}

struct Shared {
    settings: Settings,
    state: Mutex<State>,
    /// Signalled when a worker is ready, or a start failed.
    ready: Condvar,
    /// Signalled when one is taken or ends, or the pool stops.
    wanted: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pool and its starting thread.
pub(super) struct Pool {
    shared: Arc<Shared>,
    starter: Option<JoinHandle<()>>,
}

/// A worker taken from the pool; its place is given back when dropped.
pub(super) struct Lease<'a> {
    pub(super) process: Process,
    pool: &'a Shared,
}

impl Drop for Lease<'_> {
    /// Gives the place back once the worker is gone, so that the count of
    /// workers alive never runs behind the processes.
    fn drop(&mut self) {
        self.process.end();
        let mut state = self.pool.lock();
        state.alive -= 1;
        self.pool.wanted.notify_one();
    }
}

/// Why no worker could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unavailable {
    /// Every worker was busy until the deadline.
    Busy,
    /// Workers cannot be started; the text says why.
    Start(String),
}

impl Pool {
    /// Starts the pool's starting thread, which keeps `settings.idle`
    /// workers ready.
    pub(super) fn new(settings: Settings) -> io::Result<Pool> {
        let shared = Arc::new(Shared {
            settings,
            state: Mutex::new(State {
                idle: Vec::new(),
                alive: 0,
                failed: None,
                stopping: false,
            }),
            ready: Condvar::new(),
            wanted: Condvar::new(),
        });
        let runner = Arc::clone(&shared);
        let starter = thread::Builder::new()
            .name("decode-workers".into())
            .spawn(move || start_workers(&runner))?;
        Ok(Pool {
            shared,
            starter: Some(starter),
        })
    }

    /// Takes a ready worker, waiting for one until `deadline`.
    pub(super) fn take(&self, deadline: Instant) -> Result<Lease<'_>, Unavailable> {
        let mut state = self.shared.lock();
        loop {
            if let Some(process) = state.idle.pop() {
                self.shared.wanted.notify_one();
                return Ok(Lease {
                    process,
                    pool: &self.shared,
                });
            }
            if let Some(why) = &state.failed {
                return Err(Unavailable::Start(why.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Unavailable::Busy);
            }
            state = self
                .shared
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Workers alive now, idle and busy, and the most allowed.
    pub(super) fn alive(&self) -> (usize, usize) {
        (self.shared.lock().alive, self.shared.settings.max)
    }
}

impl Drop for Pool {
    /// Stops the starting thread, which kills the idle workers.
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wanted.notify_all();
        if let Some(starter) = self.starter.take() {
            let _ = starter.join();
        }
    }
}

/// The starting thread: keeps `idle` workers ready while fewer than `max`
/// are alive, until the pool stops; then kills the idle ones.
fn start_workers(pool: &Shared) {
    let settings = &pool.settings;
    let mut state = pool.lock();
    while !state.stopping {
        if state.idle.len() >= settings.idle || state.alive >= settings.max {
            state = pool.wanted.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        state.alive += 1;
        drop(state);
        let started = Process::spawn(&settings.program, settings.most, settings.cpu);
        state = pool.lock();
        match started {
            Ok(process) => {
                state.idle.push(process);
                state.failed = None;
                pool.ready.notify_one();
            }
            Err(e) => {
                state.alive -= 1;
                let why = format!("cannot start {}: {e}", settings.program.display());
                if state.failed.as_ref() != Some(&why) {
                    log!("decode workers: {why}");
                }
                state.failed = Some(why);
                pool.ready.notify_all();
                state = pool
                    .wanted
                    .wait_timeout(state, RETRY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
    let idle = std::mem::take(&mut state.idle);
    state.alive -= idle.len();
    drop(state);
    drop(idle);
}
