//! The armor around an SSH signature blob: the BEGIN line, base64 lines and
//! the END line that `ssh-keygen -Y sign` writes, read as `sshsig_dearmor`
//! reads them.
//!
//! The text must start with the BEGIN line, ended by LF or CRLF. The body
//! runs to the first LF followed by the END line; whitespace anywhere in it
//! is skipped (so one long line, 70-column lines and CRLF all work) and the
//! rest must be canonical padded base64. After the END line only one line
//! ending may follow, where ssh-keygen would ignore anything.

use super::{Error, MAX_SIGNATURE};
use base64ct::{Base64, Encoding};

const BEGIN: &[u8] = b"-----BEGIN SSH SIGNATURE-----";
const END: &[u8] = b"\n-----END SSH SIGNATURE-----";

/// The blob inside an armored signature.
pub(super) fn dearmor(text: &[u8]) -> Result<Vec<u8>, Error> {
    if text.len() > MAX_SIGNATURE {
        return Err(Error::TooLong);
    }
    let rest = text
        .strip_prefix(BEGIN)
        .ok_or(Error::Armor("missing BEGIN line"))?;
    let rest = strip_eol(rest).ok_or(Error::Armor("no line end after BEGIN"))?;
    let end = rest
        .windows(END.len())
        .position(|w| w == END)
        .ok_or(Error::Armor("missing END line"))?;
    let (body, tail) = rest.split_at(end);
    let tail = &tail[END.len()..];
    if !(tail.is_empty() || strip_eol(tail).is_some_and(<[u8]>::is_empty)) {
        return Err(Error::Armor("data after END line"));
    }
    // ssh-keygen's base64 decoder (b64_pton) skips isspace() anywhere.
    let b64: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .collect();
    Base64::decode_vec(std::str::from_utf8(&b64).map_err(|_| Error::Armor("invalid base64"))?)
        .map_err(|_| Error::Armor("invalid base64"))
}

fn strip_eol(s: &[u8]) -> Option<&[u8]> {
    s.strip_prefix(b"\r\n").or_else(|| s.strip_prefix(b"\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "hello world" in base64 is "aGVsbG8gd29ybGQ=".
    const HELLO: &[u8] = b"hello world";

    fn armored(body: &str, eol: &str) -> Vec<u8> {
        format!("-----BEGIN SSH SIGNATURE-----{eol}{body}{eol}-----END SSH SIGNATURE-----{eol}")
            .into_bytes()
    }

    #[test]
    fn accepts_what_ssh_keygen_accepts() {
        let cases: [(&str, &[u8]); 7] = [
            ("lf", &armored("aGVsbG8gd29ybGQ=", "\n")),
            ("crlf", &armored("aGVsbG8gd29ybGQ=", "\r\n")),
            ("split lines", &armored("aGVsbG8g\nd29ybGQ=", "\n")),
            ("crlf split lines", &armored("aGVsbG8g\r\nd29ybGQ=", "\r\n")),
            (
                "spaces and blank lines",
                &armored(" aGVs bG8g\n\n\td29y bGQ= ", "\n"),
            ),
            (
                "no final newline",
                b"-----BEGIN SSH SIGNATURE-----\naGVsbG8gd29ybGQ=\n-----END SSH SIGNATURE-----",
            ),
            (
                "cr before the END line",
                b"-----BEGIN SSH SIGNATURE-----\naGVsbG8gd29ybGQ=\r\n-----END SSH SIGNATURE-----\n",
            ),
        ];
        for (what, text) in cases {
            assert_eq!(dearmor(text).as_deref(), Ok(HELLO), "{what}");
        }
    }

    #[test]
    fn rejects_what_is_not_armor() {
        let mut huge = armored("aGVsbG8gd29ybGQ=", "\n");
        huge.resize(MAX_SIGNATURE + 1, b'\n');
        let cases: [(&str, &[u8], Error); 12] = [
            ("empty", b"", Error::Armor("missing BEGIN line")),
            (
                "leading space",
                &[b" ", &armored("aGVsbG8gd29ybGQ=", "\n")[..]].concat(),
                Error::Armor("missing BEGIN line"),
            ),
            (
                "space after BEGIN",
                b"-----BEGIN SSH SIGNATURE----- \naGVsbG8gd29ybGQ=\n-----END SSH SIGNATURE-----\n",
                Error::Armor("no line end after BEGIN"),
            ),
            (
                "lone cr after BEGIN",
                b"-----BEGIN SSH SIGNATURE-----\raGVsbG8gd29ybGQ=\n-----END SSH SIGNATURE-----\n",
                Error::Armor("no line end after BEGIN"),
            ),
            (
                "no END",
                b"-----BEGIN SSH SIGNATURE-----\naGVsbG8gd29ybGQ=\n",
                Error::Armor("missing END line"),
            ),
            (
                "END on the BEGIN line",
                b"-----BEGIN SSH SIGNATURE----------END SSH SIGNATURE-----\n",
                Error::Armor("no line end after BEGIN"),
            ),
            (
                "empty body",
                b"-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n",
                Error::Armor("missing END line"),
            ),
            (
                "text after END",
                b"-----BEGIN SSH SIGNATURE-----\naGVsbG8gd29ybGQ=\n-----END SSH SIGNATURE-----\nhi\n",
                Error::Armor("data after END line"),
            ),
            (
                "two line ends after END",
                b"-----BEGIN SSH SIGNATURE-----\naGVsbG8gd29ybGQ=\n-----END SSH SIGNATURE-----\n\n",
                Error::Armor("data after END line"),
            ),
            (
                "missing padding",
                &armored("aGVsbG8gd29ybGQ", "\n"),
                Error::Armor("invalid base64"),
            ),
            (
                "non-zero trailing bits",
                &armored("aGVsbG8gd29ybGR=", "\n"),
                Error::Armor("invalid base64"),
            ),
            ("too long", &huge, Error::TooLong),
        ];
        for (what, text, want) in cases {
            assert_eq!(dearmor(text), Err(want), "{what}");
        }
    }

    #[test]
    fn rejects_bytes_outside_the_alphabet() {
        for bad in [
            "aGVsbG8*d29ybGQ=",
            "aGVs\0bG8gd29ybGQ=",
            "aGVsbG8gd29ybGQ=\u{e9}",
        ] {
            assert_eq!(
                dearmor(&armored(bad, "\n")),
                Err(Error::Armor("invalid base64")),
                "{bad:?}"
            );
        }
    }
}
