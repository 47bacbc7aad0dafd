//! The ssh-rsa recipient: the file key wrapped with RSA-OAEP-SHA-256 under
//! age's label, in a stanza named by the unpadded base64 of a four-byte tag
//! of the key. Unwrapping uses blinded private-key operations.

use super::{Error, FILE_KEY_LEN};
use crate::key::{Identity, PublicKey};
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

/// Tries the stanzas addressed to our key in order; the first that
/// RSA-OAEP-decrypts (blinded) to a 16-byte value gives the file key.
pub(super) fn unwrap_file_key(
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
}
