//! What an image may cost: the pixel limit a caller sets, the bound that
//! keeps the exact sums within a `u64`, and the limits the decoders work
//! under, all decided from the dimensions in the header before any pixel
//! buffer exists.

use super::{Error, no_pixels};
use crate::config::DEFAULT_MAX_PIXELS;

/// The largest pixel count whose weighted sums (at most 255 · 255 per pixel)
/// still fit a `u64`; [`open`](super::open) never admits more, whatever the limits say.
pub(super) const SUMMABLE_PIXELS: u64 = u64::MAX / (255 * 255);

/// Memory a decoder may use beyond its pixels, for metadata such as ICC
/// profiles, palettes and TIFF tag tables.
const DECODER_METADATA_ALLOWANCE: u64 = 64 << 20;

/// Bytes of the widest pixel any supported decoder produces (RGBA, f32).
const WIDEST_PIXEL: u64 = 16;

/// What [`open`](super::open) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most pixels (width × height) an image may have.
    pub max_pixels: u64,
}

impl Limits {
    /// Limits admitting images of at most `max_pixels` pixels.
    pub const fn new(max_pixels: u64) -> Self {
        Limits { max_pixels }
    }
}

impl Default for Limits {
    /// [`DEFAULT_MAX_PIXELS`].
    fn default() -> Self {
        Limits::new(DEFAULT_MAX_PIXELS)
    }
}

/// The pixel count of a `width` × `height` image, refusing one without
/// pixels or with more than `limit`.
pub(super) fn check_pixels(width: u32, height: u32, limit: u64) -> Result<u64, Error> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(no_pixels());
    }
    if pixels > limit {
        return Err(Error::TooManyPixels {
            width,
            height,
            limit,
        });
    }
    Ok(pixels)
}

/// The limits a decoder works under for an image of `pixels` pixels, with
/// `limit` the most allowed: no side longer than `limit`, and allocations of
/// at most the widest pixel buffer twice over (a GIF frame beside its canvas,
/// a TIFF strip beside the output) plus a fixed allowance for metadata.
pub(super) fn decoder_limits(limit: u64, pixels: u64) -> image::Limits {
    let side = u32::try_from(limit).unwrap_or(u32::MAX);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(
        pixels
            .saturating_mul(2 * WIDEST_PIXEL)
            .saturating_add(DECODER_METADATA_ALLOWANCE),
    );
    limits
}
