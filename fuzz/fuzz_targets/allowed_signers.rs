//! Fuzzes the allowed_signers parser ([`AllowedSigners::parse`]) and the
//! lookups on what it accepts. The input is the file's text, optionally
//! followed by a NUL and a principal to look up. Parsing must return entries
//! or an error naming a line that exists, never panic; every entry's key
//! must round-trip, its time window must be in order, and `find` must return
//! an entry for that very key.

#![no_main]

use colorsort::allowed_signers::{AllowedSigners, Error, MAX_ENTRIES};
use colorsort::sshsig::PublicKey;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, principal) = text.split_once('\0').unwrap_or((text, "alice@example.com"));
    let signers = match AllowedSigners::parse(file) {
        Ok(signers) => signers,
        Err(e) => {
            if let Error::Line { line, .. } = e {
                assert!(line >= 1 && line <= file.split('\n').count(), "line {line}");
            }
            let message = e.to_string();
            assert!(!message.contains(['\n', '\r']), "{message:?}");
            return;
        }
    };
    assert!(signers.len() <= MAX_ENTRIES);
    let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    for signer in signers.signers() {
        let key = signer.key();
        let line = key.to_openssh();
        let (kind, base64) = line.split_once(' ').expect("type and base64");
        assert_eq!(PublicKey::from_openssh(kind, base64).as_ref(), Ok(key));
        if let (Some(after), Some(before)) = (signer.valid_after(), signer.valid_before()) {
            assert!(after < before);
        }
        assert!(!signer.principals().is_empty());
        let _ = signer.matches_principal(principal);
        for found in [
            signers.find(key, "colorsort", now),
            signers.find_principal(principal, key, principal, now),
        ]
        .into_iter()
        .flatten()
        {
            assert_eq!(found.key(), key);
        }
        if let Err(why) = signers.find(key, principal, now) {
            assert!(!why.to_string().contains('\n'));
        }
    }
});
