//! Memory accounting and decode turns, shared by everything that decodes
//! images for someone: the server's connections, the gallery's thumbnail
//! threads and `colorsort classify -j N`.
//!
//! A [`Budget`] is a number of bytes that a caller reserves before it
//! allocates them, and gives back by dropping its [`Reservation`]. The
//! server refuses what does not fit ([`Budget::try_reserve`]); a batch job
//! waits for room instead ([`Budget::reserve`]). A [`DecodeGate`] lets as
//! many large decodes run at once as it has turns, usually one per CPU;
//! smaller decodes skip it.

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
        let mut r = budget.try_reserve(10).unwrap();
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
