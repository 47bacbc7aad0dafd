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
//!   [`SLOW_UPLOAD_GRACE`]); if there is neither, the newcomer gets
//!   `ERR busy` at once;
//! - payloads and decoded pixels are reserved against a memory budget before
//!   they are allocated; past it, `ERR busy`.
//!
//! A connection closed after an error is closed lingeringly: the write side
//! is shut, and input is drained and discarded for [`LINGER`], so the client
//! reads the `ERR` line instead of a TCP reset.

use crate::age;
use crate::classify;
use crate::config::{LINGER, Limits, MAX_LINGERING, ServeConfig};
use crate::key::Identity;
use crate::name::{self, Name};
use crate::protocol::{self, Code, Request, Upload};
use crate::store::{self, Digest, Folder, Store, Trust};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long a newcomer waits for an evicted connection's slot to free up.
const EVICTION_WAIT: Duration = Duration::from_millis(250);
/// How far behind the minimum rate, in time, an upload must fall before it
/// may be evicted for a newcomer: a client that sent its request line is
/// given this long for its payload to start flowing.
const SLOW_UPLOAD_GRACE: Duration = Duration::from_secs(1);
/// Decodes that may take more memory than this take turns at the
/// [`DecodeGate`]; smaller ones (a 4-megapixel RGBA PNG and below) decode at
/// once.
const LARGE_DECODE: u64 = 16 * 1024 * 1024;
/// Read buffer per connection.
const READ_BUFFER: usize = 8 * 1024;
/// How often the lingering closer polls its sockets.
const LINGER_POLL: Duration = Duration::from_millis(20);
/// Longest reply text kept in a log line.
const LOG_REPLY: usize = 100;
/// File descriptors a connection holds at most: its socket, two duplicates
/// of it (the writer's and the registry's, to shut it from outside), and a
/// staging file while it files an upload. After it ends, its socket may
/// linger one more descriptor in the closer.
const FDS_PER_CONNECTION: usize = 4;
/// Descriptors kept for the rest of the process: stdio, the listener, the
/// data directory's folder handles and locks, the key file at start.
const FDS_RESERVED: usize = 64;

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
        return_large_blocks();
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
        if let Some(soft) = raise_fd_limit(limits.max_connections)
            && let fit = connections_for_fd_limit(soft)
            && fit < limits.max_connections
        {
            log!(
                "connection limit lowered from {} to {fit}: the open-file limit (ulimit -n) is {soft}, \
                 and a connection needs up to {} descriptors; raise the limit to serve more",
                limits.max_connections,
                FDS_PER_CONNECTION + 1
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
            log!(
                "{peer} - - -> ERR busy (connection limit {})",
                limits.max_connections
            );
            self.shared
                .turn_away(stream, "server is at its connection limit; try again later");
            return;
        };
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
            let _slot = Slot {
                conns: &shared.conns,
                id,
            };
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

/// How a request ended, for the reply, the log and the connection.
struct Outcome {
    reply: String,
    /// What happened, for the log only (never sent: it may name paths).
    detail: Option<String>,
    after: After,
}

/// What happens to the connection after the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Read the next request.
    Continue,
    /// Shut the write side, drain input briefly, close.
    Linger,
    /// The client is gone (EOF or I/O error mid-request): close silently.
    Gone,
}

impl Outcome {
    fn ok(text: impl fmt::Display) -> Outcome {
        Outcome {
            reply: protocol::ok(&text.to_string()),
            detail: None,
            after: After::Continue,
        }
    }

    fn err(code: Code, message: impl fmt::Display) -> Outcome {
        Outcome {
            reply: protocol::err(code, &message.to_string()),
            detail: None,
            after: After::Continue,
        }
    }

    fn gone(detail: impl fmt::Display) -> Outcome {
        Outcome {
            reply: String::new(),
            detail: Some(detail.to_string()),
            after: After::Gone,
        }
    }

    fn closing(mut self) -> Outcome {
        self.after = After::Linger;
        self
    }

    fn detail(mut self, detail: impl fmt::Display) -> Outcome {
        self.detail = Some(detail.to_string());
        self
    }
}

/// Why reading from the client stopped.
#[derive(Debug)]
enum ReadError {
    /// The deadline passed.
    Timeout,
    /// The client closed its side.
    Eof,
    /// The socket failed.
    Io(io::Error),
}

/// Why no request line was read.
#[derive(Debug)]
enum LineError {
    /// The line was longer than [`protocol::MAX_LINE`].
    TooLong,
    /// Reading stopped first.
    Read(ReadError),
}

impl From<ReadError> for LineError {
    fn from(e: ReadError) -> LineError {
        LineError::Read(e)
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// One client connection, served on its own thread.
struct Connection<'a> {
    shared: &'a Shared,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    id: u64,
    peer: String,
    /// Payload bytes received of the current upload, shared with the
    /// registry, which reads it to pick the slowest upload to evict.
    progress: Arc<AtomicU64>,
}

impl<'a> Connection<'a> {
    /// Splits the socket into a buffered reader and a writer; fails only if
    /// the process is out of file descriptors.
    fn new(
        shared: &'a Shared,
        stream: TcpStream,
        (id, progress): (u64, Arc<AtomicU64>),
        peer: String,
    ) -> io::Result<Connection<'a>> {
        let writer = stream.try_clone()?;
        let reader = BufReader::with_capacity(READ_BUFFER, stream);
        Ok(Connection {
            shared,
            reader,
            writer,
            id,
            peer,
            progress,
        })
    }

    fn serve(mut self) {
        let mut served = false;
        loop {
            if !self.shared.conns.set_idle(self.id, true) {
                return self.end("server is shutting down");
            }
            let deadline = Instant::now() + self.shared.limits.timeout;
            let line = self.read_line(deadline);
            self.shared.conns.set_idle(self.id, false);
            let started = Instant::now();
            let (what, outcome) = match line {
                Ok(line) => self.request(&line),
                Err(LineError::Read(ReadError::Eof)) => {
                    if self.shared.conns.evicted(self.id) {
                        log!(
                            "{} - - -> ERR busy (evicted: idle longest while full)",
                            self.peer
                        );
                        return self.end("server is full; closed the connection idle longest");
                    }
                    if self.shared.conns.stopping() {
                        return self.end("server is shutting down");
                    }
                    return;
                }
                Err(LineError::TooLong) => {
                    let limit = protocol::MAX_LINE;
                    (
                        "-".into(),
                        Outcome::err(
                            Code::LineTooLong,
                            format!("request line over {limit} bytes"),
                        )
                        .closing(),
                    )
                }
                Err(LineError::Read(ReadError::Timeout)) => (
                    "-".into(),
                    Outcome::err(Code::Timeout, "no complete request line in time").closing(),
                ),
                Err(LineError::Read(ReadError::Io(_))) => return,
            };
            let after = outcome.after;
            let sent =
                outcome.reply.is_empty() || self.writer.write_all(outcome.reply.as_bytes()).is_ok();
            self.log(&what, &outcome, started);
            match after {
                After::Continue if sent => {
                    if !served {
                        served = true;
                        self.shared.conns.mark_served(self.id);
                    }
                }
                After::Linger if sent => return self.shared.closer.linger(self.writer),
                _ => return,
            }
        }
    }

    /// Sends a last `ERR busy` line, then closes lingeringly.
    fn end(self, why: &str) {
        self.shared.turn_away(self.writer, why);
    }

    fn log(&self, what: &str, outcome: &Outcome, started: Instant) {
        let reply = outcome.reply.trim_end();
        let reply = if reply.is_empty() {
            "(no reply)"
        } else {
            reply
        };
        let shown: String = reply.chars().take(LOG_REPLY).collect();
        let ellipsis = if shown.len() < reply.len() { "..." } else { "" };
        let ms = started.elapsed().as_millis();
        match &outcome.detail {
            Some(d) => log!("{} {what} -> {shown}{ellipsis} {ms}ms ({d})", self.peer),
            None => log!("{} {what} -> {shown}{ellipsis} {ms}ms", self.peer),
        }
    }

    /// Parses and answers one request line. Returns a summary for the log.
    fn request(&mut self, line: &[u8]) -> (String, Outcome) {
        let request = match protocol::parse_request(line) {
            Ok(r) => r,
            Err(e) => {
                let outcome = Outcome::err(e.code(), &e);
                let what = protocol::printable(line, 40);
                return (
                    what,
                    if e.closes() {
                        outcome.closing()
                    } else {
                        outcome
                    },
                );
            }
        };
        let shared = self.shared;
        match request {
            Request::Ping => ("PING".into(), Outcome::ok("PONG")),
            Request::Help => ("HELP".into(), Outcome::ok(protocol::HELP)),
            Request::Key => ("KEY".into(), Outcome::ok(&shared.key_line)),
            Request::Quit => ("QUIT".into(), Outcome::ok("BYE").closing()),
            Request::Stats => {
                let outcome = match shared.store.counts() {
                    Ok([r, g, b, n]) => {
                        Outcome::ok(format!("red={r} green={g} blue={b} not_trusted={n}"))
                    }
                    Err(e) => {
                        Outcome::err(Code::StorageFailed, "cannot count the stored files").detail(e)
                    }
                };
                ("STATS".into(), outcome)
            }
            Request::Upload { kind, name, size } => {
                let what = format!(
                    "{} {} {size}",
                    kind.verb(),
                    protocol::printable(name, name::MAX_NAME)
                );
                (what, self.upload(kind, name, size))
            }
        }
    }

    /// Receives, opens, classifies and files one upload.
    fn upload(&mut self, kind: Upload, raw_name: &[u8], size: u64) -> Outcome {
        let shared = self.shared;
        let limits = &shared.limits;
        // A payload the memory budget could never hold is as refused as one
        // over the upload limit: `busy` would have the client retry forever.
        let max = limits.max_upload.min(limits.max_memory);
        if size > max {
            return Outcome::err(
                Code::TooLarge,
                format!("SIZE {size} is over the upload limit of {max} bytes"),
            )
            .closing();
        }
        let started = Instant::now();
        self.progress.store(0, Ordering::Relaxed);
        self.shared
            .conns
            .set_payload(self.id, Some((started, size)));
        let outcome = self.receive(kind, raw_name, size, started);
        self.shared.conns.set_payload(self.id, None);
        outcome
    }

    /// The rest of [`Connection::upload`], once SIZE is known to be within
    /// the limit and the payload (from `started`) is being received.
    fn receive(&mut self, kind: Upload, raw_name: &[u8], size: u64, started: Instant) -> Outcome {
        let shared = self.shared;
        let limits = &shared.limits;
        let name = match Name::parse(raw_name) {
            Ok(n) => n,
            Err(e) => return self.refuse_payload(size, started, Outcome::err(Code::BadName, e)),
        };
        let Some(_payload_memory) = shared.budget.try_reserve(size) else {
            let busy = Outcome::err(
                Code::Busy,
                "server is out of memory for uploads; try again later",
            );
            return self.refuse_payload(size, started, busy);
        };
        // `size` is at most `max_upload`, which was checked above; a budget
        // over the address space would have failed the reservation.
        let mut payload = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
        if let Err(e) = self.read_payload(&mut payload, started) {
            return self.payload_failed(e);
        }
        if kind == Upload::Seal
            && let Err(e) = age::decrypt_in_place(&mut payload, &shared.identity)
        {
            return Outcome::err(Code::DecryptFailed, e).detail(format_args!("{e:?}"));
        }
        let trust = match kind {
            Upload::Seal => Trust::Sealed,
            Upload::Put => Trust::Plain,
        };
        // Content already stored is not decoded again: a re-sent folder
        // costs a hash per file, not a decode.
        let digest = Digest::of(&payload);
        if let Some(existing) = shared.store.lookup(trust, &digest) {
            return Outcome::ok(existing);
        }
        let classify_limits = classify::Limits::new(limits.max_pixels);
        let image = match classify::open(&payload, &classify_limits) {
            Ok(image) => image,
            Err(e) => return classify_failed(e),
        };
        let extension = image.format();
        // The turn comes first: uploads waiting for one hold no memory for
        // their pixels, so a queue of large images does not spend the
        // budget and turn others away as busy.
        let peak = image.peak_memory();
        if peak.saturating_add(size) > limits.max_memory {
            let (max, w, h) = (limits.max_memory, image.width(), image.height());
            let why = format!(
                "a {w}x{h} image needs more memory to decode than the server's limit of {max} bytes"
            );
            return Outcome::err(Code::TooManyPixels, why);
        }
        let turn = (peak > LARGE_DECODE).then(|| shared.decodes.enter());
        let Some(pixel_memory) = shared.budget.try_reserve(peak) else {
            return Outcome::err(
                Code::Busy,
                "server is out of memory for decoding; try again later",
            );
        };
        let verdict = match image.classify() {
            Ok(v) => v,
            Err(e) => return classify_failed(e),
        };
        drop((turn, pixel_memory));
        let folder = match kind {
            Upload::Seal => Folder::from(verdict.class),
            Upload::Put => Folder::NotTrusted,
        };
        let name = match name {
            Name::Given(n) => n,
            Name::Generated => generated_name(&digest, extension),
        };
        match shared
            .store
            .file(folder, &name, &payload, &digest, verdict.mean)
        {
            Ok(filed) => {
                // The log says what the reply does not: a plaintext upload's
                // class, and a copy that could not be indexed.
                let class =
                    (kind == Upload::Put).then(|| format!("class {}", verdict.class.as_str()));
                let unindexed = filed
                    .unindexed
                    .map(|e| format!("stored, but not indexed: {e}"));
                let detail: Vec<String> = class.into_iter().chain(unindexed).collect();
                let outcome = Outcome::ok(filed.stored);
                if detail.is_empty() {
                    outcome
                } else {
                    outcome.detail(detail.join("; "))
                }
            }
            Err(e) => {
                Outcome::err(Code::StorageFailed, "the server could not store the file").detail(e)
            }
        }
    }

    /// Consumes a refused upload's payload, so the connection stays in step.
    fn refuse_payload(&mut self, size: u64, started: Instant, outcome: Outcome) -> Outcome {
        let mut scratch = [0u8; 16 * 1024];
        let mut received = 0;
        while received < size {
            let want = scratch
                .len()
                .min(usize::try_from(size - received).unwrap_or(usize::MAX));
            match self.read_some(
                &mut scratch[..want],
                self.payload_deadline(started, received),
            ) {
                Ok(n) => received += n as u64,
                Err(e) => return self.payload_failed(e),
            }
            self.progress.store(received, Ordering::Relaxed);
        }
        outcome
    }

    /// Fills `out` with payload bytes, under the moving payload deadline.
    fn read_payload(&mut self, out: &mut [u8], started: Instant) -> Result<(), ReadError> {
        let mut received = 0;
        while received < out.len() {
            let deadline = self.payload_deadline(started, received as u64);
            received += self.read_some(&mut out[received..], deadline)?;
            self.progress.store(received as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// When the next payload bytes are due, `received` bytes into a payload
    /// whose request line ended at `started`: one timeout of grace plus the
    /// time the bytes so far take at the minimum rate. Counting from what
    /// was received, not from SIZE, is what stops a client from announcing
    /// a large SIZE and then holding its slot and memory while sending
    /// nothing.
    fn payload_deadline(&self, started: Instant, received: u64) -> Instant {
        started + self.shared.limits.payload_time(received)
    }

    fn payload_failed(&self, e: ReadError) -> Outcome {
        match e {
            ReadError::Timeout => {
                Outcome::err(Code::Timeout, "payload not received in time").closing()
            }
            ReadError::Eof if self.shared.conns.evicted(self.id) => {
                log!(
                    "{} - - -> ERR busy (evicted: slowest upload while full)",
                    self.peer
                );
                Outcome::err(
                    Code::Busy,
                    "server is full; closed the upload furthest behind the minimum rate",
                )
                .closing()
            }
            ReadError::Eof if self.shared.conns.stopping() => {
                Outcome::gone("connection ended mid-payload while the server was stopping")
            }
            ReadError::Eof => Outcome::gone("client closed the connection mid-payload"),
            ReadError::Io(e) => Outcome::gone(format_args!("read failed mid-payload: {e}")),
        }
    }

    /// Reads one request line, without its ending, before `deadline`.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, LineError> {
        let mut line = Vec::new();
        loop {
            let available = self.fill(deadline)?;
            if available.is_empty() {
                return Err(ReadError::Eof.into());
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if line.len() + i + 1 > protocol::MAX_LINE {
                        return Err(LineError::TooLong);
                    }
                    line.extend_from_slice(&available[..i]);
                    self.reader.consume(i + 1);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(line);
                }
                None => {
                    let n = available.len();
                    if line.len() + n >= protocol::MAX_LINE {
                        return Err(LineError::TooLong);
                    }
                    line.extend_from_slice(available);
                    self.reader.consume(n);
                }
            }
        }
    }

    /// Returns buffered input, reading more if there is none, before
    /// `deadline`. An empty slice means end of input.
    fn fill(&mut self, deadline: Instant) -> Result<&[u8], ReadError> {
        while self.reader.buffer().is_empty() {
            self.arm(deadline)?;
            match self.reader.fill_buf() {
                Ok([]) => return Ok(&[]),
                Ok(_) => break,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.reader.buffer())
    }

    /// Reads some bytes into `out` before `deadline`; never returns 0 for a
    /// non-empty `out`.
    fn read_some(&mut self, out: &mut [u8], deadline: Instant) -> Result<usize, ReadError> {
        loop {
            if self.reader.buffer().is_empty() {
                self.arm(deadline)?;
            }
            match self.reader.read(out) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => return Ok(n),
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sets the socket's read timeout to what is left before `deadline`, so
    /// that a client trickling bytes cannot stretch a read past it.
    fn arm(&mut self, deadline: Instant) -> Result<(), ReadError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(left.min(self.shared.limits.timeout)))?;
        Ok(())
    }
}

/// Raises the soft open-file limit to what `connections` need, as far as
/// the hard limit allows, and returns the soft limit then in force; `None`
/// if it cannot be read or is unlimited. The soft limit is often 1024 where
/// the hard limit is far higher; servers commonly raise it themselves.
fn raise_fd_limit(connections: usize) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let wanted = connections
            .saturating_mul(FDS_PER_CONNECTION + 1)
            .saturating_add(FDS_RESERVED);
        let wanted = libc::rlim_t::try_from(wanted).unwrap_or(libc::rlim_t::MAX);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through a valid pointer, and
        // setrlimit reads one; a failure changes nothing.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < wanted {
                let raised = libc::rlimit {
                    rlim_cur: wanted.min(limit.rlim_max),
                    ..limit
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = connections;
        None
    }
}

/// How many connections an open-file limit of `soft` holds: each needs up
/// to [`FDS_PER_CONNECTION`] descriptors plus one lingering, besides the
/// [`FDS_RESERVED`]. A server over its limit cannot accept(2): new clients
/// would wait in the kernel's backlog, unanswered, instead of getting a
/// slot by eviction or `ERR busy`.
fn connections_for_fd_limit(soft: u64) -> usize {
    let spare = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(FDS_RESERVED);
    (spare / (FDS_PER_CONNECTION + 1)).max(1)
}

/// Timeouts surface as `WouldBlock` or `TimedOut`; the deadline decides.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn classify_failed(e: classify::Error) -> Outcome {
    use classify::Error as E;
    let code = match e {
        E::TooManyPixels { .. } | E::DecoderLimit(_) => Code::TooManyPixels,
        // The pixel buffer could not be allocated: memory, not the image.
        E::OutOfMemory { .. } => Code::Busy,
        E::NotAnImage(_) | E::Unsupported(_) | E::DecoderPanic { .. } => Code::NotAnImage,
    };
    Outcome::err(code, e)
}

/// A name for an upload whose given name had nothing usable in it:
/// `upload-` and the first 12 hex digits of the content's SHA-256.
fn generated_name(digest: &Digest, extension: &str) -> String {
    format!("upload-{}.{extension}", &digest.hex()[..12])
}

/// Makes glibc's allocator serve every block of 1 MiB or more with its own
/// mapping, returned to the system when freed.
///
/// By default glibc raises that threshold as large blocks are freed, up to
/// 32 MiB, and then keeps freed payloads and pixel buffers in its heap: a
/// server that has decoded one large image holds on to the memory
/// (measured: 135 MiB of peak RSS for one client against 79 MiB with the
/// threshold fixed). A fixed threshold also keeps large buffers on fresh,
/// untouched pages, which zeroed allocation and huge-page advice rely on.
/// musl's allocator already unmaps large blocks when freed.
fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before the
    // server starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Lets as many large decodes run at once as there are CPUs.
///
/// Decoding is CPU-bound, so more large decodes at once than cores finish
/// no sooner, hold more memory, and crowd out small uploads: with eight
/// large images decoding on two cores, a thumbnail-sized upload would get a
/// ninth of the CPU. Behind the gate, large images queue for the cores and
/// small ones, which skip it, still get their turn at once.
struct DecodeGate {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A turn at the [`DecodeGate`], given back on drop.
struct Turn<'a>(&'a DecodeGate);

impl DecodeGate {
    fn new(turns: usize) -> DecodeGate {
        DecodeGate {
            free: Mutex::new(turns.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a turn. Turns are held only while decoding, which always
    /// ends, so the wait is bounded by the decodes ahead.
    fn enter(&self) -> Turn<'_> {
        let free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let mut free = self
            .freed
            .wait_while(free, |f| *f == 0)
            .unwrap_or_else(PoisonError::into_inner);
        *free -= 1;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

/// Bytes of memory in use by payloads and decoded pixels.
struct Budget {
    limit: u64,
    used: AtomicU64,
}

/// A reservation against the [`Budget`], released on drop.
struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Budget {
    fn new(limit: u64) -> Budget {
        Budget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Reserves `bytes`, or `None` if that would go over the limit.
    fn try_reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()?;
        Some(Reservation {
            budget: self,
            bytes,
        })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The live connections, for the connection cap, eviction and shutdown.
struct Registry {
    cap: usize,
    /// The minimum payload rate, bytes per second: an upload more than
    /// [`SLOW_UPLOAD_GRACE`] behind it may be evicted when the registry is
    /// full and nothing is idle.
    min_rate: u64,
    state: Mutex<RegistryState>,
    changed: Condvar,
    /// Mirrors `state.stopping`, read without the lock by the accept loop.
    stopping: AtomicBool,
}

#[derive(Default)]
struct RegistryState {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    stopping: bool,
}

struct Entry {
    /// A handle on the socket, to shut it down from outside its thread.
    socket: Option<TcpStream>,
    /// When the connection started waiting for a request line, if it is.
    idle_since: Option<Instant>,
    /// The connection has had a request answered. Among idle connections,
    /// those that never completed a request (what a slowloris crowd is
    /// made of) are evicted first.
    served: bool,
    /// When the connection's current payload started, and its SIZE, while
    /// it is in an upload.
    payload: Option<(Instant, u64)>,
    /// Payload bytes received so far, written by the connection's thread.
    progress: Arc<AtomicU64>,
    evicted: bool,
}

impl Entry {
    /// How far the payload being received is behind the minimum rate, in
    /// bytes, counted from [`SLOW_UPLOAD_GRACE`] after its start; `None` if
    /// it is not behind (or not receiving a payload).
    fn behind(&self, min_rate: u64, now: Instant) -> Option<u64> {
        let (started, size) = self.payload?;
        let received = self.progress.load(Ordering::Relaxed);
        let elapsed = now
            .saturating_duration_since(started)
            .checked_sub(SLOW_UPLOAD_GRACE)?;
        let due = u64::try_from(elapsed.as_millis().saturating_mul(u128::from(min_rate)) / 1000)
            .unwrap_or(u64::MAX)
            .min(size);
        (received < due).then(|| due - received)
    }
}

/// Frees a registry slot when its connection thread ends, however it ends.
struct Slot<'a> {
    conns: &'a Registry,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.conns.release(self.id);
    }
}

impl Registry {
    fn new(cap: usize, min_rate: u64) -> Registry {
        Registry {
            cap,
            min_rate,
            state: Mutex::default(),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for `stream`, evicting a connection if the registry is
    /// full: the one idle longest, or else the upload furthest behind the
    /// minimum rate. `None` if no slot could be had. Returns the slot's id
    /// and the progress counter its connection reports payload bytes to.
    fn register(&self, stream: &TcpStream) -> Option<(u64, Arc<AtomicU64>)> {
        let mut state = self.lock();
        if state.stopping {
            return None;
        }
        if state.conns.len() >= self.cap {
            let now = Instant::now();
            let candidates = || state.conns.iter().filter(|(_, e)| !e.evicted);
            // Idle connections cost the server nothing to drop; a slow upload
            // is dropped only when every slot is taken by a request, so that
            // uploads trickled on purpose cannot lock everyone else out.
            let idle = candidates()
                .filter_map(|(id, e)| e.idle_since.map(|since| (e.served, since, *id)))
                .min()
                .map(|(_, _, id)| id);
            let slow = || {
                candidates()
                    .filter_map(|(id, e)| e.behind(self.min_rate, now).map(|b| (b, *id)))
                    .max()
                    .map(|(_, id)| id)
            };
            let victim_id = idle.or_else(slow)?;
            let victim = state.conns.get_mut(&victim_id)?;
            victim.evicted = true;
            if let Some(socket) = &victim.socket {
                // Its blocked read returns end-of-input; its thread sees
                // `evicted`, says why and exits, freeing the slot.
                let _ = socket.shutdown(Shutdown::Read);
            }
            let (next, _) = self
                .changed
                .wait_timeout_while(state, EVICTION_WAIT, |s| s.conns.len() >= self.cap)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if state.conns.len() >= self.cap {
                return None;
            }
        }
        state.next_id += 1;
        let id = state.next_id;
        let progress = Arc::new(AtomicU64::new(0));
        let entry = Entry {
            socket: stream.try_clone().ok(),
            idle_since: None,
            served: false,
            payload: None,
            progress: Arc::clone(&progress),
            evicted: false,
        };
        state.conns.insert(id, entry);
        Some((id, progress))
    }

    fn release(&self, id: u64) {
        self.lock().conns.remove(&id);
        self.changed.notify_all();
    }

    /// Marks a connection idle (waiting for a request line) or busy. Returns
    /// false if the server is stopping and an idle connection should close.
    fn set_idle(&self, id: u64, idle: bool) -> bool {
        let mut state = self.lock();
        if idle && state.stopping {
            return false;
        }
        if let Some(e) = state.conns.get_mut(&id) {
            e.idle_since = idle.then(Instant::now);
        }
        true
    }

    /// Records that a connection started (`Some((start, size))`) or ended
    /// (`None`) receiving a payload.
    fn set_payload(&self, id: u64, payload: Option<(Instant, u64)>) {
        if let Some(e) = self.lock().conns.get_mut(&id) {
            e.payload = payload;
        }
    }

    /// Records that a connection had a request answered.
    fn mark_served(&self, id: u64) {
        if let Some(e) = self.lock().conns.get_mut(&id) {
            e.served = true;
        }
    }

    fn evicted(&self, id: u64) -> bool {
        self.lock().conns.get(&id).is_some_and(|e| e.evicted)
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Refuses new connections and ends idle ones; busy ones finish their
    /// request first.
    fn stop(&self) {
        let mut state = self.lock();
        state.stopping = true;
        self.stopping.store(true, Ordering::Release);
        for e in state.conns.values().filter(|e| e.idle_since.is_some()) {
            if let Some(socket) = &e.socket {
                let _ = socket.shutdown(Shutdown::Read);
            }
        }
    }

    /// Shuts every remaining connection down, busy or not.
    fn close_all(&self) {
        for e in self.lock().conns.values() {
            if let Some(socket) = &e.socket {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// Waits until no connection is left or `limit` passes; returns how many
    /// are left.
    fn wait_empty(&self, limit: Duration) -> usize {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, limit, |s| !s.conns.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        state.conns.len()
    }
}

/// Closes sockets lingeringly on one thread: each has its write side shut
/// and its input drained and discarded until end of input or [`LINGER`].
struct Closer {
    state: Mutex<Lingering>,
    ready: Condvar,
    /// Most sockets lingering at once.
    max: usize,
}

/// The closer's sockets, each with the time its lingering ends.
#[derive(Default)]
struct Lingering {
    /// Handed over and waiting for the next pass.
    queued: Vec<(TcpStream, Instant)>,
    /// Taken out by the pass under way, which drains them without the lock.
    draining: usize,
}

impl Closer {
    fn new(max: usize) -> Closer {
        Closer {
            state: Mutex::default(),
            ready: Condvar::new(),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lingering> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shuts the write side of `stream` and hands it to the closer thread.
    /// Past `max` sockets, it is closed at once instead.
    fn linger(&self, stream: TcpStream) {
        let _ = stream.shutdown(Shutdown::Write);
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut state = self.lock();
        if state.queued.len() + state.draining < self.max {
            state.queued.push((stream, Instant::now() + LINGER));
            self.ready.notify_one();
        }
    }

    fn run(&self) {
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            let mut state = self.lock();
            while state.queued.is_empty() {
                state = self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Drain outside the lock, so that connections handing sockets
            // over (the accept loop among them) never wait on the draining.
            let mut pass = std::mem::take(&mut state.queued);
            state.draining = pass.len();
            drop(state);
            let now = Instant::now();
            pass.retain_mut(|(stream, until)| now < *until && drain(stream, &mut scratch));
            let mut state = self.lock();
            state.draining = 0;
            state.queued.append(&mut pass);
            drop(state);
            thread::sleep(LINGER_POLL);
        }
    }
}

/// Reads and discards what a non-blocking socket has; false once it reaches
/// end of input or fails.
fn drain(stream: &mut TcpStream, scratch: &mut [u8]) -> bool {
    for _ in 0..16 {
        match stream.read(scratch) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_gate_admits_as_many_as_it_has_turns() {
        let gate = Arc::new(DecodeGate::new(2));
        let (a, b) = (gate.enter(), gate.enter());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                let _turn = gate.enter();
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "a third decode must wait"
        );
        drop(a);
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "a freed turn admits it"
        );
        waiter.join().unwrap();
        drop(b);
        assert_eq!(*gate.free.lock().unwrap(), 2);
    }

    #[test]
    fn budget_reserves_and_releases() {
        let budget = Budget::new(100);
        let a = budget.try_reserve(60).unwrap();
        assert!(budget.try_reserve(41).is_none());
        let b = budget.try_reserve(40).unwrap();
        assert!(budget.try_reserve(1).is_none());
        drop(a);
        assert!(budget.try_reserve(60).is_some());
        drop(b);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
        assert!(budget.try_reserve(u64::MAX).is_none());
    }

    #[test]
    fn open_file_limit_fits_the_connections() {
        let cases = [
            (1024, 192),
            (256, 38),
            (64, 1),
            (0, 1),
            (u64::MAX, (usize::MAX - 64) / 5),
        ];
        for (soft, fit) in cases {
            assert_eq!(connections_for_fd_limit(soft), fit, "soft limit {soft}");
        }
        // This process has a finite limit, and raising it for a few
        // connections never lowers it.
        let before = raise_fd_limit(0).unwrap();
        assert!(raise_fd_limit(10).unwrap() >= before);
    }

    #[test]
    fn slow_uploads_are_behind_only_past_their_grace() {
        let start = Instant::now();
        let entry = |received: u64, size: u64| Entry {
            socket: None,
            idle_since: None,
            served: false,
            payload: Some((start, size)),
            progress: Arc::new(AtomicU64::new(received)),
            evicted: false,
        };
        let at = |secs: u64| start + Duration::from_secs(secs);
        // (received, size, seconds since the payload started, behind by)
        let cases = [
            (0, 1000, 0, None),
            (0, 1000, 1, None),
            (0, 1000, 2, Some(100)),
            (50, 1000, 2, Some(50)),
            (100, 1000, 2, None),
            (0, 1000, 100, Some(1000)),
            (999, 1000, 100, Some(1)),
            (1000, 1000, 100, None),
        ];
        for (received, size, secs, want) in cases {
            assert_eq!(
                entry(received, size).behind(100, at(secs)),
                want,
                "{received}/{size} after {secs}s"
            );
        }
        let idle = Entry {
            payload: None,
            ..entry(0, 0)
        };
        assert_eq!(idle.behind(100, at(100)), None);
    }

    #[test]
    fn eviction_spares_idle_connections_that_were_served() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted: Vec<(TcpStream, TcpStream)> = (0..3)
            .map(|_| {
                let client = TcpStream::connect(addr).unwrap();
                (client, listener.accept().unwrap().0)
            })
            .collect();
        let registry = Registry::new(2, 1000);
        let (served, _) = registry.register(&accepted[0].1).unwrap();
        registry.set_idle(served, true);
        registry.mark_served(served);
        thread::sleep(Duration::from_millis(5));
        let (fresh, _) = registry.register(&accepted[1].1).unwrap();
        registry.set_idle(fresh, true);
        // Full: the newcomer evicts the never-served connection, though the
        // served one has been idle longer. No thread frees the slot here, so
        // the newcomer itself is then refused.
        assert!(registry.register(&accepted[2].1).is_none());
        assert!(registry.evicted(fresh));
        assert!(!registry.evicted(served));
    }

    #[test]
    fn generated_names_are_safe() {
        let n = generated_name(&Digest::of(b"content"), "png");
        assert_eq!(n.len(), "upload-".len() + 12 + 4);
        assert_eq!(Name::parse(n.as_bytes()), Ok(Name::Given(n.clone())));
    }
}
