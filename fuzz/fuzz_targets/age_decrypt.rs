//! Fuzzes the age decoder the server runs on every SEAL payload:
//! [`age::decrypt_in_place`] with the committed test key, so that inputs
//! derived from the seed files (sealed to that key) reach the RSA unwrap,
//! the header MAC and the STREAM payload, not just the header parser.
//! Decryption must fail cleanly (buffer emptied, one coarse message) or
//! succeed with no more plaintext than input; it must never panic.

#![no_main]

use colorsort::age;
use colorsort::identity::Identity;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static IDENTITY: LazyLock<Identity> = LazyLock::new(|| {
    Identity::from_pem(include_str!(
        "../../test-data/keys/test-only-server-key.pem"
    ))
    .expect("the committed test key loads")
});

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    match age::decrypt_in_place(&mut buf, &IDENTITY) {
        Ok(()) => assert!(buf.len() <= data.len()),
        Err(e) => {
            assert!(buf.is_empty(), "failed decryption left bytes behind");
            assert_eq!(e.to_string(), "decryption failed");
        }
    }
});
