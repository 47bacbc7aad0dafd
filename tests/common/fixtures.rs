//! What the tests start from: the committed test-only server key and the
//! files in test-data/, the binary under test, and images and sealed
//! uploads made on the fly.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use colorsort::identity::{Identity, PublicKey};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The committed test-only server key.
pub const TEST_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/test-data/keys/test-only-server-key.pem"
);

/// The path of `rel` in test-data/.
pub fn test_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-data")
        .join(rel)
}

/// The `colorsort` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_colorsort")
}

/// The test key's public half.
pub fn test_public_key() -> PublicKey {
    let pem = std::fs::read_to_string(TEST_KEY).unwrap();
    Identity::from_pem(&pem).unwrap().public().clone()
}

/// Seals `plaintext` to the test key with colorsort's own encoder.
pub fn seal(plaintext: &[u8]) -> Vec<u8> {
    colorsort::age::encrypt(plaintext, &test_public_key()).unwrap()
}

/// A solid-colour PNG of `w`×`h` pixels.
pub fn png(rgb: [u8; 3], w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A PNG of pseudo-random pixels, which barely compresses: about 3·w·h bytes.
pub fn noise_png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let [a, b, c, _] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Puts the test key into a data directory, as the server expects it.
pub fn install_test_key(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let dest = data.join("key.pem");
    std::fs::copy(TEST_KEY, &dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
}
