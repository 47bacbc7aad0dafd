//! One file of `colorsort send`: recognised by its first bytes, read,
//! signed if asked, sealed, and sent over the worker's connection with
//! [`client::RETRY`]; and what became of it, as the report's
//! [`FileResult`].

use super::super::report::{Failure, FileResult};
use super::super::sign::Signer;
use crate::age;
use crate::classify;
use crate::client::{self, Client};
use crate::identity::PublicKey;
use crate::name;
use crate::protocol::Upload;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// Bytes read from a file to recognise its format.
const SNIFF_BYTES: usize = 32;

/// The image format of a file, from its first bytes; `None` if it is not
/// an image colorsort reads.
pub(super) fn sniff(path: &Path) -> io::Result<Option<&'static str>> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    fs::File::open(path)?
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(classify::sniff(&head))
}

/// The result of a file that could not be read.
pub(super) fn failed_read(path: &Path, e: &io::Error) -> FileResult {
    let failure = Failure {
        code: "read-failed".into(),
        message: e.to_string(),
    };
    FileResult {
        path: path.to_path_buf(),
        bytes: 0,
        attempts: 0,
        outcome: Err(failure),
    }
}

/// Reads, signs if asked, seals and sends one file, reconnecting and
/// retrying transient failures. `client` is this worker's connection, kept
/// across files.
pub(super) fn send_one(
    client: &mut Option<Client>,
    host: &str,
    path: &Path,
    key: Option<&PublicKey>,
    signer: Option<&Signer>,
) -> FileResult {
    let content = match fs::read(path) {
        Ok(c) => c,
        Err(e) => return failed_read(path, &e),
    };
    let bytes = content.len() as u64;
    let failed = |code: &str, message: String| FileResult {
        path: path.to_path_buf(),
        bytes,
        attempts: 0,
        outcome: Err(Failure {
            code: code.into(),
            message,
        }),
    };
    let signature = match signer.map(|s| s.sign(&content)) {
        None => None,
        Some(Ok(signature)) => Some(signature),
        Some(Err(e)) => return failed("sign-failed", e.to_string()),
    };
    // A worker holds one copy of a file while sending it: the plaintext
    // itself for PUT, the sealed file alone for SEAL.
    let (kind, payload) = match key {
        None => (Upload::Put, content),
        Some(key) => {
            let sealed = age::encrypt(&content, key);
            drop(content);
            match sealed {
                Ok(sealed) => (Upload::Seal, sealed),
                Err(e) => return failed("seal-failed", e.to_string()),
            }
        }
    };
    let wire_name = wire_name(path);
    let (result, attempts) = client::RETRY.run(|| {
        let c = match client {
            Some(c) => c,
            None => client.insert(Client::connect(host)?),
        };
        let result = match &signature {
            Some(signature) => c.upload_signed(&wire_name, signature, &payload),
            None => c.upload(kind, &wire_name, &payload),
        };
        if result.is_err() {
            // After any error the connection may be out of step or closed
            // by the server; a fresh one is cheap.
            *client = None;
        }
        result
    });
    FileResult {
        path: path.to_path_buf(),
        bytes,
        attempts,
        outcome: result.map_err(failure),
    }
}

/// The name a file is sent under: its own, made safe, or `upload`.
fn wire_name(path: &Path) -> String {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name::sanitize(&file_name).unwrap_or_else(|| "upload".into())
}

/// The report's failure for a failed upload: the server's code and
/// message, or a client-side code and the error.
fn failure(e: client::Error) -> Failure {
    let code = match &e {
        client::Error::Server { code, .. } => code.clone(),
        client::Error::Resolve { .. } | client::Error::Connect { .. } => "connect-failed".into(),
        client::Error::Io(_) | client::Error::Closed => "connection-failed".into(),
        client::Error::BadReply(_) | client::Error::Key(_) => "bad-reply".into(),
    };
    let message = match e {
        client::Error::Server { message, .. } => message,
        e => e.to_string(),
    };
    Failure { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_as_reported() {
        let io = |kind| io::Error::from(kind);
        let cases = [
            (
                client::Error::Server {
                    code: "not-an-image".into(),
                    message: "unrecognised format".into(),
                },
                "not-an-image",
                "unrecognised format",
            ),
            (
                client::Error::Resolve {
                    host: "nowhere:1".into(),
                    source: io(io::ErrorKind::NotFound),
                },
                "connect-failed",
                "cannot resolve nowhere:1: entity not found",
            ),
            (
                client::Error::Connect {
                    host: "h:1".into(),
                    source: io(io::ErrorKind::ConnectionRefused),
                },
                "connect-failed",
                "cannot connect to h:1: connection refused",
            ),
            (
                client::Error::Io(io(io::ErrorKind::ConnectionReset)),
                "connection-failed",
                "connection failed: connection reset",
            ),
            (
                client::Error::Closed,
                "connection-failed",
                "the server closed the connection",
            ),
            (
                client::Error::BadReply("HELLO".into()),
                "bad-reply",
                "unexpected reply from the server: HELLO",
            ),
        ];
        for (error, code, message) in cases {
            let label = format!("{error:?}");
            let f = failure(error);
            assert_eq!(
                (f.code.as_str(), f.message.as_str()),
                (code, message),
                "{label}"
            );
        }
    }

    #[test]
    fn names_on_the_wire() {
        let cases = [
            ("dir/a.png", "a.png"),
            ("/abs/dir/b c.jpg", "b_c.jpg"),
            ("x/.hidden.png", "hidden.png"),
            ("x/é.png", "_.png"),
            ("/", "upload"),
            ("..", "upload"),
            ("x/...", "upload"),
        ];
        for (path, want) in cases {
            assert_eq!(wire_name(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn sniffing_reads_the_first_bytes_only() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("picture.txt");
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.resize(1 << 16, 0);
        fs::write(&png, &bytes).unwrap();
        let text = dir.path().join("a.png");
        fs::write(&text, "not an image").unwrap();
        assert_eq!(sniff(&png).unwrap(), Some("png"));
        assert_eq!(sniff(&text).unwrap(), None);
        let e = sniff(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let result = failed_read(&text, &e);
        let failure = result.outcome.err().unwrap();
        assert_eq!((result.bytes, result.attempts), (0, 0));
        assert_eq!(failure.code, "read-failed");
    }
}
