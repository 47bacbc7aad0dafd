//! One client connection, served on its own thread: the request loop, the
//! reply to each request, what becomes of the connection after it, and the
//! log line for each. Uploads are received here and handed to [`upload`]
//! for everything past the socket.

use super::Shared;
use super::reader::{LineError, ReadError, Reader};
use super::upload::{self, Accepted, UploadError};
use crate::metrics::Eviction;
use crate::name;
use crate::protocol::{self, Code, Request, Upload};
use std::fmt;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Longest reply text kept in a log line.
const LOG_REPLY: usize = 100;

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

impl From<UploadError> for Outcome {
    fn from(e: UploadError) -> Outcome {
        let outcome = Outcome::err(e.code(), e.message());
        match e.detail() {
            Some(detail) => outcome.detail(detail),
            None => outcome,
        }
    }
}

impl From<Accepted> for Outcome {
    fn from(accepted: Accepted) -> Outcome {
        let outcome = Outcome::ok(accepted.stored);
        match accepted.detail {
            Some(detail) => outcome.detail(detail),
            None => outcome,
        }
    }
}

/// One client connection, served on its own thread.
pub(super) struct Connection<'a> {
    shared: &'a Shared,
    reader: Reader<'a>,
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
    pub(super) fn new(
        shared: &'a Shared,
        stream: TcpStream,
        (id, progress): (u64, Arc<AtomicU64>),
        peer: String,
    ) -> io::Result<Connection<'a>> {
        let writer = stream.try_clone()?;
        let reader = Reader::new(stream, &shared.limits);
        Ok(Connection {
            shared,
            reader,
            writer,
            id,
            peer,
            progress,
        })
    }

    /// Answers requests until the client leaves, a reply closes the
    /// connection, or the server stops or evicts it.
    pub(super) fn serve(mut self) {
        let mut served = false;
        loop {
            if !self.shared.conns.set_idle(self.id, true) {
                return self.end("server is shutting down");
            }
            let deadline = Instant::now() + self.shared.limits.timeout;
            let line = self.reader.read_line(deadline);
            self.shared.conns.set_idle(self.id, false);
            let started = Instant::now();
            let (what, outcome) = match line {
                Ok(line) => self.request(&line),
                Err(LineError::Read(ReadError::Eof)) => {
                    if self.shared.conns.evicted(self.id) {
                        self.shared.metrics.evicted(Eviction::Idle);
                        let why = format_args!("evicted: idle longest while full");
                        crate::log::busy(&self.peer, why);
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
        crate::log::request(&crate::log::Request {
            peer: &self.peer,
            request: Some(what),
            reply: &format!("{shown}{ellipsis}"),
            ms: Some(started.elapsed().as_millis()),
            detail: outcome.detail.as_deref(),
        });
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
                let started = Instant::now();
                let outcome = self.upload(kind, name, size);
                // Taken back to zero: a SIZE refused unread reports none.
                let received = self.progress.swap(0, Ordering::Relaxed);
                let took = started.elapsed();
                shared.metrics.upload(kind, &outcome.reply, received, took);
                (what, outcome)
            }
        }
    }

    /// Receives, opens, classifies and files one upload.
    fn upload(&mut self, kind: Upload, raw_name: &[u8], size: u64) -> Outcome {
        if let Err(e) = upload::check_size(&self.shared.limits, size) {
            // The payload is not read: the connection closes instead.
            return Outcome::from(e).closing();
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
        let (name, _payload_memory) = match upload::admit(&shared.budget, raw_name, size) {
            Ok(admitted) => admitted,
            Err(e) => return self.refuse_payload(size, started, e.into()),
        };
        // `size` is at most `max_upload`, which was checked above; a budget
        // over the address space would have failed the reservation.
        let mut payload = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
        if let Err(e) = self
            .reader
            .read_payload(&mut payload, started, &self.progress)
        {
            return self.payload_failed(e);
        }
        match upload::process(shared, kind, name, &mut payload) {
            Ok(accepted) => accepted.into(),
            Err(e) => e.into(),
        }
    }

    /// Consumes a refused upload's payload, so the connection stays in step.
    fn refuse_payload(&mut self, size: u64, started: Instant, outcome: Outcome) -> Outcome {
        match self.reader.skip_payload(size, started, &self.progress) {
            Ok(()) => outcome,
            Err(e) => self.payload_failed(e),
        }
    }

    /// The reply to a payload that stopped arriving, and why, for the log.
    fn payload_failed(&self, e: ReadError) -> Outcome {
        match e {
            ReadError::Timeout => {
                Outcome::err(Code::Timeout, "payload not received in time").closing()
            }
            ReadError::Eof if self.shared.conns.evicted(self.id) => {
                self.shared.metrics.evicted(Eviction::SlowUpload);
                let why = format_args!("evicted: slowest upload while full");
                crate::log::busy(&self.peer, why);
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
}
