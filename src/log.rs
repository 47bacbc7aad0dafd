//! The server's log: one line per event on stderr, each with a UTC
//! timestamp, as text (`2026-11-28T08:48:51.123Z message`) or, with
//! [`Format::Json`], as one JSON object per line with the same fields. Log
//! lines carry peers, commands, sizes, results and timings; never key
//! material and never payload bytes. Untrusted text is escaped by the caller
//! (see [`crate::protocol::printable`]).
//!
//! A request is logged with [`request`], a connection turned away or closed
//! by the server with [`busy`] or [`closed`], a trusted upload's audit line
//! with [`audit`], everything else with [`log!`](crate::log!).
//! Answered `PING`s, which health checks send every few seconds, are not
//! logged one by one: they are counted, and written before the next other
//! line, or with the first `PING` at least [`PING_SUMMARY`] after the first
//! one counted: as one summary line of how many came from where, or, if
//! there was only one, as its own line.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Answered `PING`s are summarised at least this often.
pub const PING_SUMMARY: Duration = Duration::from_secs(60);
/// Addresses a `PING` summary names one by one; the rest are counted together.
const PING_PEERS: usize = 8;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `TIMESTAMP text`, as people read it.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Format {
    /// The format's name in settings: `text` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
        }
    }

    /// Parses a format's name.
    pub fn parse(name: &str) -> Option<Format> {
        [Format::Text, Format::Json]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Sets the format of every line written from now on.
pub fn set_format(format: Format) {
    JSON.store(format == Format::Json, Ordering::Relaxed);
}

fn format() -> Format {
    if JSON.load(Ordering::Relaxed) {
        Format::Json
    } else {
        Format::Text
    }
}

/// One answered (or unanswered) request, as its log line shows it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The client's address.
    pub peer: &'a str,
    /// The request, escaped; `None` for a connection turned away or closed
    /// before it made one (shown as `- -`).
    pub request: Option<&'a str>,
    /// The reply line, without its ending, or `(no reply)`; `None` for a
    /// connection closed without one being due.
    pub reply: Option<&'a str>,
    /// Time taken, in milliseconds.
    pub ms: Option<u128>,
    /// What the reply does not say; for the log only.
    pub detail: Option<&'a str>,
}

impl Request<'_> {
    fn is_ping(&self) -> bool {
        self.request == Some("PING") && self.reply == Some("OK PONG") && self.detail.is_none()
    }
}

/// Writes one line that is not about a request. A failing stderr is
/// ignored: logging must never take the server down.
pub fn line(args: fmt::Arguments<'_>) {
    write(Event::Message(args));
}

/// Logs a formatted line; see `log::line`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::line(format_args!($($arg)*)) };
}

/// Writes a request's line, or counts it towards the next `PING` summary.
pub fn request(r: &Request<'_>) {
    write(Event::Request(r));
}

/// Writes the line of a connection turned away, or closed for room, with
/// `ERR busy`: `PEER - - -> ERR busy (WHY)`.
pub fn busy(peer: &str, why: fmt::Arguments<'_>) {
    let why = why.to_string();
    request(&Request {
        peer,
        request: None,
        reply: Some("ERR busy"),
        ms: None,
        detail: Some(&why),
    });
}

/// Writes the line of a connection the server closed with no reply to
/// give: `PEER - - -> (WHY)`.
pub fn closed(peer: &str, why: fmt::Arguments<'_>) {
    let why = why.to_string();
    request(&Request {
        peer,
        request: None,
        reply: None,
        ms: None,
        detail: Some(&why),
    });
}

/// Writes the audit line of a trusted upload, after its request's line:
/// `PEER audit: WHAT`.
pub fn audit(peer: &str, what: &str) {
    write(Event::Audit { peer, what });
}

/// What one call writes.
enum Event<'a> {
    Message(fmt::Arguments<'a>),
    Request(&'a Request<'a>),
    Audit { peer: &'a str, what: &'a str },
}

/// Answered `PING`s not yet written.
struct Pings {
    count: u64,
    /// When the first of them was counted.
    first: Option<Instant>,
    /// The first one's time, peer and milliseconds, for its own line.
    first_line: Option<(SystemTime, String, u128)>,
    /// How many came from each address, first seen first.
    peers: Vec<(String, u64)>,
    /// How many came from addresses past the first [`PING_PEERS`].
    others: u64,
    /// The slowest one's time.
    max_ms: u128,
}

static PINGS: Mutex<Pings> = Mutex::new(Pings::new());

impl Pings {
    const fn new() -> Pings {
        Pings {
            count: 0,
            first: None,
            first_line: None,
            peers: Vec::new(),
            others: 0,
            max_ms: 0,
        }
    }

    /// Counts one answered `PING` from `peer` (an address with its port),
    /// at `time` (and `now`).
    fn add(&mut self, peer: &str, ms: u128, time: SystemTime, now: Instant) {
        // Health checks connect from a new port each time: count by address.
        let addr = peer.rsplit_once(':').map_or(peer, |(addr, _port)| addr);
        self.count += 1;
        self.first.get_or_insert(now);
        self.first_line
            .get_or_insert_with(|| (time, peer.to_string(), ms));
        self.max_ms = self.max_ms.max(ms);
        match self.peers.iter().position(|(a, _)| a == addr) {
            Some(i) => self.peers[i].1 += 1,
            None if self.peers.len() < PING_PEERS => self.peers.push((addr.to_string(), 1)),
            None => self.others += 1,
        }
    }

    /// The summary's fields, and the counts reset; `None` if nothing was
    /// counted.
    fn take(&mut self, now: Instant) -> Option<(Pings, Duration)> {
        let first = self.first?;
        let taken = std::mem::replace(self, Pings::new());
        Some((taken, now.saturating_duration_since(first)))
    }

    fn due(&self, now: Instant) -> bool {
        self.first
            .is_some_and(|first| now.saturating_duration_since(first) >= PING_SUMMARY)
    }
}

fn write(event: Event<'_>) {
    let (time, now) = (SystemTime::now(), Instant::now());
    // The lock is held while writing, so that counted PINGs come out before
    // the line that prompted them.
    let mut pings = PINGS.lock().unwrap_or_else(PoisonError::into_inner);
    let out = render(&mut pings, format(), &event, time, now);
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// What `event` writes at `time` (and `now`): nothing for an answered
/// `PING` that is not yet due, else the `PING`s counted so far, then the
/// event's own line.
fn render(
    pings: &mut Pings,
    format: Format,
    event: &Event<'_>,
    time: SystemTime,
    now: Instant,
) -> String {
    let mut out = String::new();
    let ping = match event {
        Event::Request(r) if r.is_ping() => {
            pings.add(r.peer, r.ms.unwrap_or(0), time, now);
            if !pings.due(now) {
                return out;
            }
            true
        }
        _ => false,
    };
    if let Some((summary, over)) = pings.take(now) {
        match &summary.first_line {
            Some((at, peer, ms)) if summary.count == 1 => {
                let r = Request {
                    peer,
                    request: Some("PING"),
                    reply: Some("OK PONG"),
                    ms: Some(*ms),
                    detail: None,
                };
                render_request(&mut out, format, *at, &r);
            }
            _ => render_pings(&mut out, format, time, &summary, over),
        }
    }
    match event {
        _ if ping => {}
        Event::Request(r) => render_request(&mut out, format, time, r),
        Event::Message(args) => render_message(&mut out, format, time, *args),
        Event::Audit { peer, what } => render_audit(&mut out, format, time, peer, what),
    }
    out
}

fn render_audit(out: &mut String, format: Format, time: SystemTime, peer: &str, what: &str) {
    match format {
        Format::Text => {
            let _ = writeln!(out, "{} {peer} audit: {what}", timestamp(time));
        }
        Format::Json => {
            let mut o = Object::new(out, time);
            o.str("peer", peer);
            o.str("audit", what);
            o.end();
        }
    }
}

fn render_message(out: &mut String, format: Format, time: SystemTime, args: fmt::Arguments<'_>) {
    match format {
        Format::Text => {
            let _ = writeln!(out, "{} {args}", timestamp(time));
        }
        Format::Json => {
            let mut o = Object::new(out, time);
            o.str("message", &args.to_string());
            o.end();
        }
    }
}

fn render_request(out: &mut String, format: Format, time: SystemTime, r: &Request<'_>) {
    match format {
        Format::Text => {
            let _ = write!(
                out,
                "{} {} {} ->",
                timestamp(time),
                r.peer,
                r.request.unwrap_or("- -"),
            );
            if let Some(reply) = r.reply {
                let _ = write!(out, " {reply}");
            }
            if let Some(ms) = r.ms {
                let _ = write!(out, " {ms}ms");
            }
            if let Some(d) = r.detail {
                let _ = write!(out, " ({d})");
            }
            out.push('\n');
        }
        Format::Json => {
            let mut o = Object::new(out, time);
            o.str("peer", r.peer);
            if let Some(request) = r.request {
                o.str("request", request);
            }
            if let Some(reply) = r.reply {
                o.str("reply", reply);
            }
            if let Some(ms) = r.ms {
                o.num("ms", ms);
            }
            if let Some(d) = r.detail {
                o.str("detail", d);
            }
            o.end();
        }
    }
}

/// `PING x12 -> OK PONG over 61s from 127.0.0.1 (10), 10.0.0.7 (2); longest 1ms`.
fn render_pings(out: &mut String, format: Format, time: SystemTime, p: &Pings, over: Duration) {
    let secs = over.as_secs();
    match format {
        Format::Text => {
            let _ = write!(
                out,
                "{} PING x{} -> OK PONG over {secs}s from ",
                timestamp(time),
                p.count
            );
            for (i, (addr, n)) in p.peers.iter().enumerate() {
                let comma = if i == 0 { "" } else { ", " };
                let _ = write!(out, "{comma}{addr} ({n})");
            }
            if p.others > 0 {
                let _ = write!(out, ", other addresses ({})", p.others);
            }
            let _ = writeln!(out, "; longest {}ms", p.max_ms);
        }
        Format::Json => {
            let mut o = Object::new(out, time);
            o.str("request", "PING");
            o.str("reply", "OK PONG");
            o.num("count", p.count);
            o.num("seconds", secs);
            o.key("peers");
            let mut peers = Object::open(o.out);
            for (addr, n) in &p.peers {
                peers.num(addr, n);
            }
            peers.close();
            if p.others > 0 {
                o.num("others", p.others);
            }
            o.num("max_ms", p.max_ms);
            o.end();
        }
    }
}

/// A JSON object being written.
struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    /// A log line's object, opened with its `time`.
    fn new(out: &'a mut String, time: SystemTime) -> Object<'a> {
        let mut o = Object::open(out);
        o.str("time", &timestamp(time));
        o
    }

    fn open(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        json_string(self.out, key);
        self.out.push(':');
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        json_string(self.out, value);
    }

    fn num(&mut self, key: &str, value: impl fmt::Display) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn close(self) {
        self.out.push('}');
    }

    /// Closes the object and ends the line.
    fn end(self) {
        self.out.push_str("}\n");
    }
}

/// Appends `s` as a JSON string: quotes, backslashes and control characters
/// escaped (RFC 8259, section 7; DEL and the C1 controls too, which JSON
/// allows raw but a terminal would act on); everything else as it is.
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The time a log line starts with: `2026-11-28T08:48:51.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    crate::calendar::iso8601_millis(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn timestamps() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_795_769_331, "2026-11-27T08:48:51.000Z"),
            (4_102_444_799, "2099-12-31T23:59:59.000Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
        assert!(timestamp(UNIX_EPOCH + Duration::from_millis(1_234)).ends_with("01.234Z"));
    }

    const T: &str = "2026-11-27T08:48:51.000Z";

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_769_331)
    }

    fn req<'a>(
        request: Option<&'a str>,
        reply: impl Into<Option<&'a str>>,
        ms: Option<u128>,
        detail: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            peer: "127.0.0.1:40694",
            request,
            reply: reply.into(),
            ms,
            detail,
        }
    }

    #[test]
    fn request_lines_in_both_formats() {
        // (request, text line, JSON line), the timestamp left out of both.
        let cases = [
            (
                req(Some("STATS"), "OK red=0", Some(0), None),
                "127.0.0.1:40694 STATS -> OK red=0 0ms",
                r#""peer":"127.0.0.1:40694","request":"STATS","reply":"OK red=0","ms":0"#,
            ),
            (
                req(
                    Some(r"PUT \xe6.bmp 6862"),
                    "OK not_trusted/_.bmp r=30.0",
                    Some(8),
                    Some("class blue"),
                ),
                r"127.0.0.1:40694 PUT \xe6.bmp 6862 -> OK not_trusted/_.bmp r=30.0 8ms (class blue)",
                r#""peer":"127.0.0.1:40694","request":"PUT \\xe6.bmp 6862","reply":"OK not_trusted/_.bmp r=30.0","ms":8,"detail":"class blue""#,
            ),
            (
                req(None, "ERR busy", None, Some("connection limit 1")),
                "127.0.0.1:40694 - - -> ERR busy (connection limit 1)",
                r#""peer":"127.0.0.1:40694","reply":"ERR busy","detail":"connection limit 1""#,
            ),
            (
                req(None, None, None, Some("closed: reply not read within 1.0s")),
                "127.0.0.1:40694 - - -> (closed: reply not read within 1.0s)",
                r#""peer":"127.0.0.1:40694","detail":"closed: reply not read within 1.0s""#,
            ),
            (
                req(
                    Some("-"),
                    "(no reply)",
                    Some(3),
                    Some("a \"quote\"\n\t\u{1}"),
                ),
                "127.0.0.1:40694 - -> (no reply) 3ms (a \"quote\"\n\t\u{1})",
                r#""peer":"127.0.0.1:40694","request":"-","reply":"(no reply)","ms":3,"detail":"a \"quote\"\n\t\u0001""#,
            ),
        ];
        for (r, text, json) in cases {
            let mut out = String::new();
            render_request(&mut out, Format::Text, at(), &r);
            assert_eq!(out, format!("{T} {text}\n"));
            let mut out = String::new();
            render_request(&mut out, Format::Json, at(), &r);
            assert_eq!(out, format!("{{\"time\":\"{T}\",{json}}}\n"));
        }
    }

    #[test]
    fn messages_in_both_formats() {
        let mut out = String::new();
        render_message(&mut out, Format::Text, at(), format_args!("stopped {}", 1));
        assert_eq!(out, format!("{T} stopped 1\n"));
        let mut out = String::new();
        render_message(&mut out, Format::Json, at(), format_args!("a\\b \"c\""));
        assert_eq!(
            out,
            format!("{{\"time\":\"{T}\",\"message\":\"a\\\\b \\\"c\\\"\"}}\n")
        );
    }

    #[test]
    fn audit_lines_in_both_formats() {
        let what = r"filed red/x.png sha256:ab signer=bob\x20\xc3\xa9quipe key=SHA256:k/+= namespace=colorsort";
        let mut out = String::new();
        render_audit(&mut out, Format::Text, at(), "127.0.0.1:40694", what);
        assert_eq!(out, format!("{T} 127.0.0.1:40694 audit: {what}\n"));
        let mut out = String::new();
        render_audit(&mut out, Format::Json, at(), "127.0.0.1:40694", what);
        assert_eq!(
            out,
            format!(
                "{{\"time\":\"{T}\",\"peer\":\"127.0.0.1:40694\",\"audit\":\"{}\"}}\n",
                what.replace('\\', "\\\\")
            )
        );
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let cases = [
            ("plain", r#""plain""#),
            ("\"\\/", r#""\"\\/""#),
            ("\u{0}\u{1f}\u{7f}\u{85}", r#""\u0000\u001f\u007f\u0085""#),
            ("\r\n\t", r#""\r\n\t""#),
            ("日本 \u{2028}", "\"日本 \u{2028}\""),
        ];
        for (input, want) in cases {
            let mut out = String::new();
            json_string(&mut out, input);
            assert_eq!(out, want, "{input:?}");
        }
    }

    #[test]
    fn pings_are_counted_by_address_and_due_after_the_period() {
        let start = Instant::now();
        let mut p = Pings::new();
        assert!(p.take(start).is_none(), "nothing counted, nothing to say");
        for (i, peer) in ["127.0.0.1:1", "127.0.0.1:2", "[::1]:3", "10.0.0.7:4"]
            .into_iter()
            .enumerate()
        {
            p.add(peer, i as u128, at(), start + Duration::from_secs(i as u64));
        }
        for n in 0..PING_PEERS + 2 {
            p.add(&format!("10.1.0.{n}:9"), 0, at(), start);
        }
        assert!(!p.due(start + PING_SUMMARY - Duration::from_millis(1)));
        assert!(p.due(start + PING_SUMMARY));
        let (summary, over) = p.take(start + Duration::from_secs(61)).unwrap();
        assert!(p.take(start).is_none(), "taking resets the counts");
        assert_eq!(over, Duration::from_secs(61));
        let mut out = String::new();
        render_pings(&mut out, Format::Text, at(), &summary, over);
        assert_eq!(
            out,
            format!(
                "{T} PING x{} -> OK PONG over 61s from 127.0.0.1 (2), [::1] (1), 10.0.0.7 (1), \
                 10.1.0.0 (1), 10.1.0.1 (1), 10.1.0.2 (1), 10.1.0.3 (1), 10.1.0.4 (1), \
                 other addresses (5); longest 3ms\n",
                4 + PING_PEERS + 2
            )
        );
        let mut out = String::new();
        render_pings(&mut out, Format::Json, at(), &summary, over);
        assert!(
            out.starts_with(&format!(
                "{{\"time\":\"{T}\",\"request\":\"PING\",\"reply\":\"OK PONG\",\"count\":14,\
                 \"seconds\":61,\"peers\":{{\"127.0.0.1\":2,\"[::1]\":1,\"10.0.0.7\":1,"
            )),
            "{out}"
        );
        assert!(
            out.ends_with("\"10.1.0.4\":1},\"others\":5,\"max_ms\":3}\n"),
            "{out}"
        );
    }

    #[test]
    fn pings_wait_for_the_next_line_or_the_period() {
        let start = Instant::now();
        let ping = req(Some("PING"), "OK PONG", Some(1), None);
        let stats = req(Some("STATS"), "OK red=0", Some(0), None);
        let later = |secs| {
            (
                at() + Duration::from_secs(secs),
                start + Duration::from_secs(secs),
            )
        };
        let mut p = Pings::new();
        let mut step = |event: &Event<'_>, secs| {
            let (time, now) = later(secs);
            render(&mut p, Format::Text, event, time, now)
        };
        // One PING, then another line: the PING's own line, at its own time.
        assert_eq!(step(&Event::Request(&ping), 0), "");
        assert_eq!(
            step(&Event::Request(&stats), 5),
            format!(
                "{T} 127.0.0.1:40694 PING -> OK PONG 1ms\n\
                 2026-11-27T08:48:56.000Z 127.0.0.1:40694 STATS -> OK red=0 0ms\n"
            )
        );
        // Two, then a message: the summary first.
        assert_eq!(step(&Event::Request(&ping), 10), "");
        assert_eq!(step(&Event::Request(&ping), 20), "");
        assert_eq!(
            step(&Event::Message(format_args!("stopped")), 30),
            "2026-11-27T08:49:21.000Z PING x2 -> OK PONG over 20s from 127.0.0.1 (2); longest 1ms\n\
             2026-11-27T08:49:21.000Z stopped\n"
        );
        // Only PINGs: the one that comes a period after the first says it.
        assert_eq!(step(&Event::Request(&ping), 100), "");
        assert_eq!(step(&Event::Request(&ping), 159), "");
        assert_eq!(
            step(&Event::Request(&ping), 160),
            "2026-11-27T08:51:31.000Z PING x3 -> OK PONG over 60s from 127.0.0.1 (3); longest 1ms\n"
        );
        assert_eq!(
            step(&Event::Request(&stats), 161),
            "2026-11-27T08:51:32.000Z 127.0.0.1:40694 STATS -> OK red=0 0ms\n"
        );
    }

    #[test]
    fn only_answered_pings_are_summarised() {
        let cases = [
            (req(Some("PING"), "OK PONG", Some(0), None), true),
            (req(Some("PING"), "(no reply)", Some(0), None), false),
            (
                req(Some("PING extra"), "ERR bad-request x", Some(0), None),
                false,
            ),
            (req(Some("PING"), "OK PONG", Some(0), Some("x")), false),
            (req(Some("STATS"), "OK PONG", Some(0), None), false),
        ];
        for (r, ping) in cases {
            assert_eq!(r.is_ping(), ping, "{r:?}");
        }
    }

    #[test]
    fn formats_parse_by_name() {
        for f in [Format::Text, Format::Json] {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("JSON"), None);
        assert_eq!(Format::parse(""), None);
    }
}
