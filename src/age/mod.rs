//! The age v1 file format (age-encryption.org/v1, c2sp.org/age) as far as
//! colorsort needs it: the textual header with its recipient stanzas and
//! HMAC, the ChaCha20-Poly1305 STREAM payload in 64 KiB chunks, the strict
//! ASCII armor, and the ssh-rsa recipient (RSA-OAEP-SHA-256 of the file key
//! to the server's key, named by a four-byte tag of the key). The server
//! decrypts uploads in place, in the buffer they arrived in; the client
//! encrypts.
//!
//! A file opens here exactly when the reference `age` 1.1.1 command opens
//! it with our key, with two kinds of exception, both refusals: every rule
//! the specification says a decoder MUST enforce is enforced where `age`
//! does not (an scrypt stanza beside others, a file key of other than 16
//! bytes), and hostile inputs are bounded by the `MAX_*` caps below.
//!
//! This module owns the public API, the error type, the caps and the key
//! derivation the parts share. `header` parses the header and checks its
//! MAC, `stream` is the payload, `armor` the ASCII armor, `ssh_rsa` the
//! recipient, and `encrypt` writes files.

mod armor;
mod encrypt;
mod header;
mod ssh_rsa;
mod stream;
#[cfg(test)]
mod test_util;

pub use armor::armor;

use crate::identity::{Identity, PublicKey};
use header::{MAC_B64_LEN, MAC_PREFIX, Ours, STANZA_PREFIX, VERSION_LINE};
use hkdf::Hkdf;
use sha2::Sha256;
use ssh_rsa::{SSH_RSA, SSH_RSA_TAG_B64_LEN};
use std::fmt;
use stream::{NONCE_LEN, TAG_LEN};

/// Plaintext bytes per STREAM chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Most recipient stanzas a header may carry.
pub const MAX_STANZAS: usize = 64;
/// Longest header accepted, from the version line through the MAC line.
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// Largest decoded body of a single stanza.
pub const MAX_STANZA_BODY: usize = 8 * 1024;

const FILE_KEY_LEN: usize = 16;
/// Base64 characters per line, in stanza bodies and in the armor.
const COLUMNS: usize = 64;
/// Bytes carried by one full line of base64.
const BYTES_PER_LINE: usize = COLUMNS / 4 * 3;

/// Why an age file did not open (or could not be made). Every decryption
/// failure displays the same way, so that messages sent back to a client
/// reveal nothing about which check failed; the variants are for tests and
/// logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The ASCII armor is malformed: bad begin or end line, a line longer
    /// or shorter than the 64-column layout allows, non-canonical base64,
    /// or after the end line anything but less than 1 KiB of whitespace.
    Armor,
    /// The header is malformed: wrong version line (leading whitespace
    /// included), bad stanza or MAC line syntax, non-canonical base64, an
    /// scrypt stanza beside others, or an ssh-rsa stanza without exactly
    /// one argument before any stanza addressed to our key.
    Header,
    /// A hostile-input cap was exceeded.
    TooLarge(Limit),
    /// No stanza is addressed to our key.
    NoMatchingKey,
    /// The first stanza addressed to our key did not unwrap to a 16-byte
    /// file key. Later ones are not tried, as `age` does not try them.
    UnwrapFailed,
    /// The header MAC does not match: the header was altered, or a stanza
    /// for our key carried a file key other than the one the header was
    /// sealed with.
    Mac,
    /// The payload is tampered with, truncated, lacks its final chunk, has
    /// an empty final chunk after other chunks, or continues past it.
    Payload,
    /// Encryption failed: the random number generator (or the RSA
    /// encryption that draws on it) failed.
    Encrypt,
}

/// The cap that `Error::TooLarge` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More than `MAX_STANZAS` stanzas.
    Stanzas,
    /// A header longer than `MAX_HEADER_LEN`.
    HeaderLen,
    /// A stanza body larger than `MAX_STANZA_BODY`.
    StanzaBody,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Encrypt => f.write_str("encryption failed"),
            _ => f.write_str("decryption failed"),
        }
    }
}

impl std::error::Error for Error {}

/// Decrypts a binary or armored age file held in `buf`, in place. On success
/// `buf` holds exactly the plaintext; on failure it is zeroed and emptied,
/// so no unauthenticated plaintext outlives the call.
///
/// No second buffer of the payload's size is allocated: armor is decoded
/// toward the start of `buf`, then each chunk is authenticated, decrypted
/// where it lies, and moved down behind the previous one.
pub fn decrypt_in_place(buf: &mut Vec<u8>, identity: &Identity) -> Result<(), Error> {
    match open(buf, identity) {
        Ok(len) => {
            buf.truncate(len);
            Ok(())
        }
        Err(err) => {
            buf.fill(0);
            buf.clear();
            Err(err)
        }
    }
}

/// Seals `plaintext` to `recipient` as a binary age file with a single
/// ssh-rsa stanza.
pub fn encrypt(plaintext: &[u8], recipient: &PublicKey) -> Result<Vec<u8>, Error> {
    let mut file_key = [0u8; FILE_KEY_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut file_key).map_err(|_| Error::Encrypt)?;
    getrandom::fill(&mut nonce).map_err(|_| Error::Encrypt)?;
    let body = ssh_rsa::wrap(&file_key, recipient)?;
    let mut tag = [0u8; 8];
    let tag = ssh_rsa::encode_tag(recipient, &mut tag).ok_or(Error::Encrypt)?;
    let mut stanzas = Vec::new();
    encrypt::push_stanza(&mut stanzas, &[SSH_RSA, tag.as_bytes()], &body);
    let mut out = Vec::with_capacity(encrypted_len(plaintext.len(), recipient));
    encrypt::seal(&mut out, &stanzas, &file_key, &nonce, plaintext)?;
    Ok(out)
}

/// The exact length of `encrypt(plaintext, recipient)` for a plaintext of
/// `plaintext_len` bytes (saturating at `usize::MAX`).
pub fn encrypted_len(plaintext_len: usize, recipient: &PublicKey) -> usize {
    let body_b64 = (recipient.size() * 4).div_ceil(3);
    // Each body line ends in LF, and the last line is always short (maybe
    // empty), hence one LF more than there are full lines.
    let stanza = STANZA_PREFIX.len() + SSH_RSA.len() + 1 + SSH_RSA_TAG_B64_LEN + 1;
    let stanza = stanza + body_b64 + body_b64 / COLUMNS + 1;
    let header = VERSION_LINE.len() + stanza + MAC_PREFIX.len() + 1 + MAC_B64_LEN + 1;
    let chunks = plaintext_len.div_ceil(CHUNK_SIZE).max(1);
    header
        .saturating_add(NONCE_LEN)
        .saturating_add(plaintext_len)
        .saturating_add(chunks.saturating_mul(TAG_LEN))
}

/// Opens the file in `buf`; returns the plaintext length, the plaintext
/// having been moved to the start of `buf`.
fn open(buf: &mut [u8], identity: &Identity) -> Result<usize, Error> {
    let len = if armor::is_armored(buf) {
        armor::dearmor_in_place(buf)?
    } else {
        buf.len()
    };
    let file = &mut buf[..len];
    let header = header::parse(file, identity.public())?;
    // A stanza that does not unwrap still goes through the MAC check, with
    // a dummy key whose result is thrown away, so that a reply's timing does
    // not tell an RSA padding failure from a MAC failure.
    let unwrapped = match &header.ours {
        Ours::Absent => Err(Error::NoMatchingKey),
        Ours::Malformed => Err(Error::Header),
        Ours::Body(None) => Err(Error::UnwrapFailed),
        Ours::Body(Some(body)) => ssh_rsa::unwrap_file_key(body, identity),
    };
    let file_key = match unwrapped {
        Ok(key) => key,
        Err(Error::UnwrapFailed) => [0; FILE_KEY_LEN],
        Err(e) => return Err(e),
    };
    let mac = header::verify_mac(&file[..header.mac_input_end], &header.mac, &file_key);
    unwrapped?;
    mac?;
    stream::decrypt(file, header.end, &file_key)
}

/// HKDF-SHA-256 with 32 bytes of output.
fn derive(salt: &[u8], file_key: &[u8; FILE_KEY_LEN], info: &[u8]) -> Option<[u8; 32]> {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), file_key)
        .expand(info, &mut okm)
        .ok()?;
    Some(okm)
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn good_fixtures_decrypt() {
        let identity = server();
        let cases = [
            ("small.age", "small.png"),
            ("small.armored.age", "small.png"),
            ("small.crlf.armored.age", "small.png"),
            ("small.spaced.armored.age", "small.png"),
            ("small.mixed-eol.armored.age", "small.png"),
            ("aligned.armored.age", "aligned.bin"),
            ("script-sealed.age", "small.png"),
            ("rsa-garbage-after.age", "small.png"),
            ("rsa-no-tag-after.age", "small.png"),
            ("rsa-short-body.age", "small.png"),
            ("noise.age", "noise.png"),
            ("noise.armored.age", "noise.png"),
            ("exact64k.age", "exact64k.png"),
            ("empty.age", "empty.bin"),
            ("two-recipients.age", "small.png"),
        ];
        for (file, plain) in cases {
            let want = fixture(&format!("plain/{plain}"));
            let got = open_copy(&fixture(file), &identity);
            assert_eq!(got.as_deref(), Ok(want.as_slice()), "{file}");
        }
    }

    #[test]
    fn fail_fixtures_rejected() {
        let identity = server();
        let cases = [
            ("fail_wrong_key.age", Error::NoMatchingKey),
            ("fail_flipped_mac.age", Error::Mac),
            ("fail_mac_not_canonical.age", Error::Header),
            ("fail_body_not_canonical.age", Error::Header),
            ("fail_flipped_payload.age", Error::Payload),
            ("fail_truncated.age", Error::Payload),
            ("fail_missing_final.age", Error::Payload),
            ("fail_trailing_data.age", Error::Payload),
            ("fail_short_nonce.age", Error::Payload),
            ("fail_version.age", Error::Header),
            ("fail_armor_long_line.age", Error::Armor),
            ("fail_armor_short_line.age", Error::Armor),
            ("fail_armor_garbage_after_end.age", Error::Armor),
            ("fail_armor_no_end.age", Error::Armor),
            ("fail_armor_not_canonical.age", Error::Armor),
            ("fail_armor_leading_whitespace.age", Error::Header),
            ("fail_rsa_garbage_first.age", Error::UnwrapFailed),
            ("fail_rsa_short_garbage_first.age", Error::UnwrapFailed),
            ("fail_rsa_no_tag_first.age", Error::Header),
            // What `age` 1.1.1 opens, refused on purpose.
            ("fail_scrypt_beside.age", Error::Header),
            ("fail_file_key_15.age", Error::UnwrapFailed),
            ("fail_too_many_stanzas.age", Error::TooLarge(Limit::Stanzas)),
            (
                "fail_stanza_body_too_large.age",
                Error::TooLarge(Limit::StanzaBody),
            ),
            (
                "fail_header_too_long.age",
                Error::TooLarge(Limit::HeaderLen),
            ),
        ];
        let mut seen = 0;
        for entry in
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/test-data/age")).unwrap()
        {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.starts_with("fail_") {
                assert!(
                    cases.iter().any(|(f, _)| *f == name),
                    "{name} has no expectation"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, cases.len());
        for (file, want) in cases {
            assert_eq!(open_copy(&fixture(file), &identity), Err(want), "{file}");
        }
    }

    #[test]
    fn round_trip_sizes() {
        let identity = server();
        let public = identity.public();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 200 * 1024] {
            let plaintext = rng.bytes(len);
            let file = encrypt(&plaintext, public).unwrap();
            assert_eq!(file.len(), encrypted_len(len, public), "length for {len}");
            assert_eq!(
                open_copy(&file, &identity).unwrap(),
                plaintext,
                "binary {len}"
            );
            assert_eq!(
                open_copy(&armor(&file), &identity).unwrap(),
                plaintext,
                "armored {len}"
            );
        }
    }

    #[test]
    fn encrypt_is_randomized_and_addressed() {
        let identity = server();
        let a = encrypt(b"same", identity.public()).unwrap();
        let b = encrypt(b"same", identity.public()).unwrap();
        assert_ne!(a, b);
        let expected = format!("-> ssh-rsa {}\n", tag_b64(identity.public()));
        assert!(a[VERSION_LINE.len()..].starts_with(expected.as_bytes()));
        let other = PublicKey::from_ssh_line(OTHER_PUB).unwrap();
        let to_other = encrypt(b"same", &other).unwrap();
        assert_eq!(open_copy(&to_other, &identity), Err(Error::NoMatchingKey));
    }

    #[test]
    fn every_byte_flip_fails() {
        // age files are not malleable: any single change must be caught,
        // whichever layer catches it.
        let identity = server();
        let file = fixture("small.age");
        for i in 0..file.len() {
            let mut flipped = file.clone();
            flipped[i] ^= 1 << (i % 8);
            assert!(open_copy(&flipped, &identity).is_err(), "flip at {i}");
        }
        for cut in 0..file.len() {
            assert!(open_copy(&file[..cut], &identity).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn armored_flips_fail() {
        let identity = server();
        let file = fixture("small.armored.age");
        let mut rng = XorShift(7);
        for _ in 0..300 {
            let i = rng.below(file.len());
            let mut flipped = file.clone();
            flipped[i] ^= 1 << rng.below(8);
            assert!(open_copy(&flipped, &identity).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let identity = server();
        let good = fixture("small.age");
        let armored = armor(&good);
        let header_len = header_of(&good).len();
        let mut rng = XorShift(0xdead_beef);
        for round in 0..2000 {
            let mut input = match round % 4 {
                0 => {
                    let n = rng.below(600);
                    rng.bytes(n)
                }
                // Overwrite bytes in the header of a real file.
                1 => {
                    let mut f = good.clone();
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(header_len);
                        f[i] = rng.next() as u8;
                    }
                    f
                }
                // Splice random bytes into a real file.
                2 => {
                    let mut f = good.clone();
                    let at = rng.below(f.len());
                    let n = rng.below(100);
                    f.splice(at..at, rng.bytes(n));
                    f
                }
                // Cut an armored file short.
                _ => armored[..rng.below(armored.len())].to_vec(),
            };
            let before = input.clone();
            if decrypt_in_place(&mut input, &identity).is_ok() {
                // Only the genuine encodings (the armored one may lose its
                // final newline) open.
                let genuine = before == good || before == armored[..armored.len() - 1];
                assert!(genuine, "round {round} opened a modified file");
            }
        }
    }

    #[test]
    fn errors_display_coarsely() {
        let all = [
            Error::Armor,
            Error::Header,
            Error::TooLarge(Limit::Stanzas),
            Error::TooLarge(Limit::HeaderLen),
            Error::TooLarge(Limit::StanzaBody),
            Error::NoMatchingKey,
            Error::UnwrapFailed,
            Error::Mac,
            Error::Payload,
        ];
        for err in all {
            assert_eq!(err.to_string(), "decryption failed");
        }
        assert_eq!(Error::Encrypt.to_string(), "encryption failed");
    }
}
