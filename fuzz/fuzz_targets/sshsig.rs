//! Fuzzes the SSH signature parser the server will run on every signature a
//! client sends, before the upload is decrypted: [`Signature::parse`] on the
//! bytes as armored text, and [`Signature::from_blob`] on them as the binary
//! blob inside the armor, so mutations reach the key and signature parsers
//! without first having to keep the base64 valid. Either must return a
//! signature or a one-line error, never panic; a parsed signature's key must
//! round-trip through both its encodings, and verifying it against a
//! message must not panic either.

#![no_main]

use colorsort::sshsig::{MAX_SIGNATURE, PublicKey, Signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(Signature::parse(data));
    check(Signature::from_blob(data));
    if data.len() > MAX_SIGNATURE {
        assert!(Signature::parse(data).is_err());
    }
});

fn check(parsed: Result<Signature, colorsort::sshsig::Error>) {
    let sig = match parsed {
        Ok(sig) => sig,
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.is_ascii() && !message.contains(['\n', '\r']),
                "{message:?}"
            );
            return;
        }
    };
    let key = sig.public_key();
    assert_eq!(PublicKey::from_blob(key.blob()).as_ref(), Ok(key));
    let line = key.to_openssh();
    let (kind, base64) = line.split_once(' ').expect("type and base64");
    assert_eq!(PublicKey::from_openssh(kind, base64).as_ref(), Ok(key));
    assert_eq!(kind, key.algorithm());
    assert!(key.fingerprint().starts_with("SHA256:"));
    assert!(!sig.namespace().is_empty());
    assert!(matches!(sig.hash_algorithm(), "sha256" | "sha512"));
    let _ = sig.verify(b"A message signed with test-only keys.\n", "colorsort");
    if let Ok(namespace) = std::str::from_utf8(sig.namespace()) {
        let _ = sig.verify(b"", namespace);
    }
}
