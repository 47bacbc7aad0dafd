//! The server: the accept loop, one thread per connection, the limits that
//! keep slow or hostile clients from starving the rest, and a clean stop.
//!
//! The rule behind the limits: whatever a client can make the server
//! allocate or hold is charged before it is spent, and costs the client what
//! it costs the server. Each connection reads one request line through a
//! capped, deadline-bound reader, then, for `PUT` and `SEAL`, exactly SIZE
//! payload bytes with `read_exact` semantics under a deadline that moves
//! with the bytes received (see below). The payload is held in memory once:
//! a `SEAL` payload is decrypted in place, decoded from the same buffer
//! and, if it is an image, filed from it.
//!
//! Limits, all in [`crate::config::Limits`]:
//! - a request line must arrive whole within the timeout of the previous
//!   reply (so a client trickling bytes is cut at that deadline);
//! - a payload must keep up with the minimum rate after one timeout of
//!   grace: once `received` bytes have arrived, the next ones are due one
//!   timeout plus `received / min_rate` after the request line. A client
//!   that sends at the minimum rate is never cut, and the last byte is due
//!   one timeout plus SIZE at the minimum rate after the line; a
//!   client that announces a large SIZE and then stalls is cut a timeout
//!   later, not after the whole SIZE's allowance;
//! - a reply must be written whole within the timeout, or the connection
//!   is closed: a client that does not read cannot hold its thread;
//! - payload memory (a signed `SEAL`'s signature first, as part of the
//!   same transfer) is reserved against the memory budget as the bytes
//!   arrive, never ahead of them (announcing a SIZE or SIGSIZE costs
//!   nothing), and a decode's peak memory before it decodes. When a
//!   reservation does not fit, the upload holding memory that is furthest
//!   behind the minimum rate (by more than `slow_grace`) is evicted to make
//!   room; failing that, after a short wait, `ERR busy`;
//! - at most `max_connections` connections are served. When full, the
//!   connection idle longest (waiting for a request line, from its accept
//!   on, none read ahead; first among those that never had a request
//!   answered) is evicted to make room; failing that, the one whose reply
//!   has gone unread longest (past `slow_grace`); failing that, the upload
//!   furthest behind the minimum rate (by more than `slow_grace`); if there
//!   is none, the newcomer gets `ERR busy` at once.
//!
//! A connection closed after an error is closed lingeringly: the write side
//! is shut, and input is drained and discarded for
//! [`LINGER`](crate::config::LINGER), so the client reads the `ERR` line
//! instead of a TCP reset. Once a stop's grace is over, nothing more is
//! filed: a connection cut off then has not had its upload stored, unless
//! its filing had begun before (see [`Server::run`]).
//!
//! This file binds, runs, admits and stops. Beside it, one file per
//! concept: `conn` serves a connection, reading through `reader`, writing
//! through `writer` and handing uploads to `upload` with its `hold` on the
//! server's memory and filing as their handle; `registry` holds the
//! slots, evicts and closes filing at a stop; `linger` closes after errors;
//! `senders` holds the allowed_signers list in force; `sys` holds the calls
//! into libc. Memory is reserved and large decodes take turns through
//! [`crate::budget`].

mod conn;
mod hold;
mod linger;
mod reader;
mod registry;
mod resources;
mod senders;
mod upload;
mod writer;

pub use senders::{LoadError, Reload};

use crate::budget::Guards;
use crate::config::{
    DEFAULT_MAX_MEMORY, FILING_WAIT, Limits, MAX_LINGERING, MEMORY_LIMIT_SHARE, MEMORY_OVERHEAD,
    SOCKET_LIMIT_SHARE, SOCKET_MEMORY, ServeConfig, show_size,
};
use crate::identity::Identity;
use crate::metrics::{Live, Metrics};
use crate::protocol::{self, Code};
use crate::sandbox::{self, Workers};
use crate::store::{self, Store};
use conn::Connection;
use linger::Closer;
use registry::{Registry, Slot};
use senders::KnownSenders;
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Why the server could not start or run.
#[derive(Debug)]
pub enum Error {
    /// The data directory or key could not be used.
    Store(store::Error),
    /// The allowed_signers file could not be read or parsed.
    Signers(LoadError),
    /// The listening socket could not be bound.
    Bind { addr: SocketAddr, source: io::Error },
    /// Any other I/O failure.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => e.fmt(f),
            Error::Signers(e) => e.fmt(f),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        Error::Store(e)
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// What every connection thread shares.
struct Shared {
    limits: Limits,
    store: Store,
    identity: Identity,
    /// The namespace signed uploads must be signed for.
    namespace: String,
    /// Who may file by colour.
    senders: KnownSenders,
    /// The `KEY` reply text.
    key_line: String,
    /// The memory budget and the decode gate.
    guards: Guards,
    /// Where every upload is decoded.
    workers: Workers,
    conns: Registry,
    closer: Arc<Closer>,
    metrics: Metrics,
}

/// Reloads a running server's allowed_signers file from another thread
/// (on SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    /// Reads the allowed_signers file again; see [`Reload`]. Uploads being
    /// checked finish against the list they started with.
    pub fn reload(&self) -> Reload {
        self.shared.senders.reload()
    }
}

/// Stops a running server from another thread (a signal handler's thread,
/// or a test).
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
    wake: SocketAddr,
}

impl Stopper {
    /// Stops accepting, closes idle connections and lets in-flight requests
    /// finish; [`Server::run`] then returns.
    pub fn stop(&self) {
        self.shared.conns.stop();
        // The accept loop is blocked in accept(2); a connection wakes it.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }
}

impl Server {
    /// Opens the data directory, loads or creates the key, and binds the
    /// listening socket.
    pub fn bind(config: &ServeConfig) -> Result<Server, Error> {
        resources::return_large_blocks();
        let store = Store::open(&config.data)?;
        let (signers_path, given) = config.allowed_signers_path();
        let senders = KnownSenders::open(signers_path, given).map_err(Error::Signers)?;
        let started = Instant::now();
        let (identity, created) = store.load_or_create_key(config.key_bits)?;
        let public = identity.public();
        if created {
            log!(
                "generated a {}-bit RSA key in {:.1}s",
                public.bits(),
                started.elapsed().as_secs_f64()
            );
        }
        let listener = resources::listen(config.listen).map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let mut limits = config.limits;
        fit_memory(&mut limits, config.max_memory);
        if let Some(soft) = resources::raise_fd_limit(limits.max_connections, limits.max_workers)
            && let fit = resources::connections_for_fd_limit(soft, limits.max_workers)
            && fit < limits.max_connections
        {
            log!(
                "connection limit lowered from {} to {fit}: the open-file limit (ulimit -n) is {soft}, \
                 a connection needs up to {} descriptors and each of {} decode workers {}; \
                 raise the limit to serve more",
                limits.max_connections,
                resources::FDS_PER_CONNECTION + 1,
                limits.max_workers,
                resources::FDS_PER_WORKER
            );
            limits.max_connections = fit;
        }
        // As many sockets linger as there are slots at most, as
        // `budget::sockets` counts them.
        let closer = Arc::new(Closer::new(MAX_LINGERING.min(limits.max_connections)));
        let runner = Arc::clone(&closer);
        thread::Builder::new()
            .name("linger".into())
            .spawn(move || runner.run())?;
        let shared = Shared {
            limits,
            key_line: public.to_ssh_line(crate::identity::COMMENT),
            metrics: Metrics::new(&public.fingerprint()),
            store,
            identity,
            namespace: config.signature_namespace.clone(),
            senders,
            guards: Guards::per_cpu(limits.max_memory, limits.large_decode),
            workers: Workers::new(sandbox::Config {
                program: config.worker_program.clone(),
                ..sandbox::Config::new(limits.max_workers, limits.decode_timeout, limits.max_memory)
            })?,
            conns: Registry::new(limits.max_connections, limits.min_rate, limits.slow_grace),
            closer,
        };
        Ok(Server {
            listener,
            shared: Arc::new(shared),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The server key's fingerprint, `SHA256:...`.
    pub fn fingerprint(&self) -> String {
        self.shared.identity.public().fingerprint()
    }

    /// The server key's size in bits.
    pub fn key_bits(&self) -> usize {
        self.shared.identity.public().bits()
    }

    /// The allowed_signers file and its number of entries in known-senders
    /// mode, or, in v1 mode, `None` and the file that would turn it on.
    pub fn known_senders(&self) -> (&Path, Option<usize>) {
        let senders = &self.shared.senders;
        (senders.path(), senders.current().map(|list| list.len()))
    }

    /// The namespace signed uploads must be signed for.
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// A handle that reloads this server's allowed_signers file.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Renders this server's metrics page, at each call.
    pub fn metrics(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            let (workers_alive, workers_limit) = shared.workers.alive();
            shared.metrics.render(&Live {
                memory_used: shared.guards.budget.used(),
                memory_limit: shared.guards.budget.limit(),
                connection_limit: shared.limits.max_connections,
                workers_alive,
                workers_limit,
            })
        }
    }

    /// A handle that stops this server.
    pub fn stopper(&self) -> io::Result<Stopper> {
        let mut wake = self.listener.local_addr()?;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Ok(Stopper {
            shared: Arc::clone(&self.shared),
            wake,
        })
    }

    /// Serves until stopped, then waits up to the shutdown grace for
    /// in-flight requests, closes what is left and returns.
    ///
    /// After the grace nothing more is filed, even by a decode that ends
    /// after this returns: an upload whose connection is cut then was not
    /// stored, unless its filing had begun before the grace ended. Those
    /// filings are waited for, up to [`FILING_WAIT`], and answered before
    /// the connections are closed; only one that takes longer than that (a
    /// stalled disk, or a client not reading its `OK`) can leave a client
    /// cut off with its upload stored, whole and indexed.
    pub fn run(self) -> Result<(), Error> {
        for stream in self.listener.incoming() {
            if self.shared.conns.stopping() {
                break;
            }
            match stream {
                Ok(stream) => self.admit(stream),
                Err(e) => {
                    log!("accept failed: {e}");
                    // Out of descriptors or memory: give connections time to
                    // close rather than spin.
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        drop(self.listener);
        let conns = &self.shared.conns;
        let grace = self.shared.limits.shutdown_grace;
        let left = conns.wait_empty(grace);
        if left > 0 {
            // From here on nothing begins to be filed; uploads being filed
            // now finish and are answered before their connections close.
            let filing = conns.close_filing(FILING_WAIT);
            log!(
                "stopping: closing {left} connection(s) still busy after {}s",
                grace.as_secs_f64()
            );
            conns.close_all();
            let running = conns.wait_empty(Duration::from_millis(500));
            if filing > 0 {
                // Only a stalled disk holds a filing this long. Its file is
                // staged and fsynced before it is linked: it is published
                // whole or not at all, as after a crash.
                log!("stopped with {filing} upload(s) still being written to disk");
                return Ok(());
            }
            if running > 0 {
                // Decodes still running can no longer file anything, but
                // their staging folder is left to the next start's sweep.
                log!("stopped");
                return Ok(());
            }
        }
        self.shared.store.close();
        log!("stopped");
        Ok(())
    }

    /// Registers a new connection and starts its thread, or turns it away.
    fn admit(&self, stream: TcpStream) {
        let limits = &self.shared.limits;
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let configured = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(limits.timeout)))
            .and_then(|()| stream.set_write_timeout(Some(limits.timeout)));
        if configured.is_err() {
            return;
        }
        let Some((id, activity)) = self.shared.conns.register(&stream) else {
            self.shared.metrics.connection_refused();
            let limit = limits.max_connections;
            crate::log::busy(&peer, format_args!("connection limit {limit}"));
            let why = "server is at its connection limit; try again later";
            self.shared
                .turn_away(stream, &protocol::err(Code::Busy, why));
            return;
        };
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
            let _slot = Slot::new(&shared.conns, id);
            let _open = shared.metrics.open_connection();
            match Connection::new(&shared, stream, (id, activity), peer) {
                Ok(conn) => conn.serve(),
                Err(e) => log!("cannot set up a connection: {e}"),
            }
        });
        if let Err(e) = spawned {
            // The closure, and the slot guard with it, never ran: free the slot here.
            self.shared.conns.release(id);
            log!("cannot start a connection thread: {e}");
        }
    }
}

/// Fits the memory budget, and the connection cap to the kernel memory of
/// its sockets, to a container's limit unless the budget was set, and logs
/// the figures and where they came from.
fn fit_memory(limits: &mut Limits, set: Option<u64>) {
    if let Some(bytes) = set {
        limits.max_memory = bytes;
        log!(
            "memory budget {} (--max-memory or COLORSORT_MAX_MEMORY)",
            show_size(limits.max_memory)
        );
        return;
    }
    let Some(limit) = crate::budget::container_limit() else {
        limits.max_memory = DEFAULT_MAX_MEMORY;
        log!(
            "memory budget {} (the default; no cgroup memory limit found)",
            show_size(DEFAULT_MAX_MEMORY)
        );
        return;
    };
    let fit = crate::budget::fitted_server(limit.bytes, limits.max_connections);
    if fit.connections < limits.max_connections {
        log!(
            "connection limit lowered from {} to {}: each socket's kernel buffers may hold {}, \
             which the cgroup memory limit charges, and sockets may take 1/{SOCKET_LIMIT_SHARE} of it",
            limits.max_connections,
            fit.connections,
            show_size(SOCKET_MEMORY)
        );
        limits.max_connections = fit.connections;
    }
    limits.max_memory = fit.budget;
    log!(
        "memory budget {}, fitted to the cgroup memory limit of {} in {} \
         (less {} for the sockets' kernel buffers, 1/{MEMORY_LIMIT_SHARE} of the rest \
         less {} for the rest of the server, at most {}); --max-memory overrides",
        show_size(fit.budget),
        show_size(limit.bytes),
        limit.file.display(),
        show_size(fit.sockets),
        show_size(MEMORY_OVERHEAD),
        show_size(DEFAULT_MAX_MEMORY)
    );
}

impl Shared {
    /// Sends a last reply `line` without waiting for the client to read it,
    /// and closes lingeringly. A client whose socket buffers are full (one
    /// that does not read) does not get the line, and cannot hold this
    /// thread, or the slot it is freeing, by not reading.
    fn turn_away(&self, mut stream: TcpStream, line: &str) {
        if stream.set_nonblocking(true).is_ok() {
            let _ = stream.write(line.as_bytes());
        }
        self.closer.linger(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;

    /// A bound server on 127.0.0.1:0, in a temporary data directory holding
    /// the test key, with `limits`.
    fn server(limits: Limits) -> (tempfile::TempDir, Server) {
        let dir = tempfile::tempdir().unwrap();
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/test-data/keys/test-only-server-key.pem"
        );
        let pem = dir.path().join("key.pem");
        std::fs::copy(key, &pem).unwrap();
        std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data: dir.path().to_path_buf(),
            worker_program: crate::sandbox::testing::program(),
            limits,
            ..ServeConfig::default()
        };
        (dir, Server::bind(&config).unwrap())
    }

    /// A solid PNG of `side` x `side` RGBA pixels: small to send, but its
    /// pixels take `side` x `side` x 4 bytes to decode.
    fn rgba_png(side: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(side, side, image::Rgba([9, 9, 200, 255]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn nothing_is_filed_after_the_shutdown_grace() {
        let (dir, server) = server(Limits {
            shutdown_grace: Duration::from_millis(200),
            ..Limits::default()
        });
        let shared = Arc::clone(&server.shared);
        let stopper = server.stopper().unwrap();
        let addr = server.local_addr().unwrap();
        let (ran, returned) = mpsc::channel();
        let runner = thread::spawn(move || {
            let result = server.run();
            ran.send(()).unwrap();
            result
        });
        // An image whose decode takes a turn (over 16 MiB of pixels), while
        // this test holds every turn: its upload waits, received whole,
        // until the grace is over and `run` has returned.
        let turns: Vec<_> = (0..thread::available_parallelism().map_or(1, |n| n.get()))
            .map(|_| shared.guards.gate.enter())
            .collect();
        let image = rgba_png(2100);
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
            .write_all(format!("PUT late.png {}\r\n", image.len()).as_bytes())
            .unwrap();
        client.write_all(&image).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while shared.guards.budget.used() < image.len() as u64 {
            assert!(Instant::now() < until, "the payload never arrived");
            thread::yield_now();
        }
        stopper.stop();
        returned
            .recv_timeout(Duration::from_secs(10))
            .expect("run returned after the grace");
        // The decode goes on now, after the grace, and ends.
        drop(turns);
        assert_eq!(shared.conns.wait_empty(Duration::from_secs(10)), 0);
        let mut reply = String::new();
        let _ = client.read_to_string(&mut reply);
        assert!(!reply.starts_with("OK"), "acknowledged: {reply}");
        let filed: Vec<_> = std::fs::read_dir(dir.path().join("not_trusted"))
            .unwrap()
            .collect();
        assert!(filed.is_empty(), "filed after the grace: {filed:?}");
        runner.join().unwrap().unwrap();
    }
}
