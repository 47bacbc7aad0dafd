//! The lingering closer: a connection closed after an error has its write
//! side shut and its input drained and discarded for [`LINGER`], on one
//! thread for all of them, so the client reads the `ERR` line instead of a
//! TCP reset.

use crate::config::LINGER;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How often the lingering closer polls its sockets.
const LINGER_POLL: Duration = Duration::from_millis(20);

/// Closes sockets lingeringly on one thread: each has its write side shut
/// and its input drained and discarded until end of input or [`LINGER`].
pub(super) struct Closer {
    state: Mutex<Lingering>,
    ready: Condvar,
    /// Most sockets lingering at once.
    max: usize,
}

/// The closer's sockets, each with the time its lingering ends.
#[derive(Default)]
struct Lingering {
    /// Handed over and waiting for the next pass.
    queued: Vec<(TcpStream, Instant)>,
    /// Taken out by the pass under way, which drains them without the lock.
    draining: usize,
}

impl Closer {
    pub(super) fn new(max: usize) -> Closer {
        Closer {
            state: Mutex::default(),
            ready: Condvar::new(),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lingering> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shuts the write side of `stream` and hands it to the closer thread.
    /// Past `max` sockets, it is closed at once instead.
    pub(super) fn linger(&self, stream: TcpStream) {
        let _ = stream.shutdown(Shutdown::Write);
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut state = self.lock();
        if state.queued.len() + state.draining < self.max {
            state.queued.push((stream, Instant::now() + LINGER));
            self.ready.notify_one();
        }
    }

    /// The closer thread's loop; never returns.
    pub(super) fn run(&self) {
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            let mut state = self.lock();
            while state.queued.is_empty() {
                state = self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Drain outside the lock, so that connections handing sockets
            // over (the accept loop among them) never wait on the draining.
            let mut pass = std::mem::take(&mut state.queued);
            state.draining = pass.len();
            drop(state);
            let now = Instant::now();
            pass.retain_mut(|(stream, until)| now < *until && drain(stream, &mut scratch));
            let mut state = self.lock();
            state.draining = 0;
            state.queued.append(&mut pass);
            drop(state);
            thread::sleep(LINGER_POLL);
        }
    }
}

/// Reads and discards what a non-blocking socket has; false once it reaches
/// end of input or fails.
fn drain(stream: &mut TcpStream, scratch: &mut [u8]) -> bool {
    for _ in 0..16 {
        match stream.read(scratch) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}
