//! One client connection, served on its own thread: the request loop, the
//! reply to each request (written whole before a deadline), what becomes of
//! the connection after it, and the log line and metrics for each. Uploads
//! are received here, a signed `SEAL`'s signature before its payload, into
//! memory reserved as their bytes arrive, and handed to [`upload`] for
//! everything past the socket, with the connection's [`Hold`] on the
//! server's memory and filing as its handle.

use super::Shared;
use super::hold::Hold;
use super::reader::{LineError, PayloadError, ReadError, Reader};
use super::registry::Activity;
use super::upload::{self, Accepted, Pipeline, UploadError};
use super::writer::{WriteError, Writer};
use crate::metrics::{Eviction, UploadResult};
use crate::name::{self, Name};
use crate::protocol::{self, Code, Request, Upload};
use crate::sandbox::{self, Memory};
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

/// Longest reply text kept in a log line.
const LOG_REPLY: usize = 100;

/// How a request ended, for the reply, the log, the metrics and the
/// connection.
struct Outcome {
    reply: String,
    /// What the reply says became of an upload, for the metrics: every
    /// outcome an upload can have says it (all but [`Outcome::ok`]'s).
    result: Option<UploadResult>,
    /// What happened, for the log only (never sent: it may name paths).
    detail: Option<String>,
    /// A line of its own for the log, after the request's.
    audit: Option<String>,
    after: After,
    /// The request was an upload, which may have begun filing: the
    /// registry is told once its reply is written.
    filing: bool,
}

/// What happens to the connection after the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Read the next request.
    Continue,
    /// Shut the write side, drain input briefly, close.
    Linger,
    /// The connection was evicted: send the reply without waiting for the
    /// client to read it, then close lingeringly.
    TurnAway,
    /// The client is gone (EOF or I/O error mid-request): close silently.
    Gone,
}

impl Outcome {
    fn ok(text: impl fmt::Display) -> Outcome {
        Outcome {
            reply: protocol::ok(&text.to_string()),
            result: None,
            detail: None,
            audit: None,
            after: After::Continue,
            filing: false,
        }
    }

    fn err(code: Code, message: impl fmt::Display) -> Outcome {
        Outcome {
            reply: protocol::err(code, &message.to_string()),
            result: Some(UploadResult::Refused(code)),
            detail: None,
            audit: None,
            after: After::Continue,
            filing: false,
        }
    }

    fn gone(detail: impl fmt::Display) -> Outcome {
        Outcome {
            reply: String::new(),
            result: Some(UploadResult::Aborted),
            detail: Some(detail.to_string()),
            audit: None,
            after: After::Gone,
            filing: false,
        }
    }

    fn closing(mut self) -> Outcome {
        self.after = After::Linger;
        self
    }

    fn turning_away(mut self) -> Outcome {
        self.after = After::TurnAway;
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
        let result = UploadResult::Stored {
            folder: accepted.folder,
            dup: accepted.stored.dup,
        };
        let mut outcome = Outcome::ok(accepted.stored);
        outcome.result = Some(result);
        outcome.audit = accepted.audit;
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
    writer: Writer,
    id: u64,
    peer: String,
    /// What this connection reports to the registry without its lock:
    /// payload progress and memory, and replies being written, which the
    /// registry reads to pick whom to evict.
    activity: Arc<Activity>,
}

impl<'a> Connection<'a> {
    /// Splits the socket into a buffered reader and a writer; fails only if
    /// the process is out of file descriptors.
    pub(super) fn new(
        shared: &'a Shared,
        stream: TcpStream,
        (id, activity): (u64, Arc<Activity>),
        peer: String,
    ) -> io::Result<Connection<'a>> {
        let writer = Writer::new(stream.try_clone()?, shared.limits.timeout);
        let reader = Reader::new(stream, &shared.limits, &shared.metrics);
        Ok(Connection {
            shared,
            reader,
            writer,
            id,
            peer,
            activity,
        })
    }

    /// Answers requests until the client leaves, a reply closes the
    /// connection, or the server stops or evicts it.
    pub(super) fn serve(mut self) {
        let mut served = false;
        loop {
            // A client whose next request is read already is not waiting on
            // us: evicting it as idle would cut off requests it has made. One
            // with only part of a line read is idle, so that trickling a line
            // holds no slot against a newcomer.
            let idle = !self.reader.holds_line();
            if !self.shared.conns.set_idle(self.id, idle) {
                return self.end("server is shutting down");
            }
            let deadline = Instant::now() + self.shared.limits.timeout;
            let line = self.reader.read_line(deadline);
            self.shared.conns.set_idle(self.id, false);
            let started = Instant::now();
            let (what, outcome) = match line {
                // Closed even with a request line read: the kernel hands
                // over what it held when the read side was shut, and the
                // newcomer that evicted this connection waits for its slot.
                Ok(_) | Err(LineError::Read(ReadError::Eof))
                    if self.shared.conns.evicted(self.id) == Some(Eviction::Idle) =>
                {
                    self.shared.metrics.evicted(Eviction::Idle);
                    let why = format_args!("evicted: idle longest while full");
                    crate::log::busy(&self.peer, why);
                    return self.end("server is full; closed the connection idle longest");
                }
                Ok(line) => self.request(&line),
                Err(LineError::Read(ReadError::Eof)) => {
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
            let written = match after {
                _ if outcome.reply.is_empty() => Ok(()),
                After::TurnAway => Ok(()),
                _ => self.write_reply(&outcome.reply),
            };
            if outcome.filing {
                self.shared.conns.end_filing(self.id);
            }
            self.log(&what, &outcome, started);
            if let Err(e) = written {
                return self.unwritten(e);
            }
            match after {
                After::Continue => {
                    if !served {
                        served = true;
                        self.shared.conns.mark_served(self.id);
                    }
                }
                After::Linger => return self.shared.closer.linger(self.writer.into_inner()),
                After::TurnAway => {
                    return self
                        .shared
                        .turn_away(self.writer.into_inner(), &outcome.reply);
                }
                After::Gone => return,
            }
        }
    }

    /// Writes one reply whole within the timeout, telling the registry
    /// while it waits for the client to read.
    fn write_reply(&mut self, reply: &str) -> Result<(), WriteError> {
        self.activity.set_writing(true);
        let deadline = Instant::now() + self.shared.limits.timeout;
        let written = self.writer.write_all_by(reply.as_bytes(), deadline);
        self.activity.set_writing(false);
        written
    }

    /// Logs why a reply was not written, if it was the server's doing; the
    /// connection then closes.
    fn unwritten(&self, e: WriteError) {
        match e {
            WriteError::Timeout => {
                let secs = self.shared.limits.timeout.as_secs_f64();
                crate::log::closed(
                    &self.peer,
                    format_args!("closed: reply not read within {secs:.1}s"),
                );
            }
            WriteError::Failed if self.shared.conns.evicted(self.id) == Some(Eviction::Unread) => {
                self.shared.metrics.evicted(Eviction::Unread);
                let why = format_args!("evicted: reply unread longest while full");
                crate::log::closed(&self.peer, why);
            }
            WriteError::Failed => {}
        }
    }

    /// Sends a last `ERR busy` line, then closes lingeringly.
    fn end(self, why: &str) {
        self.shared
            .turn_away(self.writer.into_inner(), &protocol::err(Code::Busy, why));
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
            reply: Some(&format!("{shown}{ellipsis}")),
            ms: Some(started.elapsed().as_millis()),
            detail: outcome.detail.as_deref(),
        });
        if let Some(audit) = &outcome.audit {
            crate::log::audit(&self.peer, audit);
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
            Request::Policy => {
                let policy = protocol::Policy {
                    signers: shared.senders.current().is_some(),
                    namespace: shared.namespace.clone(),
                };
                ("POLICY".into(), Outcome::ok(policy))
            }
            Request::Upload {
                kind,
                name,
                size,
                sigsize,
            } => {
                let mut what = format!(
                    "{} {} {size}",
                    kind.verb(),
                    protocol::printable(name, name::MAX_NAME)
                );
                if let Some(sigsize) = sigsize {
                    what.push_str(&format!(" {sigsize}"));
                }
                let started = Instant::now();
                let outcome = self.upload(kind, name, size, sigsize);
                let took = started.elapsed();
                if let Some(result) = outcome.result {
                    shared.metrics.upload(kind, sigsize.is_some(), result, took);
                }
                (what, outcome)
            }
        }
    }

    /// Receives, opens, classifies and files one upload: `sigsize` bytes of
    /// signature, if given, then `size` bytes of payload.
    fn upload(
        &mut self,
        kind: Upload,
        raw_name: &[u8],
        size: u64,
        sigsize: Option<usize>,
    ) -> Outcome {
        let sigsize = sigsize.unwrap_or(0);
        if let Err(e) = upload::check_size(&self.shared.limits, size, sigsize) {
            // Nothing more is read: the connection closes instead.
            return Outcome::from(e).closing();
        }
        let started = Instant::now();
        self.activity.set_progress(0, 0);
        // The signature and the payload are one transfer, held to one
        // moving deadline and watched as one by the registry.
        let total = size + sigsize as u64;
        self.shared
            .conns
            .set_payload(self.id, Some((started, total)));
        let mut outcome = self.receive(kind, raw_name, (size, sigsize), started);
        self.activity.set_progress(0, 0);
        self.shared.conns.set_payload(self.id, None);
        // Whether or not it got as far as filing: ended once answered.
        outcome.filing = true;
        outcome
    }

    /// The rest of [`Connection::upload`], once SIZE is known to be within
    /// the limit and the signature and payload (from `started`) are being
    /// received. A signature (`sigsize` > 0) is read and parsed first; if
    /// it is refused, the payload is still consumed.
    fn receive(
        &mut self,
        kind: Upload,
        raw_name: &[u8],
        (size, sigsize): (u64, usize),
        started: Instant,
    ) -> Outcome {
        let shared = self.shared;
        let total = size + sigsize as u64;
        let name = match Name::parse(raw_name) {
            Ok(name) => name,
            Err(e) => return self.refuse_payload(total, 0, started, UploadError::BadName(e)),
        };
        // Nothing is reserved until bytes arrive; then as much as a buffer
        // grows by, each time it must. One reservation holds the signature
        // and the payload.
        let handle = Hold::new(shared, self.id);
        let mut memory = shared.guards.budget.empty();
        let signed = if sigsize > 0 {
            let mut armored = Vec::new();
            let read = self.reader.read_payload(
                &mut armored,
                sigsize as u64,
                (started, 0),
                &self.activity,
                |more| handle.grow(&mut memory, more),
            );
            match read {
                Ok(()) => {}
                Err(PayloadError::NoMemory { received }) => {
                    drop((armored, memory));
                    return self.refuse_payload(
                        total,
                        received,
                        started,
                        UploadError::NoPayloadMemory,
                    );
                }
                Err(PayloadError::Read(e)) => return self.payload_failed(e),
            }
            match upload::parse_signature(armored) {
                Ok(signed) => Some(signed),
                Err(e) => {
                    drop(memory);
                    return self.refuse_payload(total, sigsize as u64, started, e);
                }
            }
        } else {
            None
        };
        let before = sigsize as u64;
        let mut payload = Vec::new();
        let read = self.reader.read_payload(
            &mut payload,
            size,
            (started, before),
            &self.activity,
            |more| handle.grow(&mut memory, more),
        );
        match read {
            Ok(()) => {}
            Err(PayloadError::NoMemory { received }) => {
                drop((payload, signed, memory));
                return self.refuse_payload(
                    total,
                    before + received,
                    started,
                    UploadError::NoPayloadMemory,
                );
            }
            Err(PayloadError::Read(e)) => return self.payload_failed(e),
        }
        let known = shared.senders.current();
        let pipeline = Pipeline {
            identity: &shared.identity,
            namespace: &shared.namespace,
            known: known.as_deref(),
            store: &shared.store,
            workers: &shared.workers,
            max_pixels: shared.limits.max_pixels,
        };
        match upload::process(
            &pipeline,
            &handle,
            kind,
            name,
            &mut payload,
            signed.as_ref(),
        ) {
            Ok(accepted) => accepted.into(),
            Err(e) => {
                if let UploadError::Decode(sandbox::Error::Worker(failure)) = &e {
                    shared.metrics.worker_failed(*failure);
                }
                e.into()
            }
        }
    }

    /// Consumes the rest of a refused upload of `size` bytes (signature
    /// and payload), of which `received` were read, so the connection stays
    /// in step.
    fn refuse_payload(
        &mut self,
        size: u64,
        received: u64,
        started: Instant,
        refusal: UploadError,
    ) -> Outcome {
        match self
            .reader
            .skip_payload(size, received, started, &self.activity)
        {
            Ok(()) => refusal.into(),
            Err(e) => self.payload_failed(e),
        }
    }

    /// The reply to a payload that stopped arriving, and why, for the log.
    fn payload_failed(&self, e: ReadError) -> Outcome {
        match e {
            ReadError::Timeout => {
                Outcome::err(Code::Timeout, "payload not received in time").closing()
            }
            ReadError::Eof => match self.shared.conns.evicted(self.id) {
                Some(why) => {
                    self.shared.metrics.evicted(why);
                    let (message, detail) = match why {
                        Eviction::Memory => (
                            "server is out of memory; closed the upload furthest behind the minimum rate",
                            "evicted: slowest upload while memory was short",
                        ),
                        _ => (
                            "server is full; closed the upload furthest behind the minimum rate",
                            "evicted: slowest upload while full",
                        ),
                    };
                    Outcome::err(Code::Busy, message)
                        .detail(detail)
                        .turning_away()
                }
                None if self.shared.conns.stopping() => {
                    Outcome::gone("connection ended mid-payload while the server was stopping")
                }
                None => Outcome::gone("client closed the connection mid-payload"),
            },
            ReadError::Io(e) => Outcome::gone(format_args!("read failed mid-payload: {e}")),
        }
    }
}
