//! What `colorsort serve` is configured with: [`ServeConfig`], and the
//! [`Limits`] within it that keep one client from starving the others.

use super::{
    ALLOWED_SIGNERS_FILE, DEFAULT_DATA_DIR, DEFAULT_DECODE_TIMEOUT, DEFAULT_KEY_BITS,
    DEFAULT_LARGE_DECODE, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MEMORY,
    DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD, DEFAULT_MAX_WORKERS, DEFAULT_MIN_RATE,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_SIGNATURE_NAMESPACE, DEFAULT_SLOW_GRACE, DEFAULT_TIMEOUT,
    SELF_EXE,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The memory budget `--max-memory` or its variable gave, if either
    /// did; otherwise the server fits the budget to a container's memory
    /// limit, or takes [`DEFAULT_MAX_MEMORY`] without one.
    pub max_memory: Option<u64>,
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
    /// Memory budget for payloads and decoded pixels, in bytes. In a
    /// [`ServeConfig`] it is not read: the server settles the budget from
    /// [`ServeConfig::max_memory`] when it starts.
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
            max_memory: None,
            worker_program: PathBuf::from(SELF_EXE),
            metrics: None,
            log_format: crate::log::Format::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
