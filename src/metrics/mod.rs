//! The server's metrics: counters, gauges and histograms that the server
//! updates as it goes, and the page that shows them in the Prometheus text
//! format (`colorsort serve --metrics ADDR`, `GET /metrics`).
//!
//! Everything is an atomic updated with relaxed ordering: a hook on the
//! request path is an addition, never a lock. What the server already knows
//! elsewhere (the memory budget, the connection limit) is read when the
//! page is rendered, from a [`Live`] the server fills in. The server says
//! what became of each upload as an [`UploadResult`], never as reply text.
//!
//! Every family of the page is a row of one table, `FAMILIES`: its name,
//! type, help and label names, and what writes its samples, so each name
//! is written once.
//!
//! `histogram` holds the bucketed durations, `exposition` writes the
//! Prometheus text exposition format, `http` is the small HTTP/1.1
//! responder that serves the page.

mod exposition;
mod histogram;
pub mod http;

use crate::protocol::{Code, Upload};
use crate::sandbox::Failure;
use crate::store::Folder;
use exposition::{Kind, Page};
use histogram::{Histogram, Snapshot};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use exposition::CONTENT_TYPE;

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

/// What became of one upload, as the metrics count it: the `result` and
/// `folder` labels of `colorsort_uploads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadResult {
    /// Answered `OK`: filed in `folder` (`stored`), or found already stored
    /// there (`dup`).
    Stored {
        /// The folder of the copy the reply names.
        folder: Folder,
        /// The content was already stored.
        dup: bool,
    },
    /// Answered `ERR` with this code.
    Refused(Code),
    /// Ended without a reply: the client left mid-payload (`aborted`).
    Aborted,
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
    /// Counts one upload.
    fn count(&self, result: UploadResult) {
        // `Folder::ALL` and `Code::ALL` are in declaration order (a test
        // holds them to it), so each is its own index.
        let counter = match result {
            UploadResult::Stored { folder, dup } => &self.filed[usize::from(dup)][folder as usize],
            UploadResult::Refused(code) => &self.refused[code as usize],
            UploadResult::Aborted => &self.refused[Code::ALL.len()],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes one sample per result and folder, after the label values
    /// `first`.
    fn render(&self, s: &mut Samples, first: &[&str]) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut sample = |result: &str, folder: &str, value: u64| {
            let mut values = first.to_vec();
            values.extend([result, folder]);
            s.value(&values, value);
        };
        for (dup, result) in ["stored", "dup"].into_iter().enumerate() {
            for (f, folder) in Folder::ALL.iter().enumerate() {
                sample(result, folder.as_str(), load(&self.filed[dup][f]));
            }
        }
        let results = Code::ALL.iter().map(|code| code.as_str()).chain([ABORTED]);
        for (r, result) in results.enumerate() {
            sample(result, NO_FOLDER, load(&self.refused[r]));
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

/// One family of the page: a row of [`FAMILIES`].
struct Family {
    /// The metric's name; a histogram's samples add `_bucket`, `_sum` and
    /// `_count` to it.
    name: &'static str,
    kind: Kind,
    /// The `# HELP` text.
    help: &'static str,
    /// The names of its samples' labels, in order (a histogram's `le`
    /// aside).
    labels: &'static [&'static str],
    /// Writes its samples, from the counters and what the server keeps
    /// elsewhere.
    samples: fn(&Metrics, &Live, &mut Samples),
}

/// Every family of the page, in its order.
static FAMILIES: &[Family] = &[
    Family {
        name: "colorsort_build_info",
        kind: Kind::Gauge,
        help: "The server's version and key fingerprint; always 1.",
        labels: &["version", "key"],
        samples: |m, _, s| s.value(&[env!("CARGO_PKG_VERSION"), &m.fingerprint], 1),
    },
    Family {
        name: "colorsort_uploads_total",
        kind: Kind::Counter,
        help: "Uploads by command, result (stored, dup, an ERR code, or aborted: no reply) and folder.",
        labels: &["command", "result", "folder"],
        samples: |m, _, s| {
            for (results, kind) in m.uploads.iter().zip(COMMANDS) {
                results.render(s, &[kind.verb()]);
            }
        },
    },
    Family {
        name: "colorsort_signed_uploads_total",
        kind: Kind::Counter,
        help: "SEALs that carried a signature (also in colorsort_uploads_total), by result and folder.",
        labels: &["result", "folder"],
        samples: |m, _, s| m.signed.render(s, &[]),
    },
    Family {
        name: "colorsort_upload_duration_seconds",
        kind: Kind::Histogram,
        help: "Time from an upload's request line to its OK reply, by command.",
        labels: &["command"],
        samples: |m, _, s| {
            for (histogram, kind) in m.upload_time.iter().zip(COMMANDS) {
                s.histogram(&[kind.verb()], &histogram.snapshot());
            }
        },
    },
    Family {
        name: "colorsort_received_bytes_total",
        kind: Kind::Counter,
        help: "Payload and signature bytes received, refused uploads' included, counted as they arrive.",
        labels: &[],
        samples: |m, _, s| s.value(&[], load(&m.received_bytes)),
    },
    Family {
        name: "colorsort_connections_open",
        kind: Kind::Gauge,
        help: "Connections being served now.",
        labels: &[],
        samples: |m, _, s| s.value(&[], load(&m.connections_open)),
    },
    Family {
        name: "colorsort_connections_limit",
        kind: Kind::Gauge,
        help: "Most connections served at once.",
        labels: &[],
        samples: |_, live, s| s.value(&[], live.connection_limit),
    },
    Family {
        name: "colorsort_connections_total",
        kind: Kind::Counter,
        help: "Connections accepted and served.",
        labels: &[],
        samples: |m, _, s| s.value(&[], load(&m.connections)),
    },
    Family {
        name: "colorsort_connections_refused_total",
        kind: Kind::Counter,
        help: "Connections turned away with ERR busy at the connection limit, with nothing to evict.",
        labels: &[],
        samples: |m, _, s| s.value(&[], load(&m.connections_refused)),
    },
    Family {
        name: "colorsort_evictions_total",
        kind: Kind::Counter,
        help: "Connections closed to make room for a newcomer, or to free memory, by reason: idle, unread_reply, slow_upload, memory.",
        labels: &["reason"],
        samples: |m, _, s| {
            for why in Eviction::ALL {
                s.value(&[why.as_str()], load(&m.evictions[why as usize]));
            }
        },
    },
    Family {
        name: "colorsort_memory_used_bytes",
        kind: Kind::Gauge,
        help: "Memory budget reserved now for payloads and decoded pixels.",
        labels: &[],
        samples: |_, live, s| s.value(&[], live.memory_used),
    },
    Family {
        name: "colorsort_memory_limit_bytes",
        kind: Kind::Gauge,
        help: "The memory budget for payloads and decoded pixels.",
        labels: &[],
        samples: |_, live, s| s.value(&[], live.memory_limit),
    },
    Family {
        name: "colorsort_decode_wait_seconds",
        kind: Kind::Histogram,
        help: "Time large decodes waited for a turn at the decode gate.",
        labels: &[],
        samples: |m, _, s| s.histogram(&[], &m.decode_wait.snapshot()),
    },
    Family {
        name: "colorsort_decode_workers",
        kind: Kind::Gauge,
        help: "Decode worker processes alive now, idle and busy.",
        labels: &[],
        samples: |_, live, s| s.value(&[], live.workers_alive),
    },
    Family {
        name: "colorsort_decode_workers_limit",
        kind: Kind::Gauge,
        help: "Decode worker processes alive at most.",
        labels: &[],
        samples: |_, live, s| s.value(&[], live.workers_limit),
    },
    Family {
        name: "colorsort_decode_worker_failures_total",
        kind: Kind::Counter,
        help: "Decode workers that gave no answer, by reason: memory (their memory limit), time (their deadline), syscall (killed by their sandbox), crash, malformed.",
        labels: &["reason"],
        samples: |m, _, s| {
            for (reason, count) in Failure::REASONS.iter().zip(&m.worker_failures) {
                s.value(&[*reason], load(count));
            }
        },
    },
];

/// The samples of one family being written: its name and the names of its
/// labels come from its row, so a sample gives only its label values.
struct Samples<'a> {
    page: &'a mut Page,
    family: &'static Family,
}

impl Samples<'_> {
    /// Writes one sample with these label `values`, one per label name.
    fn value(&mut self, values: &[&str], value: impl fmt::Display) {
        let labels = self.labels(values);
        self.page.sample(self.family.name, &labels, value);
    }

    /// Writes a histogram's samples with these label `values`.
    fn histogram(&mut self, values: &[&str], h: &Snapshot) {
        let labels = self.labels(values);
        self.page.histogram(self.family.name, &labels, h);
    }

    fn labels<'v>(&self, values: &[&'v str]) -> Vec<(&'static str, &'v str)> {
        let names = self.family.labels;
        debug_assert_eq!(names.len(), values.len(), "{}", self.family.name);
        names.iter().copied().zip(values.iter().copied()).collect()
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
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

    /// Counts one upload, `signed` if it carried a signature, by what
    /// became of it, with the time it `took` from its request line to its
    /// reply (timed only if it was answered `OK`).
    pub fn upload(&self, kind: Upload, signed: bool, result: UploadResult, took: Duration) {
        let command = match kind {
            Upload::Put => 0,
            Upload::Seal => 1,
        };
        self.uploads[command].count(result);
        if matches!(result, UploadResult::Stored { .. }) {
            self.upload_time[command].observe(took);
        }
        if signed {
            self.signed.count(result);
        }
    }

    /// The metrics page, in the Prometheus text format.
    pub fn render(&self, live: &Live) -> String {
        let mut page = Page::default();
        for family in FAMILIES {
            page.family(family.name, family.kind, family.help);
            let mut samples = Samples {
                page: &mut page,
                family,
            };
            (family.samples)(self, live, &mut samples);
        }
        page.finish()
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
        let stored = |folder, dup| UploadResult::Stored { folder, dup };
        let refused = UploadResult::Refused;
        // (command, signed, result, bytes) — each counted once.
        let cases = [
            (Upload::Seal, false, stored(Folder::Red, false), 10),
            (Upload::Seal, false, stored(Folder::Red, true), 10),
            (Upload::Put, false, stored(Folder::NotTrusted, false), 5),
            (Upload::Put, false, refused(Code::TooLarge), 0),
            (Upload::Seal, false, refused(Code::Busy), 3),
            (Upload::Seal, false, refused(Code::DecryptFailed), 7),
            (Upload::Put, false, UploadResult::Aborted, 2),
            (Upload::Seal, true, stored(Folder::Green, false), 4),
            (Upload::Seal, true, refused(Code::UnknownSigner), 1),
            (Upload::Seal, true, refused(Code::BadSignature), 1),
            (Upload::Put, false, refused(Code::TooComplex), 1),
        ];
        for (kind, signed, result, bytes) in cases {
            m.received(bytes);
            m.upload(kind, signed, result, ms(7));
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
    fn folders_and_codes_are_their_own_indexes() {
        for (i, folder) in Folder::ALL.into_iter().enumerate() {
            assert_eq!(folder as usize, i, "{folder:?}");
        }
        for (i, code) in Code::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, i, "{code:?}");
        }
    }

    #[test]
    fn every_sample_has_its_familys_labels() {
        let page = Metrics::new("SHA256:x").render(&LIVE);
        let mut rows = FAMILIES.iter();
        let mut family = None;
        for line in page.lines() {
            if line.starts_with("# HELP ") {
                family = rows.next();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let family = family.expect("a sample before any family");
            let labels: Vec<&str> = line
                .split_once('{')
                .map(|(_, rest)| {
                    rest.split(',')
                        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
                        .filter(|&name| name != "le")
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(labels, family.labels, "{line}");
        }
        assert!(rows.next().is_none(), "a family with no HELP line");
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
        assert_eq!(typed.len(), FAMILIES.len(), "{typed:?}");
    }
}
