//! The colorsort wire protocol, version 1, as pure functions: parsing request
//! lines, naming error codes and formatting replies, for the server, and
//! parsing reply lines, for the client. Nothing here touches a socket;
//! docs/PROTOCOL.md is the prose form of this file.
//!
//! A request is one line ending in LF (a CR before it is dropped), at most
//! [`MAX_LINE`] bytes with its ending. `PUT` and `SEAL` lines are followed by
//! exactly SIZE raw bytes. Every reply is one line, `OK ...` or
//! `ERR code message`, ending in CRLF.

use std::fmt;

/// Longest request line, in bytes, counting its line ending.
pub const MAX_LINE: usize = 1024;
/// Longest reply line a client accepts, in bytes. The longest real reply is
/// the `KEY` reply, under 1 KiB for a 4096-bit key.
pub const MAX_REPLY: usize = 4096;
/// The reply to `HELP`.
pub const HELP: &str = "commands: PING | HELP | KEY | STATS | QUIT | PUT NAME SIZE + SIZE bytes (plaintext, kept in not_trusted/) | SEAL NAME SIZE + SIZE bytes of an age file sealed to KEY";

/// A parsed request line. Names are raw bytes: checking them is the job of
/// [`crate::name`], which knows the rules for what may reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `PING`: is the server there?
    Ping,
    /// `HELP`: the command list.
    Help,
    /// `KEY`: the server's OpenSSH public key line.
    Key,
    /// `STATS`: files per folder.
    Stats,
    /// `QUIT`: close the connection.
    Quit,
    /// `PUT NAME SIZE` or `SEAL NAME SIZE`, followed by SIZE bytes.
    Upload {
        kind: Upload,
        name: &'a [u8],
        size: u64,
    },
}

/// The two upload commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// `PUT`: a plaintext image, filed in `not_trusted/`.
    Put,
    /// `SEAL`: an age file sealed to the server's key, filed by colour.
    Seal,
}

impl Upload {
    /// The verb on the wire.
    pub fn verb(self) -> &'static str {
        match self {
            Upload::Put => "PUT",
            Upload::Seal => "SEAL",
        }
    }
}

/// Why a request line was refused. Each maps to one [`Code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The verb is not a command.
    UnknownCommand(String),
    /// A known command with the wrong arguments. `payload` is true for `PUT`
    /// and `SEAL`, whose payload length is then unknown, so the connection
    /// must be closed.
    BadRequest { reason: String, payload: bool },
    /// `SIZE` is a number larger than any upload (it does not fit in 64 bits).
    SizeOverflow,
}

impl ParseError {
    /// The error code the server replies with.
    pub fn code(&self) -> Code {
        match self {
            ParseError::UnknownCommand(_) => Code::UnknownCommand,
            ParseError::BadRequest { .. } => Code::BadRequest,
            ParseError::SizeOverflow => Code::TooLarge,
        }
    }

    /// True if the connection can no longer be read in step and must close.
    pub fn closes(&self) -> bool {
        match self {
            ParseError::UnknownCommand(_) => false,
            ParseError::BadRequest { payload, .. } => *payload,
            ParseError::SizeOverflow => true,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownCommand(verb) => write!(f, "unknown command {verb}; try HELP"),
            ParseError::BadRequest { reason, .. } => f.write_str(reason),
            ParseError::SizeOverflow => f.write_str("size does not fit in 64 bits"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one request line, without its line ending.
pub fn parse_request(line: &[u8]) -> Result<Request<'_>, ParseError> {
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let Some(verb) = words.next() else {
        return Err(bad("empty request line", false));
    };
    let args: Vec<&[u8]> = words.collect();
    let upload = if verb.eq_ignore_ascii_case(b"PUT") {
        Some(Upload::Put)
    } else if verb.eq_ignore_ascii_case(b"SEAL") {
        Some(Upload::Seal)
    } else {
        None
    };
    if let Some(kind) = upload {
        let [name, size] = args[..] else {
            return Err(bad(&format!("usage: {} NAME SIZE", kind.verb()), true));
        };
        return Ok(Request::Upload {
            kind,
            name,
            size: parse_size(size)?,
        });
    }
    let request = [
        (&b"PING"[..], Request::Ping),
        (b"HELP", Request::Help),
        (b"KEY", Request::Key),
        (b"STATS", Request::Stats),
        (b"QUIT", Request::Quit),
    ]
    .into_iter()
    .find(|(v, _)| verb.eq_ignore_ascii_case(v))
    .map(|(_, r)| r)
    .ok_or_else(|| ParseError::UnknownCommand(printable(verb, 32)))?;
    if !args.is_empty() {
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
        return Err(bad(&format!("{verb} takes no arguments"), false));
    }
    Ok(request)
}

fn bad(reason: &str, payload: bool) -> ParseError {
    ParseError::BadRequest {
        reason: reason.to_string(),
        payload,
    }
}

/// SIZE is plain decimal digits: no sign, no spaces, no hex.
fn parse_size(word: &[u8]) -> Result<u64, ParseError> {
    if !word.iter().all(u8::is_ascii_digit) {
        return Err(bad("SIZE must be a decimal number of bytes", true));
    }
    word.iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(ParseError::SizeOverflow)
}

/// Renders untrusted bytes for a reply or a log line: printable ASCII kept,
/// everything else escaped, at most `max` input bytes shown.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let mut out: String = bytes
        .iter()
        .take(max)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > max {
        out.push_str("...");
    }
    out
}

/// The stable error codes of protocol v1. The wire form is lowercase with
/// dashes; see [`Code::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The verb is not a command.
    UnknownCommand,
    /// A command with missing, extra or malformed arguments.
    BadRequest,
    /// The request line is longer than [`MAX_LINE`].
    LineTooLong,
    /// SIZE is over the upload limit. The connection is closed.
    TooLarge,
    /// NAME is not an acceptable file name.
    BadName,
    /// The payload is not an image in a supported format.
    NotAnImage,
    /// The image has more pixels than the pixel limit.
    TooManyPixels,
    /// The image's metadata, tables or decoding working memory are over the
    /// decoders' limits.
    TooComplex,
    /// A SEAL payload did not open: wrong key, tampered, truncated or malformed.
    DecryptFailed,
    /// The client was too slow. The connection is closed.
    Timeout,
    /// The server could not store the file durably. Nothing was stored.
    StorageFailed,
    /// The server is out of connections or memory; try again later.
    Busy,
}

impl Code {
    /// Every code, in documentation order.
    pub const ALL: [Code; 12] = [
        Code::UnknownCommand,
        Code::BadRequest,
        Code::LineTooLong,
        Code::TooLarge,
        Code::BadName,
        Code::NotAnImage,
        Code::TooManyPixels,
        Code::TooComplex,
        Code::DecryptFailed,
        Code::Timeout,
        Code::StorageFailed,
        Code::Busy,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::UnknownCommand => "unknown-command",
            Code::BadRequest => "bad-request",
            Code::LineTooLong => "line-too-long",
            Code::TooLarge => "too-large",
            Code::BadName => "bad-name",
            Code::NotAnImage => "not-an-image",
            Code::TooManyPixels => "too-many-pixels",
            Code::TooComplex => "too-complex",
            Code::DecryptFailed => "decrypt-failed",
            Code::Timeout => "timeout",
            Code::StorageFailed => "storage-failed",
            Code::Busy => "busy",
        }
    }

    /// Parses a wire code.
    pub fn from_wire(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// True for failures worth retrying later with the same input.
    pub fn is_transient(self) -> bool {
        matches!(self, Code::Busy | Code::Timeout | Code::StorageFailed)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats an `OK` reply line.
pub fn ok(text: &str) -> String {
    format!("OK {}\r\n", one_line(text))
}

/// Formats an `ERR` reply line.
pub fn err(code: Code, message: &str) -> String {
    format!("ERR {} {}\r\n", code.as_str(), one_line(message))
}

/// Keeps a reply on one line whatever the text holds.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Where an upload was filed and its colour, as the `OK` reply states it:
/// `FOLDER/NAME r=R g=G b=B`, with ` dup` appended when the content was
/// already stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Folder and file name, e.g. `red/photo.jpg`.
    pub path: String,
    /// Mean red, green and blue.
    pub mean: [f64; 3],
    /// The content was already stored; `path` is the existing copy.
    pub dup: bool,
}

impl fmt::Display for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.mean;
        write!(f, "{} r={r:.1} g={g:.1} b={b:.1}", self.path)?;
        if self.dup {
            f.write_str(" dup")?;
        }
        Ok(())
    }
}

impl Stored {
    /// Parses the text of an upload's `OK` reply.
    pub fn parse(text: &str) -> Option<Stored> {
        let mut words = text.split(' ');
        let path = words.next()?.to_string();
        let mut mean = [0.0; 3];
        for (slot, key) in mean.iter_mut().zip(["r=", "g=", "b="]) {
            *slot = words.next()?.strip_prefix(key)?.parse().ok()?;
        }
        let dup = match words.next() {
            None => false,
            Some("dup") => true,
            Some(_) => return None,
        };
        if words.next().is_some() || !path.contains('/') {
            return None;
        }
        Some(Stored { path, mean, dup })
    }

    /// The folder part of the path.
    pub fn folder(&self) -> &str {
        self.path.split('/').next().unwrap_or("")
    }
}

/// A reply line as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK text`.
    Ok(String),
    /// `ERR code message`. `code` is kept as text so that a newer server's
    /// codes still reach the user.
    Err { code: String, message: String },
}

/// Parses one reply line, without its line ending.
pub fn parse_reply(line: &str) -> Option<Reply> {
    if line == "OK" {
        return Some(Reply::Ok(String::new()));
    }
    if let Some(text) = line.strip_prefix("OK ") {
        return Some(Reply::Ok(text.to_string()));
    }
    let rest = line.strip_prefix("ERR ")?;
    let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.is_empty() {
        return None;
    }
    Some(Reply::Err {
        code: code.to_string(),
        message: message.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let cases: &[(&[u8], Request)] = &[
            (b"PING", Request::Ping),
            (b"ping", Request::Ping),
            (b"  Ping  ", Request::Ping),
            (b"HELP", Request::Help),
            (b"key", Request::Key),
            (b"STATS", Request::Stats),
            (b"QUIT", Request::Quit),
            (
                b"PUT a.png 5",
                Request::Upload {
                    kind: Upload::Put,
                    name: b"a.png",
                    size: 5,
                },
            ),
            (
                b"seal x 0",
                Request::Upload {
                    kind: Upload::Seal,
                    name: b"x",
                    size: 0,
                },
            ),
            (
                b"SEAL\tx\t007",
                Request::Upload {
                    kind: Upload::Seal,
                    name: b"x",
                    size: 7,
                },
            ),
            (
                b"PUT ../../etc/passwd 1",
                Request::Upload {
                    kind: Upload::Put,
                    name: b"../../etc/passwd",
                    size: 1,
                },
            ),
            (
                b"PUT n 18446744073709551615",
                Request::Upload {
                    kind: Upload::Put,
                    name: b"n",
                    size: u64::MAX,
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_request(line).as_ref(),
                Ok(want),
                "line {:?}",
                printable(line, 64)
            );
        }
    }

    #[test]
    fn refused_requests() {
        // (line, code, closes the connection)
        let cases: &[(&[u8], Code, bool)] = &[
            (b"", Code::BadRequest, false),
            (b"   ", Code::BadRequest, false),
            (b"FROB", Code::UnknownCommand, false),
            (b"\x00\xff\xfe garbage", Code::UnknownCommand, false),
            (b"PING extra", Code::BadRequest, false),
            (b"STATS 1 2", Code::BadRequest, false),
            (b"PUT", Code::BadRequest, true),
            (b"PUT a", Code::BadRequest, true),
            (b"PUT a 1 2", Code::BadRequest, true),
            (b"PUT a -5", Code::BadRequest, true),
            (b"PUT a +5", Code::BadRequest, true),
            (b"PUT a 0x10", Code::BadRequest, true),
            (b"PUT a 1.5", Code::BadRequest, true),
            (b"SEAL a five", Code::BadRequest, true),
            (b"PUT a 18446744073709551616", Code::TooLarge, true),
            (b"PUT a 99999999999999999999999999", Code::TooLarge, true),
        ];
        for (line, code, closes) in cases {
            let err = parse_request(line).unwrap_err();
            assert_eq!(err.code(), *code, "line {:?}", printable(line, 64));
            assert_eq!(err.closes(), *closes, "line {:?}", printable(line, 64));
        }
    }

    #[test]
    fn unknown_verbs_are_escaped_and_cut() {
        let err = parse_request(b"\x1b[2J\x07").unwrap_err();
        assert_eq!(err.to_string(), "unknown command \\x1b[2J\\x07; try HELP");
        let long = vec![b'A'; 200];
        let ParseError::UnknownCommand(shown) = parse_request(&long).unwrap_err() else {
            panic!()
        };
        assert_eq!(shown.len(), 35);
    }

    #[test]
    fn replies_are_one_line() {
        assert_eq!(ok("PONG"), "OK PONG\r\n");
        assert_eq!(
            err(Code::BadName, "no\r\nsmuggling"),
            "ERR bad-name no  smuggling\r\n"
        );
    }

    #[test]
    fn codes_round_trip() {
        for code in Code::ALL {
            assert_eq!(Code::from_wire(code.as_str()), Some(code));
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-')
            );
        }
        assert_eq!(Code::from_wire("nope"), None);
    }

    #[test]
    fn stored_round_trips() {
        let s = Stored {
            path: "red/a.png".into(),
            mean: [200.04, 10.0, 0.25],
            dup: false,
        };
        assert_eq!(s.to_string(), "red/a.png r=200.0 g=10.0 b=0.2");
        let back = Stored::parse(&s.to_string()).unwrap();
        assert_eq!(back.path, "red/a.png");
        assert_eq!(back.folder(), "red");
        let d = Stored { dup: true, ..s };
        assert!(Stored::parse(&d.to_string()).unwrap().dup);
        for bad in [
            "",
            "red/a.png",
            "red/a.png r=1 g=2",
            "red/a.png r=1 g=2 b=x",
            "a.png r=1 g=2 b=3",
            "red/a r=1 g=2 b=3 new",
        ] {
            assert_eq!(Stored::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reply_lines() {
        let cases: &[(&str, Option<Reply>)] = &[
            ("OK PONG", Some(Reply::Ok("PONG".into()))),
            ("OK", Some(Reply::Ok(String::new()))),
            (
                "ERR busy try later",
                Some(Reply::Err {
                    code: "busy".into(),
                    message: "try later".into(),
                }),
            ),
            (
                "ERR busy",
                Some(Reply::Err {
                    code: "busy".into(),
                    message: String::new(),
                }),
            ),
            ("ERR ", None),
            ("HELLO", None),
            ("OKAY", None),
        ];
        for (line, want) in cases {
            assert_eq!(&parse_reply(line), want, "{line:?}");
        }
    }
}
