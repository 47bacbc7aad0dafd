//! The metrics responder: a minimal HTTP/1.1 server for one page, as strict
//! as the line protocol. One request per connection (`Connection: close`),
//! its head (request line and headers) capped at [`METRICS_MAX_REQUEST`] and
//! due whole within the server's timeout; at most
//! [`METRICS_MAX_CONNECTIONS`] served at once. `GET` and `HEAD` of
//! `/metrics` are answered; anything else gets its status: `400` for what
//! does not parse (bare line feeds, folded or malformed headers, a missing
//! `Host`, a body), `404` for another path, `405` for another method, `408`
//! for a head that came too slowly, `431` for one too large, `503` past the
//! connection cap, `505` for another HTTP version.

use crate::calendar::http_date;
use crate::config::{LINGER, METRICS_MAX_CONNECTIONS, METRICS_MAX_REQUEST};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The only path served.
pub const PATH: &str = "/metrics";

/// A rendered page, made afresh for every request.
type PageFn = dyn Fn() -> String + Send + Sync;

/// A bound metrics listener, ready to [`spawn`](Responder::spawn).
pub struct Responder {
    listener: TcpListener,
    timeout: Duration,
}

impl Responder {
    /// Binds `addr`. Each request's head must arrive within `timeout`, and
    /// each write of its response must progress within it.
    pub fn bind(addr: SocketAddr, timeout: Duration) -> io::Result<Responder> {
        Ok(Responder {
            listener: TcpListener::bind(addr)?,
            timeout,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `page` from a thread of its own, for as long as the process
    /// runs.
    pub fn spawn(self, page: impl Fn() -> String + Send + Sync + 'static) -> io::Result<()> {
        let page: Arc<PageFn> = Arc::new(page);
        thread::Builder::new()
            .name("metrics".into())
            .spawn(move || self.run(&page))?;
        Ok(())
    }

    fn run(self, page: &Arc<PageFn>) {
        let active = Arc::new(AtomicUsize::new(0));
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else {
                // Out of descriptors: give connections time to close.
                thread::sleep(Duration::from_millis(50));
                continue;
            };
            if active.fetch_add(1, Ordering::AcqRel) >= METRICS_MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                // A fresh socket's buffer takes a short response whole:
                // this write does not block the accept loop.
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = (&stream).write_all(&response(
                    Status::Unavailable,
                    false,
                    Status::Unavailable.body(),
                ));
                let _ = stream.shutdown(Shutdown::Write);
                continue;
            }
            let counted = Counted(Arc::clone(&active));
            let (page, timeout) = (Arc::clone(page), self.timeout);
            // If the thread cannot start, the closure is dropped, and the
            // count with it.
            let _ = thread::Builder::new()
                .name("metrics-conn".into())
                .spawn(move || {
                    let _counted = counted;
                    serve(stream, timeout, &*page);
                });
        }
    }
}

/// A connection counted against [`METRICS_MAX_CONNECTIONS`] until dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers one connection's one request, then closes it.
fn serve(mut stream: TcpStream, timeout: Duration, page: &PageFn) {
    let (judged, head_only) = match read_head(&mut stream, Instant::now() + timeout) {
        // A response to HEAD has no body, whatever its status: a refused
        // request's method is known by its first word.
        Ok(head) => (parse(&head), head.starts_with(b"HEAD ")),
        Err(HeadError::Gone) => return,
        Err(HeadError::Status(status)) => (Err(status), false),
    };
    let bytes = match judged {
        Ok(method) => response(Status::Ok, method == Method::Head, &page()),
        Err(status) => response(status, head_only, status.body()),
    };
    if stream.set_write_timeout(Some(timeout)).is_err() || stream.write_all(&bytes).is_err() {
        return;
    }
    close(stream);
}

/// Shuts the write side and drains what the client still sends, briefly,
/// so that unread input does not turn the close into a reset that destroys
/// the response.
fn close(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// An HTTP status this responder sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeadersTooLarge,
    Unavailable,
    VersionNotSupported,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::RequestTimeout => "408 Request Timeout",
            Status::HeadersTooLarge => "431 Request Header Fields Too Large",
            Status::Unavailable => "503 Service Unavailable",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Status::Ok => "",
            Status::BadRequest => "bad request\n",
            Status::NotFound => "not found: the metrics are at /metrics\n",
            Status::MethodNotAllowed => "method not allowed: GET or HEAD\n",
            Status::RequestTimeout => "the request did not arrive in time\n",
            Status::HeadersTooLarge => "request head too large\n",
            Status::Unavailable => "too many metrics requests at once; try again later\n",
            Status::VersionNotSupported => "HTTP/1.1 or HTTP/1.0 only\n",
        }
    }
}

/// The whole response: status line, headers and, unless `head_only`, the
/// body.
fn response(status: Status, head_only: bool, body: &str) -> Vec<u8> {
    let content_type = match status {
        Status::Ok => super::CONTENT_TYPE,
        _ => "text/plain; charset=utf-8",
    };
    let allow = match status {
        Status::MethodNotAllowed => "Allow: GET, HEAD\r\n",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nDate: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n",
        status.line(),
        http_date(SystemTime::now()),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Why no request head was read.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The client closed or the socket failed before sending anything, or
    /// failed midway: nobody to answer.
    Gone,
    /// Answer with this status and close.
    Status(Status),
}

/// Reads a request head, up to and with its empty line, before `deadline`.
/// Bytes after it (a body, a second request) are left unread.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Status(Status::RequestTimeout));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Gone)?;
        let room = (METRICS_MAX_REQUEST + 1 - head.len()).min(chunk.len());
        let n = match stream.read(&mut chunk[..room]) {
            Ok(0) if head.is_empty() => return Err(HeadError::Gone),
            Ok(0) => return Err(HeadError::Status(Status::BadRequest)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return Err(HeadError::Gone),
        };
        let searched = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&head[searched..], b"\r\n\r\n") {
            head.truncate(searched + end + 4);
            return Ok(head);
        }
        if has_bare_lf(&head) {
            return Err(HeadError::Status(Status::BadRequest));
        }
        if head.len() > METRICS_MAX_REQUEST {
            return Err(HeadError::Status(Status::HeadersTooLarge));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A line feed not preceded by a carriage return: HTTP lines end in CRLF.
fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// The methods answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
}

/// Judges a whole request head (ending in an empty line): the method to
/// answer `/metrics` with, or the status that refuses it.
fn parse(head: &[u8]) -> Result<Method, Status> {
    use Status::BadRequest;
    if has_bare_lf(head) {
        return Err(BadRequest);
    }
    let text = head.strip_suffix(b"\r\n\r\n").ok_or(BadRequest)?;
    let mut lines = text.split(|&b| b == b'\n').map(|l| {
        // Every line but the last had its CR before the LF split off; the
        // last had it stripped with the empty line.
        l.strip_suffix(b"\r").unwrap_or(l)
    });
    let request_line = lines.next().ok_or(BadRequest)?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(BadRequest);
    }
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(BadRequest);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Status::VersionNotSupported);
        }
        _ => return Err(BadRequest),
    };
    let mut hosts = 0;
    let mut body = false;
    for line in lines {
        let (name, value) = header(line).ok_or(BadRequest)?;
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(BadRequest);
            }
            body |= value.iter().any(|&b| b != b'0');
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            body = true;
        }
    }
    // RFC 9112, section 3.2: an HTTP/1.1 request has exactly one Host.
    if hosts > 1 || (http11 && hosts == 0) {
        return Err(BadRequest);
    }
    if path(target) != Some(PATH.as_bytes()) {
        return Err(Status::NotFound);
    }
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => return Err(Status::MethodNotAllowed),
    };
    // A request body is never read, and the metrics take none.
    if body {
        return Err(BadRequest);
    }
    Ok(method)
}

/// The path of a request target in origin form (`/metrics?x`) or absolute
/// form (`http://host:9100/metrics`); `None` for other forms.
fn path(target: &[u8]) -> Option<&[u8]> {
    let target = target.split(|&b| b == b'?').next().unwrap_or(target);
    if target.starts_with(b"/") {
        return Some(target);
    }
    let lower = target.to_ascii_lowercase();
    let rest = [&b"http://"[..], b"https://"]
        .iter()
        .find_map(|scheme| lower.starts_with(scheme).then(|| &target[scheme.len()..]))?;
    Some(
        rest.iter()
            .position(|&b| b == b'/')
            .map_or(b"/", |i| &rest[i..]),
    )
}

/// Splits a header line into its name and value, without the value's
/// surrounding blanks; `None` if it is not a well-formed header (no colon,
/// a name that is not a token, a folded line, control characters).
fn header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return None;
    }
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    Some((name, &value[start..end]))
}

/// A character of an HTTP token (RFC 9110, section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        use Status::{BadRequest, MethodNotAllowed, NotFound, VersionNotSupported};
        let ok = Result::<Method, Status>::Ok;
        let cases: &[(&str, Result<Method, Status>)] = &[
            ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", ok(Method::Get)),
            (
                "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                ok(Method::Head),
            ),
            ("GET /metrics HTTP/1.0\r\n\r\n", ok(Method::Get)),
            (
                "GET /metrics?a=b HTTP/1.1\r\nhost:x\r\n\r\n",
                ok(Method::Get),
            ),
            (
                "GET http://h:9100/metrics HTTP/1.1\r\nHost: h\r\n\r\n",
                ok(Method::Get),
            ),
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;q=0.4,*/*\r\n\
                 User-Agent: Prometheus/2.42.0\r\nContent-Length: 0\r\n\r\n",
                ok(Method::Get),
            ),
            (
                "GET /metrics HTTP/1.1\r\nHost:\tx \t\r\n\r\n",
                ok(Method::Get),
            ),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", Err(NotFound)),
            ("GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n", Err(NotFound)),
            ("GET /Metrics HTTP/1.1\r\nHost: x\r\n\r\n", Err(NotFound)),
            ("GET * HTTP/1.1\r\nHost: x\r\n\r\n", Err(NotFound)),
            ("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", Err(NotFound)),
            (
                "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                Err(MethodNotAllowed),
            ),
            (
                "get /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                Err(MethodNotAllowed),
            ),
            ("DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", Err(NotFound)),
            (
                "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n",
                Err(VersionNotSupported),
            ),
            ("GET /metrics HTTP/1.1\r\n\r\n", Err(BadRequest)),
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
                Err(BadRequest),
            ),
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
                Err(BadRequest),
            ),
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                Err(BadRequest),
            ),
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(BadRequest),
            ),
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
                Err(BadRequest),
            ),
            ("GET /metrics HTTP/1.1\r\nHost x\r\n\r\n", Err(BadRequest)),
            ("GET /metrics HTTP/1.1\r\nHo st: x\r\n\r\n", Err(BadRequest)),
            (
                "GET /metrics HTTP/1.1\r\nHost: x\u{1}\r\n\r\n",
                Err(BadRequest),
            ),
            (
                "GET /metrics HTTP/1.1\r\nHost: x\ry\r\n\r\n",
                Err(BadRequest),
            ),
            ("GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Err(BadRequest)),
            ("GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n", Err(BadRequest)),
            ("GET /metrics\r\nHost: x\r\n\r\n", Err(BadRequest)),
            ("GET /met rics HTTP/1.1\r\nHost: x\r\n\r\n", Err(BadRequest)),
            ("GET /m\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n", Err(BadRequest)),
            ("GET /metrics HTTP/1.10\r\nHost: x\r\n\r\n", Err(BadRequest)),
            ("GET /metrics http/1.1\r\nHost: x\r\n\r\n", Err(BadRequest)),
            (
                "\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                Err(BadRequest),
            ),
            ("\u{16}\u{3}\u{1}\u{2}\u{0}\r\n\r\n", Err(BadRequest)),
            ("\r\n\r\n", Err(BadRequest)),
            ("GET /metrics HTTP/1.1\nHost: x\r\n\r\n", Err(BadRequest)),
        ];
        for (head, want) in cases {
            assert_eq!(parse(head.as_bytes()), *want, "{head:?}");
        }
    }

    #[test]
    fn bare_line_feeds() {
        let cases = [
            ("GET / HTTP/1.1\r\n", false),
            ("GET / HTTP/1.1\n", true),
            ("\n", true),
            ("a\r\nb\r\n\n", true),
            ("no line end", false),
        ];
        for (bytes, bare) in cases {
            assert_eq!(has_bare_lf(bytes.as_bytes()), bare, "{bytes:?}");
        }
    }

    #[test]
    fn responses_close_and_say_their_length() {
        let r = String::from_utf8(response(Status::Ok, false, "a 1\n")).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{r}");
        assert!(r.contains(&format!(
            "\r\nContent-Type: {}\r\n",
            super::super::CONTENT_TYPE
        )));
        assert!(
            r.ends_with("\r\nContent-Length: 4\r\nConnection: close\r\n\r\na 1\n"),
            "{r}"
        );
        let head = String::from_utf8(response(Status::Ok, true, "a 1\n")).unwrap();
        assert!(
            head.ends_with("\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        let r = String::from_utf8(response(Status::MethodNotAllowed, false, "x")).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
    }
}
