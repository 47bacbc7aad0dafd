//! The server's RSA identity: the key pair, its PEM form on disk, and the
//! public half as OpenSSH spells it (`ssh-rsa AAAA... comment`) with its
//! SSH wire encoding, `SHA256:` fingerprint and the four-byte tag that age's
//! ssh-rsa stanzas carry. Parsing is strict: a public key has exactly one
//! encoding we accept, so its fingerprint names exactly one key.

use crate::ssh::rsa::{KeyError, MAX_BITS, MIN_BITS, check_size};
use crate::ssh::wire::{Reader, put_mpint, put_string};
use base64ct::{Base64, Encoding};
use getrandom::SysRng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use std::fmt;

/// Comment on the public key line the server hands out (`KEY`, `key.pub`).
pub const COMMENT: &str = "colorsort";
/// Key sizes `Identity::generate` offers.
pub const GENERATE_BITS: [usize; 3] = [2048, 3072, 4096];
/// Upper bound on an ssh-rsa wire blob: type string, an exponent of at most
/// 5 bytes and an 8192-bit modulus, each with its 4-byte length, fit well
/// within it.
const MAX_WIRE_LEN: usize = 2048;
const SSH_RSA: &str = "ssh-rsa";

/// What can go wrong with keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `generate` was asked for a size other than 2048, 3072 or 4096 bits.
    UnsupportedSize(usize),
    /// A key's modulus is outside 2048..=8192 bits.
    KeySize(usize),
    /// The text is not a PEM-encoded RSA private key (PKCS#1 or PKCS#8).
    Pem,
    /// The numbers do not form a valid RSA key (bad modulus or exponent).
    InvalidKey,
    /// The line is not `ssh-rsa BASE64 [comment]`.
    LineSyntax,
    /// The line or its key blob names a key type other than `ssh-rsa`.
    KeyType,
    /// The key blob is not canonical padded base64.
    Base64,
    /// The key blob is longer than any supported key needs.
    TooLong,
    /// The key blob is malformed: truncated, a negative or non-minimal
    /// mpint, or bytes after the modulus.
    Wire,
    /// The operating system's random number generator failed.
    Rng,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnsupportedSize(bits) => {
                write!(f, "unsupported key size {bits} (choose 2048, 3072 or 4096)")
            }
            Error::KeySize(bits) => {
                write!(
                    f,
                    "rsa key of {bits} bits is outside {MIN_BITS}..={MAX_BITS}"
                )
            }
            Error::Pem => f.write_str("not a pem rsa private key (pkcs#1 or pkcs#8)"),
            Error::InvalidKey => f.write_str("invalid rsa key"),
            Error::LineSyntax => f.write_str("malformed openssh public key line"),
            Error::KeyType => f.write_str("not an ssh-rsa key"),
            Error::Base64 => f.write_str("invalid base64 in openssh public key"),
            Error::TooLong => f.write_str("openssh public key too long"),
            Error::Wire => f.write_str("malformed ssh-rsa key blob"),
            Error::Rng => f.write_str("random number generator failed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Error {
        match e {
            KeyError::Size(bits) => Error::KeySize(bits),
            KeyError::Invalid => Error::InvalidKey,
        }
    }
}

/// The server's RSA identity.
pub struct Identity {
    key: rsa::PrivateKey,
    public: PublicKey,
}

/// An RSA public key as used by the ssh-rsa age recipient.
#[derive(Clone)]
pub struct PublicKey {
    key: rsa::PublicKey,
    /// The SSH wire encoding: string "ssh-rsa", mpint e, mpint n.
    wire: Vec<u8>,
}

impl Identity {
    /// Generates a fresh key of `bits` bits (2048, 3072 or 4096) with public
    /// exponent 65537, from the operating system's RNG.
    pub fn generate(bits: usize) -> Result<Identity, Error> {
        if !GENERATE_BITS.contains(&bits) {
            return Err(Error::UnsupportedSize(bits));
        }
        let key = rsa::PrivateKey::new(&mut SysRng, bits).map_err(|e| match e {
            rsa::Error::Rng => Error::Rng,
            _ => Error::InvalidKey,
        })?;
        Identity::from_key(key)
    }

    /// Parses a PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`) PEM
    /// private key of 2048 to 8192 bits. Whitespace around the block is
    /// ignored; encrypted keys are not supported.
    pub fn from_pem(pem: &str) -> Result<Identity, Error> {
        let pem = pem.trim();
        let key = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            rsa::PrivateKey::from_pkcs1_pem(pem).map_err(|_| Error::Pem)?
        } else if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
            rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|_| Error::Pem)?
        } else {
            return Err(Error::Pem);
        };
        Identity::from_key(key)
    }

    fn from_key(key: rsa::PrivateKey) -> Result<Identity, Error> {
        let public = PublicKey::from_rsa(key.to_public_key())?;
        Ok(Identity { key, public })
    }

    /// Encodes the key as PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`)
    /// with LF line endings, as `ssh-keygen -m PEM` writes it.
    pub fn to_pem(&self) -> Result<String, Error> {
        let pem = self
            .key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|_| Error::Pem)?;
        Ok(pem.as_str().to_owned())
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The `rsa` private key, for age's ssh-rsa unwrapping.
    pub(crate) fn rsa(&self) -> &rsa::PrivateKey {
        &self.key
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses an OpenSSH public key line: `ssh-rsa BASE64 [comment]`, with
    /// surrounding whitespace (such as the file's final newline) ignored.
    ///
    /// Accepts exactly the canonical encoding: the blob is canonical padded
    /// base64, its inner type is `ssh-rsa`, both mpints are positive and
    /// minimal, nothing follows the modulus, and the modulus has 2048 to
    /// 8192 bits.
    pub fn from_ssh_line(line: &str) -> Result<PublicKey, Error> {
        let line = line.trim();
        let (kind, rest) = line.split_once(' ').ok_or(Error::LineSyntax)?;
        if kind != SSH_RSA {
            return Err(Error::KeyType);
        }
        let blob = match rest.split_once(' ') {
            Some((blob, _comment)) => blob,
            None => rest,
        };
        if blob.is_empty() {
            return Err(Error::LineSyntax);
        }
        if blob.len() > MAX_WIRE_LEN.div_ceil(3) * 4 {
            return Err(Error::TooLong);
        }
        let mut wire = [0u8; MAX_WIRE_LEN];
        let wire = Base64::decode(blob, &mut wire).map_err(|_| Error::Base64)?;
        PublicKey::from_wire(wire)
    }

    /// Parses the SSH wire encoding of an ssh-rsa key, strictly.
    fn from_wire(wire: &[u8]) -> Result<PublicKey, Error> {
        let mut reader = Reader::new(wire);
        if reader.string().ok_or(Error::Wire)? != SSH_RSA.as_bytes() {
            return Err(Error::KeyType);
        }
        let e = reader.mpint().ok_or(Error::Wire)?;
        let n = reader.mpint().ok_or(Error::Wire)?;
        if !reader.is_empty() {
            return Err(Error::Wire);
        }
        let key = crate::ssh::rsa::public_key(e, n)?;
        let public = PublicKey::from_rsa(key)?;
        // Minimal mpints make the encoding unique; check that the canonical
        // form is indeed what we read.
        if public.wire != wire {
            return Err(Error::Wire);
        }
        Ok(public)
    }

    fn from_rsa(key: rsa::PublicKey) -> Result<PublicKey, Error> {
        check_size(key.n().bit_width_vartime() as usize)?;
        let mut wire = Vec::with_capacity(MAX_WIRE_LEN);
        put_string(&mut wire, SSH_RSA.as_bytes());
        put_mpint(&mut wire, &key.e_bytes());
        put_mpint(&mut wire, &key.n_bytes());
        Ok(PublicKey { key, wire })
    }

    /// `ssh-rsa BASE64 comment`, without a newline; with an empty comment,
    /// just `ssh-rsa BASE64`.
    pub fn to_ssh_line(&self, comment: &str) -> String {
        let blob = Base64::encode_string(&self.wire);
        if comment.is_empty() {
            format!("{SSH_RSA} {blob}")
        } else {
            format!("{SSH_RSA} {blob} {comment}")
        }
    }

    /// `SHA256:` and the unpadded base64 SHA-256 of the wire encoding, as
    /// `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        crate::ssh::fingerprint(&self.wire)
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bit_width_vartime() as usize
    }

    /// The first four bytes of SHA-256 of the wire encoding: age names the
    /// recipient of an ssh-rsa stanza with them.
    pub(crate) fn tag(&self) -> [u8; 4] {
        let hash = Sha256::digest(&self.wire);
        [hash[0], hash[1], hash[2], hash[3]]
    }

    /// Modulus size in bytes: the length of every RSA ciphertext.
    pub(crate) fn size(&self) -> usize {
        self.key.size()
    }

    /// The `rsa` public key, for age's ssh-rsa wrapping.
    pub(crate) fn rsa(&self) -> &rsa::PublicKey {
        &self.key
    }

    /// The SSH wire encoding (string "ssh-rsa", mpint e, mpint n).
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.wire == other.wire
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::Base64Unpadded;

    const SERVER_PEM: &str = include_str!("../test-data/keys/test-only-server-key.pem");
    const SERVER_PUB: &str = include_str!("../test-data/keys/test-only-server-key.pub");
    const OTHER_PUB: &str = include_str!("../test-data/keys/test-only-other-key.pub");
    /// `ssh-keygen -lf test-data/keys/test-only-server-key.pub`, run once.
    const SERVER_FINGERPRINT: &str = "SHA256:V8rHUK4UazrNWiUR4b2NW6B/za3Kna/aJakJ9+G/Qcc";
    /// The same for test-only-other-key.pub.
    const OTHER_FINGERPRINT: &str = "SHA256:DSaBl3/98cJISqN0XBCrdPSMzrSmYgFpx1dll2kQpEc";

    fn server_blob() -> Vec<u8> {
        let blob = SERVER_PUB.split(' ').nth(1).unwrap();
        Base64::decode_vec(blob).unwrap()
    }

    fn line_for(wire: &[u8]) -> String {
        format!("ssh-rsa {} x", Base64::encode_string(wire))
    }

    /// Splits the server key's wire blob into (e, n) magnitudes.
    fn server_parts() -> (Vec<u8>, Vec<u8>) {
        let blob = server_blob();
        let mut r = Reader::new(&blob);
        r.string().unwrap();
        let e = r.mpint().unwrap().to_vec();
        let n = r.mpint().unwrap().to_vec();
        (e, n)
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let key = PublicKey::from_ssh_line(SERVER_PUB).unwrap();
        assert_eq!(key.fingerprint(), SERVER_FINGERPRINT);
        assert_eq!(key.bits(), 2048);
        let other = PublicKey::from_ssh_line(OTHER_PUB).unwrap();
        assert_eq!(other.fingerprint(), OTHER_FINGERPRINT);
        assert_ne!(key, other);
    }

    #[test]
    fn pem_public_half_matches_pub_file() {
        let identity = Identity::from_pem(SERVER_PEM).unwrap();
        assert_eq!(identity.public().fingerprint(), SERVER_FINGERPRINT);
        assert_eq!(identity.public().wire(), server_blob().as_slice());
    }

    #[test]
    fn ssh_line_round_trip() {
        let key = PublicKey::from_ssh_line(SERVER_PUB).unwrap();
        let line = key.to_ssh_line("colorsort-test-only");
        assert_eq!(line, SERVER_PUB.trim_end());
        assert!(!line.contains('\n'));
        let again = PublicKey::from_ssh_line(&line).unwrap();
        assert_eq!(again, key);
        let bare = key.to_ssh_line("");
        assert_eq!(bare.split(' ').count(), 2);
        assert_eq!(PublicKey::from_ssh_line(&bare).unwrap(), key);
    }

    #[test]
    fn comment_may_contain_spaces() {
        let blob = SERVER_PUB.split(' ').nth(1).unwrap();
        let key = PublicKey::from_ssh_line(&format!("ssh-rsa {blob} two words\n")).unwrap();
        assert_eq!(key.fingerprint(), SERVER_FINGERPRINT);
    }

    #[test]
    fn pem_round_trip() {
        let identity = Identity::from_pem(SERVER_PEM).unwrap();
        let pem = identity.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END RSA PRIVATE KEY-----\n"));
        assert!(!pem.contains('\r'));
        let again = Identity::from_pem(&pem).unwrap();
        assert_eq!(again.public(), identity.public());
        assert_eq!(again.rsa(), identity.rsa());
    }

    #[test]
    fn pkcs8_pem_is_accepted() {
        use rsa::pkcs8::EncodePrivateKey;
        let identity = Identity::from_pem(SERVER_PEM).unwrap();
        let pkcs8 = identity.rsa().to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = Identity::from_pem(&pkcs8).unwrap();
        assert_eq!(again.public().fingerprint(), SERVER_FINGERPRINT);
    }

    #[test]
    fn bad_pem_rejected() {
        let body: String = SERVER_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let cases: Vec<(&str, String)> = vec![
            ("empty", String::new()),
            ("public key", SERVER_PUB.to_owned()),
            (
                "openssh label",
                SERVER_PEM.replace("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY"),
            ),
            ("no armor", body),
            ("truncated", SERVER_PEM[..SERVER_PEM.len() / 2].to_owned()),
            (
                "pkcs1 body, pkcs8 label",
                SERVER_PEM.replace("RSA PRIVATE KEY", "PRIVATE KEY"),
            ),
        ];
        for (name, pem) in cases {
            let err = Identity::from_pem(&pem).unwrap_err();
            assert!(matches!(err, Error::Pem), "{name}: {err:?}");
        }
    }

    #[test]
    fn small_pem_key_rejected() {
        // A 1024-bit key that `rsa` itself accepts: we do not.
        let small = rsa::PrivateKey::new(&mut SysRng, 1024).unwrap();
        let pem = small.to_pkcs1_pem(LineEnding::LF).unwrap();
        let err = Identity::from_pem(&pem).unwrap_err();
        assert!(matches!(err, Error::KeySize(1024)), "{err:?}");
    }

    #[test]
    fn generate_checks_size_and_works() {
        for bits in [0, 1024, 2047, 2049, 8192] {
            let err = Identity::generate(bits).unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedSize(b) if b == bits),
                "{err:?}"
            );
        }
        let identity = Identity::generate(2048).unwrap();
        assert_eq!(identity.public().bits(), 2048);
        assert_eq!(identity.rsa().e_bytes().as_ref(), &[1, 0, 1]);
        let back = Identity::from_pem(&identity.to_pem().unwrap()).unwrap();
        assert_eq!(back.public(), identity.public());
    }

    #[test]
    fn malformed_ssh_lines_rejected() {
        let (e, n) = server_parts();
        let blob = SERVER_PUB.split(' ').nth(1).unwrap();

        let wire = |kind: &[u8], e: &[u8], n: &[u8]| {
            let mut w = Vec::new();
            put_string(&mut w, kind);
            put_string(&mut w, e);
            put_string(&mut w, n);
            w
        };
        let mut padded_n = vec![0];
        padded_n.extend_from_slice(&n);

        let mut extra_zero_n = vec![0, 0];
        extra_zero_n.extend_from_slice(&n);
        let mut trailing = wire(b"ssh-rsa", &e, &padded_n);
        trailing.push(0);
        let mut long_len = wire(b"ssh-rsa", &e, &padded_n);
        long_len.truncate(long_len.len() - 1);
        let huge_len = {
            let mut w = Vec::new();
            put_string(&mut w, b"ssh-rsa");
            put_string(&mut w, &e);
            w.extend_from_slice(&u32::MAX.to_be_bytes());
            w.extend_from_slice(&padded_n);
            w
        };
        // The server blob is 279 bytes and needs no padding; the 280-byte
        // `trailing` blob ends in "==", its last data character carrying
        // four unused bits. Setting one gives the same bytes to a lax
        // decoder, so the canonical form fails later, as Wire.
        let canonical = Base64::encode_string(&trailing);
        assert!(canonical.ends_with("=="));
        let data_end = canonical.len() - 2;
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let c = canonical.as_bytes()[data_end - 1] as char;
        let flipped = alphabet.as_bytes()[alphabet.find(c).unwrap() ^ 1] as char;
        let not_canonical = format!("{}{flipped}==", &canonical[..data_end - 1]);
        // A 1024-bit modulus with the same shape.
        let mut short_n = vec![0];
        short_n.extend_from_slice(&n[..128]);
        // An even modulus.
        let mut even_n = padded_n.clone();
        *even_n.last_mut().unwrap() &= 0xfe;

        let cases: Vec<(&str, String, Error)> = vec![
            ("empty", String::new(), Error::LineSyntax),
            ("type only", "ssh-rsa".into(), Error::LineSyntax),
            ("type and space", "ssh-rsa ".into(), Error::LineSyntax),
            ("two spaces", format!("ssh-rsa  {blob}"), Error::LineSyntax),
            (
                "ed25519",
                SERVER_PUB.replacen("ssh-rsa", "ssh-ed25519", 1),
                Error::KeyType,
            ),
            (
                "upper case",
                SERVER_PUB.replacen("ssh-rsa", "SSH-RSA", 1),
                Error::KeyType,
            ),
            (
                "options prefix",
                format!("restrict {SERVER_PUB}"),
                Error::KeyType,
            ),
            ("base64 garbage", "ssh-rsa AAAA*AAA".into(), Error::Base64),
            (
                "unpadded",
                format!("ssh-rsa {}", canonical.trim_end_matches('=')),
                Error::Base64,
            ),
            (
                "padded canonical",
                format!("ssh-rsa {canonical}"),
                Error::Wire,
            ),
            (
                "not canonical",
                format!("ssh-rsa {not_canonical}"),
                Error::Base64,
            ),
            (
                "too long",
                format!("ssh-rsa {}", "A".repeat(4096)),
                Error::TooLong,
            ),
            (
                "inner type",
                line_for(&wire(b"ssh-dss", &e, &padded_n)),
                Error::KeyType,
            ),
            (
                "inner type rsa-sha2-256",
                line_for(&wire(b"rsa-sha2-256", &e, &padded_n)),
                Error::KeyType,
            ),
            (
                "negative n",
                line_for(&wire(b"ssh-rsa", &e, &n)),
                Error::Wire,
            ),
            (
                "extra zero",
                line_for(&wire(b"ssh-rsa", &e, &extra_zero_n)),
                Error::Wire,
            ),
            (
                "zero-padded e",
                line_for(&wire(b"ssh-rsa", &[0, 1, 0, 1], &padded_n)),
                Error::Wire,
            ),
            ("trailing byte", line_for(&trailing), Error::Wire),
            ("truncated", line_for(&long_len), Error::Wire),
            ("huge length", line_for(&huge_len), Error::Wire),
            ("truncated header", line_for(&[0, 0, 0]), Error::Wire),
            (
                "zero e",
                line_for(&wire(b"ssh-rsa", &[], &padded_n)),
                Error::InvalidKey,
            ),
            (
                "even e",
                line_for(&wire(b"ssh-rsa", &[2], &padded_n)),
                Error::InvalidKey,
            ),
            (
                "even n",
                line_for(&wire(b"ssh-rsa", &e, &even_n)),
                Error::InvalidKey,
            ),
            (
                "1024 bits",
                line_for(&wire(b"ssh-rsa", &e, &short_n)),
                Error::KeySize(1024),
            ),
        ];
        for (name, line, want) in cases {
            let result = PublicKey::from_ssh_line(&line);
            assert_eq!(result.map(|_| ()), Err(want), "{name}");
        }
        // The unmodified pieces do form the key, so the cases above fail
        // for the reason they name.
        let good = line_for(&wire(b"ssh-rsa", &e, &padded_n));
        assert_eq!(
            PublicKey::from_ssh_line(&good).unwrap().fingerprint(),
            SERVER_FINGERPRINT
        );
    }

    #[test]
    fn base64ct_rejects_non_canonical() {
        // The parsers above rely on these properties of base64ct.
        let mut out = [0u8; 8];
        assert_eq!(Base64::decode("QQ==", &mut out).unwrap(), b"A");
        assert!(Base64::decode("QR==", &mut out).is_err());
        assert!(Base64::decode("QQ", &mut out).is_err());
        assert!(Base64::decode("QQ=", &mut out).is_err());
        assert!(Base64::decode("QQ==\n", &mut out).is_err());
        assert!(Base64::decode(" QQ==", &mut out).is_err());
        assert_eq!(Base64Unpadded::decode("QQ", &mut out).unwrap(), b"A");
        assert!(Base64Unpadded::decode("QR", &mut out).is_err());
        assert!(Base64Unpadded::decode("QQ==", &mut out).is_err());
        assert!(Base64Unpadded::decode("QUI", &mut out).is_ok());
        assert!(Base64Unpadded::decode("QUJ", &mut out).is_err());
        assert!(Base64Unpadded::decode("Q", &mut out).is_err());
        assert!(Base64Unpadded::decode("QUJD\r", &mut out).is_err());
        assert!(Base64Unpadded::decode("QU-D", &mut out).is_err());
    }

    #[test]
    fn errors_display_lowercase() {
        let all = [
            Error::UnsupportedSize(1),
            Error::KeySize(1),
            Error::Pem,
            Error::InvalidKey,
            Error::LineSyntax,
            Error::KeyType,
            Error::Base64,
            Error::TooLong,
            Error::Wire,
            Error::Rng,
        ];
        for err in all {
            let text = err.to_string();
            assert!(!text.is_empty());
            assert!(!text.starts_with(|c: char| c.is_uppercase()), "{text}");
        }
    }
}
