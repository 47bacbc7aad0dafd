//! The age v1 file format (age-encryption.org/v1, c2sp.org/age) as far as
//! colorsort needs it: the textual header with its recipient stanzas and
//! HMAC, the ChaCha20-Poly1305 STREAM payload in 64 KiB chunks, the strict
//! ASCII armor, and the ssh-rsa recipient (RSA-OAEP-SHA-256 of the file key
//! to the server's key, named by a four-byte tag of the key). The server
//! decrypts uploads in place, in the buffer they arrived in; the client
//! encrypts. Every rule the specification says a decoder MUST enforce is
//! enforced, and hostile inputs are bounded by the `MAX_*` caps below.

use crate::key::{Identity, PublicKey};
use base64ct::{Base64, Base64Unpadded, Encoding};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use getrandom::SysRng;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rsa::Oaep;
use sha2::Sha256;
use std::fmt;

/// Plaintext bytes per STREAM chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Most recipient stanzas a header may carry.
pub const MAX_STANZAS: usize = 64;
/// Longest header accepted, from the version line through the MAC line.
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// Largest decoded body of a single stanza.
pub const MAX_STANZA_BODY: usize = 8 * 1024;
/// Most ssh-rsa stanzas addressed to our key that will be tried (each try
/// is one RSA private-key operation).
pub const MAX_RSA_ATTEMPTS: usize = 4;

const TAG_LEN: usize = 16;
const ENCRYPTED_CHUNK: usize = CHUNK_SIZE + TAG_LEN;
const FILE_KEY_LEN: usize = 16;
const NONCE_LEN: usize = 16;
const MAC_LEN: usize = 32;
/// Unpadded base64 length of the MAC.
const MAC_B64_LEN: usize = 43;
/// Base64 characters per line, in stanza bodies and in the armor.
const COLUMNS: usize = 64;
/// Bytes carried by one full line of base64.
const BYTES_PER_LINE: usize = COLUMNS / 4 * 3;

const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
const STANZA_PREFIX: &[u8] = b"-> ";
const MAC_PREFIX: &[u8] = b"---";
const SSH_RSA: &[u8] = b"ssh-rsa";
const SCRYPT: &[u8] = b"scrypt";
const SSH_RSA_LABEL: &[u8] = b"age-encryption.org/v1/ssh-rsa";
/// Unpadded base64 of a four-byte ssh-rsa tag.
const SSH_RSA_TAG_B64_LEN: usize = 6;
const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &[u8] = b"-----END AGE ENCRYPTED FILE-----";

/// Why an age file did not open (or could not be made). Every decryption
/// failure displays the same way, so that messages sent back to a client
/// reveal nothing about which check failed; the variants are for tests and
/// logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The ASCII armor is malformed: bad begin or end line, a line longer
    /// or shorter than the 64-column layout allows, non-canonical base64,
    /// mixed line endings, or anything but whitespace around the block.
    Armor,
    /// The header is malformed: wrong version line, bad stanza or MAC line
    /// syntax, non-canonical base64, an scrypt stanza beside others, or an
    /// ssh-rsa stanza without exactly one argument.
    Header,
    /// A hostile-input cap was exceeded.
    TooLarge(Limit),
    /// No stanza is addressed to our key.
    NoMatchingKey,
    /// Stanzas are addressed to our key, but none unwrapped to a file key.
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
    /// More than `MAX_RSA_ATTEMPTS` stanzas addressed to our key.
    RsaAttempts,
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
    let body = recipient
        .rsa()
        .encrypt(
            &mut SysRng,
            Oaep::<Sha256>::new_with_label(SSH_RSA_LABEL),
            &file_key,
        )
        .map_err(|_| Error::Encrypt)?;
    let mut tag = [0u8; 8];
    let tag = Base64Unpadded::encode(&recipient.tag(), &mut tag).map_err(|_| Error::Encrypt)?;
    let mut stanzas = Vec::new();
    push_stanza(&mut stanzas, &[SSH_RSA, tag.as_bytes()], &body);
    let mut out = Vec::with_capacity(encrypted_len(plaintext.len(), recipient));
    seal(&mut out, &stanzas, &file_key, &nonce, plaintext)?;
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

/// Encodes a binary age file in age's ASCII armor: a strict PEM block with
/// label `AGE ENCRYPTED FILE`, padded base64 in 64-column lines, LF line
/// endings and a final LF.
pub fn armor(binary: &[u8]) -> Vec<u8> {
    let lines = binary.len().div_ceil(BYTES_PER_LINE);
    let mut out =
        Vec::with_capacity(ARMOR_BEGIN.len() + ARMOR_END.len() + 2 + lines * (COLUMNS + 1));
    out.extend_from_slice(ARMOR_BEGIN);
    out.push(b'\n');
    let mut line = [0u8; COLUMNS];
    for chunk in binary.chunks(BYTES_PER_LINE) {
        // A 48-byte chunk always fits the 64-character line.
        if let Ok(text) = Base64::encode(chunk, &mut line) {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
    }
    out.extend_from_slice(ARMOR_END);
    out.push(b'\n');
    out
}

/// Opens the file in `buf`; returns the plaintext length, the plaintext
/// having been moved to the start of `buf`.
fn open(buf: &mut [u8], identity: &Identity) -> Result<usize, Error> {
    let len = if is_armored(buf) {
        dearmor_in_place(buf)?
    } else {
        buf.len()
    };
    let file = &mut buf[..len];
    let header = parse_header(file, identity.public())?;
    // A stanza that does not unwrap still goes through the MAC check, with
    // a dummy key whose result is thrown away, so that a reply's timing does
    // not tell an RSA padding failure from a MAC failure.
    let unwrapped = unwrap_file_key(&header.candidates, identity);
    let file_key = match unwrapped {
        Ok(key) => key,
        Err(Error::UnwrapFailed) => [0; FILE_KEY_LEN],
        Err(e) => return Err(e),
    };
    let mac = verify_mac(&file[..header.mac_input_end], &header.mac, &file_key);
    unwrapped?;
    mac?;
    decrypt_payload(file, header.end, &file_key)
}

fn is_armor_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Armored files start with the begin line, after optional whitespace; a
/// binary file starts with its version line, never with whitespace.
fn is_armored(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| !is_armor_space(b))
        .unwrap_or(buf.len());
    buf[start..].starts_with(ARMOR_BEGIN)
}

/// Decodes the armored file in `buf` toward its start and returns the
/// binary length. The layout must be exactly what an encoder produces: the
/// begin line, full 64-column lines, one shorter final line (or none, if the
/// last full line ends the data), the end line; one line ending (LF or
/// CRLF) throughout; only whitespace before and after.
fn dearmor_in_place(buf: &mut [u8]) -> Result<usize, Error> {
    let mut r = buf
        .iter()
        .position(|&b| !is_armor_space(b))
        .unwrap_or(buf.len());
    if !buf[r..].starts_with(ARMOR_BEGIN) {
        return Err(Error::Armor);
    }
    r += ARMOR_BEGIN.len();
    let crlf = match buf.get(r..) {
        Some([b'\n', ..]) => false,
        Some([b'\r', b'\n', ..]) => true,
        _ => return Err(Error::Armor),
    };
    r += if crlf { 2 } else { 1 };

    let mut w = 0;
    let mut short_line_seen = false;
    loop {
        let rest = &buf[r..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                let line = if crlf {
                    line.strip_suffix(b"\r").ok_or(Error::Armor)?
                } else {
                    line
                };
                (line, r + i + 1)
            }
            // Only the end line may lack its line ending.
            None if rest == ARMOR_END => (rest, buf.len()),
            None => return Err(Error::Armor),
        };
        if line == ARMOR_END {
            if w == 0 {
                return Err(Error::Armor);
            }
            if !buf[next..].iter().all(|&b| is_armor_space(b)) {
                return Err(Error::Armor);
            }
            return Ok(w);
        }
        if short_line_seen || line.is_empty() || line.len() > COLUMNS {
            return Err(Error::Armor);
        }
        let mut bytes = [0u8; BYTES_PER_LINE];
        let bytes = Base64::decode(line, &mut bytes).map_err(|_| Error::Armor)?;
        if bytes.len() < BYTES_PER_LINE {
            short_line_seen = true;
        }
        // The decoded line is shorter than the text it came from, so the
        // write position stays behind the unread input.
        let n = bytes.len();
        buf[w..w + n].copy_from_slice(bytes);
        w += n;
        r = next;
    }
}

/// What the header parse keeps: where the MAC'd part and the header end,
/// the MAC, and the bodies of the ssh-rsa stanzas addressed to our key.
struct Header {
    /// Offset just past the `---` of the MAC line.
    mac_input_end: usize,
    /// Offset of the payload.
    end: usize,
    mac: [u8; MAC_LEN],
    /// Bodies of stanzas with our tag; `None` where the body length is not
    /// the modulus size (such a stanza cannot be ours and is not tried).
    candidates: Vec<Option<Vec<u8>>>,
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
fn parse_header(data: &[u8], ours: &PublicKey) -> Result<Header, Error> {
    if !data.starts_with(VERSION_LINE) {
        return Err(Error::Header);
    }
    let mut tag = [0u8; 8];
    let our_tag = Base64Unpadded::encode(&ours.tag(), &mut tag).map_err(|_| Error::Header)?;
    let modulus_len = ours.size();

    let mut pos = VERSION_LINE.len();
    let mut stanzas = 0;
    let mut scrypt = false;
    let mut candidates: Vec<Option<Vec<u8>>> = Vec::new();
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
                candidates,
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
        let ours = if kind == SSH_RSA {
            // The type and exactly one argument, the tag.
            if argc != 2 {
                return Err(Error::Header);
            }
            first_arg == Some(our_tag.as_bytes())
        } else {
            false
        };
        if ours && candidates.len() == MAX_RSA_ATTEMPTS {
            return Err(Error::TooLarge(Limit::RsaAttempts));
        }
        // Bounded: at most MAX_RSA_ATTEMPTS bodies of the modulus size.
        let mut body = ours.then(|| Vec::with_capacity(modulus_len));
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
        if ours {
            candidates.push(body.filter(|b| b.len() == modulus_len));
        }
    }
}

/// Tries the stanzas addressed to our key in order; the first that
/// RSA-OAEP-decrypts (blinded) to a 16-byte value gives the file key.
fn unwrap_file_key(
    candidates: &[Option<Vec<u8>>],
    identity: &Identity,
) -> Result<[u8; FILE_KEY_LEN], Error> {
    if candidates.is_empty() {
        return Err(Error::NoMatchingKey);
    }
    for body in candidates.iter().flatten() {
        let padding = Oaep::<Sha256>::new_with_label(SSH_RSA_LABEL);
        if let Ok(key) = identity.rsa().decrypt_blinded(&mut SysRng, padding, body)
            && let Ok(key) = <[u8; FILE_KEY_LEN]>::try_from(key.as_slice())
        {
            return Ok(key);
        }
    }
    Err(Error::UnwrapFailed)
}

/// HKDF-SHA-256 with 32 bytes of output.
fn derive(salt: &[u8], file_key: &[u8; FILE_KEY_LEN], info: &[u8]) -> Option<[u8; 32]> {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), file_key)
        .expand(info, &mut okm)
        .ok()?;
    Some(okm)
}

fn header_mac(file_key: &[u8; FILE_KEY_LEN], header_through_dashes: &[u8]) -> Option<Hmac<Sha256>> {
    let key = derive(&[], file_key, b"header")?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    mac.update(header_through_dashes);
    Some(mac)
}

fn verify_mac(
    header_through_dashes: &[u8],
    expected: &[u8; MAC_LEN],
    file_key: &[u8; FILE_KEY_LEN],
) -> Result<(), Error> {
    let mac = header_mac(file_key, header_through_dashes).ok_or(Error::Mac)?;
    mac.verify_slice(expected).map_err(|_| Error::Mac)
}

/// The STREAM nonce: an 11-byte big-endian chunk counter, then 1 for the
/// final chunk and 0 before it.
fn chunk_nonce(counter: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::from(nonce)
}

fn payload_cipher(file_key: &[u8; FILE_KEY_LEN], nonce: &[u8]) -> Option<ChaCha20Poly1305> {
    let key = derive(nonce, file_key, b"payload")?;
    Some(ChaCha20Poly1305::new(&Key::from(key)))
}

/// Decrypts the payload starting at `start` in place, moving each chunk's
/// plaintext down to the start of `buf`; returns the plaintext length.
fn decrypt_payload(
    buf: &mut [u8],
    start: usize,
    file_key: &[u8; FILE_KEY_LEN],
) -> Result<usize, Error> {
    let nonce = buf.get(start..start + NONCE_LEN).ok_or(Error::Payload)?;
    let cipher = payload_cipher(file_key, nonce).ok_or(Error::Payload)?;
    let mut r = start + NONCE_LEN;
    let mut w = 0;
    let mut counter: u64 = 0;
    loop {
        // A chunk is final exactly when it is the last thing in the file; a
        // full chunk sealed as non-final and then the end of the file is a
        // missing final chunk, and fails to authenticate as final.
        let remaining = buf.len() - r;
        if remaining == 0 {
            return Err(Error::Payload);
        }
        let last = remaining <= ENCRYPTED_CHUNK;
        let size = if last { remaining } else { ENCRYPTED_CHUNK };
        let plain_len = size.checked_sub(TAG_LEN).ok_or(Error::Payload)?;
        if last && plain_len == 0 && counter > 0 {
            return Err(Error::Payload);
        }
        let (text, tag) = buf[r..r + size].split_at_mut(plain_len);
        let tag = Tag::try_from(&*tag).map_err(|_| Error::Payload)?;
        cipher
            .decrypt_inout_detached(&chunk_nonce(counter, last), &[], text.into(), &tag)
            .map_err(|_| Error::Payload)?;
        buf.copy_within(r..r + plain_len, w);
        w += plain_len;
        r += size;
        if last {
            return Ok(w);
        }
        counter += 1;
    }
}

/// Appends a stanza: `-> ` and the space-separated arguments, then the body
/// in unpadded base64, 64 columns per line, ending with a short (possibly
/// empty) line.
fn push_stanza(out: &mut Vec<u8>, args: &[&[u8]], body: &[u8]) {
    out.extend_from_slice(b"->");
    for arg in args {
        out.push(b' ');
        out.extend_from_slice(arg);
    }
    out.push(b'\n');
    let mut text = [0u8; COLUMNS];
    let mut chunks = body.chunks_exact(BYTES_PER_LINE);
    for chunk in &mut chunks {
        if let Ok(line) = Base64Unpadded::encode(chunk, &mut text) {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
    if let Ok(line) = Base64Unpadded::encode(chunks.remainder(), &mut text) {
        out.extend_from_slice(line.as_bytes());
    }
    out.push(b'\n');
}

/// Appends a complete age file: version line, the given stanza text, MAC
/// line, nonce and STREAM payload.
fn seal(
    out: &mut Vec<u8>,
    stanzas: &[u8],
    file_key: &[u8; FILE_KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<(), Error> {
    let header_start = out.len();
    out.extend_from_slice(VERSION_LINE);
    out.extend_from_slice(stanzas);
    out.extend_from_slice(MAC_PREFIX);
    let mac = header_mac(file_key, &out[header_start..]).ok_or(Error::Encrypt)?;
    let mac = mac.finalize().into_bytes();
    let mut text = [0u8; MAC_B64_LEN + 1];
    let mac = Base64Unpadded::encode(&mac, &mut text).map_err(|_| Error::Encrypt)?;
    out.push(b' ');
    out.extend_from_slice(mac.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(nonce);

    let cipher = payload_cipher(file_key, nonce).ok_or(Error::Encrypt)?;
    let chunks = plaintext.len().div_ceil(CHUNK_SIZE).max(1);
    for i in 0..chunks {
        let from = i * CHUNK_SIZE;
        let chunk = &plaintext[from..plaintext.len().min(from + CHUNK_SIZE)];
        let at = out.len();
        out.extend_from_slice(chunk);
        let tag = cipher
            .encrypt_inout_detached(
                &chunk_nonce(i as u64, i + 1 == chunks),
                &[],
                (&mut out[at..]).into(),
            )
            .map_err(|_| Error::Encrypt)?;
        out.extend_from_slice(&tag);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_PEM: &str = include_str!("../test-data/keys/test-only-server-key.pem");
    const OTHER_PUB: &str = include_str!("../test-data/keys/test-only-other-key.pub");
    const FILE_KEY: [u8; FILE_KEY_LEN] = *b"YELLOW SUBMARINE";
    const NONCE: [u8; NONCE_LEN] = [7; NONCE_LEN];

    fn server() -> Identity {
        Identity::from_pem(SERVER_PEM).unwrap()
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/test-data/age/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn open_copy(file: &[u8], identity: &Identity) -> Result<Vec<u8>, Error> {
        let mut buf = file.to_vec();
        let result = decrypt_in_place(&mut buf, identity);
        if result.is_err() {
            assert!(buf.is_empty(), "buffer not cleared on failure");
        }
        result.map(|()| buf)
    }

    /// Tiny deterministic generator for the fuzz-style loops.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn tag_b64(key: &PublicKey) -> String {
        Base64Unpadded::encode_string(&key.tag())
    }

    /// A stanza with the given type and arguments and a body of raw bytes.
    fn stanza(args: &[&str], body: &[u8]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut out = Vec::new();
        push_stanza(&mut out, &args, body);
        out
    }

    /// An ssh-rsa stanza to `key` wrapping `file_key` (of any length), with
    /// the given OAEP label.
    fn rsa_stanza_with(key: &PublicKey, file_key: &[u8], label: &[u8]) -> Vec<u8> {
        let body = key
            .rsa()
            .encrypt(&mut SysRng, Oaep::<Sha256>::new_with_label(label), file_key)
            .unwrap();
        stanza(&["ssh-rsa", &tag_b64(key)], &body)
    }

    fn rsa_stanza(key: &PublicKey) -> Vec<u8> {
        rsa_stanza_with(key, &FILE_KEY, SSH_RSA_LABEL)
    }

    /// A complete file with the given stanza text, sealed with FILE_KEY and
    /// a correct MAC.
    fn sealed(stanzas: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(&mut out, stanzas, &FILE_KEY, &NONCE, plaintext).unwrap();
        out
    }

    /// Header (through the MAC line) of a sealed file.
    fn header_of(file: &[u8]) -> &[u8] {
        let mac = file.windows(5).position(|w| w == b"\n--- ").unwrap() + 5;
        let end = mac + file[mac..].iter().position(|&b| b == b'\n').unwrap() + 1;
        &file[..end]
    }

    /// Encrypts STREAM chunks with explicit final flags, for framing cases.
    fn chunks(parts: &[(usize, bool)]) -> Vec<u8> {
        let cipher = payload_cipher(&FILE_KEY, &NONCE).unwrap();
        let mut out = NONCE.to_vec();
        for (i, &(len, last)) in parts.iter().enumerate() {
            let at = out.len();
            out.extend(std::iter::repeat_n(0x5a, len));
            let tag = cipher
                .encrypt_inout_detached(&chunk_nonce(i as u64, last), &[], (&mut out[at..]).into())
                .unwrap();
            out.extend_from_slice(&tag);
        }
        out
    }

    #[test]
    fn good_fixtures_decrypt() {
        let identity = server();
        let cases = [
            ("small.age", "small.png"),
            ("small.armored.age", "small.png"),
            ("small.crlf.armored.age", "small.png"),
            ("small.spaced.armored.age", "small.png"),
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
            ("fail_armor_mixed_eol.age", Error::Armor),
            ("fail_armor_not_canonical.age", Error::Armor),
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
    fn armor_round_trip() {
        let mut rng = XorShift(42);
        for len in [1, 2, 3, 47, 48, 49, 95, 96, 97, 1000] {
            let data = rng.bytes(len);
            let mut text = armor(&data);
            assert!(text.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----\n"));
            assert!(text.ends_with(b"\n-----END AGE ENCRYPTED FILE-----\n"));
            assert!(text.split(|&b| b == b'\n').all(|l| l.len() <= COLUMNS + 2));
            let n = dearmor_in_place(&mut text).unwrap();
            assert_eq!(&text[..n], data.as_slice(), "len {len}");
        }
    }

    #[test]
    fn armor_layout_rules() {
        let data: Vec<u8> = (0..100u8).collect();
        let good = armor(&data);
        let text = String::from_utf8(good.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let join = |lines: &[&str]| lines.join("\n") + "\n";
        let cases: Vec<(&str, Vec<u8>, Option<usize>)> = vec![
            ("as made", good.clone(), Some(100)),
            ("crlf", text.replace('\n', "\r\n").into_bytes(), Some(100)),
            ("no final eol", good[..good.len() - 1].to_vec(), Some(100)),
            (
                "surrounding whitespace",
                format!(" \n\t{text}\r\n \n").into_bytes(),
                Some(100),
            ),
            (
                "begin lowercase",
                text.replace("BEGIN AGE", "begin AGE").into_bytes(),
                None,
            ),
            (
                "wrong label",
                text.replace("AGE ENCRYPTED FILE", "PGP MESSAGE")
                    .into_bytes(),
                None,
            ),
            (
                "space after begin",
                text.replacen("-----\n", "----- \n", 1).into_bytes(),
                None,
            ),
            (
                "header line",
                join(&[
                    lines[0],
                    "Comment: x",
                    lines[1],
                    lines[2],
                    lines[3],
                    lines[4],
                ])
                .into_bytes(),
                None,
            ),
            (
                "empty line before end",
                join(&[lines[0], lines[1], lines[2], lines[3], "", lines[4]]).into_bytes(),
                None,
            ),
            (
                "empty line after begin",
                join(&[lines[0], "", lines[1], lines[2], lines[3], lines[4]]).into_bytes(),
                None,
            ),
            (
                "leading space in line",
                join(&[
                    lines[0],
                    &format!(" {}", lines[1]),
                    lines[2],
                    lines[3],
                    lines[4],
                ])
                .into_bytes(),
                None,
            ),
            (
                "trailing space in line",
                join(&[
                    lines[0],
                    &format!("{} ", lines[1]),
                    lines[2],
                    lines[3],
                    lines[4],
                ])
                .into_bytes(),
                None,
            ),
            (
                "trailing space on end line",
                format!("{} \n", text.trim_end()).into_bytes(),
                None,
            ),
            ("no end", join(&lines[..4]).into_bytes(), None),
            (
                "end twice",
                format!("{text}{}\n", lines[4]).into_bytes(),
                None,
            ),
            ("data after end", format!("{text}AAAA\n").into_bytes(), None),
            ("data before begin", format!("x{text}").into_bytes(), None),
            (
                "short line first",
                join(&[
                    lines[0],
                    &lines[1][..60],
                    &format!("{}{}", &lines[1][60..], lines[2]),
                    lines[3],
                    lines[4],
                ])
                .into_bytes(),
                None,
            ),
            (
                "missing padding",
                text.replace("==\n", "\n").into_bytes(),
                None,
            ),
            ("begin only", format!("{}\n", lines[0]).into_bytes(), None),
            (
                "begin and end",
                join(&[lines[0], lines[4]]).into_bytes(),
                None,
            ),
            (
                "invalid character",
                text.replacen('A', "*", 1).into_bytes(),
                None,
            ),
        ];
        assert!(
            text.contains("==\n"),
            "100 bytes end in two padding characters"
        );
        for (name, mut input, want) in cases {
            let got = dearmor_in_place(&mut input);
            match want {
                Some(n) => {
                    assert_eq!(got, Ok(n), "{name}");
                    assert_eq!(&input[..n], data.as_slice(), "{name}");
                }
                None => assert_eq!(got, Err(Error::Armor), "{name}"),
            }
        }
    }

    #[test]
    fn armor_full_last_line() {
        // 96 bytes: two full lines, then the end line directly.
        let data = [0xabu8; 96];
        let mut text = armor(&data);
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 4);
        assert_eq!(dearmor_in_place(&mut text), Ok(96));
    }

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
                "ssh-rsa without tag",
                with(&stanza(&["ssh-rsa"], &[0; 256]), b""),
                Err(Error::Header),
            ),
            (
                "ssh-rsa with two arguments",
                with(&stanza(&["ssh-rsa", &tag, "x"], &[0; 256]), b""),
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

        // Stanzas addressed to us: bad ones before the good one are tried,
        // up to MAX_RSA_ATTEMPTS of them in all.
        let bad = stanza(&["ssh-rsa", &tag_b64(identity.public())], &[1; 256]);
        let four = [bad.repeat(MAX_RSA_ATTEMPTS - 1), ours.clone()].concat();
        assert_eq!(
            open(&four),
            Ok(()),
            "good stanza as attempt {MAX_RSA_ATTEMPTS}"
        );
        let five = [bad.repeat(MAX_RSA_ATTEMPTS), ours.clone()].concat();
        assert_eq!(open(&five), Err(Error::TooLarge(Limit::RsaAttempts)));
    }

    #[test]
    fn unwrap_rules() {
        let identity = server();
        let public = identity.public();
        let tag = tag_b64(public);
        let k = public.size();
        let cases: Vec<(&str, Vec<u8>, Error)> = vec![
            (
                "body one byte short",
                stanza(&["ssh-rsa", &tag], &vec![1; k - 1]),
                Error::UnwrapFailed,
            ),
            (
                "body one byte long",
                stanza(&["ssh-rsa", &tag], &vec![1; k + 1]),
                Error::UnwrapFailed,
            ),
            (
                "empty body",
                stanza(&["ssh-rsa", &tag], &[]),
                Error::UnwrapFailed,
            ),
            (
                "garbage body",
                stanza(&["ssh-rsa", &tag], &vec![1; k]),
                Error::UnwrapFailed,
            ),
            (
                "all-ones body",
                stanza(&["ssh-rsa", &tag], &vec![0xff; k]),
                Error::UnwrapFailed,
            ),
            (
                "15-byte key",
                rsa_stanza_with(public, &FILE_KEY[..15], SSH_RSA_LABEL),
                Error::UnwrapFailed,
            ),
            (
                "17-byte key",
                rsa_stanza_with(public, b"YELLOW SUBMARINE!", SSH_RSA_LABEL),
                Error::UnwrapFailed,
            ),
            (
                "wrong label",
                rsa_stanza_with(public, &FILE_KEY, b"age-encryption.org/v1/X25519"),
                Error::UnwrapFailed,
            ),
            (
                "no label",
                rsa_stanza_with(public, &FILE_KEY, b""),
                Error::UnwrapFailed,
            ),
            (
                "other file key",
                rsa_stanza_with(public, b"ORANGE SUBMARINE", SSH_RSA_LABEL),
                Error::Mac,
            ),
            (
                "wrong tag",
                stanza(&["ssh-rsa", "AAAAAA"], &vec![1; k]),
                Error::NoMatchingKey,
            ),
            (
                "tag not base64",
                stanza(&["ssh-rsa", "!!!!"], &vec![1; k]),
                Error::NoMatchingKey,
            ),
        ];
        for (name, stanzas, want) in cases {
            assert_eq!(
                open_copy(&sealed(&stanzas, b"x"), &identity),
                Err(want),
                "{name}"
            );
        }
    }

    #[test]
    fn stream_framing_rules() {
        let identity = server();
        let file = sealed(&rsa_stanza(identity.public()), b"");
        let header = header_of(&file).to_vec();
        let with = |parts: &[(usize, bool)]| [header.clone(), chunks(parts)].concat();
        let open = |file: &[u8]| open_copy(file, &identity).map(|p| p.len());
        assert_eq!(open(&file), Ok(0), "empty plaintext");
        assert_eq!(open(&with(&[(0, true)])), Ok(0));
        assert_eq!(open(&with(&[(CHUNK_SIZE, true)])), Ok(CHUNK_SIZE));
        assert_eq!(
            open(&with(&[(CHUNK_SIZE, false), (1, true)])),
            Ok(CHUNK_SIZE + 1)
        );
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("no chunks", with(&[])),
            (
                "nonce cut",
                header.iter().chain(&NONCE[..15]).copied().collect(),
            ),
            ("no nonce", header.clone()),
            (
                "empty final after full",
                with(&[(CHUNK_SIZE, false), (0, true)]),
            ),
            ("only non-final", with(&[(10, false)])),
            ("full non-final then end", with(&[(CHUNK_SIZE, false)])),
            ("two final chunks", with(&[(CHUNK_SIZE, true), (5, true)])),
            ("short non-final chunk", with(&[(5, false), (5, true)])),
            ("trailing byte", [with(&[(5, true)]), vec![0]].concat()),
            ("tag cut", {
                let f = with(&[(5, true)]);
                f[..f.len() - 1].to_vec()
            }),
            (
                "only part of a tag",
                [header.clone(), NONCE.to_vec(), vec![0; 15]].concat(),
            ),
        ];
        for (name, file) in cases {
            assert_eq!(open(&file), Err(Error::Payload), "{name}");
        }
        // Chunks out of order: swap two full chunks of a good file.
        let good = with(&[(CHUNK_SIZE, false), (CHUNK_SIZE, false), (3, true)]);
        assert_eq!(open(&good), Ok(2 * CHUNK_SIZE + 3));
        let first = header.len() + NONCE_LEN;
        let mut swapped = good.clone();
        swapped[first..first + ENCRYPTED_CHUNK]
            .copy_from_slice(&good[first + ENCRYPTED_CHUNK..first + 2 * ENCRYPTED_CHUNK]);
        swapped[first + ENCRYPTED_CHUNK..first + 2 * ENCRYPTED_CHUNK]
            .copy_from_slice(&good[first..first + ENCRYPTED_CHUNK]);
        assert_eq!(open(&swapped), Err(Error::Payload));
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
            Error::TooLarge(Limit::RsaAttempts),
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
