//! One SSH signature: the SSHSIG blob (PROTOCOL.sshsig §2) parsed into its
//! key, namespace, hash algorithm and signature, and its check against a
//! message. Parsing needs no message, so a signature can be refused before
//! the message it comes with is decrypted or even read.

use super::public_key::{Body, PublicKey};
use super::{Error, armor, excerpt};
use crate::ssh::wire::{Reader, put_string};
use sha2::{Digest, Sha256, Sha512};

const MAGIC: &[u8; 6] = b"SSHSIG";
const VERSION: u32 = 1;

/// A parsed SSH signature, not yet checked.
#[derive(Debug, Clone)]
pub struct Signature {
    key: PublicKey,
    namespace: Vec<u8>,
    hash: Hash,
    body: Body,
}

/// The hash the message is reduced to before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha256",
            Hash::Sha512 => "sha512",
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

impl Signature {
    /// Parses an armored signature (`-----BEGIN SSH SIGNATURE-----` ...) of
    /// at most [`super::MAX_SIGNATURE`] bytes.
    pub fn parse(armored: &[u8]) -> Result<Signature, Error> {
        Signature::from_blob(&armor::dearmor(armored)?)
    }

    /// Parses the binary SSHSIG blob inside the armor.
    pub fn from_blob(blob: &[u8]) -> Result<Signature, Error> {
        let mut r = Reader::new(blob);
        if r.bytes(MAGIC.len()) != Some(MAGIC) {
            return Err(Error::Malformed("no SSHSIG magic"));
        }
        let version = r.u32().ok_or(Error::Malformed("truncated"))?;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let key = PublicKey::from_blob(r.string().ok_or(Error::Malformed("truncated"))?)?;
        let namespace = r.string().ok_or(Error::Malformed("truncated"))?;
        if namespace.is_empty() {
            return Err(Error::Malformed("empty namespace"));
        }
        if namespace.contains(&0) {
            return Err(Error::Malformed("nul in namespace"));
        }
        let reserved = r.string().ok_or(Error::Malformed("truncated"))?;
        if !reserved.is_empty() {
            return Err(Error::Malformed("reserved field is not empty"));
        }
        let hash = match r.string().ok_or(Error::Malformed("truncated"))? {
            b"sha256" => Hash::Sha256,
            b"sha512" => Hash::Sha512,
            other => return Err(Error::UnsupportedHash(excerpt(other))),
        };
        let body = key.parse_signature(r.string().ok_or(Error::Malformed("truncated"))?)?;
        if !r.is_empty() {
            return Err(Error::Malformed("bytes after the signature blob"));
        }
        Ok(Signature {
            key,
            namespace: namespace.to_vec(),
            hash,
            body,
        })
    }

    /// Checks that this signature signs `message` for `namespace`: the
    /// namespace is compared first (so a signature for another purpose is
    /// [`Error::WrongNamespace`] whatever the message), then the signature
    /// over PROTOCOL.sshsig §3's signed data.
    pub fn verify(&self, message: &[u8], namespace: &str) -> Result<(), Error> {
        if self.namespace != namespace.as_bytes() {
            return Err(Error::WrongNamespace(excerpt(&self.namespace)));
        }
        let digest = self.hash.digest(message);
        let mut signed = Vec::with_capacity(MAGIC.len() + 4 * 4 + namespace.len() + 6 + 64);
        signed.extend_from_slice(MAGIC);
        put_string(&mut signed, namespace.as_bytes());
        put_string(&mut signed, b"");
        put_string(&mut signed, self.hash.name().as_bytes());
        put_string(&mut signed, &digest);
        self.key.verify(&signed, &self.body)
    }

    /// The key that made the signature (unverified until
    /// [`Signature::verify`] succeeds).
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// The namespace the signature claims; never empty, never holds a NUL.
    pub fn namespace(&self) -> &[u8] {
        &self.namespace
    }

    /// `sha256` or `sha512`: how the message was hashed.
    pub fn hash_algorithm(&self) -> &'static str {
        self.hash.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sshsig::public_key::blob_of;
    use crate::sshsig::{ED25519, RSA, SK_ED25519};

    const MESSAGE: &[u8] = include_bytes!("../../test-data/sshsig/message.txt");
    const OTHER: &[u8] = include_bytes!("../../test-data/sshsig/other.txt");
    const NS: &str = "colorsort";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/test-data/sshsig/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn fingerprint_of(fp_file: &str) -> String {
        let fp = fixture(fp_file);
        String::from_utf8(fp)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    /// Each good fixture, the key type that made it and its key's `.fp`.
    const GOOD: [(&str, &str, &str, &str); 9] = [
        ("ed25519.sig", ED25519, "sha512", "ed25519.fp"),
        ("ed25519-sha256.sig", ED25519, "sha256", "ed25519.fp"),
        ("rsa3072.sig", RSA, "sha512", "rsa3072.fp"),
        ("rsa3072-sha256.sig", RSA, "sha256", "rsa3072.fp"),
        ("rsa3072-rsa-sha2-256.sig", RSA, "sha512", "rsa3072.fp"),
        ("sk-ed25519.sig", SK_ED25519, "sha512", "sk-ed25519.fp"),
        ("oneline.sig", ED25519, "sha512", "ed25519.fp"),
        ("crlf.sig", ED25519, "sha512", "ed25519.fp"),
        ("whitespace.sig", ED25519, "sha512", "ed25519.fp"),
    ];

    #[test]
    fn good_fixtures_verify() {
        for (name, algorithm, hash, fp) in GOOD {
            let sig = Signature::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(sig.public_key().algorithm(), algorithm, "{name}");
            assert_eq!(
                sig.public_key().fingerprint(),
                fingerprint_of(&format!("keys/{fp}"))
            );
            assert_eq!(sig.hash_algorithm(), hash, "{name}");
            assert_eq!(sig.namespace(), NS.as_bytes(), "{name}");
            assert_eq!(sig.verify(MESSAGE, NS), Ok(()), "{name}");
            assert_eq!(sig.verify(OTHER, NS), Err(Error::BadSignature), "{name}");
            assert_eq!(
                sig.verify(MESSAGE, "colorsorT"),
                Err(Error::WrongNamespace(NS.into())),
                "{name}"
            );
        }
    }

    #[test]
    fn short_rsa_signature_is_padded_as_ssh_keygen_pads_it() {
        let sig = Signature::parse(&fixture("rsa3072-short.sig")).unwrap();
        assert_eq!(sig.verify(&fixture("rsa3072-short.msg"), NS), Ok(()));
    }

    /// Each `fail_` fixture, the message it is checked against, and the
    /// error: `Err` from parsing, or from verifying when parsing succeeds.
    #[test]
    fn fail_fixtures_are_rejected_for_their_reason() {
        let cases: [(&str, &str, Error); 15] = [
            (
                "fail_wrong-namespace.sig",
                "message.txt",
                Error::WrongNamespace("git".into()),
            ),
            ("fail_other-file.sig", "message.txt", Error::BadSignature),
            ("fail_version2.sig", "message.txt", Error::Version(2)),
            ("fail_version0.sig", "message.txt", Error::Version(0)),
            (
                "fail_trailing-data.sig",
                "message.txt",
                Error::Malformed("bytes after the signature blob"),
            ),
            (
                "fail_rsa-sha1.sig",
                "message.txt",
                Error::UnsupportedSignature("ssh-rsa".into()),
            ),
            (
                "fail_reserved.sig",
                "message.txt",
                Error::Malformed("reserved field is not empty"),
            ),
            (
                "fail_ed25519-malleable.sig",
                "malleable.msg",
                Error::BadSignature,
            ),
            ("fail_sk-no-touch.sig", "message.txt", Error::NoUserPresence),
            (
                "fail_ecdsa.sig",
                "message.txt",
                Error::UnsupportedKey("ecdsa-sha2-nistp256".into()),
            ),
            ("fail_rsa1024.sig", "message.txt", Error::KeySize(1024)),
            (
                "fail_after-footer.sig",
                "message.txt",
                Error::Armor("data after END line"),
            ),
            (
                "fail_bad-base64.sig",
                "message.txt",
                Error::Armor("invalid base64"),
            ),
            (
                "fail_truncated.sig",
                "message.txt",
                Error::Malformed("truncated"),
            ),
            ("fail_tampered.sig", "message.txt", Error::BadSignature),
        ];
        for (name, message, want) in cases {
            let got =
                Signature::parse(&fixture(name)).and_then(|sig| sig.verify(&fixture(message), NS));
            assert_eq!(got, Err(want), "{name}");
        }
    }

    /// A blob built field by field; each test changes one field.
    struct Fields {
        magic: Vec<u8>,
        version: u32,
        key: Vec<u8>,
        namespace: Vec<u8>,
        reserved: Vec<u8>,
        hash: Vec<u8>,
        sig: Vec<u8>,
        trailing: Vec<u8>,
    }

    impl Fields {
        /// The fields of the ed25519.sig fixture.
        fn good() -> Fields {
            let sig = Signature::parse(&fixture("ed25519.sig")).unwrap();
            let Body::Ed25519(raw) = sig.body else {
                panic!("not ed25519");
            };
            Fields {
                magic: MAGIC.to_vec(),
                version: 1,
                key: sig.key.blob().to_vec(),
                namespace: NS.into(),
                reserved: vec![],
                hash: b"sha512".to_vec(),
                sig: blob_of(&[b"ssh-ed25519", &raw]),
                trailing: vec![],
            }
        }

        fn blob(&self) -> Vec<u8> {
            let mut out = self.magic.clone();
            out.extend_from_slice(&self.version.to_be_bytes());
            for field in [
                &self.key,
                &self.namespace,
                &self.reserved,
                &self.hash,
                &self.sig,
            ] {
                put_string(&mut out, field);
            }
            out.extend_from_slice(&self.trailing);
            out
        }
    }

    #[test]
    fn each_field_is_checked() {
        type Edit = fn(&mut Fields);
        let cases: [(&str, Edit, Result<(), Error>); 13] = [
            ("unchanged", |_| {}, Ok(())),
            (
                "magic",
                |f| f.magic = b"SSHSIH".to_vec(),
                Err(Error::Malformed("no SSHSIG magic")),
            ),
            (
                "short magic",
                |f| f.magic = b"SSH".to_vec(),
                Err(Error::Malformed("no SSHSIG magic")),
            ),
            ("version 3", |f| f.version = 3, Err(Error::Version(3))),
            (
                "empty namespace",
                |f| f.namespace.clear(),
                Err(Error::Malformed("empty namespace")),
            ),
            (
                "nul in namespace",
                |f| f.namespace.push(0),
                Err(Error::Malformed("nul in namespace")),
            ),
            (
                "reserved",
                |f| f.reserved = b"x".to_vec(),
                Err(Error::Malformed("reserved field is not empty")),
            ),
            (
                "hash",
                |f| f.hash = b"sha1".to_vec(),
                Err(Error::UnsupportedHash("sha1".into())),
            ),
            (
                "hash case",
                |f| f.hash = b"SHA512".to_vec(),
                Err(Error::UnsupportedHash("SHA512".into())),
            ),
            (
                "hash changed after signing",
                |f| f.hash = b"sha256".to_vec(),
                Err(Error::BadSignature),
            ),
            (
                "trailing",
                |f| f.trailing = vec![0],
                Err(Error::Malformed("bytes after the signature blob")),
            ),
            (
                "key",
                |f| f.key = blob_of(&[b"ssh-dss", b"p"]),
                Err(Error::UnsupportedKey("ssh-dss".into())),
            ),
            (
                "no signature",
                |f| f.sig.clear(),
                Err(Error::Malformed("truncated signature")),
            ),
        ];
        for (what, edit, want) in cases {
            let mut fields = Fields::good();
            edit(&mut fields);
            let got = Signature::from_blob(&fields.blob()).and_then(|s| s.verify(MESSAGE, NS));
            assert_eq!(got, want, "{what}");
        }
        let blob = Fields::good().blob();
        for len in 0..blob.len() {
            assert!(
                Signature::from_blob(&blob[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_signature_fails() {
        let good = Fields::good();
        let at = good.blob().len() - 30;
        let mut blob = good.blob();
        blob[at] ^= 1;
        assert_eq!(
            Signature::from_blob(&blob).and_then(|s| s.verify(MESSAGE, NS)),
            Err(Error::BadSignature)
        );
    }
}
