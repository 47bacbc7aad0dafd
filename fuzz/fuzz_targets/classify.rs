//! Fuzzes image decoding and classification the way the server runs them on
//! an upload: [`classify::open`] under the default pixel limit (header
//! checks before any pixel buffer), the server's memory-budget check on
//! [`classify::Image::peak_memory`] (an image whose decode would not fit the
//! default budget is refused and never decoded), then
//! [`classify::Image::classify`]. Errors are expected; panics are not, not
//! even ones the server would contain.

#![no_main]

use colorsort::classify;
use colorsort::config::{self, DEFAULT_MAX_MEMORY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = classify::open(data, &classify::Limits::default()) else {
        return;
    };
    let (width, height) = (image.width(), image.height());
    assert!(u64::from(width) * u64::from(height) <= config::DEFAULT_MAX_PIXELS);
    assert!(image.peak_memory() >= image.decoded_len());
    if image.peak_memory() > DEFAULT_MAX_MEMORY {
        return;
    }
    if let Ok(verdict) = image.classify() {
        assert_eq!((verdict.width, verdict.height), (width, height));
        assert!(verdict.mean.iter().all(|m| (0.0..=255.0).contains(m)));
    }
});
