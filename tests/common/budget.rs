//! Holding part of the server's memory budget from a test.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use super::conn::Conn;
use super::fixtures::noise_png;
use super::server::TestServer;
use std::time::Duration;

/// Opens a connection that reserves `reserve` bytes of the server's memory
/// budget (an upload announced, with its first bytes sent; memory is
/// reserved as payload bytes arrive, and `reserve` must be at most the
/// first chunk the server reserves, 64 KiB) and returns it once the
/// reservation is seen: once a small probe upload gets `ERR busy`. The
/// server must run with a low `--min-rate`, so the holder is neither cut
/// nor evicted while the test runs.
///
/// The holder's reservation can itself fail if a probe holds memory at that
/// instant; then the holder is being refused, and is finished and replaced.
pub fn hold_memory(s: &TestServer, reserve: u64) -> Conn {
    let mut probe = s.connect();
    for round in 0..10 {
        let mut holder = s.connect();
        holder.send(format!("PUT hold.png {reserve}\r\n12345").as_bytes());
        assert!(
            s.wait_read(&holder, Duration::from_secs(10)),
            "the server never read the holder's bytes"
        );
        for attempt in 0..3 {
            let seed = 1000 + round * 10 + attempt;
            let reply = probe.upload("PUT", "probe.png", &noise_png(8, 8, seed));
            if reply.starts_with("ERR busy") {
                return holder;
            }
        }
        // The probes got through: the holder holds nothing. Finish its
        // upload so its connection ends cleanly, and try again.
        holder.send(&vec![0u8; usize::try_from(reserve).unwrap() - 5]);
        let _ = holder.line();
    }
    panic!("the server never reported the held memory as busy");
}
