//! The server: the accept loop, one thread per connection, the limits that
//! keep slow or hostile clients from starving the rest, and a clean stop.
//!
//! Each connection reads one request line through a capped, deadline-bound
//! reader, then, for `PUT` and `SEAL`, exactly SIZE payload bytes with
//! `read_exact` semantics under a deadline that moves with the bytes
//! received (see below). The payload is
//! held in memory once: a `SEAL` payload is decrypted in place, decoded
//! from the same buffer and, if it is an image, filed from it.
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
//! - at most `max_connections` connections are served. When full, the
//!   connection idle longest (waiting for a request line; first among those
//!   that never had a request answered) is evicted to make room; failing
//!   that, the upload furthest behind the minimum rate (by more than
//!   `SLOW_UPLOAD_GRACE`, in `registry`); if there is neither, the
//!   newcomer gets `ERR busy` at once;
//! - payloads and decoded pixels are reserved against a memory budget before
//!   they are allocated; past it, `ERR busy`.
//!
//! A connection closed after an error is closed lingeringly: the write side
//! is shut, and input is drained and discarded for
//! [`LINGER`](crate::config::LINGER), so the client reads the `ERR` line
//! instead of a TCP reset.
//!
//! This file binds, runs, admits and stops. Beside it, one file per
//! concept: `conn` serves a connection, reading through `reader` and
//! handing uploads to `upload`; `registry` holds the slots and evicts;
//! `linger` closes after errors; `budget` reserves memory and gates large
//! decodes; `sys` holds the calls into libc.

mod budget;
mod conn;
mod linger;
mod reader;
mod registry;
mod sys;
mod upload;

use crate::config::{Limits, MAX_LINGERING, ServeConfig};
use crate::key::Identity;
use crate::metrics::{Live, Metrics};
use crate::protocol::{self, Code};
use crate::store::{self, Store};
use budget::{Budget, DecodeGate};
use conn::Connection;
use linger::Closer;
use registry::{Registry, Slot};
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Why the server could not start or run.
#[derive(Debug)]
pub enum Error {
    /// The data directory or key could not be used.
    Store(store::Error),
    /// The listening socket could not be bound.
    Bind { addr: SocketAddr, source: io::Error },
    /// Any other I/O failure.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => e.fmt(f),
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
    /// The `KEY` reply text.
    key_line: String,
    budget: Budget,
    decodes: DecodeGate,
    conns: Registry,
    closer: Arc<Closer>,
    metrics: Metrics,
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
        sys::return_large_blocks();
        let store = Store::open(&config.data)?;
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
        let listener = TcpListener::bind(config.listen).map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let mut limits = config.limits;
        let mut lingering = MAX_LINGERING;
        if let Some(soft) = sys::raise_fd_limit(limits.max_connections)
            && let fit = sys::connections_for_fd_limit(soft)
            && fit < limits.max_connections
        {
            log!(
                "connection limit lowered from {} to {fit}: the open-file limit (ulimit -n) is {soft}, \
                 and a connection needs up to {} descriptors; raise the limit to serve more",
                limits.max_connections,
                sys::FDS_PER_CONNECTION + 1
            );
            limits.max_connections = fit;
            lingering = lingering.min(fit);
        }
        let closer = Arc::new(Closer::new(lingering));
        let runner = Arc::clone(&closer);
        thread::Builder::new()
            .name("linger".into())
            .spawn(move || runner.run())?;
        let shared = Shared {
            limits,
            key_line: public.to_ssh_line(crate::key::COMMENT),
            metrics: Metrics::new(&public.fingerprint()),
            store,
            identity,
            budget: Budget::new(limits.max_memory),
            decodes: DecodeGate::new(thread::available_parallelism().map_or(1, |n| n.get())),
            conns: Registry::new(limits.max_connections, limits.min_rate),
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

    /// Renders this server's metrics page, at each call.
    pub fn metrics(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            shared.metrics.render(&Live {
                memory_used: shared.budget.used(),
                memory_limit: shared.budget.limit(),
                connection_limit: shared.limits.max_connections,
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
        let grace = self.shared.limits.shutdown_grace;
        let left = self.shared.conns.wait_empty(grace);
        if left > 0 {
            log!(
                "stopping: closing {left} connection(s) still busy after {}s",
                grace.as_secs_f64()
            );
            self.shared.conns.close_all();
            if self.shared.conns.wait_empty(Duration::from_millis(500)) > 0 {
                // A thread still running may still write its staged file.
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
        let Some((id, progress)) = self.shared.conns.register(&stream) else {
            self.shared.metrics.connection_refused();
            let limit = limits.max_connections;
            crate::log::busy(&peer, format_args!("connection limit {limit}"));
            self.shared
                .turn_away(stream, "server is at its connection limit; try again later");
            return;
        };
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
            let _slot = Slot::new(&shared.conns, id);
            let _open = shared.metrics.open_connection();
            match Connection::new(&shared, stream, (id, progress), peer) {
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

impl Shared {
    /// Sends one `ERR busy` line and closes lingeringly.
    fn turn_away(&self, mut stream: TcpStream, why: &str) {
        let _ = stream.write_all(protocol::err(Code::Busy, why).as_bytes());
        self.closer.linger(stream);
    }
}
