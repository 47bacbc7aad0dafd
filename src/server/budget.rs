//! The memory budget and the decode gate: payload bytes and decoded pixels
//! are reserved against the [`Budget`] before they are allocated, and
//! decodes larger than [`LARGE_DECODE`] take turns at the [`DecodeGate`], as
//! many at once as there are CPUs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

/// Decodes that may take more memory than this take turns at the
/// [`DecodeGate`]; smaller ones (a 4-megapixel RGBA PNG and below) decode at
/// once.
const LARGE_DECODE: u64 = 16 * 1024 * 1024;

/// Lets as many large decodes run at once as there are CPUs.
///
/// Decoding is CPU-bound, so more large decodes at once than cores finish
/// no sooner, hold more memory, and crowd out small uploads: with eight
/// large images decoding on two cores, a thumbnail-sized upload would get a
/// ninth of the CPU. Behind the gate, large images queue for the cores and
/// small ones, which skip it, still get their turn at once.
pub(super) struct DecodeGate {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A turn at the [`DecodeGate`], given back on drop.
pub(super) struct Turn<'a>(&'a DecodeGate);

impl DecodeGate {
    pub(super) fn new(turns: usize) -> DecodeGate {
        DecodeGate {
            free: Mutex::new(turns.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a turn if a decode that may take `peak` bytes is larger
    /// than [`LARGE_DECODE`]; a smaller one needs no turn (`None`).
    pub(super) fn enter_if_large(&self, peak: u64) -> Option<Turn<'_>> {
        (peak > LARGE_DECODE).then(|| self.enter())
    }

    /// Waits for a turn. Turns are held only while decoding, which always
    /// ends, so the wait is bounded by the decodes ahead.
    fn enter(&self) -> Turn<'_> {
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

/// Bytes of memory in use by payloads and decoded pixels.
pub(super) struct Budget {
    limit: u64,
    used: AtomicU64,
}

/// A reservation against the [`Budget`], released on drop.
pub(super) struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Budget {
        Budget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// The limit, in bytes.
    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub(super) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes`, or `None` if that would go over the limit.
    pub(super) fn try_reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()?;
        Some(Reservation {
            budget: self,
            bytes,
        })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn decode_gate_admits_as_many_as_it_has_turns() {
        let gate = Arc::new(DecodeGate::new(2));
        let (a, b) = (gate.enter(), gate.enter());
        let (tx, rx) = std::sync::mpsc::channel();
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
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
        assert!(budget.try_reserve(u64::MAX).is_none());
    }

    #[test]
    fn only_large_decodes_take_a_turn() {
        let gate = DecodeGate::new(1);
        // (peak bytes, takes a turn); each turn is given back at once.
        let cases = [(0, false), (LARGE_DECODE, false), (LARGE_DECODE + 1, true)];
        for (peak, takes) in cases {
            assert_eq!(gate.enter_if_large(peak).is_some(), takes, "peak {peak}");
        }
        assert_eq!(*gate.free.lock().unwrap(), 1);
    }
}
