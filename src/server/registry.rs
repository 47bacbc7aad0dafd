//! The connection registry: one slot per live connection, the connection
//! cap, eviction of the connection idle longest (or else the upload furthest
//! behind the minimum rate) to make room for a newcomer, and the view of
//! every connection that a stop needs.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a newcomer waits for an evicted connection's slot to free up.
const EVICTION_WAIT: Duration = Duration::from_millis(250);
/// How far behind the minimum rate, in time, an upload must fall before it
/// may be evicted for a newcomer: a client that sent its request line is
/// given this long for its payload to start flowing.
const SLOW_UPLOAD_GRACE: Duration = Duration::from_secs(1);

/// The live connections, for the connection cap, eviction and shutdown.
pub(super) struct Registry {
    cap: usize,
    /// The minimum payload rate, bytes per second: an upload more than
    /// [`SLOW_UPLOAD_GRACE`] behind it may be evicted when the registry is
    /// full and nothing is idle.
    min_rate: u64,
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
}

/// One live connection's slot.
struct Entry {
    /// A handle on the socket, to shut it down from outside its thread.
    socket: Option<TcpStream>,
    /// When the connection started waiting for a request line, if it is.
    idle_since: Option<Instant>,
    /// The connection has had a request answered. Among idle connections,
    /// those that never completed a request (what a slowloris crowd is
    /// made of) are evicted first.
    served: bool,
    /// When the connection's current payload started, and its SIZE, while
    /// it is in an upload.
    payload: Option<(Instant, u64)>,
    /// Payload bytes received so far, written by the connection's thread.
    progress: Arc<AtomicU64>,
    evicted: bool,
}

impl Entry {
    /// How far the payload being received is behind the minimum rate, in
    /// bytes, counted from [`SLOW_UPLOAD_GRACE`] after its start; `None` if
    /// it is not behind (or not receiving a payload).
    fn behind(&self, min_rate: u64, now: Instant) -> Option<u64> {
        let (started, size) = self.payload?;
        let received = self.progress.load(Ordering::Relaxed);
        let elapsed = now
            .saturating_duration_since(started)
            .checked_sub(SLOW_UPLOAD_GRACE)?;
        let due = u64::try_from(elapsed.as_millis().saturating_mul(u128::from(min_rate)) / 1000)
            .unwrap_or(u64::MAX)
            .min(size);
        (received < due).then(|| due - received)
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
    pub(super) fn new(cap: usize, min_rate: u64) -> Registry {
        Registry {
            cap,
            min_rate,
            state: Mutex::default(),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for `stream`, evicting a connection if the registry is
    /// full: the one idle longest, or else the upload furthest behind the
    /// minimum rate. `None` if no slot could be had. Returns the slot's id
    /// and the progress counter its connection reports payload bytes to.
    pub(super) fn register(&self, stream: &TcpStream) -> Option<(u64, Arc<AtomicU64>)> {
        let mut state = self.lock();
        if state.stopping {
            return None;
        }
        if state.conns.len() >= self.cap {
            let now = Instant::now();
            let candidates = || state.conns.iter().filter(|(_, e)| !e.evicted);
            // Idle connections cost the server nothing to drop; a slow upload
            // is dropped only when every slot is taken by a request, so that
            // uploads trickled on purpose cannot lock everyone else out.
            let idle = candidates()
                .filter_map(|(id, e)| e.idle_since.map(|since| (e.served, since, *id)))
                .min()
                .map(|(_, _, id)| id);
            let slow = || {
                candidates()
                    .filter_map(|(id, e)| e.behind(self.min_rate, now).map(|b| (b, *id)))
                    .max()
                    .map(|(_, id)| id)
            };
            let victim_id = idle.or_else(slow)?;
            let victim = state.conns.get_mut(&victim_id)?;
            victim.evicted = true;
            if let Some(socket) = &victim.socket {
                // Its blocked read returns end-of-input; its thread sees
                // `evicted`, says why and exits, freeing the slot.
                let _ = socket.shutdown(Shutdown::Read);
            }
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
        let progress = Arc::new(AtomicU64::new(0));
        let entry = Entry {
            socket: stream.try_clone().ok(),
            idle_since: None,
            served: false,
            payload: None,
            progress: Arc::clone(&progress),
            evicted: false,
        };
        state.conns.insert(id, entry);
        Some((id, progress))
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
            e.idle_since = idle.then(Instant::now);
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

    pub(super) fn evicted(&self, id: u64) -> bool {
        self.lock().conns.get(&id).is_some_and(|e| e.evicted)
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
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

    #[test]
    fn slow_uploads_are_behind_only_past_their_grace() {
        let start = Instant::now();
        let entry = |received: u64, size: u64| Entry {
            socket: None,
            idle_since: None,
            served: false,
            payload: Some((start, size)),
            progress: Arc::new(AtomicU64::new(received)),
            evicted: false,
        };
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
                entry(received, size).behind(100, at(secs)),
                want,
                "{received}/{size} after {secs}s"
            );
        }
        let idle = Entry {
            payload: None,
            ..entry(0, 0)
        };
        assert_eq!(idle.behind(100, at(100)), None);
    }

    #[test]
    fn eviction_spares_idle_connections_that_were_served() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted: Vec<(TcpStream, TcpStream)> = (0..3)
            .map(|_| {
                let client = TcpStream::connect(addr).unwrap();
                (client, listener.accept().unwrap().0)
            })
            .collect();
        let registry = Registry::new(2, 1000);
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
        assert!(registry.evicted(fresh));
        assert!(!registry.evicted(served));
    }
}
