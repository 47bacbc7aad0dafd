//! The age header: the version line, the recipient stanzas and the MAC
//! line. [`parse`] checks the whole header's syntax and caps before any
//! private-key operation and finds the ssh-rsa stanza that decides whether
//! our key opens the file; [`header_mac`] is the HMAC that seals the header
//! to the file key, which [`verify_mac`] checks.

use super::ssh_rsa::{self, SSH_RSA};
use super::{
    BYTES_PER_LINE, COLUMNS, Error, FILE_KEY_LEN, Limit, MAX_HEADER_LEN, MAX_STANZA_BODY,
    MAX_STANZAS, derive,
};
use crate::identity::PublicKey;
use base64ct::{Base64Unpadded, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub(super) const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
pub(super) const STANZA_PREFIX: &[u8] = b"-> ";
pub(super) const MAC_PREFIX: &[u8] = b"---";
const SCRYPT: &[u8] = b"scrypt";
const MAC_LEN: usize = 32;
/// Unpadded base64 length of the MAC.
pub(super) const MAC_B64_LEN: usize = 43;

/// The ssh-rsa stanza that decides. age's ssh-rsa identity takes the
/// stanzas in order and stops at the first ssh-rsa stanza that is malformed
/// or bears its tag: that one opens the file or fails it, and later
/// stanzas are never tried.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ours {
    /// No ssh-rsa stanza bears our tag.
    Absent,
    /// An ssh-rsa stanza without exactly one argument came first.
    Malformed,
    /// The body of the first stanza with our tag; `None` if it is longer
    /// than the modulus (and so cannot be a ciphertext for our key).
    Body(Option<Vec<u8>>),
}

/// What the header parse keeps: where the MAC'd part and the header end,
/// the MAC, and the ssh-rsa stanza that decides.
pub(super) struct Header {
    /// Offset just past the `---` of the MAC line.
    pub mac_input_end: usize,
    /// Offset of the payload.
    pub end: usize,
    /// The MAC from the MAC line.
    pub mac: [u8; MAC_LEN],
    /// The first ssh-rsa stanza that is malformed or addressed to us.
    pub ours: Ours,
}

/// Returns the line starting at `pos` (without its LF) and the offset after
/// it. Lines of the header must end within `MAX_HEADER_LEN`.
fn header_line(data: &[u8], pos: usize) -> Result<(&[u8], usize), Error> {
    let limit = data.len().min(MAX_HEADER_LEN);
    let window = data
        .get(pos..limit)
        .ok_or(Error::TooLarge(Limit::HeaderLen))?;
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => Ok((&window[..i], pos + i + 1)),
        None if data.len() > MAX_HEADER_LEN => Err(Error::TooLarge(Limit::HeaderLen)),
        None => Err(Error::Header),
    }
}

/// Parses and checks the whole header before any private-key operation.
pub(super) fn parse(data: &[u8], ours: &PublicKey) -> Result<Header, Error> {
    if !data.starts_with(VERSION_LINE) {
        return Err(Error::Header);
    }
    let mut tag = [0u8; 8];
    let our_tag = ssh_rsa::encode_tag(ours, &mut tag).ok_or(Error::Header)?;
    let modulus_len = ours.size();

    let mut pos = VERSION_LINE.len();
    let mut stanzas = 0;
    let mut scrypt = false;
    let mut decided = Ours::Absent;
    loop {
        let (line, next) = header_line(data, pos)?;
        if line.starts_with(MAC_PREFIX) {
            let mac_b64 = line.strip_prefix(b"--- ").ok_or(Error::Header)?;
            if stanzas == 0 || (scrypt && stanzas > 1) || mac_b64.len() != MAC_B64_LEN {
                return Err(Error::Header);
            }
            let mut mac = [0u8; MAC_LEN];
            let decoded = Base64Unpadded::decode(mac_b64, &mut mac).map_err(|_| Error::Header)?;
            if decoded.len() != MAC_LEN {
                return Err(Error::Header);
            }
            return Ok(Header {
                mac_input_end: pos + MAC_PREFIX.len(),
                end: next,
                mac,
                ours: decided,
            });
        }

        let args = line.strip_prefix(STANZA_PREFIX).ok_or(Error::Header)?;
        stanzas += 1;
        if stanzas > MAX_STANZAS {
            return Err(Error::TooLarge(Limit::Stanzas));
        }
        let mut argc = 0;
        for arg in args.split(|&b| b == b' ') {
            if arg.is_empty() || !arg.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
                return Err(Error::Header);
            }
            argc += 1;
        }
        let mut parts = args.split(|&b| b == b' ');
        let kind = parts.next().unwrap_or_default();
        let first_arg = parts.next();
        scrypt |= kind == SCRYPT;
        // Only the deciding stanza's body is kept: at most the modulus size.
        let mut body = None;
        if kind == SSH_RSA && decided == Ours::Absent {
            // The type and exactly one argument, the tag.
            if argc != 2 {
                decided = Ours::Malformed;
            } else if first_arg == Some(our_tag.as_bytes()) {
                body = Some(Vec::with_capacity(modulus_len));
            }
        }
        let deciding = body.is_some();
        let mut body_len = 0;
        pos = next;
        loop {
            let (line, next) = header_line(data, pos)?;
            if line.len() > COLUMNS {
                return Err(Error::Header);
            }
            let mut bytes = [0u8; BYTES_PER_LINE];
            let bytes = Base64Unpadded::decode(line, &mut bytes).map_err(|_| Error::Header)?;
            body_len += bytes.len();
            if body_len > MAX_STANZA_BODY {
                return Err(Error::TooLarge(Limit::StanzaBody));
            }
            if let Some(collected) = &mut body {
                if collected.len() + bytes.len() <= modulus_len {
                    collected.extend_from_slice(bytes);
                } else {
                    body = None;
                }
            }
            pos = next;
            if line.len() < COLUMNS {
                break;
            }
        }
        if deciding {
            decided = Ours::Body(body);
        }
    }
}

/// The HMAC-SHA-256 of the header through the dashes of the MAC line,
/// keyed from the file key.
pub(super) fn header_mac(
    file_key: &[u8; FILE_KEY_LEN],
    header_through_dashes: &[u8],
) -> Option<Hmac<Sha256>> {
    let key = derive(&[], file_key, b"header")?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    mac.update(header_through_dashes);
    Some(mac)
}

/// Checks the header MAC in constant time.
pub(super) fn verify_mac(
    header_through_dashes: &[u8],
    expected: &[u8; MAC_LEN],
    file_key: &[u8; FILE_KEY_LEN],
) -> Result<(), Error> {
    let mac = header_mac(file_key, header_through_dashes).ok_or(Error::Mac)?;
    mac.verify_slice(expected).map_err(|_| Error::Mac)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn header_syntax_rules() {
        let identity = server();
        let ours = rsa_stanza(identity.public());
        let tag = tag_b64(identity.public());
        let with = |before: &[u8], after: &[u8]| [before, &ours, after].concat();
        let line64 = "A".repeat(64);
        let cases: Vec<(&str, Vec<u8>, Result<(), Error>)> = vec![
            ("ours alone", ours.clone(), Ok(())),
            (
                "grease first",
                with(&stanza(&["x-grease", "a!", "~b"], &[1; 70]), b""),
                Ok(()),
            ),
            (
                "grease last",
                with(b"", &stanza(&["x-grease"], &[])),
                Ok(()),
            ),
            (
                "full-line body",
                with(&stanza(&["x"], &[0; 48]), b""),
                Ok(()),
            ),
            (
                "63-column final line",
                with(&stanza(&["x"], &[0; 47]), b""),
                Ok(()),
            ),
            (
                "full line then 63 columns",
                with(&stanza(&["x"], &[0; 95]), b""),
                Ok(()),
            ),
            (
                "other ssh-rsa first",
                with(
                    &rsa_stanza(&PublicKey::from_ssh_line(OTHER_PUB).unwrap()),
                    b"",
                ),
                Ok(()),
            ),
            ("no arguments", with(b"->\n\n", b""), Err(Error::Header)),
            (
                "no space after arrow",
                with(b"->x\n\n", b""),
                Err(Error::Header),
            ),
            (
                "empty argument",
                with(b"-> x  y\n\n", b""),
                Err(Error::Header),
            ),
            ("leading space", with(b"->  x\n\n", b""), Err(Error::Header)),
            (
                "trailing space",
                with(b"-> x \n\n", b""),
                Err(Error::Header),
            ),
            (
                "tab in argument",
                with(b"-> x\ty\n\n", b""),
                Err(Error::Header),
            ),
            (
                "del in argument",
                with(b"-> x\x7f\n\n", b""),
                Err(Error::Header),
            ),
            (
                "non-ascii argument",
                with("-> é\n\n".as_bytes(), b""),
                Err(Error::Header),
            ),
            ("missing body", with(b"-> x\n", b""), Err(Error::Header)),
            (
                "missing final line",
                with(format!("-> x\n{line64}\n").as_bytes(), b""),
                Err(Error::Header),
            ),
            (
                "long body line",
                with(format!("-> x\n{line64}A\n\n").as_bytes(), b""),
                Err(Error::Header),
            ),
            (
                "padded body",
                with(b"-> x\nAA==\n", b""),
                Err(Error::Header),
            ),
            (
                "non-canonical body",
                with(b"-> x\nAB\n", b""),
                Err(Error::Header),
            ),
            (
                "truncated base64",
                with(b"-> x\nAAAAA\n", b""),
                Err(Error::Header),
            ),
            ("cr in body", with(b"-> x\nAA\r\n", b""), Err(Error::Header)),
            (
                "space in body",
                with(b"-> x\nAA AA\n", b""),
                Err(Error::Header),
            ),
            (
                "two short lines",
                with(b"-> x\nAA\nAA\n", b""),
                Err(Error::Header),
            ),
            ("stray line", with(b"hello\n", b""), Err(Error::Header)),
            (
                "scrypt beside ours",
                with(
                    &stanza(&["scrypt", "c2FsdHNhbHRzYWx0c2FsdA", "10"], &[0; 32]),
                    b"",
                ),
                Err(Error::Header),
            ),
            (
                "ssh-rsa without tag first",
                with(&stanza(&["ssh-rsa"], &[0; 256]), b""),
                Err(Error::Header),
            ),
            (
                "ssh-rsa with two arguments first",
                with(&stanza(&["ssh-rsa", &tag, "x"], &[0; 256]), b""),
                Err(Error::Header),
            ),
            (
                "ssh-rsa without tag after ours",
                with(b"", &stanza(&["ssh-rsa"], &[0; 256])),
                Ok(()),
            ),
            (
                "ssh-rsa with two arguments after ours",
                with(b"", &stanza(&["ssh-rsa", &tag, "x"], &[0; 256])),
                Ok(()),
            ),
            (
                "ssh-rsa for another key, then one without tag",
                with(
                    &[
                        rsa_stanza(&PublicKey::from_ssh_line(OTHER_PUB).unwrap()),
                        stanza(&["ssh-rsa"], &[0; 256]),
                    ]
                    .concat(),
                    b"",
                ),
                Err(Error::Header),
            ),
            (
                "garbage for our tag first",
                with(&stanza(&["ssh-rsa", &tag], &[1; 256]), b""),
                Err(Error::UnwrapFailed),
            ),
            (
                "garbage for our tag after ours",
                with(b"", &stanza(&["ssh-rsa", &tag], &[1; 256])),
                Ok(()),
            ),
            ("ours many times", ours.repeat(MAX_STANZAS), Ok(())),
            (
                "a bad stanza after ours is still parsed",
                with(b"", b"-> x\nAB\n"),
                Err(Error::Header),
            ),
            (
                "scrypt alone",
                stanza(&["scrypt", "c2FsdHNhbHRzYWx0c2FsdA", "10"], &[0; 32]),
                Err(Error::NoMatchingKey),
            ),
            ("no stanzas", Vec::new(), Err(Error::Header)),
        ];
        for (name, stanzas, want) in cases {
            let file = sealed(&stanzas, b"hello");
            let got = open_copy(&file, &identity);
            match want {
                Ok(()) => assert_eq!(got.as_deref(), Ok(&b"hello"[..]), "{name}"),
                Err(err) => assert_eq!(got, Err(err), "{name}"),
            }
        }
    }

    #[test]
    fn version_and_mac_line_rules() {
        let identity = server();
        let file = sealed(&rsa_stanza(identity.public()), b"hello");
        assert_eq!(open_copy(&file, &identity).as_deref(), Ok(&b"hello"[..]));
        let header = header_of(&file);
        let header_text = std::str::from_utf8(header).unwrap();
        let payload = &file[header.len()..];
        let mac = header_text.rsplit_once("--- ").unwrap().1.trim_end();
        let edit = |from: &str, to: &str| {
            let mut out = header_text.replacen(from, to, 1).into_bytes();
            out.extend_from_slice(payload);
            out
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("version v2", edit("org/v1\n", "org/v2\n")),
            ("version with space", edit("org/v1\n", "org/v1 \n")),
            ("version crlf", edit("org/v1\n", "org/v1\r\n")),
            (
                "header crlf",
                header_text
                    .replace('\n', "\r\n")
                    .into_bytes()
                    .into_iter()
                    .chain(payload.iter().copied())
                    .collect(),
            ),
            ("leading newline", [b"\n", &file[..]].concat()),
            ("mac without space", edit("--- ", "---")),
            ("mac with two spaces", edit("--- ", "---  ")),
            (
                "mac trailing space",
                edit(&format!("{mac}\n"), &format!("{mac} \n")),
            ),
            (
                "mac truncated",
                edit(&format!("{mac}\n"), &format!("{}\n", &mac[..42])),
            ),
            (
                "mac padded",
                edit(&format!("{mac}\n"), &format!("{mac}=\n")),
            ),
            ("mac missing", edit(&format!(" {mac}\n"), "\n")),
            ("dashes only", edit(&format!("--- {mac}\n"), "---\n")),
            ("four dashes", edit("--- ", "---- ")),
        ];
        for (name, file) in cases {
            assert_eq!(open_copy(&file, &identity), Err(Error::Header), "{name}");
        }
    }

    #[test]
    fn caps_are_enforced() {
        let identity = server();
        let ours = rsa_stanza(identity.public());
        let grease = stanza(&["g"], &[]);
        let open = |stanzas: &[u8]| open_copy(&sealed(stanzas, b"x"), &identity).map(|_| ());

        let mut many = grease.repeat(MAX_STANZAS - 1);
        many.extend_from_slice(&ours);
        assert_eq!(open(&many), Ok(()), "exactly MAX_STANZAS");
        many.extend_from_slice(&grease);
        assert_eq!(open(&many), Err(Error::TooLarge(Limit::Stanzas)));

        let body_ok = [stanza(&["g"], &vec![0; MAX_STANZA_BODY]), ours.clone()].concat();
        assert_eq!(open(&body_ok), Ok(()), "body of exactly MAX_STANZA_BODY");
        let body_big = [stanza(&["g"], &vec![0; MAX_STANZA_BODY + 1]), ours.clone()].concat();
        assert_eq!(open(&body_big), Err(Error::TooLarge(Limit::StanzaBody)));

        // A long argument brings the header to exactly the cap, then one past.
        let base = sealed(&[stanza(&["g", "a"], &[]), ours.clone()].concat(), b"x");
        let base_header = header_of(&base).len();
        let arg = "a".repeat(MAX_HEADER_LEN - base_header + 1);
        let at_cap = [stanza(&["g", &arg], &[]), ours.clone()].concat();
        assert_eq!(header_of(&sealed(&at_cap, b"x")).len(), MAX_HEADER_LEN);
        assert_eq!(open(&at_cap), Ok(()), "header of exactly MAX_HEADER_LEN");
        let over = [stanza(&["g", &arg, "b"], &[]), ours.clone()].concat();
        assert_eq!(open(&over), Err(Error::TooLarge(Limit::HeaderLen)));

        let mut endless = VERSION_LINE.to_vec();
        endless.extend(std::iter::repeat_n(b'-', 2 * MAX_HEADER_LEN));
        assert_eq!(
            open_copy(&endless, &identity),
            Err(Error::TooLarge(Limit::HeaderLen))
        );
    }
}
