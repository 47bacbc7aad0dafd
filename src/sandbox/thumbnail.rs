//! The thumbnail job of a worker: a small JPEG of an image, transparency
//! flattened onto white, for the gallery. It runs inside a worker, so its
//! decoder's memory and time are the worker's limits.

use std::io::Cursor;

/// JPEG quality of thumbnails.
const QUALITY: u8 = 80;

/// A JPEG thumbnail of `bytes`, at most `side` pixels a side; `None` if the
/// bytes are not an image the `image` crate decodes.
pub(super) fn jpeg(bytes: &[u8], side: u32) -> Option<Vec<u8>> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    // The worker's memory limit is the bound, not the crate's default.
    reader.no_limits();
    let small = reader.decode().ok()?.thumbnail(side, side).into_rgba8();
    let flat = image::RgbImage::from_fn(small.width(), small.height(), |x, y| {
        let [r, g, b, a] = small.get_pixel(x, y).0;
        let over_white =
            |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    });
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY);
    flat.write_with_encoder(encoder).ok()?;
    Some(out)
}
