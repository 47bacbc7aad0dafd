//! A raw HTTP/1.1 client for the server's metrics responder.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use super::server::TestServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

impl TestServer {
    /// The address of the server's metrics responder, from its log line
    /// `metrics at http://ADDR/metrics`; the server must run with
    /// `--metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        let log = self
            .wait_log("metrics at http://", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no metrics line in the log: {}", self.log_text()));
        let rest = log.split("metrics at http://").nth(1).unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }
}

/// A whole HTTP response, as read until the server closed the connection.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, without the status line, as sent.
    pub headers: Vec<String>,
    /// Everything after the empty line.
    pub body: String,
}

impl HttpResponse {
    /// The value of the first header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` as it is to `addr`, reads until the server closes, and
/// parses the response; `None` if the connection ended with no response.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> Option<HttpResponse> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    read_http(&mut stream)
}

/// Reads one HTTP response until end of input; `None` if there was none.
pub fn read_http(stream: &mut TcpStream) -> Option<HttpResponse> {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    Some(HttpResponse {
        status,
        headers: lines.map(str::to_string).collect(),
        body: body.to_string(),
    })
}

/// `GET path` from `addr` over HTTP/1.1.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_raw(addr, request.as_bytes()).unwrap_or_else(|| panic!("no response to GET {path}"))
}
