//! Fixtures shared by the age unit tests: the committed test keys, files
//! sealed with a known file key and nonce around hand-made stanzas, and a
//! small deterministic generator.

use super::encrypt::{push_stanza, seal};
use super::ssh_rsa::SSH_RSA_LABEL;
use super::stream::NONCE_LEN;
use super::{Error, FILE_KEY_LEN, decrypt_in_place};
use crate::identity::{Identity, PublicKey};
use base64ct::{Base64Unpadded, Encoding};
use getrandom::SysRng;
use rsa::Oaep;
use sha2::Sha256;

const SERVER_PEM: &str = include_str!("../../test-data/keys/test-only-server-key.pem");
pub(super) const OTHER_PUB: &str = include_str!("../../test-data/keys/test-only-other-key.pub");
pub(super) const FILE_KEY: [u8; FILE_KEY_LEN] = *b"YELLOW SUBMARINE";
pub(super) const NONCE: [u8; NONCE_LEN] = [7; NONCE_LEN];

pub(super) fn server() -> Identity {
    Identity::from_pem(SERVER_PEM).unwrap()
}

pub(super) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/test-data/age/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(super) fn open_copy(file: &[u8], identity: &Identity) -> Result<Vec<u8>, Error> {
    let mut buf = file.to_vec();
    let result = decrypt_in_place(&mut buf, identity);
    if result.is_err() {
        assert!(buf.is_empty(), "buffer not cleared on failure");
    }
    result.map(|()| buf)
}

/// Tiny deterministic generator for the fuzz-style loops.
pub(super) struct XorShift(pub(super) u64);

impl XorShift {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(super) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

pub(super) fn tag_b64(key: &PublicKey) -> String {
    Base64Unpadded::encode_string(&key.tag())
}

/// A stanza with the given type and arguments and a body of raw bytes.
pub(super) fn stanza(args: &[&str], body: &[u8]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let mut out = Vec::new();
    push_stanza(&mut out, &args, body);
    out
}

/// An ssh-rsa stanza to `key` wrapping `file_key` (of any length), with
/// the given OAEP label.
pub(super) fn rsa_stanza_with(key: &PublicKey, file_key: &[u8], label: &[u8]) -> Vec<u8> {
    let body = key
        .rsa()
        .encrypt(&mut SysRng, Oaep::<Sha256>::new_with_label(label), file_key)
        .unwrap();
    stanza(&["ssh-rsa", &tag_b64(key)], &body)
}

pub(super) fn rsa_stanza(key: &PublicKey) -> Vec<u8> {
    rsa_stanza_with(key, &FILE_KEY, SSH_RSA_LABEL)
}

/// A complete file with the given stanza text, sealed with FILE_KEY and
/// a correct MAC.
pub(super) fn sealed(stanzas: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    seal(&mut out, stanzas, &FILE_KEY, &NONCE, plaintext).unwrap();
    out
}

/// Header (through the MAC line) of a sealed file.
pub(super) fn header_of(file: &[u8]) -> &[u8] {
    let mac = file.windows(5).position(|w| w == b"\n--- ").unwrap() + 5;
    let end = mac + file[mac..].iter().position(|&b| b == b'\n').unwrap() + 1;
    &file[..end]
}
