//! The server's metrics: counters, gauges and histograms that the server
//! updates as it goes, and the page that shows them in the Prometheus text
//! format (`colorsort serve --metrics ADDR`, `GET /metrics`).
//!
//! Everything is an atomic updated with relaxed ordering: a hook on the
//! request path is an addition, never a lock. What the server already knows
//! elsewhere (the memory budget, the connection limit) is read when the
//! page is rendered, from a [`Live`] the server fills in.
//!
//! `histogram` holds the bucketed durations, `text` writes the exposition
//! format, `http` is the small HTTP/1.1 responder that serves the page.

mod histogram;
pub mod http;
mod text;

use crate::protocol::{self, Code, Reply, Upload};
use crate::sandbox::Failure;
use crate::store::Folder;
use histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use text::{Kind, Page};

pub use text::CONTENT_TYPE;

/// Buckets of the upload duration histogram: from a small image on a fast
/// link to a large one at the minimum rate.
const UPLOAD_BUCKETS: &[Duration] = &[
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
];

/// Buckets of the decode-turn wait histogram: no wait at all, up to a queue
/// of large images ahead.
const DECODE_WAIT_BUCKETS: &[Duration] = &[
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// The upload commands, as the `command` label shows them.
const COMMANDS: [Upload; 2] = [Upload::Put, Upload::Seal];
/// Refusals counted per command: every `ERR` code, and one for uploads that
/// ended without a reply (the client left mid-payload).
const REFUSALS: usize = Code::ALL.len() + 1;
/// The `result` of an upload that ended without a reply.
const ABORTED: &str = "aborted";
/// The `folder` of an upload that was not filed.
const NO_FOLDER: &str = "none";

/// Why a connection was evicted: for what it is told, the log, and the
/// `reason` label of `colorsort_evictions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// It waited longest for a request line while every slot was taken
    /// (`idle`).
    Idle,
    /// Its reply went unread longest while every slot was taken
    /// (`unread_reply`).
    Unread,
    /// Its upload was furthest behind the minimum rate while every slot
    /// was taken (`slow_upload`).
    SlowUpload,
    /// Its upload was furthest behind the minimum rate while the memory
    /// budget was spent (`memory`).
    Memory,
}

impl Eviction {
    const ALL: [Eviction; 4] = [
        Eviction::Idle,
        Eviction::Unread,
        Eviction::SlowUpload,
        Eviction::Memory,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Eviction::Idle => "idle",
            Eviction::Unread => "unread_reply",
            Eviction::SlowUpload => "slow_upload",
            Eviction::Memory => "memory",
        }
    }
}

/// What the page shows that the server keeps elsewhere, read as it is
/// rendered.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Bytes of the memory budget reserved now.
    pub memory_used: u64,
    /// The memory budget.
    pub memory_limit: u64,
    /// The connection limit in force.
    pub connection_limit: usize,
    /// Decode workers alive now, idle and busy.
    pub workers_alive: usize,
    /// Decode workers alive at most.
    pub workers_limit: usize,
}

/// Uploads of one kind by result.
#[derive(Default)]
struct Results {
    /// Answered `OK`: new (0) or duplicate (1), then folder (in
    /// [`Folder::ALL`] order).
    filed: [[AtomicU64; Folder::ALL.len()]; 2],
    /// Refused: by code (in [`Code::ALL`] order, then [`ABORTED`]).
    refused: [AtomicU64; REFUSALS],
}

impl Results {
    /// Counts one upload by its reply (`OK ...`, `ERR code ...`, or empty
    /// for none); true if it was answered `OK`.
    fn count(&self, reply: &str) -> bool {
        let parsed = protocol::parse_reply(reply.trim_end_matches("\r\n"));
        let filed = matches!(parsed, Some(Reply::Ok(_)));
        let counter = match parsed {
            Some(Reply::Ok(text)) => {
                let folder = text.split('/').next().unwrap_or_default();
                let dup = text.split(' ').any(|word| word == "dup");
                Folder::ALL
                    .iter()
                    .position(|f| f.as_str() == folder)
                    .map(|f| &self.filed[usize::from(dup)][f])
            }
            Some(Reply::Err { code, .. }) => Code::ALL
                .iter()
                .position(|c| c.as_str() == code)
                .map(|c| &self.refused[c]),
            None => Some(&self.refused[Code::ALL.len()]),
        };
        // Every reply the server sends names a folder or a code it knows.
        debug_assert!(counter.is_some(), "reply {reply:?} fits no counter");
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        filed
    }

    /// Writes one sample per result and folder, with `labels` first.
    fn render(&self, p: &mut Page, name: &str, labels: &[(&str, &str)]) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let with = |result, folder| {
            let mut all = labels.to_vec();
            all.extend([("result", result), ("folder", folder)]);
            all
        };
        for (dup, result) in ["stored", "dup"].into_iter().enumerate() {
            for (f, folder) in Folder::ALL.iter().enumerate() {
                p.sample(
                    name,
                    &with(result, folder.as_str()),
                    load(&self.filed[dup][f]),
                );
            }
        }
        let results = Code::ALL.iter().map(|code| code.as_str()).chain([ABORTED]);
        for (r, result) in results.enumerate() {
            p.sample(name, &with(result, NO_FOLDER), load(&self.refused[r]));
        }
    }
}

/// Every counter of one server.
pub struct Metrics {
    /// The `key` label of `colorsort_build_info`.
    fingerprint: String,
    /// Uploads by command.
    uploads: [Results; COMMANDS.len()],
    /// `SEAL`s that carried a signature, counted in `uploads` too.
    signed: Results,
    /// Time to `OK`, by command.
    upload_time: [Histogram; COMMANDS.len()],
    received_bytes: AtomicU64,
    connections_open: AtomicU64,
    connections: AtomicU64,
    connections_refused: AtomicU64,
    evictions: [AtomicU64; Eviction::ALL.len()],
    decode_wait: Histogram,
    /// Decode workers that gave no answer, by [`Failure::index`].
    worker_failures: [AtomicU64; Failure::REASONS.len()],
}

/// An open connection, counted in `colorsort_connections_open` until it is
/// dropped.
#[must_use = "the connection is counted as open until this is dropped"]
pub struct Open<'a>(&'a Metrics);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counters at zero for a server whose key has `fingerprint`.
    pub fn new(fingerprint: &str) -> Metrics {
        Metrics {
            fingerprint: fingerprint.to_string(),
            uploads: Default::default(),
            signed: Results::default(),
            upload_time: COMMANDS.map(|_| Histogram::new(UPLOAD_BUCKETS)),
            received_bytes: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            evictions: Default::default(),
            decode_wait: Histogram::new(DECODE_WAIT_BUCKETS),
            worker_failures: Default::default(),
        }
    }

    /// Counts a connection accepted; it is open until the guard is dropped.
    pub fn open_connection(&self) -> Open<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        Open(self)
    }

    /// Counts a connection turned away at the connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed to make room.
    pub fn evicted(&self, why: Eviction) {
        self.evictions[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the wait of a decode that took a turn at the decode gate.
    pub fn decode_waited(&self, waited: Duration) {
        self.decode_wait.observe(waited);
    }

    /// Counts a decode worker that gave no answer.
    pub fn worker_failed(&self, failure: Failure) {
        self.worker_failures[failure.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts payload bytes (a signature's included) as they arrive.
    pub fn received(&self, bytes: u64) {
        self.received_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one upload, `signed` if it carried a signature, by the reply
    /// it got (`OK ...`, `ERR code ...`, or empty for none), with the time
    /// it `took` from its request line to its reply.
    pub fn upload(&self, kind: Upload, signed: bool, reply: &str, took: Duration) {
        let command = command_index(kind);
        if self.uploads[command].count(reply) {
            self.upload_time[command].observe(took);
        }
        if signed {
            self.signed.count(reply);
        }
    }

    /// The metrics page, in the Prometheus text format.
    pub fn render(&self, live: &Live) -> String {
        let mut p = Page::default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        p.family(
            "colorsort_build_info",
            Kind::Gauge,
            "The server's version and key fingerprint; always 1.",
        );
        p.sample(
            "colorsort_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("key", &self.fingerprint),
            ],
            1,
        );

        p.family(
            "colorsort_uploads_total",
            Kind::Counter,
            "Uploads by command, result (stored, dup, an ERR code, or aborted: no reply) and folder.",
        );
        for (c, kind) in COMMANDS.iter().enumerate() {
            let labels = [("command", kind.verb())];
            self.uploads[c].render(&mut p, "colorsort_uploads_total", &labels);
        }
        p.family(
            "colorsort_signed_uploads_total",
            Kind::Counter,
            "SEALs that carried a signature (also in colorsort_uploads_total), by result and folder.",
        );
        self.signed
            .render(&mut p, "colorsort_signed_uploads_total", &[]);

        p.family(
            "colorsort_upload_duration_seconds",
            Kind::Histogram,
            "Time from an upload's request line to its OK reply, by command.",
        );
        for (c, kind) in COMMANDS.iter().enumerate() {
            let snapshot = self.upload_time[c].snapshot();
            p.histogram(
                "colorsort_upload_duration_seconds",
                &[("command", kind.verb())],
                &snapshot,
            );
        }

        p.family(
            "colorsort_received_bytes_total",
            Kind::Counter,
            "Payload and signature bytes received, refused uploads' included, counted as they arrive.",
        );
        p.sample(
            "colorsort_received_bytes_total",
            &[],
            load(&self.received_bytes),
        );

        p.family(
            "colorsort_connections_open",
            Kind::Gauge,
            "Connections being served now.",
        );
        p.sample(
            "colorsort_connections_open",
            &[],
            load(&self.connections_open),
        );
        p.family(
            "colorsort_connections_limit",
            Kind::Gauge,
            "Most connections served at once.",
        );
        p.sample("colorsort_connections_limit", &[], live.connection_limit);
        p.family(
            "colorsort_connections_total",
            Kind::Counter,
            "Connections accepted and served.",
        );
        p.sample("colorsort_connections_total", &[], load(&self.connections));
        p.family(
            "colorsort_connections_refused_total",
            Kind::Counter,
            "Connections turned away with ERR busy at the connection limit, with nothing to evict.",
        );
        p.sample(
            "colorsort_connections_refused_total",
            &[],
            load(&self.connections_refused),
        );
        p.family(
            "colorsort_evictions_total",
            Kind::Counter,
            "Connections closed to make room for a newcomer, or to free memory, by reason: idle, unread_reply, slow_upload, memory.",
        );
        for why in Eviction::ALL {
            p.sample(
                "colorsort_evictions_total",
                &[("reason", why.as_str())],
                load(&self.evictions[why as usize]),
            );
        }

        p.family(
            "colorsort_memory_used_bytes",
            Kind::Gauge,
            "Memory budget reserved now for payloads and decoded pixels.",
        );
        p.sample("colorsort_memory_used_bytes", &[], live.memory_used);
        p.family(
            "colorsort_memory_limit_bytes",
            Kind::Gauge,
            "The memory budget for payloads and decoded pixels.",
        );
        p.sample("colorsort_memory_limit_bytes", &[], live.memory_limit);

        p.family(
            "colorsort_decode_wait_seconds",
            Kind::Histogram,
            "Time large decodes waited for a turn at the decode gate.",
        );
        p.histogram(
            "colorsort_decode_wait_seconds",
            &[],
            &self.decode_wait.snapshot(),
        );
        p.family(
            "colorsort_decode_workers",
            Kind::Gauge,
            "Decode worker processes alive now, idle and busy.",
        );
        p.sample("colorsort_decode_workers", &[], live.workers_alive);
        p.family(
            "colorsort_decode_workers_limit",
            Kind::Gauge,
            "Decode worker processes alive at most.",
        );
        p.sample("colorsort_decode_workers_limit", &[], live.workers_limit);
        p.family(
            "colorsort_decode_worker_failures_total",
            Kind::Counter,
            "Decode workers that gave no answer, by reason: memory (their memory limit), time (their deadline), syscall (killed by their sandbox), crash, malformed.",
        );
        for (i, reason) in Failure::REASONS.iter().enumerate() {
            p.sample(
                "colorsort_decode_worker_failures_total",
                &[("reason", reason)],
                load(&self.worker_failures[i]),
            );
        }
        p.finish()
    }
}

fn command_index(kind: Upload) -> usize {
    match kind {
        Upload::Put => 0,
        Upload::Seal => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: Live = Live {
        memory_used: 12,
        memory_limit: 1024,
        connection_limit: 8,
        workers_alive: 3,
        workers_limit: 32,
    };

    /// The value of the sample `series` (name and labels as rendered).
    fn value(page: &str, series: &str) -> Option<String> {
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_string)
    }

    #[test]
    fn uploads_are_counted_by_command_result_and_folder() {
        let m = Metrics::new("SHA256:abc");
        let ms = Duration::from_millis;
        // (command, signed, reply, bytes) — each counted once.
        let cases = [
            (
                Upload::Seal,
                false,
                "OK red/a.png r=200.0 g=1.0 b=1.0\r\n",
                10,
            ),
            (
                Upload::Seal,
                false,
                "OK red/a.png r=200.0 g=1.0 b=1.0 dup\r\n",
                10,
            ),
            (
                Upload::Put,
                false,
                "OK not_trusted/b.png r=1.0 g=1.0 b=9.0\r\n",
                5,
            ),
            (Upload::Put, false, "ERR too-large SIZE 9 is over 8\r\n", 0),
            (
                Upload::Seal,
                false,
                "ERR busy server is out of memory\r\n",
                3,
            ),
            (
                Upload::Seal,
                false,
                "ERR decrypt-failed decryption failed\r\n",
                7,
            ),
            (Upload::Put, false, "", 2),
            (
                Upload::Seal,
                true,
                "OK green/g.png r=1.0 g=200.0 b=1.0 signer=alice@example.com\r\n",
                4,
            ),
            (Upload::Seal, true, "ERR unknown-signer not listed\r\n", 1),
            (
                Upload::Seal,
                true,
                "ERR bad-signature does not verify\r\n",
                1,
            ),
            (Upload::Put, false, "ERR too-complex too many frames\r\n", 1),
        ];
        for (kind, signed, reply, bytes) in cases {
            m.received(bytes);
            m.upload(kind, signed, reply, ms(7));
        }
        let page = m.render(&LIVE);
        let want = [
            (r#"command="SEAL",result="stored",folder="red""#, "1"),
            (r#"command="SEAL",result="dup",folder="red""#, "1"),
            (r#"command="SEAL",result="stored",folder="blue""#, "0"),
            (r#"command="PUT",result="stored",folder="not_trusted""#, "1"),
            (r#"command="PUT",result="too-large",folder="none""#, "1"),
            (r#"command="SEAL",result="busy",folder="none""#, "1"),
            (
                r#"command="SEAL",result="decrypt-failed",folder="none""#,
                "1",
            ),
            (r#"command="PUT",result="aborted",folder="none""#, "1"),
            (r#"command="SEAL",result="aborted",folder="none""#, "0"),
            (r#"command="SEAL",result="stored",folder="green""#, "1"),
            (
                r#"command="SEAL",result="unknown-signer",folder="none""#,
                "1",
            ),
            (
                r#"command="SEAL",result="bad-signature",folder="none""#,
                "1",
            ),
            (r#"command="PUT",result="too-complex",folder="none""#, "1"),
        ];
        for (labels, n) in want {
            let series = format!("colorsort_uploads_total{{{labels}}}");
            assert_eq!(value(&page, &series).as_deref(), Some(n), "{series}");
        }
        // Only the signed ones, again.
        let signed = [
            (r#"result="stored",folder="green""#, "1"),
            (r#"result="stored",folder="red""#, "0"),
            (r#"result="unknown-signer",folder="none""#, "1"),
            (r#"result="bad-signature",folder="none""#, "1"),
            (r#"result="decrypt-failed",folder="none""#, "0"),
        ];
        for (labels, n) in signed {
            let series = format!("colorsort_signed_uploads_total{{{labels}}}");
            assert_eq!(value(&page, &series).as_deref(), Some(n), "{series}");
        }
        assert_eq!(
            value(&page, "colorsort_received_bytes_total").as_deref(),
            Some("44")
        );
        // Only the four OK replies are timed.
        let counts = [("SEAL", "3"), ("PUT", "1")];
        for (command, n) in counts {
            let series =
                format!("colorsort_upload_duration_seconds_count{{command=\"{command}\"}}");
            assert_eq!(value(&page, &series).as_deref(), Some(n), "{series}");
            let bucket = format!(
                "colorsort_upload_duration_seconds_bucket{{command=\"{command}\",le=\"0.005\"}}"
            );
            assert_eq!(value(&page, &bucket).as_deref(), Some("0"), "{bucket}");
            let bucket = format!(
                "colorsort_upload_duration_seconds_bucket{{command=\"{command}\",le=\"0.01\"}}"
            );
            assert_eq!(value(&page, &bucket).as_deref(), Some(n), "{bucket}");
        }
        assert_eq!(
            value(
                &page,
                r#"colorsort_upload_duration_seconds_sum{command="SEAL"}"#
            )
            .as_deref(),
            Some("0.021")
        );
    }

    #[test]
    fn connections_evictions_memory_and_build_info() {
        let m = Metrics::new("SHA256:k\"ey");
        let a = m.open_connection();
        let b = m.open_connection();
        drop(a);
        m.connection_refused();
        m.evicted(Eviction::SlowUpload);
        m.evicted(Eviction::SlowUpload);
        m.evicted(Eviction::Idle);
        m.evicted(Eviction::Memory);
        m.decode_waited(Duration::from_millis(3));
        let page = m.render(&LIVE);
        let want = [
            ("colorsort_connections_open", "1"),
            ("colorsort_connections_total", "2"),
            ("colorsort_connections_limit", "8"),
            ("colorsort_connections_refused_total", "1"),
            (r#"colorsort_evictions_total{reason="idle"}"#, "1"),
            (r#"colorsort_evictions_total{reason="slow_upload"}"#, "2"),
            (r#"colorsort_evictions_total{reason="unread_reply"}"#, "0"),
            (r#"colorsort_evictions_total{reason="memory"}"#, "1"),
            ("colorsort_memory_used_bytes", "12"),
            ("colorsort_memory_limit_bytes", "1024"),
            (r#"colorsort_decode_wait_seconds_bucket{le="0.001"}"#, "0"),
            (r#"colorsort_decode_wait_seconds_bucket{le="0.005"}"#, "1"),
            (r#"colorsort_decode_wait_seconds_bucket{le="+Inf"}"#, "1"),
            ("colorsort_decode_wait_seconds_count", "1"),
        ];
        for (series, n) in want {
            assert_eq!(value(&page, series).as_deref(), Some(n), "{series}");
        }
        let build = format!(
            "colorsort_build_info{{version=\"{}\",key=\"SHA256:k\\\"ey\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&page, &build).as_deref(), Some("1"), "{page}");
        drop(b);
        let page = m.render(&LIVE);
        assert_eq!(
            value(&page, "colorsort_connections_open").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let page = Metrics::new("SHA256:x").render(&LIVE);
        assert!(page.ends_with('\n'));
        let mut typed: Vec<(String, String)> = Vec::new();
        let mut helped = Vec::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.push(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(
                    helped.last().map(String::as_str),
                    Some(name),
                    "HELP before TYPE"
                );
                assert!(typed.iter().all(|(n, _)| n != name), "{name} typed twice");
                typed.push((name.to_string(), kind.to_string()));
            } else {
                let series = line.split([' ', '{']).next().unwrap();
                let (family, kind) = typed.last().expect("a sample before any TYPE");
                let ok = match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| series.strip_suffix(s) == Some(family)),
                    _ => series == family,
                };
                assert!(ok, "{series} is not of the family {family}");
                if kind == "counter" {
                    assert!(family.ends_with("_total"), "{family}");
                }
            }
        }
        assert_eq!(typed.len(), 16, "{typed:?}");
    }
}
