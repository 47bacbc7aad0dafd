//! What the server's RSA identity ([`crate::identity`]) and the SSH signature
//! verifier ([`crate::sshsig`]) share of OpenSSH's encodings: the wire
//! format of key and signature blobs ([`wire`]), the rule for an `ssh-rsa`
//! key's numbers ([`rsa`]) and the `SHA256:` fingerprint `ssh-keygen -l`
//! prints for a key blob.
//!
//! The module is a leaf: it imports nothing of the crate.

pub(crate) mod rsa;
pub(crate) mod wire;

use base64ct::{Base64Unpadded, Encoding};
use sha2::{Digest, Sha256};

/// `SHA256:` and the unpadded base64 SHA-256 of a key's wire encoding, as
/// `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(blob: &[u8]) -> String {
    let hash = Sha256::digest(blob);
    format!("SHA256:{}", Base64Unpadded::encode_string(&hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_unpadded_base64_of_sha256() {
        // `printf '' | sha256sum` and `printf abc | sha256sum`, in base64.
        let cases: [(&[u8], &str); 2] = [
            (b"", "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"),
            (b"abc", "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"),
        ];
        for (blob, want) in cases {
            assert_eq!(fingerprint(blob), want, "{blob:?}");
        }
    }
}
