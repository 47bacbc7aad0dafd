//! Every limit and default of the server as a named constant: the default
//! of each `serve` setting (`DEFAULT_*`, overridable through
//! [`super::SETTINGS`]) and the fixed timings and caps that no client can
//! lengthen, each with why it is not a setting.

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
/// The allowed_signers file looked for in the data directory when
/// `--allowed-signers` is not given.
pub const ALLOWED_SIGNERS_FILE: &str = "allowed_signers";
/// Namespace signatures must be made for (`ssh-keygen -Y sign -n`).
pub const DEFAULT_SIGNATURE_NAMESPACE: &str = "colorsort";
/// Largest HTTP request head (request line and headers) the metrics
/// responder reads; past it, `431`.
pub const METRICS_MAX_REQUEST: usize = 8 * 1024;
/// Most metrics requests served at once; past it, `503`. A scraper needs
/// one.
pub const METRICS_MAX_CONNECTIONS: usize = 4;
