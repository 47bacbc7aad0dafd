//! The colorsort wire protocol, version 1, as pure functions: parsing request
//! lines, naming error codes and formatting replies, for the server, and
//! formatting upload lines and parsing reply lines, for the client. Nothing
//! here touches a socket; docs/PROTOCOL.md is the prose form of this file.
//!
//! A request is one line ending in LF (a CR before it is dropped), at most
//! [`MAX_LINE`] bytes with its ending. A `PUT NAME SIZE` or `SEAL NAME SIZE`
//! line is followed by exactly SIZE raw bytes; a signed
//! `SEAL NAME SIZE SIGSIZE` line by SIGSIZE bytes of an armored SSH
//! signature, then SIZE bytes. Every reply is one line, `OK ...` or
//! `ERR code message`, ending in CRLF.

use crate::sshsig::MAX_SIGNATURE;
use std::fmt;

/// Longest request line, in bytes, counting its line ending.
pub const MAX_LINE: usize = 1024;
/// Longest reply line a client accepts, in bytes. The longest real reply is
/// the `KEY` reply, under 1 KiB for a 4096-bit key.
pub const MAX_REPLY: usize = 4096;
/// The reply to `HELP`.
pub const HELP: &str = "commands: PING | HELP | KEY | STATS | POLICY | QUIT | PUT NAME SIZE + SIZE bytes (plaintext, kept in not_trusted/) | SEAL NAME SIZE [SIGSIZE] + SIGSIZE bytes of an ssh signature of the image (ssh-keygen -Y sign, namespace in POLICY), if signed, then SIZE bytes of an age file sealed to KEY";

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
    /// `POLICY`: whether uploads must be signed, and for which namespace.
    Policy,
    /// `QUIT`: close the connection.
    Quit,
    /// `PUT NAME SIZE` or `SEAL NAME SIZE [SIGSIZE]`, followed by SIGSIZE
    /// signature bytes if given, then SIZE payload bytes.
    Upload {
        kind: Upload,
        name: &'a [u8],
        size: u64,
        /// SIGSIZE, 1 to [`MAX_SIGNATURE`]; only ever given for `SEAL`.
        sigsize: Option<usize>,
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
    /// `SIGSIZE` is over [`MAX_SIGNATURE`].
    SignatureTooLarge,
}

impl ParseError {
    /// The error code the server replies with.
    pub fn code(&self) -> Code {
        match self {
            ParseError::UnknownCommand(_) => Code::UnknownCommand,
            ParseError::BadRequest { .. } => Code::BadRequest,
            ParseError::SizeOverflow | ParseError::SignatureTooLarge => Code::TooLarge,
        }
    }

    /// True if the connection can no longer be read in step and must close.
    pub fn closes(&self) -> bool {
        match self {
            ParseError::UnknownCommand(_) => false,
            ParseError::BadRequest { payload, .. } => *payload,
            ParseError::SizeOverflow | ParseError::SignatureTooLarge => true,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownCommand(verb) => write!(f, "unknown command {verb}; try HELP"),
            ParseError::BadRequest { reason, .. } => f.write_str(reason),
            ParseError::SizeOverflow => f.write_str("size does not fit in 64 bits"),
            ParseError::SignatureTooLarge => write!(
                f,
                "SIGSIZE is over the signature limit of {MAX_SIGNATURE} bytes"
            ),
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
        let (name, size, sigsize) = match (kind, &args[..]) {
            (_, &[name, size]) => (name, size, None),
            (Upload::Seal, &[name, size, sigsize]) => (name, size, Some(sigsize)),
            (Upload::Put, &[_, _, _]) => {
                return Err(bad("PUT takes no signature; usage: PUT NAME SIZE", true));
            }
            (Upload::Put, _) => return Err(bad("usage: PUT NAME SIZE", true)),
            (Upload::Seal, _) => return Err(bad("usage: SEAL NAME SIZE [SIGSIZE]", true)),
        };
        return Ok(Request::Upload {
            kind,
            name,
            size: parse_size(size)?,
            sigsize: sigsize.map(parse_sigsize).transpose()?,
        });
    }
    let request = [
        (&b"PING"[..], Request::Ping),
        (b"HELP", Request::Help),
        (b"KEY", Request::Key),
        (b"STATS", Request::Stats),
        (b"POLICY", Request::Policy),
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

/// SIGSIZE is plain decimal digits, 1 to [`MAX_SIGNATURE`].
fn parse_sigsize(word: &[u8]) -> Result<usize, ParseError> {
    let sigsize = parse_size(word).map_err(|e| match e {
        ParseError::SizeOverflow => ParseError::SignatureTooLarge,
        _ => bad("SIGSIZE must be a decimal number of bytes", true),
    })?;
    match usize::try_from(sigsize) {
        Ok(0) => Err(bad(
            &format!("SIGSIZE must be 1 to {MAX_SIGNATURE}; leave it out for an unsigned SEAL"),
            true,
        )),
        Ok(n) if n <= MAX_SIGNATURE => Ok(n),
        _ => Err(ParseError::SignatureTooLarge),
    }
}

/// Formats the request line of an upload, with its line ending: what a
/// client sends before the SIGSIZE signature bytes, if any, and the SIZE
/// payload bytes. `name` must hold no whitespace or control characters.
pub fn upload_line(kind: Upload, name: &str, size: u64, sigsize: Option<usize>) -> String {
    match sigsize {
        Some(sigsize) => format!("{} {name} {size} {sigsize}\r\n", kind.verb()),
        None => format!("{} {name} {size}\r\n", kind.verb()),
    }
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
    /// A SEAL's signature is malformed, made for another namespace, not over
    /// the decrypted image, or made with a key or hash not accepted (SHA-1
    /// `ssh-rsa`, RSA under 2048 bits, ECDSA, ...). Nothing was stored.
    BadSignature,
    /// A SEAL's signature is valid, but its key is not an allowed signer
    /// here: not listed, outside its validity, or not for this namespace.
    /// Nothing was stored.
    UnknownSigner,
    /// The client was too slow. The connection is closed.
    Timeout,
    /// The server could not store the file durably. Nothing was stored.
    StorageFailed,
    /// The server is out of connections or memory; try again later.
    Busy,
}

impl Code {
    /// Every code, in documentation order.
    pub const ALL: [Code; 14] = [
        Code::UnknownCommand,
        Code::BadRequest,
        Code::LineTooLong,
        Code::TooLarge,
        Code::BadName,
        Code::NotAnImage,
        Code::TooManyPixels,
        Code::TooComplex,
        Code::DecryptFailed,
        Code::BadSignature,
        Code::UnknownSigner,
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
            Code::BadSignature => "bad-signature",
            Code::UnknownSigner => "unknown-signer",
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
/// `FOLDER/NAME r=R g=G b=B`, then ` signer=PRINCIPAL` when it was filed on
/// the strength of a listed signer, then ` dup` when the content was
/// already stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Folder and file name, e.g. `red/photo.jpg`.
    pub path: String,
    /// Mean red, green and blue.
    pub mean: [f64; 3],
    /// The principals of the allowed_signers entry that listed the upload's
    /// signing key, as written there (comma-separated patterns), unescaped.
    /// On the wire it is escaped by [`escape_principal`].
    pub signer: Option<String>,
    /// The content was already stored; `path` is the existing copy.
    pub dup: bool,
}

impl fmt::Display for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.mean;
        write!(f, "{} r={r:.1} g={g:.1} b={b:.1}", self.path)?;
        if let Some(signer) = &self.signer {
            write!(f, " signer={}", escape_principal(signer))?;
        }
        if self.dup {
            f.write_str(" dup")?;
        }
        Ok(())
    }
}

impl Stored {
    /// Parses the text of an upload's `OK` reply. A `signer=` whose escapes
    /// are malformed, or that unescapes to control characters other than
    /// tab, makes the reply unparseable.
    pub fn parse(text: &str) -> Option<Stored> {
        let mut words = text.split(' ').peekable();
        let path = words.next()?.to_string();
        let mut mean = [0.0; 3];
        for (slot, key) in mean.iter_mut().zip(["r=", "g=", "b="]) {
            *slot = words.next()?.strip_prefix(key)?.parse().ok()?;
        }
        let signer = match words.next_if(|w| w.starts_with("signer=")) {
            Some(word) => Some(unescape_principal(&word["signer=".len()..])?),
            None => None,
        };
        let dup = words.next_if_eq(&"dup").is_some();
        if words.next().is_some() || !path.contains('/') {
            return None;
        }
        Some(Stored {
            path,
            mean,
            signer,
            dup,
        })
    }

    /// The folder part of the path.
    pub fn folder(&self) -> &str {
        self.path.split('/').next().unwrap_or("")
    }
}

/// Writes a principal for a reply or a log line: every byte outside
/// printable ASCII `!` to `~`, and `\` itself, as `\xNN` (lowercase hex),
/// so that the result is one space-free token of printable ASCII.
pub fn escape_principal(principal: &str) -> String {
    let mut out = String::with_capacity(principal.len());
    for &b in principal.as_bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Reverses [`escape_principal`]; `None` for an empty or malformed token,
/// or one that unescapes to anything but UTF-8 text without control
/// characters (tab aside).
fn unescape_principal(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let hex = token.get(i + 2..i + 4).filter(|_| bytes[i + 1] == b'x')?;
                if !hex.bytes().all(|d| d.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            b @ 0x21..=0x7e => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    let text = String::from_utf8(out).ok()?;
    let clean = !text.is_empty() && !text.chars().any(|c| c.is_control() && c != '\t');
    clean.then_some(text)
}

/// The `POLICY` reply, `signers=on|off namespace=NS`: whether a `SEAL` is
/// filed by colour only when signed by an allowed signer (known-senders
/// mode), and the namespace signatures must be made for. Tokens are
/// `key=value`; parsing skips keys it does not know, so a newer server may
/// add some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Known-senders mode: only signed `SEAL`s from allowed signers are
    /// filed by colour; unsigned ones go to `not_trusted/`.
    pub signers: bool,
    /// The namespace for `ssh-keygen -Y sign -n`: printable ASCII, no
    /// spaces.
    pub namespace: String,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = if self.signers { "on" } else { "off" };
        write!(f, "signers={on} namespace={}", self.namespace)
    }
}

impl Policy {
    /// Parses the text of the `POLICY` reply's `OK`. Both known keys must be
    /// there, once each.
    pub fn parse(text: &str) -> Option<Policy> {
        let (mut signers, mut namespace) = (None, None);
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            let (key, value) = token.split_once('=')?;
            let slot = match key {
                "signers" => &mut signers,
                "namespace" => &mut namespace,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        let signers = match signers? {
            "on" => true,
            "off" => false,
            _ => return None,
        };
        let namespace = namespace.filter(|n| !n.is_empty())?.to_string();
        Some(Policy { signers, namespace })
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
                    sigsize: None,
                },
            ),
            (
                b"seal x 0",
                Request::Upload {
                    kind: Upload::Seal,
                    name: b"x",
                    size: 0,
                    sigsize: None,
                },
            ),
            (
                b"SEAL\tx\t007",
                Request::Upload {
                    kind: Upload::Seal,
                    name: b"x",
                    size: 7,
                    sigsize: None,
                },
            ),
            (
                b"PUT ../../etc/passwd 1",
                Request::Upload {
                    kind: Upload::Put,
                    name: b"../../etc/passwd",
                    size: 1,
                    sigsize: None,
                },
            ),
            (
                b"PUT n 18446744073709551615",
                Request::Upload {
                    kind: Upload::Put,
                    name: b"n",
                    size: u64::MAX,
                    sigsize: None,
                },
            ),
            (b"POLICY", Request::Policy),
            (b"policy", Request::Policy),
            (
                b"SEAL x.png 10 1",
                Request::Upload {
                    kind: Upload::Seal,
                    name: b"x.png",
                    size: 10,
                    sigsize: Some(1),
                },
            ),
            (
                b"seal\tx.png 0 08192",
                Request::Upload {
                    kind: Upload::Seal,
                    name: b"x.png",
                    size: 0,
                    sigsize: Some(MAX_SIGNATURE),
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
            (b"POLICY now", Code::BadRequest, false),
            // A signature only comes with SEAL, and is 1 to MAX_SIGNATURE bytes.
            (b"PUT a 1 0", Code::BadRequest, true),
            (b"SEAL a 1 0", Code::BadRequest, true),
            (b"SEAL a 1 00", Code::BadRequest, true),
            (b"SEAL a 1 -1", Code::BadRequest, true),
            (b"SEAL a 1 0x10", Code::BadRequest, true),
            (b"SEAL a 1 many", Code::BadRequest, true),
            (b"SEAL a 1 2 3", Code::BadRequest, true),
            (b"SEAL a x 2", Code::BadRequest, true),
            (b"SEAL a 1 8193", Code::TooLarge, true),
            (b"SEAL a 1 18446744073709551616", Code::TooLarge, true),
            (b"SEAL a 18446744073709551616 5", Code::TooLarge, true),
        ];
        for (line, code, closes) in cases {
            let err = parse_request(line).unwrap_err();
            assert_eq!(err.code(), *code, "line {:?}", printable(line, 64));
            assert_eq!(err.closes(), *closes, "line {:?}", printable(line, 64));
        }
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"PUT a 1 2", "PUT takes no signature; usage: PUT NAME SIZE"),
            (b"SEAL a", "usage: SEAL NAME SIZE [SIGSIZE]"),
            (
                b"SEAL a 1 0",
                "SIGSIZE must be 1 to 8192; leave it out for an unsigned SEAL",
            ),
            (b"SEAL a 1 y", "SIGSIZE must be a decimal number of bytes"),
            (
                b"SEAL a 1 9000",
                "SIGSIZE is over the signature limit of 8192 bytes",
            ),
        ];
        for (line, want) in cases {
            let err = parse_request(line).unwrap_err();
            assert_eq!(err.to_string(), *want, "line {:?}", printable(line, 64));
        }
    }

    #[test]
    fn upload_lines_parse_back() {
        let cases = [
            (Upload::Put, "a.png", 5, None, "PUT a.png 5\r\n"),
            (Upload::Seal, "b.jpg", 70, None, "SEAL b.jpg 70\r\n"),
            (Upload::Seal, "c.gif", 9, Some(300), "SEAL c.gif 9 300\r\n"),
        ];
        for (kind, name, size, sigsize, want) in cases {
            let line = upload_line(kind, name, size, sigsize);
            assert_eq!(line, want);
            let parsed = parse_request(line.trim_end().as_bytes()).unwrap();
            assert_eq!(
                parsed,
                Request::Upload {
                    kind,
                    name: name.as_bytes(),
                    size,
                    sigsize
                }
            );
        }
    }

    #[test]
    fn help_is_one_reply_and_lists_the_signed_seal() {
        let line = ok(HELP);
        assert!(line.len() < MAX_REPLY, "{}", line.len());
        assert_eq!(line.matches("\r\n").count(), 1);
        for word in ["POLICY", "SEAL NAME SIZE [SIGSIZE]", "PUT NAME SIZE"] {
            assert!(HELP.contains(word), "{word}");
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
            signer: None,
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
            "red/a r=1 g=2 b=3 dup dup",
            "red/a r=1 g=2 b=3 dup signer=x",
            "red/a r=1 g=2 b=3 signer=",
            "red/a r=1 g=2 b=3 signer=a signer=b",
            "red/a r=1 g=2 b=3 signer=a\\",
            "red/a r=1 g=2 b=3 signer=a\\x4",
            "red/a r=1 g=2 b=3 signer=a\\y41",
            "red/a r=1 g=2 b=3 signer=a\\xzz",
            "red/a r=1 g=2 b=3 signer=a\\x1b[2J",
            "red/a r=1 g=2 b=3 signer=\\xff",
            "red/a r=1 g=2 b=3 signer=caf\u{e9}",
        ] {
            assert_eq!(Stored::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stored_names_its_signer() {
        // (reply text, signer, dup)
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("red/a.png r=1.0 g=2.0 b=3.0", None, false),
            ("red/a.png r=1.0 g=2.0 b=3.0 dup", None, true),
            (
                "red/a.png r=1.0 g=2.0 b=3.0 signer=alice@example.com",
                Some("alice@example.com"),
                false,
            ),
            (
                "red/a.png r=1.0 g=2.0 b=3.0 signer=alice,bob dup",
                Some("alice,bob"),
                true,
            ),
            (
                "red/a.png r=1.0 g=2.0 b=3.0 signer=zo\\xc3\\xab\\x20s\\x5cx",
                Some("zo\u{eb} s\\x"),
                false,
            ),
            (
                "red/a.png r=1.0 g=2.0 b=3.0 signer=a\\x09b\\x3D",
                Some("a\tb="),
                false,
            ),
        ];
        for &(text, signer, dup) in cases {
            let s = Stored::parse(text).unwrap_or_else(|| panic!("{text:?}"));
            assert_eq!((s.signer.as_deref(), s.dup), (signer, dup), "{text:?}");
            // What the server writes parses back to the same thing.
            assert_eq!(Stored::parse(&s.to_string()), Some(s.clone()), "{text:?}");
        }
    }

    #[test]
    fn principals_are_escaped_into_one_printable_token() {
        let cases = [
            ("alice@example.com", "alice@example.com"),
            ("*@example.com,!mallory", "*@example.com,!mallory"),
            ("two words", "two\\x20words"),
            ("back\\slash", "back\\x5cslash"),
            ("tab\there", "tab\\x09here"),
            ("\u{e9}", "\\xc3\\xa9"),
            ("\x1b[2J", "\\x1b[2J"),
            ("~!", "~!"),
        ];
        for (principal, wire) in cases {
            assert_eq!(escape_principal(principal), wire, "{principal:?}");
            assert!(wire.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
        // A control character other than tab is escaped on the way out and
        // refused on the way in: a reply cannot carry one to a terminal.
        assert_eq!(unescape_principal("\\x1b[2J"), None);
        assert_eq!(
            unescape_principal("tab\\x09here").as_deref(),
            Some("tab\there")
        );
    }

    #[test]
    fn policy_replies() {
        let on = Policy {
            signers: true,
            namespace: "colorsort".into(),
        };
        let off = Policy {
            signers: false,
            namespace: "photos@example.com".into(),
        };
        assert_eq!(on.to_string(), "signers=on namespace=colorsort");
        assert_eq!(off.to_string(), "signers=off namespace=photos@example.com");
        let cases: &[(&str, Option<&Policy>)] = &[
            ("signers=on namespace=colorsort", Some(&on)),
            ("namespace=colorsort signers=on", Some(&on)),
            ("signers=on future=1 namespace=colorsort x=", Some(&on)),
            ("signers=off namespace=photos@example.com", Some(&off)),
            ("signers=on", None),
            ("namespace=colorsort", None),
            ("signers=yes namespace=colorsort", None),
            ("signers=on namespace=", None),
            ("signers=on signers=off namespace=colorsort", None),
            ("signers=on namespace=colorsort junk", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(Policy::parse(text).as_ref(), *want, "{text:?}");
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
            (
                "ERR unknown-signer key is not an allowed signer",
                Some(Reply::Err {
                    code: "unknown-signer".into(),
                    message: "key is not an allowed signer".into(),
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
