//! Decoding an image and deciding whether it is mostly red, green or blue.
//!
//! The rule: decode with the `image` crate (PNG, JPEG, GIF, BMP, WebP, TIFF;
//! for animations the first frame or default image), reduce every sample to
//! 8 bits exactly as `image`'s `DynamicImage::to_rgba8` does (16-bit and
//! float channels, alpha included; grey means r = g = b = l; no alpha means
//! alpha 255), then form exact integer sums `sum_c = Σ c·a` and
//! `weight = Σ a` over all pixels. If every pixel is fully transparent
//! (`weight == 0`) the unweighted sums `Σ c` over the pixel count are used
//! instead. The class is the channel with the largest sum, decided on those
//! integers; ties go to red, then green, then blue. The reported mean of a
//! channel is `sum_c / weight` as a float.
//!
//! Decoding is split in two so that a server can budget memory: [`open`]
//! sniffs the format from its magic bytes and reads only the header, refusing
//! images over [`Limits::max_pixels`] before any pixel buffer exists;
//! [`Image::decoded_len`] then says how many bytes the pixels will take, and
//! [`Image::classify`] decodes into exactly that buffer, in the decoder's own
//! layout, and sums it in place without a conversion copy.

use std::alloc::{self, Layout};
use std::fmt;
use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};

use image::codecs::{bmp, gif, jpeg, png, tiff, webp};
use image::{ColorType, ImageDecoder, ImageError};

use crate::config::DEFAULT_MAX_PIXELS;

/// The largest pixel count whose weighted sums (at most 255 · 255 per pixel)
/// still fit a `u64`; [`open`] never admits more, whatever the limits say.
const SUMMABLE_PIXELS: u64 = u64::MAX / (255 * 255);

/// Memory a decoder may use beyond its pixels, for metadata such as ICC
/// profiles, palettes and TIFF tag tables.
const DECODER_METADATA_ALLOWANCE: u64 = 64 << 20;

/// Bytes of the widest pixel any supported decoder produces (RGBA, f32).
const WIDEST_PIXEL: u64 = 16;

/// What [`open`] accepts.
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

/// The three classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Red has the largest mean (or ties for it).
    Red,
    /// Green has the largest mean, strictly above red.
    Green,
    /// Blue has the largest mean, strictly above red and green.
    Blue,
}

impl Class {
    /// `red`, `green` or `blue`: also the name of the folder the image is filed in.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Red => "red",
            Class::Green => "green",
            Class::Blue => "blue",
        }
    }

    /// The class of the largest of three sums, ties going to red, then green.
    pub fn of_sums(sums: [u64; 3]) -> Class {
        let [r, g, b] = sums;
        if r >= g && r >= b {
            Class::Red
        } else if g >= b {
            Class::Green
        } else {
            Class::Blue
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result of classifying an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The channel with the largest sum.
    pub class: Class,
    /// `sums[c] / weight`, each in `0.0..=255.0`.
    pub mean: [f64; 3],
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The exact sums the class was decided on: `Σ c·a` per channel, or `Σ c`
    /// when the image is fully transparent.
    pub sums: [u64; 3],
    /// `Σ a` (255 per pixel for images without alpha), or the pixel count
    /// when the image is fully transparent.
    pub weight: u64,
    /// The container format: `png`, `jpeg`, `gif`, `bmp`, `webp` or `tiff`.
    pub format: &'static str,
}

/// Why an input could not be classified.
#[derive(Debug)]
pub enum Error {
    /// The input is not an image in a supported format, or its data is
    /// truncated or corrupt; the reason is a short lowercase phrase.
    NotAnImage(String),
    /// The header claims more pixels than the limit allows.
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit in force, in pixels.
        limit: u64,
    },
    /// The format is recognised but this variant of it (colour type,
    /// compression, ...) is not decodable here; the text is the decoder's.
    Unsupported(String),
    /// The decoder needed more memory than its limit allows.
    DecoderLimit(String),
    /// The pixel buffer could not be allocated.
    OutOfMemory {
        /// Size of the buffer that was asked for.
        bytes: u64,
    },
    /// The decoder panicked on this input; the panic was contained.
    DecoderPanic {
        /// The format being decoded.
        format: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAnImage(reason) => write!(f, "not an image: {reason}"),
            Error::TooManyPixels {
                width,
                height,
                limit,
            } => write!(
                f,
                "image of {width}x{height} pixels is over the limit of {limit} pixels"
            ),
            Error::Unsupported(detail) => write!(f, "unsupported image: {detail}"),
            Error::DecoderLimit(detail) => write!(f, "decoder limit reached: {detail}"),
            Error::OutOfMemory { bytes } => {
                write!(f, "cannot allocate {bytes} bytes for the pixels")
            }
            Error::DecoderPanic { format } => {
                write!(f, "the {format} decoder failed abnormally on this input")
            }
        }
    }
}

impl std::error::Error for Error {}

/// The container formats we decode, each recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
    Gif,
    Bmp,
    WebP,
    Tiff,
}

impl Format {
    fn sniff(bytes: &[u8]) -> Option<Format> {
        const MAGIC: &[(&[u8], Format)] = &[
            (b"\x89PNG\r\n\x1a\n", Format::Png),
            (b"\xff\xd8\xff", Format::Jpeg),
            (b"GIF87a", Format::Gif),
            (b"GIF89a", Format::Gif),
            (b"BM", Format::Bmp),
            (b"II*\0", Format::Tiff),
            (b"MM\0*", Format::Tiff),
            (b"II+\0", Format::Tiff),
            (b"MM\0+", Format::Tiff),
        ];
        if let Some(&(_, format)) = MAGIC.iter().find(|(magic, _)| bytes.starts_with(magic)) {
            return Some(format);
        }
        if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            return Some(Format::WebP);
        }
        None
    }

    fn name(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::WebP => "webp",
            Format::Tiff => "tiff",
        }
    }

    /// Width and height read straight from a fixed-position header, for the
    /// formats whose decoder might allocate or check limits while reading it.
    /// `None` means the header is malformed.
    fn peek_dimensions(self, bytes: &[u8]) -> Option<(u32, u32)> {
        match self {
            // The signature, then the IHDR chunk: length 13, type, width, height.
            Format::Png => {
                if bytes.get(8..16)? != b"\0\0\0\x0dIHDR" {
                    return None;
                }
                let width = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
                let height = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
                Some((width, height))
            }
            // The logical screen descriptor follows the 6-byte signature.
            Format::Gif => {
                let width = u16::from_le_bytes(bytes.get(6..8)?.try_into().ok()?);
                let height = u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?);
                Some((width.into(), height.into()))
            }
            Format::Jpeg | Format::Bmp | Format::WebP | Format::Tiff => None,
        }
    }
}

/// Width and height of a GIF's first frame, from its image descriptor:
/// after the header, the logical screen descriptor and the global colour
/// table come extension blocks (each a label and sub-blocks ending in an
/// empty one) until the first image descriptor. `None` if the stream ends
/// or holds something else first.
fn gif_first_frame(bytes: &[u8]) -> Option<(u32, u32)> {
    let packed = *bytes.get(10)?;
    let table = if packed & 0x80 != 0 {
        3 << ((packed & 7) + 1)
    } else {
        0
    };
    let mut at = 13 + table;
    loop {
        match *bytes.get(at)? {
            // Extension: introducer, label, then sub-blocks.
            0x21 => {
                at += 2;
                loop {
                    let len = usize::from(*bytes.get(at)?);
                    at += 1 + len;
                    if len == 0 {
                        break;
                    }
                }
            }
            // Image descriptor: separator, left, top, width, height.
            0x2C => {
                let width = u16::from_le_bytes(bytes.get(at + 5..at + 7)?.try_into().ok()?);
                let height = u16::from_le_bytes(bytes.get(at + 7..at + 9)?.try_into().ok()?);
                return Some((width.into(), height.into()));
            }
            _ => return None,
        }
    }
}

type Decoder<'a> = Box<dyn ImageDecoder + Send + 'a>;

/// A header-checked image, not yet decoded.
pub struct Image<'a> {
    decoder: Decoder<'a>,
    format: Format,
    width: u32,
    height: u32,
    color: ColorType,
    /// Bytes of the encoded input.
    input_len: usize,
    /// Bytes of the RGBA frame buffer a GIF decoder fills before cropping
    /// the first frame to the screen; 0 for other formats.
    frame_len: u64,
}

impl fmt::Debug for Image<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("format", &self.format.name())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("color", &self.color)
            .finish_non_exhaustive()
    }
}

/// Recognises the format of `bytes` by its magic bytes and reads the header.
///
/// Refuses an image of more than `limits.max_pixels` pixels with
/// [`Error::TooManyPixels`] before any pixel memory is allocated, and installs
/// limits on the decoder so that its own allocations stay in proportion to
/// the image: no side over the pixel limit, and at most
/// `2 × 16 bytes × pixels + 64 MiB` in all.
pub fn open<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Image<'a>, Error> {
    if bytes.is_empty() {
        return Err(Error::NotAnImage("empty input".into()));
    }
    let format =
        Format::sniff(bytes).ok_or_else(|| Error::NotAnImage("unrecognised format".into()))?;
    let limit = limits.max_pixels.min(SUMMABLE_PIXELS);

    // PNG's decoder takes its memory limit only when it is made, and checks
    // side lengths as it reads the header, so PNG's pixel count is checked
    // first, from the fixed-position IHDR; GIF's screen size is as easy to
    // read and is checked before its decoder runs too.
    if format == Format::Jpeg && !jpeg_has_end(bytes) {
        return Err(corrupt(format));
    }
    let early = match format.peek_dimensions(bytes) {
        Some((width, height)) => check_pixels(width, height, limit)?,
        None if matches!(format, Format::Png | Format::Gif) => return Err(corrupt(format)),
        None => limit,
    };
    // A GIF frame may be larger than the GIF's screen, and the decoder holds
    // the whole first frame before cropping it: its size counts too.
    let frame = match format {
        Format::Gif => {
            let (width, height) = gif_first_frame(bytes).ok_or_else(|| corrupt(format))?;
            check_pixels(width, height, limit)?
        }
        _ => 0,
    };
    let early = early.max(frame);
    let mut decoder = contain(format, || {
        new_decoder(format, bytes, decoder_limits(limit, early))
    })?;
    let (width, height) = decoder.dimensions();
    let pixels = check_pixels(width, height, limit)?;
    decoder
        .set_limits(decoder_limits(limit, pixels.max(frame)))
        .map_err(|e| from_image_error(format, e))?;
    Ok(Image {
        color: decoder.color_type(),
        decoder,
        format,
        width,
        height,
        input_len: bytes.len(),
        frame_len: frame.saturating_mul(4),
    })
}

/// The format an input starts like (`png`, `jpeg`, `gif`, `bmp`, `webp` or
/// `tiff`), judged from its magic bytes alone: the first 12 bytes suffice.
/// `None` if it is none of these.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    Format::sniff(head).map(Format::name)
}

/// `open(bytes, limits)?.classify()`.
pub fn classify(bytes: &[u8], limits: &Limits) -> Result<Verdict, Error> {
    open(bytes, limits)?.classify()
}

impl Image<'_> {
    /// Width in pixels, from the header.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels, from the header.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The container format: `png`, `jpeg`, `gif`, `bmp`, `webp` or `tiff`.
    pub fn format(&self) -> &'static str {
        self.format.name()
    }

    /// Bytes of the pixel buffer that [`Image::classify`] and
    /// [`Image::decode`] allocate: width × height × the decoder's bytes per
    /// pixel. The decoder may use some scratch memory of its own besides.
    pub fn decoded_len(&self) -> u64 {
        self.decoder.total_bytes()
    }

    /// Bytes that decoding this image may hold at its peak, as far as the
    /// header tells: the pixel buffer, plus what the decoder keeps beside
    /// it. A JPEG decoder copies its input and, for a progressive image,
    /// holds the DCT coefficients, about as large again as the pixels
    /// (measured: 79 MB for 39 MB of pixels); a lossy WebP decoder holds
    /// about half as much again; a GIF decoder holds its first frame, which
    /// may be larger than the screen. The server reserves this much of its
    /// memory budget before decoding.
    pub fn peak_memory(&self) -> u64 {
        let pixels = self.decoded_len();
        match self.format {
            Format::Jpeg => pixels
                .saturating_mul(2)
                .saturating_add(self.input_len as u64),
            Format::WebP => pixels.saturating_add(pixels / 2),
            Format::Gif => pixels.saturating_add(self.frame_len),
            Format::Png | Format::Bmp | Format::Tiff => pixels,
        }
    }

    /// Decodes the pixels and classifies them by the rule in the module
    /// documentation.
    pub fn classify(self) -> Result<Verdict, Error> {
        let (format, width, height, color) = (self.format, self.width, self.height, self.color);
        let pixels = self.decode_pixels()?;
        let sums = channel_sums(color, &pixels)?;
        let weight = sums.weight as f64;
        Ok(Verdict {
            class: Class::of_sums(sums.rgb),
            mean: sums.rgb.map(|s| s as f64 / weight),
            width,
            height,
            sums: sums.rgb,
            weight: sums.weight,
            format: format.name(),
        })
    }

    /// Decodes the pixels and discards them: the same decoder, limits and
    /// buffer as [`Image::classify`], without the summing. For benchmarks.
    pub fn decode(self) -> Result<(), Error> {
        self.decode_pixels().map(drop)
    }

    fn decode_pixels(self) -> Result<Vec<u8>, Error> {
        let Image {
            decoder,
            format,
            color,
            ..
        } = self;
        if !known_layout(color) {
            return Err(unsupported_color(color));
        }
        let bytes = decoder.total_bytes();
        let mut pixels = pixel_buffer(bytes)?;
        contain(format, || decoder.read_image(&mut pixels))?;
        Ok(pixels)
    }
}

/// A zeroed buffer of `bytes` bytes for a decoder to write pixels into, or
/// [`Error::OutOfMemory`] if it cannot be had.
///
/// The buffer comes from the allocator's zeroed allocation: for a large
/// buffer that is a fresh mapping, already zero, so the only writes to it are
/// the decoder's. Its pages are faulted in as the decoder first writes them;
/// with 4 KiB pages that is one fault per 4 KiB, about a fifth of the time of
/// decoding a large JPEG, so the kernel is asked for 2 MiB pages instead.
fn pixel_buffer(bytes: u64) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(bytes).map_err(|_| Error::OutOfMemory { bytes })?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let layout = Layout::array::<u8>(len).map_err(|_| Error::OutOfMemory { bytes })?;
    // SAFETY: `layout` has a non-zero size, checked above.
    let ptr = unsafe { alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(Error::OutOfMemory { bytes });
    }
    huge_pages::advise(ptr, len);
    // SAFETY: `ptr` was allocated by the global allocator with the layout of
    // `len` bytes, aligned for `u8`, and all `len` bytes are initialised
    // (to zero), so it is a valid `Vec<u8>` of length and capacity `len`.
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// Advice to the kernel on the pages of pixel buffers.
mod huge_pages {
    /// Buffers smaller than this are left alone: the 2 MiB-aligned part of
    /// them is small or empty.
    const MIN_LEN: usize = 8 << 20;
    /// The huge page size of x86-64 and of 4 KiB-page arm64.
    const HUGE_PAGE: usize = 2 << 20;

    /// Asks for transparent huge pages under the 2 MiB-aligned part of the
    /// `len` bytes at `ptr`, which must not have been touched yet for the
    /// advice to take effect at the first fault. Only advice: where the
    /// kernel has no huge pages to give, or THP is disabled, nothing changes.
    #[cfg(target_os = "linux")]
    pub fn advise(ptr: *mut u8, len: usize) {
        if len < MIN_LEN {
            return;
        }
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies within the allocation at `ptr` and is
            // page-aligned; MADV_HUGEPAGE changes no contents and a failure
            // leaves the mapping as it was.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn advise(_ptr: *mut u8, _len: usize) {}
}

fn new_decoder(
    format: Format,
    bytes: &[u8],
    limits: image::Limits,
) -> image::ImageResult<Decoder<'_>> {
    let input = Cursor::new(bytes);
    Ok(match format {
        Format::Png => Box::new(png::PngDecoder::with_limits(input, limits)?),
        Format::Jpeg => Box::new(jpeg::JpegDecoder::new(input)?),
        Format::Gif => Box::new(gif::GifDecoder::new(input)?),
        Format::Bmp => Box::new(bmp::BmpDecoder::new(input)?),
        Format::WebP => Box::new(webp::WebPDecoder::new(input)?),
        Format::Tiff => Box::new(tiff::TiffDecoder::new(input)?),
    })
}

/// Runs a decoder step, turning its error or its panic into an [`Error`].
///
/// Decoders are third-party code facing hostile input. Should one panic, the
/// panic must not unwind through the connection thread that called us: it
/// becomes [`Error::DecoderPanic`] and the caller answers like for any other
/// bad input. Nothing the closure touched is used again after a panic (the
/// decoder is dropped and the buffer discarded), so asserting unwind safety
/// is sound. The panic hook still reports the panic on stderr.
fn contain<T>(format: Format, step: impl FnOnce() -> image::ImageResult<T>) -> Result<T, Error> {
    match panic::catch_unwind(AssertUnwindSafe(step)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(from_image_error(format, e)),
        Err(_) => Err(Error::DecoderPanic {
            format: format.name(),
        }),
    }
}

fn check_pixels(width: u32, height: u32, limit: u64) -> Result<u64, Error> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(Error::NotAnImage("image has no pixels".into()));
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
fn decoder_limits(limit: u64, pixels: u64) -> image::Limits {
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

/// True if an end-of-image marker follows the last start-of-scan marker.
///
/// The JPEG decoder is lenient: it decodes a scan cut short as if the rest
/// were there, and would classify a truncated upload on made-up pixels.
/// Inside entropy-coded data every 0xFF byte is followed by 0x00 or a
/// restart marker, so `FF DA` and `FF D9` there are real markers; an EXIF
/// thumbnail's own markers come before the main image's scans.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    // The same as "an `FF DA` exists and an `FF D9` follows the last one",
    // put so that neither search crosses the entropy-coded data of an
    // ordinary file: the first `FF DA` is near the start, and the last of
    // the two markers near the end. (Two such markers cannot overlap.)
    let has_scan = bytes.windows(2).any(|w| w == [0xFF, 0xDA]);
    let last_marker = (1..bytes.len())
        .rev()
        .find(|&i| bytes[i - 1] == 0xFF && matches!(bytes[i], 0xDA | 0xD9));
    has_scan && last_marker.is_some_and(|i| bytes[i] == 0xD9)
}

fn corrupt(format: Format) -> Error {
    Error::NotAnImage(format!("truncated or corrupt {} data", format.name()))
}

fn unsupported_color(color: ColorType) -> Error {
    Error::Unsupported(format!("pixel layout {color:?}"))
}

fn from_image_error(format: Format, e: ImageError) -> Error {
    match e {
        ImageError::Unsupported(e) => Error::Unsupported(format!("{}: {e}", format.name())),
        ImageError::Limits(e) => Error::DecoderLimit(format!("{}: {e}", format.name())),
        // Decoding errors, I/O errors (a `Cursor` only fails at its end) and
        // parameter errors (such as a GIF without frames) all mean the data
        // is not a decodable image.
        ImageError::Decoding(_)
        | ImageError::IoError(_)
        | ImageError::Parameter(_)
        | ImageError::Encoding(_) => corrupt(format),
    }
}

fn known_layout(color: ColorType) -> bool {
    use ColorType::*;
    matches!(
        color,
        L8 | La8 | Rgb8 | Rgba8 | L16 | La16 | Rgb16 | Rgba16 | Rgb32F | Rgba32F
    )
}

/// Sums of 8-bit channel values and their weight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sums {
    rgb: [u64; 3],
    weight: u64,
}

impl Sums {
    fn add(&mut self, other: Sums) {
        for (s, o) in self.rgb.iter_mut().zip(other.rgb) {
            *s += o;
        }
        self.weight += other.weight;
    }
}

/// Both sums of a buffer: `Σ c·a` with `Σ a`, and `Σ c` with the pixel count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BothSums {
    weighted: Sums,
    plain: Sums,
}

impl BothSums {
    fn add(&mut self, other: BothSums) {
        self.weighted.add(other.weighted);
        self.plain.add(other.plain);
    }

    /// Sums of pixels without alpha, which weigh 255 each.
    fn opaque(rgb: [u64; 3], pixels: usize) -> BothSums {
        let plain = Sums {
            rgb,
            weight: pixels as u64,
        };
        BothSums {
            weighted: Sums {
                rgb: rgb.map(|s| s * 255),
                weight: plain.weight * 255,
            },
            plain,
        }
    }
}

/// Bytes per block of [`channel_sums`]: 768 KiB, a multiple of every pixel
/// size (1, 2, 3, 4, 6, 8, 12 and 16 bytes) and of the summing groups (48
/// and 64 bytes), so every block but the last holds whole groups.
const SUM_BLOCK: usize = 192 * 4096;

/// The sums the class is decided on: weighted by alpha, or plain when the
/// image is fully transparent.
fn channel_sums(color: ColorType, pixels: &[u8]) -> Result<Sums, Error> {
    // The decoder wrote the buffer front to back, so its end is what the
    // caches still hold: summing from the end reads that part from cache
    // before the misses on the front evict it.
    let mut both = BothSums::default();
    for block in pixels.chunks(SUM_BLOCK).rev() {
        both.add(layout_sums(color, block).ok_or_else(|| unsupported_color(color))?);
    }
    let sums = if both.weighted.weight == 0 {
        both.plain
    } else {
        both.weighted
    };
    if sums.weight == 0 {
        return Err(Error::NotAnImage("image has no pixels".into()));
    }
    Ok(sums)
}

/// The sums of a buffer in the decoder's native layout, with samples
/// reduced to 8 bits as `to_rgba8` reduces them. `None` for a layout this
/// module does not know.
fn layout_sums(color: ColorType, buf: &[u8]) -> Option<BothSums> {
    Some(match color {
        ColorType::L8 => {
            let [l] = byte_sums::<1>(buf);
            BothSums::opaque([l; 3], buf.len())
        }
        ColorType::Rgb8 => BothSums::opaque(byte_sums::<3>(buf), buf.len() / 3),
        ColorType::La8 => {
            let ([l, a], [plain_l, _]) = alpha_sums::<2>(buf);
            BothSums {
                weighted: Sums {
                    rgb: [l; 3],
                    weight: a,
                },
                plain: Sums {
                    rgb: [plain_l; 3],
                    weight: buf.len() as u64 / 2,
                },
            }
        }
        ColorType::Rgba8 => {
            let ([r, g, b, a], [plain_r, plain_g, plain_b, _]) = alpha_sums::<4>(buf);
            BothSums {
                weighted: Sums {
                    rgb: [r, g, b],
                    weight: a,
                },
                plain: Sums {
                    rgb: [plain_r, plain_g, plain_b],
                    weight: buf.len() as u64 / 4,
                },
            }
        }
        ColorType::L16 => reduced(buf, u16_to_u8, ColorType::L8),
        ColorType::La16 => reduced(buf, u16_to_u8, ColorType::La8),
        ColorType::Rgb16 => reduced(buf, u16_to_u8, ColorType::Rgb8),
        ColorType::Rgba16 => reduced(buf, u16_to_u8, ColorType::Rgba8),
        ColorType::Rgb32F => reduced(buf, f32_to_u8, ColorType::Rgb8),
        ColorType::Rgba32F => reduced(buf, f32_to_u8, ColorType::Rgba8),
        _ => return None,
    })
}

/// Samples per pass of [`reduced`]: a multiple of every channel count (1 to 4).
const REDUCE_SAMPLES: usize = 4080;

/// Reduces a buffer of `W`-byte samples to 8 bits, a stack-sized piece at a
/// time, and adds up the sums of each piece read as `narrow`.
fn reduced<const W: usize>(
    buf: &[u8],
    to_u8: impl Fn([u8; W]) -> u8,
    narrow: ColorType,
) -> BothSums {
    let mut total = BothSums::default();
    let mut piece = [0u8; REDUCE_SAMPLES];
    for wide in buf.chunks(REDUCE_SAMPLES * W) {
        let samples = wide.as_chunks::<W>().0;
        for (narrow, &sample) in piece.iter_mut().zip(samples) {
            *narrow = to_u8(sample);
        }
        if let Some(sums) = layout_sums(narrow, &piece[..samples.len()]) {
            total.add(sums);
        }
    }
    total
}

/// `image`'s 16-to-8-bit reduction: `round(c · 255 / 65535)`, which is
/// `(c + 128) / 257`, computed without a division. For grey and grey-alpha
/// `to_rgba8` takes a path through `f32`, `round(c as f32 · (1 / 65535) ·
/// 255)`, which gives the same byte for every one of the 65536 values (a unit
/// test checks them all).
fn u16_to_u8(sample: [u8; 2]) -> u8 {
    let x = u32::from(u16::from_ne_bytes(sample)) + 128;
    ((x - (x >> 8)) >> 8) as u8
}

/// `image`'s float-to-8-bit reduction: NaN and values from 1 up become 255,
/// values below 0 become 0, the rest `round(v · 255)`, halves rounding up.
fn f32_to_u8(sample: [u8; 4]) -> u8 {
    let v = f32::from_ne_bytes(sample);
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let scaled = if !(v < 1.0) { 1.0 } else { v.max(0.0) } * 255.0;
    // `f32::round` and float-to-integer casts are slow on baseline x86-64.
    // Adding 2^23 instead rounds `scaled` (0..=255) to the nearest integer,
    // halves to even, and leaves that integer in the low mantissa bits; an
    // exact half rounded down is then bumped up. A test compares this with
    // `round` for every f32 bit pattern.
    const SHIFT: f32 = 8_388_608.0;
    let shifted = scaled + SHIFT;
    let half_rounded_down = scaled - (shifted - SHIFT) == 0.5;
    (shifted.to_bits() as u8) + u8::from(half_rounded_down)
}

// The summing loops below are written so that the compiler turns them into
// SIMD code: per-position `u16` lanes over groups of 48 or 64 bytes for
// plain sums, flushed every 257 groups (257 · 255 < 2^16), and pixels read as
// little-endian words for the products of colour and alpha, in `u32`
// accumulators over blocks small enough that they cannot overflow.

/// Groups of bytes whose lanes a `u16` can hold.
const U16_RUN: usize = 257;
const _: () = assert!(U16_RUN as u64 * 255 <= u16::MAX as u64);

/// Bytes at each position of `L`-byte groups, summed.
fn lane_sums<const L: usize>(groups: &[[u8; L]]) -> [u64; L] {
    let mut total = [0u64; L];
    for run in groups.chunks(U16_RUN) {
        let mut lanes = [0u16; L];
        for group in run {
            for (lane, &byte) in lanes.iter_mut().zip(group) {
                *lane += u16::from(byte);
            }
        }
        for (t, lane) in total.iter_mut().zip(lanes) {
            *t += u64::from(lane);
        }
    }
    total
}

/// Sums of the bytes at each position modulo `P` (the channels of a `P`-byte
/// pixel, `P` from 1 to 4); `buf.len()` is a multiple of `P`.
fn byte_sums<const P: usize>(buf: &[u8]) -> [u64; P] {
    // 48 is a multiple of 1, 2, 3 and 4: a lane always holds one channel.
    let (groups, tail) = buf.as_chunks::<48>();
    let mut total = [0u64; P];
    for (i, lane) in lane_sums(groups).into_iter().enumerate() {
        total[i % P] += lane;
    }
    for (i, &byte) in tail.iter().enumerate() {
        total[i % P] += u64::from(byte);
    }
    total
}

/// 64-byte groups per block in [`alpha_sums`]: 16 KiB, which stays in cache
/// between the plain and the weighted pass.
const ALPHA_BLOCK: usize = 256;
const _: () = assert!(ALPHA_BLOCK <= U16_RUN);
const _: () = assert!((ALPHA_BLOCK * 64 / 2) as u64 * 255 * 255 <= u32::MAX as u64);

/// For `P`-byte pixels whose last byte is alpha (`P` is 2 or 4): `Σ c·a` for
/// each colour byte with `Σ a` last, and the plain sums `Σ c` with `Σ a` last.
fn alpha_sums<const P: usize>(buf: &[u8]) -> ([u64; P], [u64; P]) {
    const { assert!(P == 2 || P == 4) };
    let mut weighted = [0u64; P];
    let mut plain = [0u64; P];
    let (groups, tail) = buf.as_chunks::<64>();
    for block in groups.chunks(ALPHA_BLOCK) {
        let mut sums = [0u64; P];
        for (i, lane) in lane_sums(block).into_iter().enumerate() {
            sums[i % P] += lane;
        }
        let alpha = sums[P - 1];
        let pixels = (block.len() * 64 / P) as u64;
        // Opaque and fully transparent blocks, the common cases, need no
        // multiplication.
        let products = if alpha == 255 * pixels {
            sums.map(|s| 255 * s)
        } else if alpha == 0 {
            [0; P]
        } else {
            weigh::<P>(block.as_flattened())
        };
        for c in 0..P - 1 {
            weighted[c] += products[c];
            plain[c] += sums[c];
        }
        weighted[P - 1] += alpha;
        plain[P - 1] += alpha;
    }
    for pixel in tail.as_chunks::<P>().0 {
        let alpha = u64::from(pixel[P - 1]);
        for c in 0..P - 1 {
            weighted[c] += u64::from(pixel[c]) * alpha;
            plain[c] += u64::from(pixel[c]);
        }
        weighted[P - 1] += alpha;
        plain[P - 1] += alpha;
    }
    (weighted, plain)
}

/// `Σ c·a` for each colour position of one [`alpha_sums`] block of `P`-byte
/// pixels; the alpha position is left at zero.
fn weigh<const P: usize>(block: &[u8]) -> [u64; P] {
    let mut total = [0u64; P];
    if P == 4 {
        let (mut r, mut g, mut b) = (0u32, 0u32, 0u32);
        for pixel in block.as_chunks::<4>().0 {
            let word = u32::from_le_bytes(*pixel);
            let alpha = word >> 24;
            r += (word & 0xff) * alpha;
            g += (word >> 8 & 0xff) * alpha;
            b += (word >> 16 & 0xff) * alpha;
        }
        total[..3].copy_from_slice(&[r, g, b].map(u64::from));
    } else {
        let mut l = 0u32;
        for pixel in block.as_chunks::<2>().0 {
            let word = u32::from(u16::from_le_bytes(*pixel));
            l += (word & 0xff) * (word >> 8);
        }
        total[0] = u64::from(l);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};
    use std::path::{Path, PathBuf};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("test-data/images")
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(fixtures().join(name)).unwrap()
    }

    /// xorshift64*: a small deterministic generator for test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The rule applied the slow, obvious way: convert with `to_rgba8`, then
    /// sum pixel by pixel.
    fn naive_sums(image: &DynamicImage) -> Sums {
        let rgba = image.to_rgba8();
        let mut weighted = Sums::default();
        let mut plain = Sums::default();
        for p in rgba.pixels() {
            let [r, g, b, a] = p.0.map(u64::from);
            weighted.add(Sums {
                rgb: [r * a, g * a, b * a],
                weight: a,
            });
            plain.add(Sums {
                rgb: [r, g, b],
                weight: 1,
            });
        }
        if weighted.weight == 0 {
            plain
        } else {
            weighted
        }
    }

    fn native_sums(image: &DynamicImage) -> Sums {
        channel_sums(image.color(), image.as_bytes()).unwrap()
    }

    const LAYOUTS: [ColorType; 10] = [
        ColorType::L8,
        ColorType::La8,
        ColorType::Rgb8,
        ColorType::Rgba8,
        ColorType::L16,
        ColorType::La16,
        ColorType::Rgb16,
        ColorType::Rgba16,
        ColorType::Rgb32F,
        ColorType::Rgba32F,
    ];

    /// A float sample: often one of the awkward values, else anything from
    /// well below 0 to well above 1, or just either side of a rounding edge.
    fn float_sample(rng: &mut Rng) -> f32 {
        const SPECIAL: [f32; 9] = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            1.0,
            f32::MIN_POSITIVE,
            f32::EPSILON,
            1.0 - f32::EPSILON,
        ];
        match rng.below(4) {
            0 => SPECIAL[rng.below(SPECIAL.len() as u64) as usize],
            1 => {
                let edge = (rng.below(255) as f32 + 0.5) / 255.0;
                let ulps = rng.below(5) as i32 - 2;
                f32::from_bits(edge.to_bits().wrapping_add_signed(ulps))
            }
            _ => (rng.below(1 << 24) as f32 / (1 << 23) as f32) - 0.5,
        }
    }

    /// How [`synthetic`] fills the alpha channel.
    #[derive(Debug, Clone, Copy)]
    enum Alpha {
        /// Like the colour channels.
        Random,
        /// Everywhere this fraction of the maximum, in 255ths.
        Fixed(u64),
        /// Bands of 9000 pixels: transparent, opaque, random, and again, so
        /// that the summing blocks see each kind whole and mixed.
        Bands,
    }

    /// An image of the given layout with random samples.
    fn synthetic(
        color: ColorType,
        width: u32,
        height: u32,
        rng: &mut Rng,
        alpha: Alpha,
    ) -> DynamicImage {
        let channels = usize::from(color.channel_count());
        let samples = (width * height) as usize * channels;
        // The alpha of sample `i`, in 255ths, or `None` for a random one.
        let fixed = |i: usize| -> Option<u64> {
            if !color.has_alpha() || i % channels != channels - 1 {
                return None;
            }
            match alpha {
                Alpha::Random => None,
                Alpha::Fixed(a) => Some(a),
                Alpha::Bands => [Some(0), Some(255), None][i / channels / 9000 % 3],
            }
        };
        macro_rules! ints {
            ($t:ty) => {
                (0..samples)
                    .map(|i| match fixed(i) {
                        Some(a) => (a * u64::from(<$t>::MAX) / 255) as $t,
                        None => rng.below(u64::from(<$t>::MAX) + 1) as $t,
                    })
                    .collect::<Vec<$t>>()
            };
        }
        let floats = |rng: &mut Rng| {
            (0..samples)
                .map(|i| match fixed(i) {
                    Some(a) => a as f32 / 255.0,
                    None => float_sample(rng),
                })
                .collect::<Vec<f32>>()
        };
        match color {
            ColorType::L8 => ImageBuffer::<Luma<u8>, _>::from_raw(width, height, ints!(u8))
                .map(DynamicImage::from),
            ColorType::La8 => ImageBuffer::<LumaA<u8>, _>::from_raw(width, height, ints!(u8))
                .map(DynamicImage::from),
            ColorType::Rgb8 => ImageBuffer::<Rgb<u8>, _>::from_raw(width, height, ints!(u8))
                .map(DynamicImage::from),
            ColorType::Rgba8 => ImageBuffer::<Rgba<u8>, _>::from_raw(width, height, ints!(u8))
                .map(DynamicImage::from),
            ColorType::L16 => ImageBuffer::<Luma<u16>, _>::from_raw(width, height, ints!(u16))
                .map(DynamicImage::from),
            ColorType::La16 => ImageBuffer::<LumaA<u16>, _>::from_raw(width, height, ints!(u16))
                .map(DynamicImage::from),
            ColorType::Rgb16 => ImageBuffer::<Rgb<u16>, _>::from_raw(width, height, ints!(u16))
                .map(DynamicImage::from),
            ColorType::Rgba16 => ImageBuffer::<Rgba<u16>, _>::from_raw(width, height, ints!(u16))
                .map(DynamicImage::from),
            ColorType::Rgb32F => ImageBuffer::<Rgb<f32>, _>::from_raw(width, height, floats(rng))
                .map(DynamicImage::from),
            ColorType::Rgba32F => ImageBuffer::<Rgba<f32>, _>::from_raw(width, height, floats(rng))
                .map(DynamicImage::from),
            _ => None,
        }
        .unwrap()
    }

    #[test]
    fn native_sums_equal_to_rgba8_sums_for_every_layout() {
        let mut rng = Rng(0x5eed_cafe_f00d_0001);
        // Odd widths, single pixels, sizes that leave partial SIMD groups,
        // and some spanning several summing blocks.
        let sizes = [
            (1, 1),
            (1, 7),
            (3, 5),
            (7, 3),
            (13, 11),
            (33, 17),
            (257, 3),
            (5, 101),
            (300, 100),
        ];
        let mut cases = 0;
        for color in LAYOUTS {
            for &(w, h) in &sizes {
                let mut fills = vec![Alpha::Random];
                if color.has_alpha() {
                    fills.extend([
                        Alpha::Fixed(0),
                        Alpha::Fixed(255),
                        Alpha::Fixed(rng.below(254) + 1),
                        Alpha::Bands,
                    ]);
                }
                for alpha in fills {
                    let image = synthetic(color, w, h, &mut rng, alpha);
                    assert_eq!(
                        native_sums(&image),
                        naive_sums(&image),
                        "{color:?} {w}x{h} alpha {alpha:?}"
                    );
                    cases += 1;
                }
            }
        }
        assert!(cases > 200, "{cases} cases");
    }

    #[test]
    fn native_sums_are_exact_across_block_boundaries() {
        // Large enough to need many blocks in every kernel, all samples at
        // their maximum so an overflowing lane would show.
        let mut rng = Rng(7);
        for color in LAYOUTS {
            let (w, h) = (1031, 1063);
            let image = match color {
                ColorType::Rgb32F | ColorType::Rgba32F => {
                    synthetic(color, w, h, &mut rng, Alpha::Fixed(255))
                }
                _ => {
                    let len = (w * h) as usize * usize::from(color.bytes_per_pixel());
                    let raw = vec![0xffu8; len];
                    let sums = channel_sums(color, &raw).unwrap();
                    let pixels = u64::from(w * h);
                    assert_eq!(sums.rgb, [255 * 255 * pixels; 3], "{color:?}");
                    assert_eq!(sums.weight, 255 * pixels, "{color:?}");
                    continue;
                }
            };
            assert_eq!(native_sums(&image), naive_sums(&image), "{color:?}");
        }
        // The same with alpha 254 once in a while, so that every block goes
        // through the multiplying path with the largest products.
        let (w, h) = (1031u32, 1063u32);
        let mut rgba = vec![0xffu8; (w * h * 4) as usize];
        rgba.iter_mut()
            .skip(3)
            .step_by(4 * 997)
            .for_each(|a| *a = 254);
        let mut la = vec![0xffu8; (w * h * 2) as usize];
        la.iter_mut()
            .skip(1)
            .step_by(2 * 997)
            .for_each(|a| *a = 254);
        let images = [
            DynamicImage::from(ImageBuffer::<Rgba<u8>, _>::from_raw(w, h, rgba).unwrap()),
            DynamicImage::from(ImageBuffer::<LumaA<u8>, _>::from_raw(w, h, la).unwrap()),
        ];
        for image in images {
            assert_eq!(
                native_sums(&image),
                naive_sums(&image),
                "{:?}",
                image.color()
            );
        }
        // Random content over more than one block, against the naive sums.
        for color in [
            ColorType::Rgba8,
            ColorType::La8,
            ColorType::Rgb8,
            ColorType::L8,
        ] {
            let image = synthetic(color, 2047, 1601, &mut rng, Alpha::Random);
            assert_eq!(native_sums(&image), naive_sums(&image), "{color:?}");
        }
    }

    #[test]
    fn sample_reductions_match_to_rgba8_for_every_16_bit_value() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let rgba: Vec<u16> = all.iter().flat_map(|&v| [v, v, v, v]).collect();
        let la: Vec<u16> = all.iter().flat_map(|&v| [v, v]).collect();
        let images = [
            DynamicImage::from(
                ImageBuffer::<Luma<u16>, _>::from_raw(256, 256, all.clone()).unwrap(),
            ),
            DynamicImage::from(ImageBuffer::<LumaA<u16>, _>::from_raw(256, 256, la).unwrap()),
            DynamicImage::from(ImageBuffer::<Rgba<u16>, _>::from_raw(256, 256, rgba).unwrap()),
        ];
        for image in images {
            let converted = image.to_rgba8();
            for (&v, p) in all.iter().zip(converted.pixels()) {
                let ours = u16_to_u8(v.to_ne_bytes());
                let alpha = if image.color().has_alpha() { ours } else { 255 };
                assert_eq!(
                    p.0,
                    [ours, ours, ours, alpha],
                    "{:?} value {v}",
                    image.color()
                );
            }
        }
    }

    #[test]
    fn sample_reductions_match_to_rgba8_for_floats_and_8_bit_grey() {
        let mut rng = Rng(99);
        let floats: Vec<f32> = (0..65536).map(|_| float_sample(&mut rng)).collect();
        let image = ImageBuffer::<Rgba<f32>, _>::from_raw(128, 128, floats.clone()).unwrap();
        let converted = DynamicImage::from(image).to_rgba8();
        for (&v, &c) in floats.iter().zip(converted.as_raw()) {
            assert_eq!(f32_to_u8(v.to_ne_bytes()), c, "value {v:?}");
        }
        // Grey reaches RGBA through f32 in `to_rgba8`; it must come back intact.
        let la: Vec<u8> = (0..=255u8)
            .flat_map(|l| (0..=255u8).flat_map(move |a| [l, a]))
            .collect();
        let image = ImageBuffer::<LumaA<u8>, _>::from_raw(256, 256, la.clone()).unwrap();
        let converted = DynamicImage::from(image).to_rgba8();
        for (la, p) in la.chunks_exact(2).zip(converted.pixels()) {
            assert_eq!(p.0, [la[0], la[0], la[0], la[1]]);
        }
    }

    /// The float reduction as `image` writes it, with `f32::round`.
    fn f32_to_u8_by_round(v: f32) -> u8 {
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let clamped = if !(v < 1.0) { 1.0 } else { v.max(0.0) };
        (clamped * 255.0).round() as u8
    }

    #[test]
    fn float_reduction_rounds_like_round_near_every_half() {
        // Every float within 4096 ulps of each (k + 0.5) / 255, where the
        // rounding is decided.
        for k in 0..255u32 {
            let edge = (k as f32 + 0.5) / 255.0;
            for ulps in -4096..=4096 {
                let v = f32::from_bits(edge.to_bits().wrapping_add_signed(ulps));
                assert_eq!(f32_to_u8(v.to_ne_bytes()), f32_to_u8_by_round(v), "{v:?}");
            }
        }
    }

    #[test]
    #[ignore = "four billion cases: run in release with --ignored"]
    fn float_reduction_rounds_like_round_for_every_f32() {
        for bits in 0..=u32::MAX {
            let v = f32::from_bits(bits);
            assert_eq!(
                f32_to_u8(v.to_ne_bytes()),
                f32_to_u8_by_round(v),
                "{bits:#x}"
            );
        }
    }

    #[test]
    fn ties_go_to_red_then_green() {
        let cases = [
            ([5, 5, 5], Class::Red),
            ([9, 9, 2], Class::Red),
            ([9, 2, 9], Class::Red),
            ([2, 9, 9], Class::Green),
            ([9, 2, 2], Class::Red),
            ([2, 9, 2], Class::Green),
            ([2, 2, 9], Class::Blue),
            ([0, 0, 0], Class::Red),
            ([u64::MAX, u64::MAX - 1, u64::MAX], Class::Red),
            ([u64::MAX - 1, u64::MAX, u64::MAX], Class::Green),
        ];
        for (sums, class) in cases {
            assert_eq!(Class::of_sums(sums), class, "{sums:?}");
        }
        // The same through the pixel sums: ties that floats could blur are
        // decided on the integers, one unit of difference being enough.
        let pixel_cases: [(&[u8], Class); 5] = [
            (&[10, 10, 10, 200, 200, 200], Class::Red),
            (&[0, 7, 7, 0, 7, 7], Class::Green),
            (&[3, 3, 3, 3, 3, 4], Class::Blue),
            (&[3, 3, 3, 3, 4, 3], Class::Green),
            (&[4, 3, 3, 3, 3, 4], Class::Red),
        ];
        for (rgb, class) in pixel_cases {
            let sums = channel_sums(ColorType::Rgb8, rgb).unwrap();
            assert_eq!(Class::of_sums(sums.rgb), class, "{rgb:?}");
        }
        // With alpha, a tie in the weighted sums still goes to red even when
        // the unweighted colours differ.
        let rgba = [255, 0, 0, 1, 0, 255, 0, 1];
        let sums = channel_sums(ColorType::Rgba8, &rgba).unwrap();
        assert_eq!(sums.rgb, [255, 255, 0]);
        assert_eq!(Class::of_sums(sums.rgb), Class::Red);
    }

    #[test]
    fn alpha_weighting_and_the_transparent_fallback() {
        // An opaque green pixel beside a barely visible blue one: green.
        let rgba = [0, 200, 0, 255, 0, 0, 255, 1];
        let sums = channel_sums(ColorType::Rgba8, &rgba).unwrap();
        assert_eq!(
            sums,
            Sums {
                rgb: [0, 200 * 255, 255],
                weight: 256
            }
        );
        // All transparent: the plain means decide, over the pixel count.
        let rgba = [10, 20, 250, 0, 30, 40, 200, 0];
        let sums = channel_sums(ColorType::Rgba8, &rgba).unwrap();
        assert_eq!(
            sums,
            Sums {
                rgb: [40, 60, 450],
                weight: 2
            }
        );
        assert_eq!(Class::of_sums(sums.rgb), Class::Blue);
    }

    /// `expected.txt`: `FILE CLASS r g b`, written by make-images.py.
    fn expected() -> Vec<(String, Class, [f64; 3])> {
        let text = std::fs::read_to_string(fixtures().join("expected.txt")).unwrap();
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(f.len(), 5, "{line}");
                let class = match f[1] {
                    "red" => Class::Red,
                    "green" => Class::Green,
                    "blue" => Class::Blue,
                    other => panic!("class {other}"),
                };
                let mean = [f[2], f[3], f[4]].map(|m| m.parse::<f64>().unwrap());
                (f[0].to_string(), class, mean)
            })
            .collect()
    }

    #[test]
    fn fixtures_classify_as_expected() {
        let expected = expected();
        assert!(expected.len() >= 20, "{} fixtures", expected.len());
        for (name, class, mean) in &expected {
            let verdict = classify(&fixture(name), &Limits::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(verdict.class, *class, "{name}: {verdict:?}");
            // Pillow decoded the lossy files for expected.txt, so JPEG means
            // may differ a little; the file has two decimals.
            for (c, (&ours, &theirs)) in verdict.mean.iter().zip(mean).enumerate() {
                assert!(
                    (ours - theirs).abs() <= 0.05,
                    "{name}: channel {c}: {ours} against {theirs}"
                );
                assert_eq!(ours, verdict.sums[c] as f64 / verdict.weight as f64);
            }
            let extension = name.rsplit('.').next().unwrap();
            let format = if extension == "jpg" {
                "jpeg"
            } else {
                extension
            };
            assert_eq!(verdict.format, format, "{name}");
        }
    }

    /// Every fixture is accounted for: in expected.txt, or a `fail_` file
    /// below, or one of the folder's own text files.
    #[test]
    fn every_fixture_is_tested() {
        let known: Vec<String> = expected().into_iter().map(|(name, ..)| name).collect();
        let failing: Vec<&str> = FAILURES.iter().map(|&(name, ..)| name).collect();
        for entry in std::fs::read_dir(fixtures()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let listed = known.contains(&name) || failing.contains(&name.as_str());
            let own = ["README.md", "expected.txt", "make-images.py"].contains(&name.as_str());
            assert!(listed || own, "{name} is not tested");
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Stage {
        Open,
        Classify,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Kind {
        NotAnImage,
        TooManyPixels,
    }

    const FAILURES: &[(&str, Stage, Kind)] = &[
        ("fail_empty", Stage::Open, Kind::NotAnImage),
        ("fail_not_an_image.txt", Stage::Open, Kind::NotAnImage),
        ("fail_truncated.png", Stage::Classify, Kind::NotAnImage),
        ("fail_truncated.jpg", Stage::Open, Kind::NotAnImage),
        ("fail_truncated_scan.jpg", Stage::Open, Kind::NotAnImage),
        ("fail_corrupt.gif", Stage::Classify, Kind::NotAnImage),
        ("fail_bomb.png", Stage::Open, Kind::TooManyPixels),
        ("fail_bomb.gif", Stage::Open, Kind::TooManyPixels),
        ("fail_bomb.bmp", Stage::Open, Kind::TooManyPixels),
        ("fail_bomb.jpg", Stage::Open, Kind::TooManyPixels),
        ("fail_bomb.tiff", Stage::Open, Kind::TooManyPixels),
        ("fail_bomb.webp", Stage::Open, Kind::TooManyPixels),
    ];

    #[test]
    fn failing_fixtures_fail_with_the_expected_kind_at_the_expected_stage() {
        for &(name, stage, kind) in FAILURES {
            let bytes = fixture(name);
            let (error, at) = match open(&bytes, &Limits::default()) {
                Err(e) => (e, Stage::Open),
                Ok(image) => (image.classify().unwrap_err(), Stage::Classify),
            };
            assert_eq!(at, stage, "{name}: {error}");
            let matched = match kind {
                Kind::NotAnImage => matches!(error, Error::NotAnImage(_)),
                Kind::TooManyPixels => matches!(error, Error::TooManyPixels { .. }),
            };
            assert!(matched, "{name}: {error:?}");
        }
    }

    #[test]
    fn bombs_are_refused_at_open_without_a_large_allocation() {
        // The probe sees a pixel-sized allocation when there is one.
        let bytes = fixture("red_solid.png");
        let ((), largest) = alloc_probe::largest_allocation(|| {
            open(&bytes, &Limits::default()).unwrap().decode().unwrap();
        });
        assert!(largest >= 61 * 37 * 3, "{largest}");
        for &(name, ..) in FAILURES.iter().filter(|f| f.0.starts_with("fail_bomb")) {
            let bytes = fixture(name);
            let (result, largest) =
                alloc_probe::largest_allocation(|| open(&bytes, &Limits::default()).map(drop));
            assert!(
                matches!(result, Err(Error::TooManyPixels { width, height, limit: DEFAULT_MAX_PIXELS })
                    if u64::from(width) * u64::from(height) > DEFAULT_MAX_PIXELS),
                "{name}: {result:?}"
            );
            assert!(
                largest < 1 << 20,
                "{name}: allocated {largest} bytes at once"
            );
        }
    }

    #[test]
    fn a_gif_frame_larger_than_its_screen_counts() {
        // A GIF whose logical screen is 1x1 but whose first frame claims
        // 65535x65535: the frame is over the pixel limit, so it is refused
        // before any decoder runs.
        let gif = |w: u16, h: u16| {
            let mut gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\x00\x00\x00\x00\xff".to_vec();
            gif.extend_from_slice(b"!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00");
            gif.extend_from_slice(&w.to_le_bytes());
            gif.extend_from_slice(&h.to_le_bytes());
            gif.extend_from_slice(b"\x00\x02\x02\x4c\x01\x00;");
            gif
        };
        let (result, largest) = alloc_probe::largest_allocation(|| {
            open(&gif(65535, 65535), &Limits::default()).map(drop)
        });
        assert!(
            matches!(result, Err(Error::TooManyPixels { width: 65535, .. })),
            "{result:?}"
        );
        assert!(largest < 1 << 20, "allocated {largest} bytes at once");
        // Under the limit, the frame's memory is part of the decode's peak.
        let large_frame = gif(4000, 4000);
        let image = open(&large_frame, &Limits::default()).unwrap();
        assert_eq!((image.width(), image.height()), (1, 1));
        assert!(
            image.peak_memory() >= 4000 * 4000 * 4,
            "{}",
            image.peak_memory()
        );
        assert_eq!(
            gif_first_frame(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
            None
        );
    }

    #[test]
    fn the_pixel_limit_is_inclusive_for_every_format() {
        for name in [
            "red_solid.png",
            "green_solid.jpg",
            "blue_solid.bmp",
            "blue_palette.gif",
            "green.webp",
            "blue.tiff",
        ] {
            let bytes = fixture(name);
            let image = open(&bytes, &Limits::new(61 * 37)).unwrap();
            assert_eq!((image.width(), image.height()), (61, 37), "{name}");
            let bpp = u64::from(image.color.bytes_per_pixel());
            assert_eq!(image.decoded_len(), 61 * 37 * bpp, "{name}");
            assert!(image.classify().is_ok(), "{name}");
            // One pixel short, and a limit below the width alone (which PNG's
            // decoder would report as its own limit if asked first).
            for limit in [61 * 37 - 1, 60] {
                let error = open(&bytes, &Limits::new(limit)).unwrap_err();
                assert!(
                    matches!(error, Error::TooManyPixels { width: 61, height: 37, limit: l } if l == limit),
                    "{name}: {error:?}"
                );
            }
        }
    }

    #[test]
    fn formats_are_sniffed_from_magic_bytes() {
        let cases: [(&[u8], Option<&str>); 12] = [
            (b"\x89PNG\r\n\x1a\n", Some("png")),
            (b"\xff\xd8\xff\xe0", Some("jpeg")),
            (b"GIF87a", Some("gif")),
            (b"GIF89a", Some("gif")),
            (b"BM", Some("bmp")),
            (b"RIFF\0\0\0\0WEBP", Some("webp")),
            (b"II*\0", Some("tiff")),
            (b"MM\0*", Some("tiff")),
            (b"RIFF\0\0\0\0WAVE", None),
            (b"\x89PNG", None),
            (b"GIF90a", None),
            (b"", None),
        ];
        for (head, format) in cases {
            assert_eq!(sniff(head), format, "{head:?}");
        }
        let error = open(b"RIFF\0\0\0\0WAVEfmt ", &Limits::default()).unwrap_err();
        assert!(matches!(error, Error::NotAnImage(_)), "{error:?}");
    }

    #[test]
    fn layouts_from_real_encoders_classify_like_to_rgba8() {
        // Each layout through an encoder and back through `classify`,
        // against the naive sums of what `image` itself decodes.
        let mut rng = Rng(3);
        for color in LAYOUTS {
            let format = match color {
                ColorType::Rgb32F | ColorType::Rgba32F => image::ImageFormat::Tiff,
                _ => image::ImageFormat::Png,
            };
            let image = synthetic(color, 29, 19, &mut rng, Alpha::Random);
            let mut encoded = Cursor::new(Vec::new());
            image.write_to(&mut encoded, format).unwrap();
            let encoded = encoded.into_inner();
            let decoded = image::load_from_memory(&encoded).unwrap();
            let verdict = classify(&encoded, &Limits::default()).unwrap();
            let naive = naive_sums(&decoded);
            assert_eq!(decoded.color(), color, "{color:?}");
            assert_eq!(
                (verdict.sums, verdict.weight),
                (naive.rgb, naive.weight),
                "{color:?}"
            );
        }
    }

    #[test]
    fn damaged_inputs_give_errors_not_panics() {
        // Truncations and single-byte corruptions of every fixture: the
        // answer may be a verdict or an error, but never a panic of ours nor
        // of a decoder.
        let mut rng = Rng(11);
        let mut checked = 0;
        for (name, ..) in expected() {
            let bytes = fixture(&name);
            for i in 0..24 {
                let cut = bytes.len() * i / 24;
                let mut damaged = bytes[..cut].to_vec();
                if i % 2 == 1 && cut > 0 {
                    let at = rng.below(cut as u64) as usize;
                    damaged[at] ^= 1 << rng.below(8);
                }
                let result = classify(&damaged, &Limits::default());
                assert!(
                    !matches!(result, Err(Error::DecoderPanic { .. })),
                    "{name} cut at {cut}"
                );
                if cut < 8 {
                    assert!(
                        matches!(result, Err(Error::NotAnImage(_))),
                        "{name} cut at {cut}"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 400);
    }

    #[test]
    fn pixel_buffers_are_zeroed_at_every_size() {
        // Sizes either side of the huge-page threshold, and ones that leave
        // a partial 2 MiB page at either end.
        for bytes in [0, 1, 4095, (8 << 20) - 1, 8 << 20, (20 << 20) + 12_345] {
            let buffer = pixel_buffer(bytes).unwrap();
            assert_eq!(buffer.len() as u64, bytes);
            assert!(buffer.iter().all(|&b| b == 0), "{bytes}");
        }
        let error = pixel_buffer(u64::MAX).unwrap_err();
        assert!(
            matches!(error, Error::OutOfMemory { bytes: u64::MAX }),
            "{error:?}"
        );
    }

    #[test]
    fn jpeg_end_check_matches_its_definition() {
        // Every string of up to 8 bytes over the bytes that matter, against
        // the definition: an `FF DA` exists, and an `FF D9` follows the last.
        const ALPHABET: [u8; 4] = [0xFF, 0xDA, 0xD9, 0x00];
        let definition = |bytes: &[u8]| {
            let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
            last_scan.is_some_and(|at| bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]))
        };
        let mut agreed = [0usize; 2];
        for len in 0..=8u32 {
            for mut n in 0..4usize.pow(len) {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = ALPHABET[n % 4];
                        n /= 4;
                        b
                    })
                    .collect();
                let expected = definition(&bytes);
                assert_eq!(jpeg_has_end(&bytes), expected, "{bytes:02x?}");
                agreed[usize::from(expected)] += 1;
            }
        }
        // Both answers were exercised.
        assert!(agreed[0] > 1000 && agreed[1] > 1000, "{agreed:?}");
    }

    #[test]
    fn a_decoder_panic_becomes_an_error() {
        let result: Result<(), Error> = contain(Format::Gif, || panic!("decoder bug"));
        assert!(
            matches!(result, Err(Error::DecoderPanic { format: "gif" })),
            "{result:?}"
        );
    }

    /// Counts the largest single allocation made on the current thread while
    /// a closure runs, so tests can show that no pixel buffer was allocated.
    mod alloc_probe {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        struct Probe;

        thread_local! {
            static ARMED: Cell<bool> = const { Cell::new(false) };
            static LARGEST: Cell<usize> = const { Cell::new(0) };
        }

        fn note(size: usize) {
            // `try_with`: the allocator also runs while thread-locals are torn down.
            if ARMED.try_with(Cell::get).unwrap_or(false) {
                let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
            }
        }

        // SAFETY: every call is passed straight to `System`, which upholds
        // the `GlobalAlloc` contract; `note` neither allocates nor panics.
        unsafe impl GlobalAlloc for Probe {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                unsafe { System.alloc(layout) }
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                unsafe { System.alloc_zeroed(layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                note(new_size);
                unsafe { System.realloc(ptr, layout, new_size) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static PROBE: Probe = Probe;

        /// Runs `f`, returning its result and the largest single allocation
        /// it made on this thread.
        pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
            LARGEST.with(|largest| largest.set(0));
            ARMED.with(|armed| armed.set(true));
            let result = f();
            ARMED.with(|armed| armed.set(false));
            (result, LARGEST.with(Cell::get))
        }
    }
}
