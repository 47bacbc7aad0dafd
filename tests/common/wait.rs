//! Waiting on a condition with a deadline, never a bare sleep.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Waits until `cond` holds, checking every few milliseconds, or until
/// `deadline`; returns whether it held.
pub fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `limit` from now.
pub fn after(limit: Duration) -> Instant {
    Instant::now() + limit
}
