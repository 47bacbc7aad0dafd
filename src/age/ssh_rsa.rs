//! The ssh-rsa recipient: the file key wrapped with RSA-OAEP-SHA-256 under
//! age's label, in a stanza named by the unpadded base64 of a four-byte tag
//! of the key. Unwrapping uses blinded private-key operations.

use super::{Error, FILE_KEY_LEN};
use crate::identity::{Identity, PublicKey};
use base64ct::{Base64Unpadded, Encoding};
use getrandom::SysRng;
use rsa::Oaep;
use sha2::Sha256;

/// The stanza type.
pub(super) const SSH_RSA: &[u8] = b"ssh-rsa";
/// The OAEP label.
pub(super) const SSH_RSA_LABEL: &[u8] = b"age-encryption.org/v1/ssh-rsa";
/// Unpadded base64 length of a four-byte ssh-rsa tag.
pub(super) const SSH_RSA_TAG_B64_LEN: usize = 6;

/// The stanza argument that names `key`: its tag in unpadded base64,
/// written into `buf`.
pub(super) fn encode_tag<'a>(key: &PublicKey, buf: &'a mut [u8; 8]) -> Option<&'a str> {
    Base64Unpadded::encode(&key.tag(), buf).ok()
}

/// Wraps `file_key` to `recipient`: the body of its stanza.
pub(super) fn wrap(file_key: &[u8; FILE_KEY_LEN], recipient: &PublicKey) -> Result<Vec<u8>, Error> {
    recipient
        .rsa()
        .encrypt(
            &mut SysRng,
            Oaep::<Sha256>::new_with_label(SSH_RSA_LABEL),
            file_key,
        )
        .map_err(|_| Error::Encrypt)
}

/// Unwraps the file key from the body of the stanza that decides, as age
/// does: it must RSA-OAEP-decrypt (blinded) under our key, here to a
/// 16-byte value. A body shorter than the modulus is read as the big-endian
/// number it spells, as Go's RSA (and so age) reads it: the ciphertext
/// without its leading zero bytes.
pub(super) fn unwrap_file_key(
    body: &[u8],
    identity: &Identity,
) -> Result<[u8; FILE_KEY_LEN], Error> {
    let mut ciphertext = vec![0u8; identity.public().size()];
    let at = ciphertext
        .len()
        .checked_sub(body.len())
        .ok_or(Error::UnwrapFailed)?;
    ciphertext[at..].copy_from_slice(body);
    let padding = Oaep::<Sha256>::new_with_label(SSH_RSA_LABEL);
    let key = identity
        .rsa()
        .decrypt_blinded(&mut SysRng, padding, &ciphertext)
        .map_err(|_| Error::UnwrapFailed)?;
    <[u8; FILE_KEY_LEN]>::try_from(key.as_slice()).map_err(|_| Error::UnwrapFailed)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

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
    fn short_body_is_the_ciphertext_without_leading_zeros() {
        let identity = server();
        let public = identity.public();
        let k = public.size();
        // About one OAEP ciphertext in 200 starts with a zero byte for this
        // modulus; the bound only stops a broken generator.
        let padding = || Oaep::<Sha256>::new_with_label(SSH_RSA_LABEL);
        let body = (0..20_000)
            .map(|_| {
                public
                    .rsa()
                    .encrypt(&mut SysRng, padding(), &FILE_KEY)
                    .unwrap()
            })
            .find(|c| c[0] == 0)
            .expect("a ciphertext with a leading zero byte");
        let tag = tag_b64(public);
        let cases: Vec<(&str, Vec<u8>, Result<(), Error>)> = vec![
            ("full length", body.clone(), Ok(())),
            ("leading zero dropped", body[1..].to_vec(), Ok(())),
            (
                "a byte too many",
                [&[0u8][..], &body].concat(),
                Err(Error::UnwrapFailed),
            ),
            (
                "a nonzero byte dropped",
                body[..k - 1].to_vec(),
                Err(Error::UnwrapFailed),
            ),
        ];
        for (name, body, want) in cases {
            let file = sealed(&stanza(&["ssh-rsa", &tag], &body), b"x");
            assert_eq!(open_copy(&file, &identity).map(|_| ()), want, "{name}");
        }
    }
}
