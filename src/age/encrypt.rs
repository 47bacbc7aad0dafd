//! Writing age files: a stanza in the header's text form, and a whole
//! file around given stanza text, sealed with its header MAC and STREAM
//! payload.

use super::header::{MAC_B64_LEN, MAC_PREFIX, VERSION_LINE, header_mac};
use super::stream::{self, NONCE_LEN};
use super::{BYTES_PER_LINE, COLUMNS, Error, FILE_KEY_LEN};
use base64ct::{Base64Unpadded, Encoding};
use hmac::Mac;

/// Appends a stanza: `-> ` and the space-separated arguments, then the body
/// in unpadded base64, 64 columns per line, ending with a short (possibly
/// empty) line.
pub(super) fn push_stanza(out: &mut Vec<u8>, args: &[&[u8]], body: &[u8]) {
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
pub(super) fn seal(
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
    stream::seal(out, file_key, nonce, plaintext)
}
