//! The decode workers against the real server: whatever a decoder does
//! wrong (loops, aborts, overflows its stack, segfaults, allocates without
//! bound, makes a forbidden system call) costs one `ERR` line, a counted
//! failure and a log line naming the limit, and the server serves the next
//! request; the workers hold no descriptor but their pipes, run under
//! `no_new_privs` and their filter, and die with the server.
//!
//! The faults come from a hook that only test builds have
//! (`COLORSORT_WORKER_FAULT`, read from the server's environment, never
//! from the network), striking on images 13 pixels wide.

mod common {
    pub mod bombs;
    pub mod conn;
    pub mod fixtures;
    pub mod http;
    pub mod procfs;
    pub mod server;
    pub mod stored;
    pub mod wait;
}

use common::conn::code;
use common::fixtures::png;
use common::http::http_get;
use common::server::TestServer;
use common::wait::{after, wait_until};
use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

/// The width of the images the fault hook strikes on.
const FAULT_WIDTH: u32 = 13;

/// The workers of the server with process id `server`: its children
/// running `decode-worker`.
fn workers_of(server: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command's closing parenthesis: state, ppid.
        let Some(after_comm) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let ppid = after_comm
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(server) && cmdline.windows(13).any(|w| w == b"decode-worker") {
            found.push(pid);
        }
    }
    found
}

/// A field of /proc/PID/status as text.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let prefix = format!("{field}:");
    let line = text.lines().find(|l| l.starts_with(&prefix))?;
    Some(line[prefix.len()..].trim().to_string())
}

/// The value of a sample on the metrics page.
fn sample(page: &str, series: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_failing_decoder_costs_one_err_line_and_the_server_goes_on() {
    // (fault, code sent, metrics reason, log says)
    let cases = [
        (
            "loop",
            "too-complex",
            "time",
            "killed at its deadline of 2.0 s",
        ),
        ("abort", "not-an-image", "crash", "died of signal 6"),
        // Rust's handler reports an overflow into the guard page and
        // aborts; a stack that runs into the address-space limit first
        // is a plain SIGSEGV.
        ("stack", "not-an-image", "crash", "died of signal"),
        ("segfault", "not-an-image", "crash", "died of signal 11"),
        (
            "allocate",
            "too-complex",
            "memory",
            "ran into its memory limit",
        ),
        (
            "syscall",
            "not-an-image",
            "syscall",
            "killed by its sandbox for a forbidden system call",
        ),
    ];
    let faulty = png([200, 10, 10], FAULT_WIDTH, 5);
    let fine = png([10, 10, 200], 20, 20);
    for (fault, expected, reason, logged) in cases {
        let s = TestServer::start_with_env(
            &[("COLORSORT_WORKER_FAULT", fault)],
            &["--decode-timeout", "2s", "--metrics", "127.0.0.1:0"],
        );
        let mut conn = s.connect();
        let reply = conn.upload("PUT", "faulty.png", &faulty);
        assert_eq!(code(&reply), expected, "{fault}: {reply}");
        // In step on the same connection, and the server goes on.
        let reply = conn.upload("PUT", "fine.png", &fine);
        assert!(
            reply.starts_with("OK not_trusted/fine.png"),
            "{fault}: {reply}"
        );
        let log = s
            .wait_log(logged, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{fault}: no {logged:?} in the log: {}", s.log_text()));
        assert!(log.contains("PUT faulty.png"), "{fault}: {log}");
        let page = http_get(s.metrics_addr(), "/metrics").body;
        let series = format!("colorsort_decode_worker_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&page, &series), Some(1), "{fault}: {page}");
        assert_eq!(s.files("not_trusted"), ["fine.png"], "{fault}");
        // Nothing of the failed decode is left: no memory held, no
        // worker beyond the ones started ahead of need.
        assert!(
            wait_until(after(Duration::from_secs(10)), || {
                let page = http_get(s.metrics_addr(), "/metrics").body;
                sample(&page, "colorsort_memory_used_bytes") == Some(0)
            }),
            "{fault}: memory still reserved"
        );
    }
}

#[test]
fn workers_hold_only_their_pipes_and_die_with_the_server() {
    let mut s = TestServer::start(&[]);
    assert_eq!(status_field(s.pid(), "NoNewPrivs").as_deref(), Some("1"));
    let mut workers = Vec::new();
    assert!(
        wait_until(after(Duration::from_secs(10)), || {
            workers = workers_of(s.pid());
            workers.len() == 2
        }),
        "two workers started ahead of need: {workers:?}"
    );
    for &pid in &workers {
        // A worker closes what it inherited before it waits for a job.
        let mut fds = BTreeSet::new();
        assert!(
            wait_until(after(Duration::from_secs(10)), || {
                fds = fs::read_dir(format!("/proc/{pid}/fd"))
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                fds == BTreeSet::from(["0".into(), "1".into(), "2".into()])
            }),
            "worker {pid} holds {fds:?}"
        );
        assert_eq!(status_field(pid, "NoNewPrivs").as_deref(), Some("1"));
        assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("2"));
    }
    s.signal("KILL");
    s.wait_exit(Duration::from_secs(10)).expect("server killed");
    let gone = |pid: u32| status_field(pid, "State").is_none_or(|state| state.starts_with('Z'));
    assert!(
        wait_until(after(Duration::from_secs(10)), || workers
            .iter()
            .all(|&p| gone(p))),
        "workers outlived their server: {workers:?}"
    );
}

#[test]
fn each_decode_has_a_fresh_worker_and_the_count_is_bounded() {
    let s = TestServer::start(&["--max-workers", "3", "--metrics", "127.0.0.1:0"]);
    let mut seen = BTreeSet::new();
    let mut conn = s.connect();
    for i in 0..5 {
        seen.extend(workers_of(s.pid()));
        // Different content each time: a duplicate is not decoded again.
        let reply = conn.upload("PUT", &format!("{i}.png"), &png([9, 200, i], 8, 8));
        assert!(reply.starts_with("OK"), "{reply}");
    }
    // Five decodes, each in a worker of its own: the ones seen idle before
    // each were all different processes.
    assert!(seen.len() >= 5, "workers seen: {seen:?}");
    let page = http_get(s.metrics_addr(), "/metrics").body;
    assert_eq!(sample(&page, "colorsort_decode_workers_limit"), Some(3));
    let alive = sample(&page, "colorsort_decode_workers").unwrap();
    assert!(alive <= 3, "{alive} workers alive");
}

/// The resident memory of the server with process id `server` and of its
/// workers together, in bytes.
fn resident_with_workers(server: u32) -> u64 {
    std::iter::once(server)
        .chain(workers_of(server))
        .filter_map(|pid| common::procfs::proc_status_of(pid, "VmRSS"))
        .sum::<u64>()
        * 1024
}

#[test]
fn memory_the_header_does_not_predict_stays_within_the_budget() {
    use common::bombs::{TiffType, tiff_tag_list, webp_prefix_groups};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const BUDGET: u64 = 256 << 20;
    /// What the server holds beyond its budget and its memory at start:
    /// `config::MEMORY_OVERHEAD`.
    const OVERHEAD: u64 = 64 << 20;
    let s = TestServer::start(&["--max-memory", "256M"]);
    let start = resident_with_workers(s.pid());
    // One process decoding a 16,384-group WebP takes some 330 MB, and the
    // server once answered it OK; a TIFF whose width is a list of a million
    // values took 256 MB to open. Each is made distinct so that none is a
    // duplicate of another.
    let webp = webp_prefix_groups(16_384);
    let tiff = tiff_tag_list(1 << 20, TiffType::Byte);
    let bombs: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("groups-{i}.webp"), webp.clone()))
        .chain((0..4).map(|i| (format!("list-{i}.tiff"), tiff.clone())))
        .collect();
    let peak = AtomicU64::new(start);
    let attacking = AtomicBool::new(true);
    let legit_took = std::thread::scope(|scope| {
        scope.spawn(|| {
            while attacking.load(Ordering::Relaxed) {
                peak.fetch_max(resident_with_workers(s.pid()), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let attackers: Vec<_> = bombs
            .iter()
            .map(|(name, bytes)| {
                let s = &s;
                scope.spawn(move || {
                    let mut c = s.connect();
                    // Each bomb three times over, on one connection.
                    (0..3)
                        .map(|_| c.upload("PUT", name, bytes))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A legitimate upload during the attack.
        let mut c = s.connect();
        let started = std::time::Instant::now();
        let reply = c.upload("PUT", "legit.png", &png([10, 200, 10], 640, 480));
        let took = started.elapsed();
        assert!(reply.starts_with("OK not_trusted/legit.png"), "{reply}");
        for (attacker, (name, _)) in attackers.into_iter().zip(&bombs) {
            for reply in attacker.join().unwrap() {
                // Refused as too complex, or busy while the budget is
                // spent by the others; never stored.
                assert!(
                    ["too-complex", "busy"].contains(&code(&reply)),
                    "{name}: {reply}"
                );
            }
        }
        attacking.store(false, Ordering::Relaxed);
        took
    });
    let peak = peak.into_inner();
    eprintln!(
        "12 bombs x3 under a 256 MiB budget: server and workers resident at start {} MiB, \
         peak {} MiB; a legitimate upload took {legit_took:?}",
        start >> 20,
        peak >> 20
    );
    assert!(
        peak <= start + BUDGET + OVERHEAD,
        "peak {peak} bytes over {start} + budget + overhead"
    );
    assert!(legit_took < Duration::from_secs(2), "{legit_took:?}");
    assert_eq!(s.files("not_trusted"), ["legit.png"]);
    // The server goes on.
    assert_eq!(s.connect().ask("PING"), "OK PONG");
    // Every failure was counted as the memory limit it hit, and logged.
    assert!(
        s.wait_log("ran into its memory limit", Duration::from_secs(5))
            .is_some(),
        "{}",
        s.log_text()
    );
}
