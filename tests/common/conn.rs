//! A raw TCP client of the line protocol, and the bytes and replies it
//! deals in.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw client connection.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Conn {
    /// Wraps `stream`, with 10 s timeouts.
    pub fn new(stream: TcpStream) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply line, without CRLF; empty at end of input.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(
            line.is_empty() || line.ends_with("\r\n"),
            "reply not CRLF-terminated: {line:?}"
        );
        line.trim_end_matches("\r\n").to_string()
    }

    /// Sends one line and returns the reply.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// Sends an upload command and its payload, returns the reply.
    pub fn upload(&mut self, verb: &str, name: &str, payload: &[u8]) -> String {
        let mut msg = format!("{verb} {name} {}\r\n", payload.len()).into_bytes();
        msg.extend_from_slice(payload);
        self.send(&msg);
        self.line()
    }

    /// Sends a signed `SEAL`: the line, the armored signature `sig`, then
    /// the age file `sealed`; returns the reply.
    pub fn seal_signed(&mut self, name: &str, sig: &[u8], sealed: &[u8]) -> String {
        self.send(&signed_seal(name, sig, sealed));
        self.line()
    }

    /// True if the server closed the connection: reads reach end of input.
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

/// The error code of an `ERR` reply, or panics.
pub fn code(reply: &str) -> &str {
    reply
        .strip_prefix("ERR ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("not an ERR reply: {reply}"))
}

/// Like [`Conn::line`], but `None` on end of input or a read error (reset,
/// timeout) instead of panicking.
pub fn try_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches("\r\n").to_string()),
    }
}

/// The bytes of a signed `SEAL`: its line, the armored signature `sig`,
/// then the age file `sealed`.
pub fn signed_seal(name: &str, sig: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut msg = format!("SEAL {name} {} {}\r\n", sealed.len(), sig.len()).into_bytes();
    msg.extend_from_slice(sig);
    msg.extend_from_slice(sealed);
    msg
}
