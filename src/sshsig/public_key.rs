//! The public keys SSH signatures are verified with, in their SSH wire
//! encoding (the blob an SSHSIG carries and an allowed_signers line spells in
//! base64): `ssh-ed25519`, `sk-ssh-ed25519@openssh.com` (an Ed25519 FIDO
//! security key) and `ssh-rsa`. Each key has exactly one encoding accepted,
//! so two keys are equal exactly when their blobs are, and a fingerprint
//! names one key. This file also owns each key type's signature encoding and
//! the check of a signature against the data it signs.

use super::{ED25519, Error, RSA, SK_ED25519, excerpt};
use crate::ssh::wire::Reader;
use base64ct::{Base64, Encoding};
use ed25519_dalek::Verifier;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256, Sha512};
use std::fmt;

/// Longest base64 key blob [`PublicKey::from_openssh`] decodes: an
/// 8192-bit RSA key needs about 1.4 KB.
const MAX_BASE64_LEN: usize = 4096;
/// The security-key flag that says the user touched the key.
const USER_PRESENT: u8 = 0x01;

/// A public key that can verify SSH signatures.
#[derive(Clone)]
pub struct PublicKey {
    kind: Kind,
    /// The SSH wire encoding, exactly as read.
    blob: Vec<u8>,
}

#[derive(Clone)]
enum Kind {
    Ed25519(ed25519_dalek::VerifyingKey),
    SkEd25519 {
        key: ed25519_dalek::VerifyingKey,
        application: Vec<u8>,
    },
    Rsa(rsa::PublicKey),
}

/// A key type's signature, parsed but not yet checked.
#[derive(Debug, Clone)]
pub(super) enum Body {
    Ed25519([u8; 64]),
    SkEd25519 {
        sig: [u8; 64],
        flags: u8,
        counter: u32,
    },
    /// `sig` is left-padded with zeros to the modulus length, as ssh-keygen
    /// pads a short one.
    Rsa {
        sha512: bool,
        sig: Vec<u8>,
    },
}

impl PublicKey {
    /// Parses a key from its SSH wire encoding.
    pub fn from_blob(blob: &[u8]) -> Result<PublicKey, Error> {
        let mut r = Reader::new(blob);
        let kind_name = r.string().ok_or(Error::Malformed("truncated key"))?;
        let kind = match kind_name {
            k if k == ED25519.as_bytes() => Kind::Ed25519(ed25519_point(&mut r)?),
            k if k == SK_ED25519.as_bytes() => {
                let key = ed25519_point(&mut r)?;
                let application = r
                    .string()
                    .ok_or(Error::Malformed("truncated key"))?
                    .to_vec();
                if application.contains(&0) {
                    return Err(Error::Malformed("nul in security key application"));
                }
                Kind::SkEd25519 { key, application }
            }
            k if k == RSA.as_bytes() => Kind::Rsa(rsa_key(&mut r)?),
            other => return Err(Error::UnsupportedKey(excerpt(other))),
        };
        if !r.is_empty() {
            return Err(Error::Malformed("bytes after the key"));
        }
        Ok(PublicKey {
            kind,
            blob: blob.to_vec(),
        })
    }

    /// Parses the two key fields of an OpenSSH public key line or
    /// allowed_signers entry: the type name (`ssh-ed25519`, ...) and the
    /// canonical padded base64 of the blob, whose own type must match.
    pub fn from_openssh(algorithm: &str, base64: &str) -> Result<PublicKey, Error> {
        if ![ED25519, SK_ED25519, RSA].contains(&algorithm) {
            return Err(Error::UnsupportedKey(excerpt(algorithm.as_bytes())));
        }
        if base64.len() > MAX_BASE64_LEN {
            return Err(Error::Malformed("key too long"));
        }
        let blob = Base64::decode_vec(base64).map_err(|_| Error::Malformed("key base64"))?;
        let key = PublicKey::from_blob(&blob)?;
        if key.algorithm() != algorithm {
            return Err(Error::Malformed("key type differs from its blob"));
        }
        Ok(key)
    }

    /// The key type name: [`ED25519`], [`SK_ED25519`] or [`RSA`].
    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            Kind::Ed25519(_) => ED25519,
            Kind::SkEd25519 { .. } => SK_ED25519,
            Kind::Rsa(_) => RSA,
        }
    }

    /// `SHA256:` and the unpadded base64 SHA-256 of the blob, as
    /// `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        crate::ssh::fingerprint(&self.blob)
    }

    /// The SSH wire encoding.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// `type BASE64`, as a public key line or allowed_signers entry spells
    /// the key.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.algorithm(), Base64::encode_string(&self.blob))
    }

    /// Modulus size in bits for RSA; 256 for the Ed25519 types.
    pub fn bits(&self) -> usize {
        match &self.kind {
            Kind::Rsa(key) => key.n().bit_width_vartime() as usize,
            Kind::Ed25519(_) | Kind::SkEd25519 { .. } => 256,
        }
    }

    /// Parses a signature blob made by this key's type. The type name in it
    /// must be this key's (for RSA: rsa-sha2-256 or rsa-sha2-512) and nothing
    /// may follow the signature.
    pub(super) fn parse_signature(&self, blob: &[u8]) -> Result<Body, Error> {
        let mut r = Reader::new(blob);
        let kind = r.string().ok_or(Error::Malformed("truncated signature"))?;
        let body = match &self.kind {
            Kind::Ed25519(_) => {
                if kind != ED25519.as_bytes() {
                    return Err(Error::Malformed("signature type differs from the key"));
                }
                Body::Ed25519(ed25519_signature(&mut r)?)
            }
            Kind::SkEd25519 { .. } => {
                if kind != SK_ED25519.as_bytes() {
                    return Err(Error::Malformed("signature type differs from the key"));
                }
                let sig = ed25519_signature(&mut r)?;
                let flags = r.u8().ok_or(Error::Malformed("truncated signature"))?;
                let counter = r.u32().ok_or(Error::Malformed("truncated signature"))?;
                Body::SkEd25519 {
                    sig,
                    flags,
                    counter,
                }
            }
            Kind::Rsa(key) => {
                let sha512 = match kind {
                    b"rsa-sha2-512" => true,
                    b"rsa-sha2-256" => false,
                    other => return Err(Error::UnsupportedSignature(excerpt(other))),
                };
                let raw = r.string().ok_or(Error::Malformed("truncated signature"))?;
                let size = key.size();
                if raw.len() > size {
                    return Err(Error::Malformed("rsa signature longer than the modulus"));
                }
                let mut sig = vec![0; size - raw.len()];
                sig.extend_from_slice(raw);
                Body::Rsa { sha512, sig }
            }
        };
        if !r.is_empty() {
            return Err(Error::Malformed("bytes after the signature"));
        }
        Ok(body)
    }

    /// Checks that `body`, parsed by [`PublicKey::parse_signature`] on this
    /// key, signs `data`. Every cryptographic failure is
    /// [`Error::BadSignature`].
    pub(super) fn verify(&self, data: &[u8], body: &Body) -> Result<(), Error> {
        match (&self.kind, body) {
            (Kind::Ed25519(key), Body::Ed25519(sig)) => {
                let sig = ed25519_dalek::Signature::from_bytes(sig);
                key.verify(data, &sig).map_err(|_| Error::BadSignature)
            }
            (
                Kind::SkEd25519 { key, application },
                Body::SkEd25519 {
                    sig,
                    flags,
                    counter,
                },
            ) => {
                // What the authenticator signs (PROTOCOL.u2f): the hashes
                // of the application and the data around its flags and
                // counter.
                let mut signed = Vec::with_capacity(32 + 1 + 4 + 32);
                signed.extend_from_slice(&Sha256::digest(application));
                signed.push(*flags);
                signed.extend_from_slice(&counter.to_be_bytes());
                signed.extend_from_slice(&Sha256::digest(data));
                let sig = ed25519_dalek::Signature::from_bytes(sig);
                key.verify(&signed, &sig).map_err(|_| Error::BadSignature)?;
                if flags & USER_PRESENT == 0 {
                    return Err(Error::NoUserPresence);
                }
                Ok(())
            }
            (Kind::Rsa(key), Body::Rsa { sha512, sig }) => {
                let result = if *sha512 {
                    key.verify(
                        rsa::Pkcs1v15Sign::new::<Sha512>(),
                        &Sha512::digest(data),
                        sig,
                    )
                } else {
                    key.verify(
                        rsa::Pkcs1v15Sign::new::<Sha256>(),
                        &Sha256::digest(data),
                        sig,
                    )
                };
                result.map_err(|_| Error::BadSignature)
            }
            _ => Err(Error::BadSignature),
        }
    }
}

/// The 32-byte point of an Ed25519 key blob.
fn ed25519_point(r: &mut Reader<'_>) -> Result<ed25519_dalek::VerifyingKey, Error> {
    let point = r.string().ok_or(Error::Malformed("truncated key"))?;
    let point: &[u8; 32] = point
        .try_into()
        .map_err(|_| Error::Malformed("ed25519 key is not 32 bytes"))?;
    ed25519_dalek::VerifyingKey::from_bytes(point).map_err(|_| Error::InvalidKey)
}

/// The 64-byte signature string of an Ed25519 signature blob.
fn ed25519_signature(r: &mut Reader<'_>) -> Result<[u8; 64], Error> {
    let sig = r.string().ok_or(Error::Malformed("truncated signature"))?;
    sig.try_into()
        .map_err(|_| Error::Malformed("ed25519 signature is not 64 bytes"))
}

/// The exponent and modulus of an ssh-rsa key blob, both minimal mpints.
fn rsa_key(r: &mut Reader<'_>) -> Result<rsa::PublicKey, Error> {
    let e = r.mpint().ok_or(Error::Malformed("rsa exponent"))?;
    let n = r.mpint().ok_or(Error::Malformed("rsa modulus"))?;
    Ok(crate::ssh::rsa::public_key(e, n)?)
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.blob == other.blob
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Builds a key blob from its fields, for tests of the parsers.
#[cfg(test)]
pub(crate) fn blob_of(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        crate::ssh::wire::put_string(&mut out, field);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// test-data/sshsig/keys/ed25519.pub and what `ssh-keygen -l` says of it.
    const ED25519_PUB: &str = include_str!("../../test-data/sshsig/keys/ed25519.pub");
    const ED25519_FP: &str = include_str!("../../test-data/sshsig/keys/ed25519.fp");
    const RSA_PUB: &str = include_str!("../../test-data/sshsig/keys/rsa3072.pub");
    const RSA_FP: &str = include_str!("../../test-data/sshsig/keys/rsa3072.fp");
    const SK_PUB: &str = include_str!("../../test-data/sshsig/keys/sk-ed25519.pub");
    const SK_FP: &str = include_str!("../../test-data/sshsig/keys/sk-ed25519.fp");
    const ECDSA_PUB: &str = include_str!("../../test-data/sshsig/keys/ecdsa.pub");
    const RSA1024_PUB: &str = include_str!("../../test-data/sshsig/keys/rsa1024.pub");

    fn fields(line: &str) -> (&str, &str) {
        let mut words = line.split_whitespace();
        (words.next().unwrap(), words.next().unwrap())
    }

    fn parse(line: &str) -> Result<PublicKey, Error> {
        let (kind, b64) = fields(line);
        PublicKey::from_openssh(kind, b64)
    }

    /// `ssh-keygen -l` prints "BITS SHA256:... COMMENT (TYPE)".
    fn keygen_fingerprint(fp: &str) -> (&str, &str) {
        let mut words = fp.split_whitespace();
        (words.next().unwrap(), words.next().unwrap())
    }

    #[test]
    fn fingerprints_and_sizes_match_ssh_keygen() {
        for (line, fp, algorithm) in [
            (ED25519_PUB, ED25519_FP, ED25519),
            (RSA_PUB, RSA_FP, RSA),
            (SK_PUB, SK_FP, SK_ED25519),
        ] {
            let key = parse(line).unwrap();
            let (bits, want) = keygen_fingerprint(fp);
            assert_eq!(key.fingerprint(), want, "{algorithm}");
            assert_eq!(key.bits().to_string(), bits, "{algorithm}");
            assert_eq!(key.algorithm(), algorithm);
            let (kind, b64) = fields(line);
            assert_eq!(key.to_openssh(), format!("{kind} {b64}"));
            assert_eq!(PublicKey::from_blob(key.blob()).unwrap(), key);
        }
    }

    #[test]
    fn unsupported_and_undersized_keys_are_named() {
        assert_eq!(
            parse(ECDSA_PUB).unwrap_err(),
            Error::UnsupportedKey("ecdsa-sha2-nistp256".into())
        );
        let (_, b64) = fields(ECDSA_PUB);
        let blob = Base64::decode_vec(b64).unwrap();
        assert_eq!(
            PublicKey::from_blob(&blob).unwrap_err(),
            Error::UnsupportedKey("ecdsa-sha2-nistp256".into())
        );
        assert_eq!(parse(RSA1024_PUB).unwrap_err(), Error::KeySize(1024));
        let cert = blob_of(&[b"ssh-ed25519-cert-v01@openssh.com", b"nonce"]);
        assert_eq!(
            PublicKey::from_blob(&cert).unwrap_err(),
            Error::UnsupportedKey("ssh-ed25519-cert-v01@openssh.com".into())
        );
    }

    #[test]
    fn malformed_blobs_are_rejected() {
        let (_, b64) = fields(ED25519_PUB);
        let good = Base64::decode_vec(b64).unwrap();
        let point = &good[good.len() - 32..];
        let (_, b64) = fields(RSA_PUB);
        let rsa = Base64::decode_vec(b64).unwrap();
        let mut rsa_padded_e = blob_of(&[b"ssh-rsa", &[0, 1, 0, 1]]);
        rsa_padded_e.extend_from_slice(&rsa[4 + 7 + 4 + 3..]);
        let mut off_curve = point.to_vec();
        // y = 2 is not the y of any point on the curve.
        off_curve.fill(0);
        off_curve[0] = 2;
        let cases: [(&str, Vec<u8>, Error); 10] = [
            ("empty", vec![], Error::Malformed("truncated key")),
            (
                "truncated",
                good[..good.len() - 1].to_vec(),
                Error::Malformed("truncated key"),
            ),
            (
                "trailing byte",
                [&good[..], &[0]].concat(),
                Error::Malformed("bytes after the key"),
            ),
            (
                "short point",
                blob_of(&[b"ssh-ed25519", &point[..31]]),
                Error::Malformed("ed25519 key is not 32 bytes"),
            ),
            (
                "point off the curve",
                blob_of(&[b"ssh-ed25519", &off_curve]),
                Error::InvalidKey,
            ),
            (
                "sk without application",
                blob_of(&[SK_ED25519.as_bytes(), point]),
                Error::Malformed("truncated key"),
            ),
            (
                "sk application with nul",
                blob_of(&[SK_ED25519.as_bytes(), point, b"ssh:\0"]),
                Error::Malformed("nul in security key application"),
            ),
            (
                "type with trailing nul",
                blob_of(&[b"ssh-ed25519\0", point]),
                Error::UnsupportedKey("ssh-ed25519\\x00".into()),
            ),
            (
                "rsa exponent with a needless zero byte",
                rsa_padded_e,
                Error::Malformed("rsa exponent"),
            ),
            (
                "rsa without modulus",
                blob_of(&[b"ssh-rsa", &[1, 0, 1]]),
                Error::Malformed("rsa modulus"),
            ),
        ];
        for (what, blob, want) in cases {
            assert_eq!(PublicKey::from_blob(&blob).unwrap_err(), want, "{what}");
        }
    }

    #[test]
    fn openssh_fields_must_agree_and_be_canonical() {
        let (_, ed_b64) = fields(ED25519_PUB);
        let (_, rsa_b64) = fields(RSA_PUB);
        let (_, sk_b64) = fields(SK_PUB);
        let unpadded = sk_b64.trim_end_matches('=');
        assert_ne!(unpadded, sk_b64);
        let cases: [(&str, String, Error); 4] = [
            (
                "type differs from blob",
                format!("ssh-rsa {ed_b64}"),
                Error::Malformed("key type differs from its blob"),
            ),
            (
                "sk name on a plain blob",
                format!("{SK_ED25519} {ed_b64}"),
                Error::Malformed("key type differs from its blob"),
            ),
            (
                "unpadded base64",
                format!("{SK_ED25519} {unpadded}"),
                Error::Malformed("key base64"),
            ),
            (
                "ssh-dss",
                format!("ssh-dss {rsa_b64}"),
                Error::UnsupportedKey("ssh-dss".into()),
            ),
        ];
        for (what, line, want) in cases {
            assert_eq!(parse(&line).unwrap_err(), want, "{what}");
        }
        let long = "A".repeat(MAX_BASE64_LEN + 4);
        assert_eq!(
            PublicKey::from_openssh(RSA, &long).unwrap_err(),
            Error::Malformed("key too long")
        );
    }

    #[test]
    fn signature_blobs_must_match_the_key() {
        let ed = parse(ED25519_PUB).unwrap();
        let rsa = parse(RSA_PUB).unwrap();
        let sk = parse(SK_PUB).unwrap();
        let sig64 = [7u8; 64];
        let mut sk_sig = blob_of(&[SK_ED25519.as_bytes(), &sig64]);
        sk_sig.push(1);
        sk_sig.extend_from_slice(&9u32.to_be_bytes());
        let short_rsa = blob_of(&[b"rsa-sha2-512", &[5; 100]]);
        let cases: [(&PublicKey, Vec<u8>, Result<(), Error>); 11] = [
            (&ed, blob_of(&[b"ssh-ed25519", &sig64]), Ok(())),
            (
                &ed,
                blob_of(&[b"ssh-ed25519", &sig64[..63]]),
                Err(Error::Malformed("ed25519 signature is not 64 bytes")),
            ),
            (
                &ed,
                blob_of(&[SK_ED25519.as_bytes(), &sig64]),
                Err(Error::Malformed("signature type differs from the key")),
            ),
            (
                &ed,
                [blob_of(&[b"ssh-ed25519", &sig64]), vec![0]].concat(),
                Err(Error::Malformed("bytes after the signature")),
            ),
            (&sk, sk_sig.clone(), Ok(())),
            (
                &sk,
                sk_sig[..sk_sig.len() - 1].to_vec(),
                Err(Error::Malformed("truncated signature")),
            ),
            (
                &sk,
                blob_of(&[b"ssh-ed25519", &sig64]),
                Err(Error::Malformed("signature type differs from the key")),
            ),
            (&rsa, short_rsa, Ok(())),
            (
                &rsa,
                blob_of(&[b"rsa-sha2-512", &[5; 385]]),
                Err(Error::Malformed("rsa signature longer than the modulus")),
            ),
            (
                &rsa,
                blob_of(&[b"ssh-rsa", &[5; 384]]),
                Err(Error::UnsupportedSignature("ssh-rsa".into())),
            ),
            (&rsa, vec![], Err(Error::Malformed("truncated signature"))),
        ];
        for (i, (key, blob, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                key.parse_signature(&blob).map(|_| ()),
                want,
                "case {i} ({})",
                key.algorithm()
            );
        }
        // A short RSA signature is padded to the modulus length.
        let Ok(Body::Rsa { sig, sha512: true }) =
            rsa.parse_signature(&blob_of(&[b"rsa-sha2-512", &[5; 100]]))
        else {
            panic!("short rsa signature not parsed");
        };
        assert_eq!(sig.len(), 384);
        assert!(sig[..284].iter().all(|&b| b == 0) && sig[284..].iter().all(|&b| b == 5));
    }
}
