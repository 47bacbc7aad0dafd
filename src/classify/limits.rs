//! What an image may cost: the pixel limit a caller sets, the bound that
//! keeps the exact sums within a `u64`, the limits the decoders work
//! under, the memory reading a header may take, and the memory a decode
//! may hold beside its pixels, all decided from the header and the input's
//! length before any pixel buffer exists. What a decoder keeps of an
//! image's metadata grows with the input, never with a fixed guess: a
//! large file may carry large tables.

use image::ColorType;

use super::jpeg::Layout;
use super::sniff::{Format, WebPKind};
use super::{Error, no_pixels};
use crate::config::DEFAULT_MAX_PIXELS;

/// The largest pixel count whose weighted sums (at most 255 · 255 per pixel)
/// still fit a `u64`; [`open`](super::open) never admits more, whatever the limits say.
pub(super) const SUMMABLE_PIXELS: u64 = u64::MAX / (255 * 255);

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

/// The limits a decoder works under for an image of `pixels` pixels read
/// from `input` bytes, with `limit` the most pixels allowed: no side longer
/// than `limit`, and allocations of at most the widest pixel buffer twice
/// over (a GIF frame beside its canvas, a TIFF strip beside the output)
/// plus, for metadata and compressed strips, what [`open_memory`] allows
/// for the input.
pub(super) fn decoder_limits(limit: u64, pixels: u64, input: u64) -> image::Limits {
    let side = u32::try_from(limit).unwrap_or(u32::MAX);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(
        pixels
            .saturating_mul(2 * WIDEST_PIXEL)
            .saturating_add(open_memory(input)),
    );
    limits
}

/// Bytes that [`open`](super::open) may allocate whatever the input:
/// decoder state, readers' buffers, a TIFF directory (at most 65536
/// distinct entries), JPEG's segment walk.
pub(super) const OPEN_STATE: u64 = 4 << 20;

/// Bytes that [`open`](super::open) may allocate for each byte of input,
/// for the metadata a decoder keeps as it reads a header: a PNG chunk's
/// buffer and its copy (at most three times the chunk), TIFF tables, whose
/// values the decoder widens (a strip's offset and byte count, at most
/// twelve bytes in the file, take 56 bytes while the tables are read; a
/// file of strips of a few bytes each is the worst a real writer makes).
const OPEN_PER_INPUT_BYTE: u64 = 4;

/// Bytes that [`open`](super::open) may allocate on its way to an image or
/// an error, for an input of `input_len` bytes: [`OPEN_STATE`] and
/// [`OPEN_PER_INPUT_BYTE`] for each byte. It holds for every input: what
/// would take more (a TIFF table over it, a PNG chunk over the decoder's
/// limit) is refused before it is read.
pub(super) fn open_memory(input_len: u64) -> u64 {
    input_len
        .saturating_mul(OPEN_PER_INPUT_BYTE)
        .saturating_add(OPEN_STATE)
}

/// Bytes of a decoder's state that do not grow with the image: Huffman and
/// LZW tables, inflate windows, palettes. Counted in every decode's peak.
pub(super) const DECODER_STATE: u64 = 1 << 20;

/// What the working memory of a decode depends on.
pub(super) struct Cost<'a> {
    pub(super) format: Format,
    pub(super) width: u32,
    pub(super) height: u32,
    /// The layout the decoder writes.
    pub(super) color: ColorType,
    /// Bytes of the encoded input.
    pub(super) input: u64,
    /// Pixels of a GIF's first frame, which may be larger than its screen.
    pub(super) frame: u64,
    /// Which kind of WebP, for a WebP.
    pub(super) webp: Option<WebPKind>,
    /// The structure of a JPEG, for a JPEG.
    pub(super) jpeg: Option<&'a Layout>,
}

/// Bytes a decode may hold beside its pixel buffer, from what the header
/// and the input's length tell:
///
/// - PNG: eight rows (the decoder's unfiltering buffer and row scratch);
///   its metadata, all before the pixel data, was read by `open` (and
///   chunks after the pixel data are never read);
/// - JPEG: the decoder's copy of the input up to its end, twice the
///   application segments (EXIF, ICC and XMP are copied as they are
///   parsed), the coefficients of the whole image when it is progressive or
///   scanned component by component (else four rows of MCUs), and for a
///   progressive image the scan check's bit per coefficient;
/// - GIF: the first frame in RGBA, read beside the screen;
/// - BMP: a row;
/// - WebP: a lossy image's YUV planes and alpha plane (2.5 bytes a pixel),
///   a lossless one's RGBA frame (4), an animated one's canvas, frame,
///   planes and RGBA frame (15);
/// - TIFF: the decoder's intermediate copy of the image (up to 4/3 of the
///   pixels for CMYK), and a strip's compressed bytes (at most the input);
///
/// and for every format [`DECODER_STATE`].
pub(super) fn working_memory(cost: &Cost) -> u64 {
    let pixels = u64::from(cost.width) * u64::from(cost.height);
    let bpp = u64::from(cost.color.bytes_per_pixel());
    let row = u64::from(cost.width) * bpp + 1;
    let format = match cost.format {
        Format::Png => row.saturating_mul(8),
        Format::Jpeg => match cost.jpeg {
            Some(layout) => {
                let coefficients = if layout.buffered {
                    layout.coefficient_bytes
                } else {
                    layout.mcu_row_bytes.saturating_mul(4)
                };
                let check = layout.coefficient_bytes / 16;
                (layout.end as u64)
                    .saturating_add(2 * layout.metadata_bytes)
                    .saturating_add(coefficients)
                    .saturating_add(check)
            }
            None => cost.input.saturating_add(pixels.saturating_mul(8)),
        },
        Format::Gif => cost.frame.saturating_mul(4),
        Format::Bmp => row,
        Format::WebP => {
            // Planes are padded to 16-pixel macroblocks.
            let padded =
                u64::from(cost.width.div_ceil(16) * 16) * u64::from(cost.height.div_ceil(16) * 16);
            let per_pixel_tenths = match cost.webp {
                Some(WebPKind::Lossy) => 25,
                Some(WebPKind::Lossless) => 40,
                Some(WebPKind::Extended { animated: false }) => 40,
                Some(WebPKind::Extended { animated: true }) | None => 150,
            };
            padded.saturating_mul(per_pixel_tenths) / 10
        }
        Format::Tiff => {
            let intermediate = pixels.saturating_mul(bpp) / 3 * 4 + pixels;
            intermediate.saturating_add(cost.input)
        }
    };
    format.saturating_add(DECODER_STATE)
}
