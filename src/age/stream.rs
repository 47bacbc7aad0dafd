//! The STREAM payload: a 16-byte nonce, then the plaintext in
//! ChaCha20-Poly1305 chunks of [`CHUNK_SIZE`], each with its counter and a
//! final flag in its nonce, under a key derived from the file key and the
//! payload nonce. [`decrypt`] works in place; [`seal`] appends.

use super::{CHUNK_SIZE, Error, FILE_KEY_LEN, derive};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};

/// Poly1305 tag bytes per chunk.
pub(super) const TAG_LEN: usize = 16;
const ENCRYPTED_CHUNK: usize = CHUNK_SIZE + TAG_LEN;
/// Bytes of the payload nonce that starts the payload.
pub(super) const NONCE_LEN: usize = 16;

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
pub(super) fn decrypt(
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

/// Appends the nonce and the STREAM encryption of `plaintext`: at least
/// one chunk, the last one flagged final.
pub(super) fn seal(
    out: &mut Vec<u8>,
    file_key: &[u8; FILE_KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<(), Error> {
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
    use super::super::test_util::*;
    use super::*;

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
}
