//! SSH signatures (SSHSIG) as `ssh-keygen -Y sign` writes them: the armored
//! text, the signature blob inside it, the public key it names, and the
//! check of a signature over a message in a namespace. This is what lets the
//! server tell an upload signed by a known sender from any other.
//!
//! Format and behaviour follow OpenSSH's PROTOCOL.sshsig and its reference
//! verifier (`ssh-keygen -Y verify`), with these deliberate differences,
//! each of which only ever turns an acceptance into a rejection except the
//! first:
//!
//! - CRLF line endings are accepted, as in OpenSSH 9.5 and later (9.4 and
//!   earlier reject a CRLF header line).
//! - Nothing but one line ending may follow the END line; ssh-keygen ignores
//!   whatever follows it.
//! - Only version 1 is accepted; ssh-keygen also accepts version 0.
//! - The reserved field must be empty and no string field may hold a NUL;
//!   ssh-keygen ignores a non-empty reserved field and allows one NUL at the
//!   end of a string.
//! - Keys are `ssh-ed25519`, `sk-ssh-ed25519@openssh.com` and `ssh-rsa` of
//!   2048 to 8192 bits (`ssh::rsa::MIN_BITS`, `MAX_BITS`) with minimal
//!   mpints; ssh-keygen also takes ECDSA, DSA, certificates and RSA keys of
//!   1024 to 16384 bits with padded mpints.
//! - An Ed25519 signature's scalar must be reduced (s < ℓ); ssh-keygen takes
//!   any s < 2^253, so it also accepts the altered copies s + ℓ.
//! - A security-key signature must assert user presence (touch); ssh-keygen
//!   does not check the flag when verifying signatures.
//! - The namespace must not be empty (PROTOCOL.sshsig: "MUST NOT").
//!
//! The module is a leaf: it uses only `crate::ssh`, the wire encoding, the
//! RSA key rule and the fingerprint it shares with [`crate::identity`].

mod armor;
mod public_key;
mod signature;

pub use public_key::PublicKey;
pub use signature::Signature;

use std::fmt;

/// Largest armored signature accepted, in bytes. An 8192-bit RSA signature
/// (key and signature of 1 KiB each) armors to about 3 KiB. It is also the
/// protocol's cap on a signed `SEAL`'s SIGSIZE, and not a setting: raising
/// it would admit nothing the verifier accepts, and 8 KiB is nothing beside
/// a payload.
pub const MAX_SIGNATURE: usize = 8 * 1024;
/// Longest signature namespace, in bytes.
pub const MAX_NAMESPACE: usize = 64;

/// Key type name of Ed25519 keys and signatures.
pub const ED25519: &str = "ssh-ed25519";
/// Key type name of Ed25519 security keys (FIDO) and their signatures.
pub const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com";
/// Key type name of RSA keys.
pub const RSA: &str = "ssh-rsa";

/// Longest excerpt of an input string (a key type, a namespace) that an
/// error repeats.
const EXCERPT: usize = 64;

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The armored text is longer than [`MAX_SIGNATURE`] bytes.
    TooLong,
    /// The text is not an armored SSH signature: no BEGIN line at its very
    /// start, no END line, bytes after the END line, or invalid base64.
    Armor(&'static str),
    /// The decoded blob, the key blob or the signature blob inside it is
    /// malformed: truncated, bytes left over, or a field out of place.
    Malformed(&'static str),
    /// The blob's version is not 1.
    Version(u32),
    /// The key is of a type not verified here (ECDSA, DSA, certificates,
    /// anything unknown); holds the type name as written, escaped.
    UnsupportedKey(String),
    /// An RSA key's modulus is outside 2048..=8192 bits
    /// (`ssh::rsa::MIN_BITS`, `MAX_BITS`).
    KeySize(usize),
    /// The key's numbers are no valid key: an Ed25519 point off the curve, an
    /// RSA modulus or exponent out of range.
    InvalidKey,
    /// The message was hashed with something other than sha256 or sha512;
    /// holds the name, escaped.
    UnsupportedHash(String),
    /// An RSA signature of a type other than rsa-sha2-256 or rsa-sha2-512,
    /// such as the SHA-1 `ssh-rsa`; holds the type, escaped.
    UnsupportedSignature(String),
    /// The signature was made for another namespace; holds it, escaped.
    WrongNamespace(String),
    /// A security-key signature made without the user's touch.
    NoUserPresence,
    /// The signature does not verify for this message and key.
    BadSignature,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLong => write!(f, "ssh signature longer than {MAX_SIGNATURE} bytes"),
            Error::Armor(what) => write!(f, "malformed ssh signature armor: {what}"),
            Error::Malformed(what) => write!(f, "malformed ssh signature: {what}"),
            Error::Version(v) => write!(f, "unsupported ssh signature version {v}"),
            Error::UnsupportedKey(kind) => write!(f, "unsupported key type \"{kind}\""),
            Error::KeySize(bits) => write!(
                f,
                "rsa key of {bits} bits is outside {}..={}",
                crate::ssh::rsa::MIN_BITS,
                crate::ssh::rsa::MAX_BITS
            ),
            Error::InvalidKey => f.write_str("invalid public key"),
            Error::UnsupportedHash(name) => {
                write!(f, "unsupported signature hash algorithm \"{name}\"")
            }
            Error::UnsupportedSignature(kind) => {
                write!(f, "unsupported rsa signature algorithm \"{kind}\"")
            }
            Error::WrongNamespace(ns) => write!(f, "signature is for namespace \"{ns}\""),
            Error::NoUserPresence => f.write_str("security key signature without user presence"),
            Error::BadSignature => f.write_str("bad signature"),
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::ssh::rsa::KeyError> for Error {
    fn from(e: crate::ssh::rsa::KeyError) -> Error {
        use crate::ssh::rsa::KeyError;
        match e {
            KeyError::Size(bits) => Error::KeySize(bits),
            KeyError::Invalid => Error::InvalidKey,
        }
    }
}

/// A namespace is 1 to [`MAX_NAMESPACE`] bytes of printable ASCII other
/// than space and comma: one token in the `POLICY` reply, and listable in an
/// allowed_signers `namespaces=` option, whose patterns commas separate.
/// Both a server's setting and a client's choice are held to it.
pub fn check_namespace(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_NAMESPACE {
        return Err(format!("must be 1 to {MAX_NAMESPACE} bytes"));
    }
    if !v.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return Err(format!(
            "{v:?} holds a space, a comma or a byte outside printable ASCII"
        ));
    }
    Ok(())
}

/// Up to [`EXCERPT`] bytes of `raw` with everything but printable ASCII
/// escaped, and `...` where it was cut: safe for a log or a reply line.
pub(crate) fn excerpt(raw: &[u8]) -> String {
    let mut out: String = raw
        .iter()
        .take(EXCERPT)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if raw.len() > EXCERPT {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_escaped_and_capped() {
        assert_eq!(excerpt(b"ssh-dss"), "ssh-dss");
        assert_eq!(excerpt(b"a\"b\n\0\xff"), "a\\\"b\\n\\x00\\xff");
        let long = excerpt(&[b'x'; 100]);
        assert_eq!(long, format!("{}...", "x".repeat(EXCERPT)));
    }

    #[test]
    fn namespaces_are_one_printable_token() {
        let long = "n".repeat(MAX_NAMESPACE + 1);
        let length = format!("must be 1 to {MAX_NAMESPACE} bytes");
        let bytes =
            |v: &str| format!("{v:?} holds a space, a comma or a byte outside printable ASCII");
        let cases: [(&str, Result<(), String>); 10] = [
            ("colorsort", Ok(())),
            ("photos@example.com", Ok(())),
            ("!~", Ok(())),
            (&long[1..], Ok(())),
            ("", Err(length.clone())),
            (&long, Err(length)),
            ("two words", Err(bytes("two words"))),
            ("a,b", Err(bytes("a,b"))),
            ("tab\t", Err(bytes("tab\t"))),
            ("caf\u{e9}", Err(bytes("caf\u{e9}"))),
        ];
        for (namespace, want) in cases {
            assert_eq!(check_namespace(namespace), want, "{namespace:?}");
        }
    }

    #[test]
    fn display_is_lowercase_and_one_line() {
        let all = [
            Error::TooLong,
            Error::Armor("missing header"),
            Error::Malformed("truncated"),
            Error::Version(2),
            Error::UnsupportedKey("ecdsa-sha2-nistp256".into()),
            Error::KeySize(1024),
            Error::InvalidKey,
            Error::UnsupportedHash("md5".into()),
            Error::UnsupportedSignature("ssh-rsa".into()),
            Error::WrongNamespace("git".into()),
            Error::NoUserPresence,
            Error::BadSignature,
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.contains('\n'), "{s}");
            assert!(s.starts_with(|c: char| c.is_ascii_lowercase()), "{s}");
        }
    }
}
