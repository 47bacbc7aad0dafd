//! Every setting of `colorsort serve`, with its default, in one place.
//!
//! Each setting is a row of [`SETTINGS`]: its flag, its `COLORSORT_*`
//! environment variable, its help text and how to parse it. The environment
//! is read first and flags override it, so a container image can bake in
//! variables that a command line still beats. The help text and the defaults
//! printed by `colorsort serve --help` come from the same table, so they
//! cannot drift apart.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// This process's own binary, as Linux names it: what runs the decode
/// workers.
pub const SELF_EXE: &str = "/proc/self/exe";
/// Decode workers alive at most, idle and busy: a process each, so within
/// any container's process limit beside the connections' threads.
pub const DEFAULT_MAX_WORKERS: usize = 32;
/// Each step of a decode in a worker (opening, decoding) must answer
/// within this, or the worker is killed. The slowest legitimate decode of
/// the benchmark set takes well under a tenth of it (docs/BENCHMARKS.md).
pub const DEFAULT_DECODE_TIMEOUT: Duration = Duration::from_secs(20);
/// Address the server listens on.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6666";
/// Data directory: key, class folders and staging.
pub const DEFAULT_DATA_DIR: &str = "/data";
/// Size of the RSA key generated on first start.
pub const DEFAULT_KEY_BITS: usize = 3072;
/// Largest upload (SIZE) accepted, in bytes.
pub const DEFAULT_MAX_UPLOAD: u64 = 64 * 1024 * 1024;
/// Largest image accepted, in pixels (width × height), checked from the
/// image header before any pixel is allocated.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;
/// Per-read and per-write timeout; also the time a client has to send a
/// whole request line.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Slowest payload transfer accepted, in bytes per second, after the first
/// [`DEFAULT_TIMEOUT`] of grace.
pub const DEFAULT_MIN_RATE: u64 = 64 * 1024;
/// Most connections served at once; past it, the connection idle longest is
/// evicted, or the newcomer gets `ERR busy`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Memory the server may hold for payloads and decoded pixels together.
pub const DEFAULT_MAX_MEMORY: u64 = 1024 * 1024 * 1024;
/// Memory a server needs outside its budget, at most: per connection a
/// thread's stack and a read buffer (up to about 64 KiB together, for
/// [`DEFAULT_MAX_CONNECTIONS`]), plus the binary, the key and the
/// allocator's own bookkeeping. The kernel's socket buffers are counted
/// apart ([`SOCKET_MEMORY`]).
pub const MEMORY_OVERHEAD: u64 = 64 * 1024 * 1024;
/// Under a memory limit (a container's cgroup) and without `--max-memory`,
/// the budget is the limit divided by this, less [`MEMORY_OVERHEAD`]: the
/// other half is headroom for what the budget does not see exactly (each
/// decoder's working memory beyond its estimate, the allocator's slack,
/// page cache of files being written, which the cgroup charges too).
pub const MEMORY_LIMIT_SHARE: u64 = 2;
/// The kernel's receive buffer for each connection (`SO_RCVBUF`), in
/// bytes: what Linux starts a connection with (`net.ipv4.tcp_rmem`'s
/// default, 128 KiB, is this doubled), kept from growing. Unset, receive
/// autotuning grows it to `tcp_rmem`'s maximum (6 to 32 MiB) during one
/// fast upload.
pub const RECEIVE_BUFFER: u32 = 64 * 1024;
/// The kernel's send buffer for each connection (`SO_SNDBUF`), in bytes.
/// Replies are at most a few hundred bytes, so this costs no speed; it
/// bounds what a client that pipelines requests and never reads their
/// replies makes the kernel hold for it, which otherwise grows to
/// `net.ipv4.tcp_wmem`'s maximum (4 MiB).
pub const SEND_BUFFER: u32 = 16 * 1024;
/// Kernel memory one socket may hold for its buffers, at most: Linux
/// doubles [`RECEIVE_BUFFER`] and [`SEND_BUFFER`] for its bookkeeping and
/// counts each packet's whole allocation against them.
pub const SOCKET_MEMORY: u64 = 2 * (RECEIVE_BUFFER as u64 + SEND_BUFFER as u64);
/// Connections not yet accepted that the kernel queues for the listening
/// socket (`listen(2)`'s backlog, as std's `TcpListener` sets it). Their
/// sockets have the same buffers as the others.
pub const LISTEN_BACKLOG: u32 = 128;
/// Under a memory limit and without `--max-memory`, the sockets' kernel
/// memory ([`SOCKET_MEMORY`] each) may take at most the limit divided by
/// this: the connection cap is lowered to fit, and the budget is fitted to
/// what the limit leaves (see [`crate::budget::fitted_server`]).
pub const SOCKET_LIMIT_SHARE: u64 = 4;
/// Decodes that may take more memory than this take turns, as many at once
/// as there are CPUs; smaller ones (a 4-megapixel RGBA PNG and below) decode
/// at once.
pub const DEFAULT_LARGE_DECODE: u64 = 16 * 1024 * 1024;
/// How long a stopping server lets in-flight requests finish.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How far behind the minimum rate an upload may fall, in time, and how
/// long a reply may go unread, before the connection may be evicted to make
/// room for another: a client that sent its request line is given this
/// long for its payload to start flowing.
pub const DEFAULT_SLOW_GRACE: Duration = Duration::from_secs(1);
/// How long a newcomer waits for an evicted connection's slot, and a
/// reservation for an evicted upload's memory. Not a setting: it waits on
/// the server's own threads, which let go as soon as their socket is shut,
/// so no client can lengthen it.
pub const EVICTION_WAIT: Duration = Duration::from_millis(250);
/// How long a stopping server waits, once the grace is over, for uploads
/// that had begun to be written to disk to finish and be answered. Nothing
/// begins to be written after the grace. Not a setting: no client can
/// lengthen a filing, which is bounded by the disk.
pub const FILING_WAIT: Duration = Duration::from_secs(1);
/// How long a connection closed after an error is drained, so that its
/// `ERR` line is not destroyed by a TCP reset.
pub const LINGER: Duration = Duration::from_secs(2);
/// Most connections drained at once after an error; past it, a connection
/// is closed at once.
pub const MAX_LINGERING: usize = 256;
/// Largest SIGSIZE of a signed `SEAL`, in bytes: the protocol's cap, which
/// is the largest armored signature the verifier reads (an 8192-bit RSA
/// signature armors to about 3 KiB). Not a setting: raising it would admit
/// nothing the verifier accepts, and 8 KiB is nothing beside a payload.
pub const MAX_SIGNATURE: usize = crate::sshsig::MAX_SIGNATURE;
/// The allowed_signers file looked for in the data directory when
/// `--allowed-signers` is not given.
pub const ALLOWED_SIGNERS_FILE: &str = "allowed_signers";
/// Namespace signatures must be made for (`ssh-keygen -Y sign -n`).
pub const DEFAULT_SIGNATURE_NAMESPACE: &str = "colorsort";
/// Longest signature namespace, in bytes.
pub const MAX_NAMESPACE: usize = 64;
/// Largest HTTP request head (request line and headers) the metrics
/// responder reads; past it, `431`.
pub const METRICS_MAX_REQUEST: usize = 8 * 1024;
/// Most metrics requests served at once; past it, `503`. A scraper needs
/// one.
pub const METRICS_MAX_CONNECTIONS: usize = 4;

/// Everything `colorsort serve` needs to know.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data: PathBuf,
    /// Size of a key generated on first start.
    pub key_bits: usize,
    /// The allowed_signers file, if given; otherwise
    /// [`ALLOWED_SIGNERS_FILE`] in the data directory is used if it exists.
    pub allowed_signers: Option<PathBuf>,
    /// The namespace signed uploads must be signed for.
    pub signature_namespace: String,
    /// Resource limits.
    pub limits: Limits,
    /// Address to serve metrics on over HTTP, if any.
    pub metrics: Option<SocketAddr>,
    /// How log lines are written.
    pub log_format: crate::log::Format,
    /// `limits.max_memory` was set by `--max-memory` or its variable;
    /// otherwise the server fits it to a container's memory limit.
    pub max_memory_set: bool,
    /// The binary run as the decode workers: this one, unless a test that
    /// is not it says which.
    pub worker_program: PathBuf,
}

impl ServeConfig {
    /// The allowed_signers file to load: the one given, or, if none was,
    /// [`ALLOWED_SIGNERS_FILE`] in the data directory. With `given` false,
    /// the file turns known-senders mode on only if it exists.
    pub fn allowed_signers_path(&self) -> (PathBuf, bool) {
        match &self.allowed_signers {
            Some(path) => (path.clone(), true),
            None => (self.data.join(ALLOWED_SIGNERS_FILE), false),
        }
    }
}

/// The resource limits that keep one client from starving the others.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest upload, in bytes.
    pub max_upload: u64,
    /// Largest image, in pixels.
    pub max_pixels: u64,
    /// Per-read and per-write timeout, and the request-line deadline.
    pub timeout: Duration,
    /// Slowest accepted payload rate, in bytes per second.
    pub min_rate: u64,
    /// Most connections at once.
    pub max_connections: usize,
    /// Memory budget for payloads and decoded pixels, in bytes.
    pub max_memory: u64,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How far behind an upload, or how long unread a reply, before the
    /// connection may be evicted.
    pub slow_grace: Duration,
    /// Decodes that may take more memory than this take turns.
    pub large_decode: u64,
    /// Decode workers alive at most.
    pub max_workers: usize,
    /// Deadline of each step of a decode in a worker.
    pub decode_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_upload: DEFAULT_MAX_UPLOAD,
            max_pixels: DEFAULT_MAX_PIXELS,
            timeout: DEFAULT_TIMEOUT,
            min_rate: DEFAULT_MIN_RATE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_memory: DEFAULT_MAX_MEMORY,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            slow_grace: DEFAULT_SLOW_GRACE,
            large_decode: DEFAULT_LARGE_DECODE,
            max_workers: DEFAULT_MAX_WORKERS,
            decode_timeout: DEFAULT_DECODE_TIMEOUT,
        }
    }
}

impl Limits {
    /// The deadline for a payload of `size` bytes, counted from the end of
    /// its request line: one timeout of grace, plus the time the payload
    /// takes at the minimum rate.
    pub fn payload_time(&self, size: u64) -> Duration {
        let rate = self.min_rate.max(1);
        self.timeout
            + Duration::from_secs(size / rate)
            + Duration::from_millis(size % rate * 1000 / rate)
    }
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| unreachable!("valid default address")),
            data: PathBuf::from(DEFAULT_DATA_DIR),
            key_bits: DEFAULT_KEY_BITS,
            allowed_signers: None,
            signature_namespace: DEFAULT_SIGNATURE_NAMESPACE.to_string(),
            limits: Limits::default(),
            max_memory_set: false,
            worker_program: PathBuf::from(SELF_EXE),
            metrics: None,
            log_format: crate::log::Format::Text,
        }
    }
}

/// A setting that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The flag or environment variable that carried the value.
    pub source: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

impl std::error::Error for Error {}

/// One row of the settings table.
pub struct Setting {
    /// The command-line flag, e.g. `--max-upload`.
    pub flag: &'static str,
    /// The environment variable, e.g. `COLORSORT_MAX_UPLOAD`.
    pub env: &'static str,
    /// Placeholder for the value in help text.
    pub value: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Parses a value into the configuration.
    apply: fn(&mut ServeConfig, &str) -> Result<(), String>,
    /// Renders the current value, for help text.
    show: fn(&ServeConfig) -> String,
}

/// Every setting of `colorsort serve`.
pub static SETTINGS: &[Setting] = &[
    Setting {
        flag: "--listen",
        env: "COLORSORT_LISTEN",
        value: "ADDR",
        help: "address and port to listen on",
        apply: |c, v| {
            c.listen = v
                .parse()
                .map_err(|_| format!("{v:?} is not an address like 0.0.0.0:6666"))?;
            Ok(())
        },
        show: |c| c.listen.to_string(),
    },
    Setting {
        flag: "--data",
        env: "COLORSORT_DATA",
        value: "DIR",
        help: "data directory: key, red/ green/ blue/ not_trusted/",
        apply: |c, v| {
            if v.is_empty() {
                return Err("the data directory cannot be empty".into());
            }
            c.data = PathBuf::from(v);
            Ok(())
        },
        show: |c| c.data.display().to_string(),
    },
    Setting {
        flag: "--key-bits",
        env: "COLORSORT_KEY_BITS",
        value: "BITS",
        help: "size of the RSA key generated on first start: 2048, 3072 or 4096",
        apply: |c, v| {
            let bits = parse_u64(v)? as usize;
            if !crate::key::GENERATE_BITS.contains(&bits) {
                let allowed = crate::key::GENERATE_BITS.map(|b| b.to_string()).join(", ");
                return Err(format!("{bits} is not one of {allowed}"));
            }
            c.key_bits = bits;
            Ok(())
        },
        show: |c| c.key_bits.to_string(),
    },
    Setting {
        flag: "--allowed-signers",
        env: "COLORSORT_ALLOWED_SIGNERS",
        value: "FILE",
        help: "ssh allowed_signers file: only SEALs signed by these senders are filed by colour \
               (default DATA/allowed_signers if it exists; without one, every SEAL is); reread on SIGHUP",
        apply: |c, v| {
            c.allowed_signers = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
        show: |c| {
            c.allowed_signers
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string())
        },
    },
    Setting {
        flag: "--signature-namespace",
        env: "COLORSORT_SIGNATURE_NAMESPACE",
        value: "NS",
        help: "namespace signed uploads must be signed for (ssh-keygen -Y sign -n NS)",
        apply: |c, v| {
            check_namespace(v)?;
            c.signature_namespace = v.to_string();
            Ok(())
        },
        show: |c| c.signature_namespace.clone(),
    },
    Setting {
        flag: "--max-upload",
        env: "COLORSORT_MAX_UPLOAD",
        value: "BYTES",
        help: "largest upload accepted (suffixes K, M, G are powers of 1024)",
        apply: |c, v| {
            c.limits.max_upload = parse_size(v)?;
            Ok(())
        },
        show: |c| show_size(c.limits.max_upload),
    },
    Setting {
        flag: "--max-pixels",
        env: "COLORSORT_MAX_PIXELS",
        value: "N",
        help: "largest image accepted, in pixels, checked before decoding",
        apply: |c, v| {
            c.limits.max_pixels = parse_positive(v)?;
            Ok(())
        },
        show: |c| c.limits.max_pixels.to_string(),
    },
    Setting {
        flag: "--timeout",
        env: "COLORSORT_TIMEOUT",
        value: "SECS",
        help: "read/write timeout and request-line deadline (e.g. 30, 1.5, 500ms)",
        apply: |c, v| {
            c.limits.timeout = parse_duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.limits.timeout),
    },
    Setting {
        flag: "--min-rate",
        env: "COLORSORT_MIN_RATE",
        value: "BYTES",
        help: "slowest payload transfer accepted, per second, after one timeout of grace",
        apply: |c, v| {
            c.limits.min_rate = parse_size(v)?.max(1);
            Ok(())
        },
        show: |c| show_size(c.limits.min_rate),
    },
    Setting {
        flag: "--max-connections",
        env: "COLORSORT_MAX_CONNECTIONS",
        value: "N",
        help: "most connections at once; then the longest-idle one is evicted",
        apply: |c, v| {
            c.limits.max_connections = parse_positive(v)? as usize;
            Ok(())
        },
        show: |c| c.limits.max_connections.to_string(),
    },
    Setting {
        flag: "--max-memory",
        env: "COLORSORT_MAX_MEMORY",
        value: "BYTES",
        help: "memory for payloads and decoded pixels; past it, ERR busy (lower in a small container)",
        apply: |c, v| {
            c.limits.max_memory = parse_size(v)?;
            c.max_memory_set = true;
            Ok(())
        },
        show: |c| show_size(c.limits.max_memory),
    },
    Setting {
        flag: "--shutdown-grace",
        env: "COLORSORT_SHUTDOWN_GRACE",
        value: "SECS",
        help: "time in-flight requests get to finish on SIGTERM or SIGINT",
        apply: |c, v| {
            c.limits.shutdown_grace = parse_duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.limits.shutdown_grace),
    },
    Setting {
        flag: "--slow-grace",
        env: "COLORSORT_SLOW_GRACE",
        value: "SECS",
        help: "how far behind the minimum rate an upload, or how long a reply unread, before it may be evicted",
        apply: |c, v| {
            c.limits.slow_grace = parse_duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.limits.slow_grace),
    },
    Setting {
        flag: "--large-decode",
        env: "COLORSORT_LARGE_DECODE",
        value: "BYTES",
        help: "decodes that may take more memory than this take turns, as many at once as CPUs",
        apply: |c, v| {
            c.limits.large_decode = parse_size(v)?;
            Ok(())
        },
        show: |c| show_size(c.limits.large_decode),
    },
    Setting {
        flag: "--max-workers",
        env: "COLORSORT_MAX_WORKERS",
        value: "N",
        help: "decode worker processes alive at most, idle and busy (each decode runs in one)",
        apply: |c, v| {
            c.limits.max_workers = parse_positive(v)? as usize;
            Ok(())
        },
        show: |c| c.limits.max_workers.to_string(),
    },
    Setting {
        flag: "--decode-timeout",
        env: "COLORSORT_DECODE_TIMEOUT",
        value: "DURATION",
        help: "a decode worker that takes longer to open or to decode one image is killed",
        apply: |c, v| {
            c.limits.decode_timeout = parse_duration(v)?;
            if c.limits.decode_timeout.is_zero() {
                return Err("the decode timeout must be above 0".into());
            }
            Ok(())
        },
        show: |c| show_duration(c.limits.decode_timeout),
    },
    Setting {
        flag: "--metrics",
        env: "COLORSORT_METRICS",
        value: "ADDR",
        help: "address and port to serve Prometheus metrics on (GET /metrics), or off",
        apply: |c, v| {
            c.metrics = match v {
                "off" => None,
                v => Some(
                    v.parse()
                        .map_err(|_| format!("{v:?} is not off or an address like 0.0.0.0:9100"))?,
                ),
            };
            Ok(())
        },
        show: |c| c.metrics.map_or_else(|| "off".into(), |a| a.to_string()),
    },
    Setting {
        flag: "--log-format",
        env: "COLORSORT_LOG_FORMAT",
        value: "FORMAT",
        help: "log lines as text, or as json: one object per line",
        apply: |c, v| {
            c.log_format =
                crate::log::Format::parse(v).ok_or_else(|| format!("{v:?} is not text or json"))?;
            Ok(())
        },
        show: |c| c.log_format.as_str().into(),
    },
];

impl Setting {
    /// Applies `value`, naming `source` (the flag or variable) on error.
    pub fn apply(&self, config: &mut ServeConfig, value: &str, source: &str) -> Result<(), Error> {
        (self.apply)(config, value.trim()).map_err(|reason| Error {
            source: source.to_string(),
            reason,
        })
    }

    /// The value this setting has in `config`, as help text shows it.
    pub fn show(&self, config: &ServeConfig) -> String {
        (self.show)(config)
    }
}

/// Finds the setting for a flag.
pub fn setting(flag: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.flag == flag)
}

/// Applies every `COLORSORT_*` variable that `lookup` finds.
pub fn apply_env(
    config: &mut ServeConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    for s in SETTINGS {
        if let Some(value) = lookup(s.env) {
            s.apply(config, &value, s.env)?;
        }
    }
    Ok(())
}

/// A namespace is 1 to [`MAX_NAMESPACE`] bytes of printable ASCII other
/// than space and comma: one token in the `POLICY` reply, and listable in an
/// allowed_signers `namespaces=` option, whose patterns commas separate.
pub fn check_namespace(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_NAMESPACE {
        return Err(format!("must be 1 to {MAX_NAMESPACE} bytes"));
    }
    if !v.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return Err(format!(
            "{v:?} holds a space, a comma or a byte outside printable ASCII"
        ));
    }
    Ok(())
}

fn parse_u64(v: &str) -> Result<u64, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{v:?} is not a whole number"));
    }
    v.parse().map_err(|_| format!("{v} is too large"))
}

fn parse_positive(v: &str) -> Result<u64, String> {
    match parse_u64(v)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Parses a byte count with an optional binary suffix: `65536`, `64K`,
/// `64M`, `1G` (also `KiB`, `MiB`, `GiB`).
pub fn parse_size(v: &str) -> Result<u64, String> {
    let upper = v.to_ascii_uppercase();
    let digits_end = upper
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(upper.len());
    let (digits, suffix) = upper.split_at(digits_end);
    let shift = match suffix.trim() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("{v:?} is not a size like 65536, 64K, 64M or 1G")),
    };
    let n =
        parse_u64(digits).map_err(|_| format!("{v:?} is not a size like 65536, 64K, 64M or 1G"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{v} is too large"))
}

/// Parses a duration: seconds, possibly fractional (`30`, `1.5`, `30s`), or
/// milliseconds (`500ms`). Zero is refused: a zero timeout would mean none.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("{v:?} is not a duration like 30, 1.5, 30s or 500ms");
    let d = if let Some(ms) = v.strip_suffix("ms") {
        Duration::from_millis(parse_u64(ms.trim()).map_err(|_| bad())?)
    } else {
        let secs = v.strip_suffix('s').unwrap_or(v).trim();
        if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad());
        }
        let f: f64 = secs.parse().map_err(|_| bad())?;
        if !(f.is_finite() && f <= 1e9) {
            return Err(bad());
        }
        Duration::from_secs_f64(f)
    };
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// A byte count as settings take it: `64M`, `1G`, `1000`.
pub fn show_size(n: u64) -> String {
    match n {
        0 => "0".into(),
        n if n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("65536", Some(65536)),
            ("64K", Some(64 << 10)),
            ("64k", Some(64 << 10)),
            ("64M", Some(64 << 20)),
            ("64MiB", Some(64 << 20)),
            ("1G", Some(1 << 30)),
            ("", None),
            ("-1", None),
            ("1.5M", None),
            ("12X", None),
            ("18446744073709551616", None),
            ("17179869184G", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).ok(), *want, "input {input:?}");
        }
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("30", Some(Duration::from_secs(30))),
            ("30s", Some(Duration::from_secs(30))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("500ms", Some(Duration::from_millis(500))),
            ("0", None),
            ("0ms", None),
            ("-1", None),
            ("abc", None),
            ("inf", None),
            ("1e300", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok(), *want, "input {input:?}");
        }
    }

    #[test]
    fn flags_and_env_apply_and_flags_win() {
        let mut c = ServeConfig::default();
        let env = |name: &str| match name {
            "COLORSORT_MAX_UPLOAD" => Some("1M".to_string()),
            "COLORSORT_TIMEOUT" => Some("5".to_string()),
            _ => None,
        };
        apply_env(&mut c, env).unwrap();
        assert_eq!(c.limits.max_upload, 1 << 20);
        assert_eq!(c.limits.timeout, Duration::from_secs(5));
        setting("--max-upload")
            .unwrap()
            .apply(&mut c, "2M", "--max-upload")
            .unwrap();
        assert_eq!(c.limits.max_upload, 2 << 20);
    }

    #[test]
    fn metrics_and_log_format_settings() {
        let cases: &[(&str, &str, &str)] = &[
            ("--metrics", "off", "off"),
            ("--metrics", "127.0.0.1:9100", "127.0.0.1:9100"),
            ("--metrics", "[::]:9100", "[::]:9100"),
            ("--log-format", "text", "text"),
            ("--log-format", "json", "json"),
        ];
        for (flag, value, shown) in cases {
            let mut c = ServeConfig::default();
            let s = setting(flag).unwrap();
            s.apply(&mut c, value, flag).unwrap();
            assert_eq!(s.show(&c), *shown, "{flag} {value}");
        }
        let mut c = ServeConfig::default();
        setting("--metrics")
            .unwrap()
            .apply(&mut c, "0.0.0.0:9100", "--metrics")
            .unwrap();
        assert_eq!(c.metrics, Some("0.0.0.0:9100".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_their_source() {
        let mut c = ServeConfig::default();
        let cases = [
            ("--key-bits", "1024"),
            ("--listen", "nowhere"),
            ("--max-connections", "0"),
            ("--data", ""),
            ("--signature-namespace", ""),
            ("--signature-namespace", "two words"),
            ("--signature-namespace", "a,b"),
            ("--signature-namespace", "caf\u{e9}"),
            ("--metrics", "9100"),
            ("--metrics", ""),
            ("--log-format", "JSON"),
        ];
        for (flag, value) in cases {
            let err = setting(flag)
                .unwrap()
                .apply(&mut c, value, flag)
                .unwrap_err();
            assert_eq!(err.source, flag);
        }
    }

    #[test]
    fn every_setting_has_a_flag_and_a_variable() {
        for s in SETTINGS {
            assert!(s.flag.starts_with("--"), "{}", s.flag);
            let expect = format!(
                "COLORSORT_{}",
                s.flag[2..].to_ascii_uppercase().replace('-', "_")
            );
            assert_eq!(s.env, expect);
            // Showing a default and applying it back gives the same configuration.
            let mut c = ServeConfig::default();
            let shown = s.show(&ServeConfig::default());
            s.apply(&mut c, &shown, s.flag).unwrap();
            assert_eq!(s.show(&c), shown);
        }
    }

    #[test]
    fn signer_settings() {
        let mut c = ServeConfig::default();
        let (path, given) = c.allowed_signers_path();
        assert_eq!(
            (path, given),
            (PathBuf::from("/data/allowed_signers"), false)
        );
        let flag = setting("--allowed-signers").unwrap();
        flag.apply(&mut c, "/etc/colorsort/signers", "--allowed-signers")
            .unwrap();
        assert_eq!(
            c.allowed_signers_path(),
            (PathBuf::from("/etc/colorsort/signers"), true)
        );
        // An empty value means not given, so that a variable can be unset
        // by an empty override.
        flag.apply(&mut c, "", "--allowed-signers").unwrap();
        assert_eq!(c.allowed_signers, None);
        let ns = setting("--signature-namespace").unwrap();
        ns.apply(&mut c, "photos@example.com", "--signature-namespace")
            .unwrap();
        assert_eq!(c.signature_namespace, "photos@example.com");
        let long = "n".repeat(MAX_NAMESPACE + 1);
        assert!(ns.apply(&mut c, &long, "--signature-namespace").is_err());
        assert!(
            ns.apply(&mut c, &long[1..], "--signature-namespace")
                .is_ok()
        );
    }

    #[test]
    fn payload_deadline_grows_with_size() {
        let l = Limits {
            timeout: Duration::from_secs(10),
            min_rate: 1000,
            ..Limits::default()
        };
        assert_eq!(l.payload_time(0), Duration::from_secs(10));
        assert_eq!(l.payload_time(2500), Duration::from_millis(12_500));
    }
}
