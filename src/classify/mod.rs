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
//!
//! A TIFF's 32-bit unsigned samples, which `image` has no layout for, are
//! first read as the floats `c / (2³² − 1)`, so the float rule applies.
//!
//! Decoders are kept to what the rule needs: PNG text and ICC chunks are
//! never read, a JPEG is decoded only up to the end-of-image marker that
//! follows its scans (a Motion Photo's video or a second picture after it
//! never matters), and [`Image::peak_memory`] counts everything else a
//! decoder may hold, so that a server can reserve it. What a file carries
//! beyond the decoders' limits is refused as [`Error::DecoderLimit`].
//!
//! This file holds the rule and the decode around it; the pieces it uses
//! are leaves beside it: `sniff` recognises formats and peeks at headers,
//! `jpeg` walks a JPEG's segments and scans, `png` and `tiff` drive those
//! decoders directly, `limits` says what an image may cost, `buffer`
//! allocates the pixel buffer, and `sums` holds the summing kernels.

use std::fmt;
use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};

use image::codecs::{bmp, gif, webp};
use image::{ColorType, ImageDecoder, ImageError};

mod buffer;
mod jpeg;
mod limits;
mod png;
mod sniff;
mod sums;
#[cfg(test)]
mod testing;
mod tiff;

pub use limits::Limits;
pub use sniff::sniff;

/// The names of the formats decoded, as [`Verdict::format`] and
/// [`Image::format`] give them.
pub const FORMATS: [&str; 6] = [
    Format::Png.name(),
    Format::Jpeg.name(),
    Format::Gif.name(),
    Format::Bmp.name(),
    Format::WebP.name(),
    Format::Tiff.name(),
];

use buffer::pixel_buffer;
use limits::{SUMMABLE_PIXELS, check_pixels, decoder_limits, working_memory};
use sniff::{Format, WebPKind, gif_first_frame, unsupported_container};
use sums::{channel_sums, known_layout};

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
    /// The image is too complex to decode within the limits: its metadata,
    /// tables or the decoder's working memory would be over what the
    /// decoders are allowed. Not a matter of pixels.
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
            Error::DecoderLimit(detail) => {
                write!(f, "image too complex to decode within the limits: {detail}")
            }
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

type Decoder<'a> = Box<dyn ImageDecoder + Send + 'a>;

/// Where the pixels of an [`Image`] come from.
enum Source<'a> {
    /// A decoder that has read the header.
    Decoder(Decoder<'a>),
    /// A JPEG's bytes up to its end-of-image marker, checked by
    /// [`jpeg::layout`]: its decoder is made only when it decodes.
    Jpeg(&'a [u8]),
}

/// A header-checked image, not yet decoded.
pub struct Image<'a> {
    source: Source<'a>,
    format: Format,
    width: u32,
    height: u32,
    color: ColorType,
    /// Bytes a decode may hold beside the pixel buffer.
    working: u64,
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
/// `2 × 16 bytes × pixels + open_memory(bytes.len())` in all. What it
/// allocates itself, header tables and metadata, stays within
/// [`open_memory`] of the input's length: a TIFF whose tables would take
/// more is refused as [`Error::DecoderLimit`] before they are read.
pub fn open<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Image<'a>, Error> {
    if bytes.is_empty() {
        return Err(Error::NotAnImage("empty input".into()));
    }
    let Some(format) = Format::sniff(bytes) else {
        return Err(match unsupported_container(bytes) {
            Some(name) => Error::Unsupported(format!("{name} images are not decoded here")),
            None => Error::NotAnImage("unrecognised format".into()),
        });
    };
    let limit = limits.max_pixels.min(SUMMABLE_PIXELS);

    if format == Format::Jpeg {
        return open_jpeg(bytes, limit);
    }
    let input = bytes.len() as u64;
    if format == Format::Tiff {
        // The tables share what `open` may hold with the decoder's state.
        let allowance = limits::open_memory(input) - limits::DECODER_STATE;
        match tiff::check_tags(bytes, allowance) {
            Ok(()) => {}
            Err(tiff::TagRefusal::Corrupt) => return Err(corrupt(format)),
            Err(tiff::TagRefusal::TooLarge(needed)) => {
                return Err(Error::DecoderLimit(format!(
                    "tiff: tag values that would take {needed} bytes to read, \
                     over the {allowance} allowed for a file of {input} bytes"
                )));
            }
        }
    }
    // PNG's decoder checks side lengths as it reads the header, so PNG's
    // pixel count is checked first, from the fixed-position IHDR; GIF's
    // screen size is as easy to read and is checked before its decoder
    // runs too.
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
        new_decoder(format, bytes, decoder_limits(limit, early, input))
    })?;
    let (width, height) = decoder.dimensions();
    let pixels = check_pixels(width, height, limit)?;
    decoder
        .set_limits(decoder_limits(limit, pixels.max(frame), input))
        .map_err(|e| from_image_error(format, e))?;
    let color = decoder.color_type();
    let working = working_memory(&limits::Cost {
        format,
        width,
        height,
        color,
        input,
        frame,
        webp: WebPKind::of(bytes),
        jpeg: None,
    });
    Ok(Image {
        source: Source::Decoder(decoder),
        format,
        width,
        height,
        color,
        working,
    })
}

/// Bytes that [`open`] itself may allocate on its way to an [`Image`] or an
/// error for `input`: header tables, metadata and decoder state, never
/// pixels. A fixed 4 MiB for decoder state, plus what the decoders that
/// read metadata as they open hold of it: for TIFF, 4 bytes for each byte
/// of input (its tables, widened as they are read); for PNG, three times
/// the chunks it keeps before the pixel data (a chunk's buffer grows by
/// doubling, and an eXIf chunk is copied). It looks at the magic bytes and
/// a PNG's chunk lengths, and decodes nothing. What the [`Image`] keeps of
/// it is held until it is dropped, beside [`Image::peak_memory`].
pub fn open_memory(input: &[u8]) -> u64 {
    match Format::sniff(input) {
        Some(Format::Tiff) => limits::open_memory(input.len() as u64),
        Some(Format::Png) => sniff::png_kept_chunks(input)
            .saturating_mul(3)
            .saturating_add(limits::OPEN_STATE),
        _ => limits::OPEN_STATE,
    }
}

/// [`open`] for a JPEG: its structure is walked and its frame header read
/// without a decoder.
fn open_jpeg(bytes: &[u8], limit: u64) -> Result<Image<'_>, Error> {
    let layout = jpeg::layout(bytes).map_err(from_jpeg_refusal)?;
    let pixels = check_pixels(layout.width, layout.height, limit)?;
    debug_assert!(pixels <= limit);
    // The decoder gives grey for one component and converts three (YCbCr
    // or RGB) and four (CMYK or YCCK) to RGB.
    let color = if layout.components == 1 {
        ColorType::L8
    } else {
        ColorType::Rgb8
    };
    let working = working_memory(&limits::Cost {
        format: Format::Jpeg,
        width: layout.width,
        height: layout.height,
        color,
        input: bytes.len() as u64,
        frame: 0,
        webp: None,
        jpeg: Some(&layout),
    });
    Ok(Image {
        source: Source::Jpeg(&bytes[..layout.end]),
        format: Format::Jpeg,
        width: layout.width,
        height: layout.height,
        color,
        working,
    })
}

fn from_jpeg_refusal(refusal: jpeg::Refusal) -> Error {
    match refusal {
        jpeg::Refusal::Corrupt(why) => {
            Error::NotAnImage(format!("truncated or corrupt jpeg data: {why}"))
        }
        jpeg::Refusal::Unsupported(what) => Error::Unsupported(what.to_string()),
    }
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
        u64::from(self.width) * u64::from(self.height) * u64::from(self.color.bytes_per_pixel())
    }

    /// Bytes that decoding this image may hold at its peak, as far as the
    /// header and the input's length tell: the pixel buffer, plus what the
    /// decoder keeps beside it (a copy of a JPEG's input and its
    /// coefficients, a WebP's planes and frames, a GIF's first frame, a
    /// TIFF's intermediate buffer, rows and tables), plus a fixed allowance
    /// for the decoders' small state. The server reserves this much of its
    /// memory budget before decoding.
    pub fn peak_memory(&self) -> u64 {
        self.decoded_len().saturating_add(self.working)
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
            source,
            format,
            color,
            width,
            height,
            ..
        } = self;
        if !known_layout(color) {
            return Err(unsupported_color(color));
        }
        let decoder = match source {
            Source::Decoder(decoder) => decoder,
            Source::Jpeg(bytes) => return jpeg::decode(bytes, width, height, color),
        };
        let mut pixels = pixel_buffer(decoder.total_bytes())?;
        contain(format, || decoder.read_image_boxed(&mut pixels))?;
        Ok(pixels)
    }
}

fn new_decoder(
    format: Format,
    bytes: &[u8],
    limits: image::Limits,
) -> image::ImageResult<Decoder<'_>> {
    let input = Cursor::new(bytes);
    Ok(match format {
        Format::Png => {
            let decoder = png::PngDecoder::new(bytes)?;
            limits.check_dimensions(decoder.dimensions().0, decoder.dimensions().1)?;
            Box::new(decoder)
        }
        Format::Gif => Box::new(gif::GifDecoder::new(input)?),
        Format::Bmp => Box::new(bmp::BmpDecoder::new(input)?),
        Format::WebP => Box::new(webp::WebPDecoder::new(input)?),
        Format::Tiff => tiff::decoder(bytes)?,
        // `open_jpeg` opens JPEGs without a decoder; this is for completeness.
        Format::Jpeg => Box::new(image::codecs::jpeg::JpegDecoder::new(input)?),
    })
}

/// Runs a decoder step, turning its error or its panic into an [`Error`]:
/// [`catch_panic`] for a decoder behind `image`'s interface.
fn contain<T>(format: Format, step: impl FnOnce() -> image::ImageResult<T>) -> Result<T, Error> {
    catch_panic(format, || step().map_err(|e| from_image_error(format, e)))
}

/// Runs a decoder step, turning its panic into an [`Error`].
///
/// Decoders are third-party code facing hostile input. Should one panic, the
/// panic must not unwind through the thread that called us: it becomes
/// [`Error::DecoderPanic`] and the caller answers like for any other bad
/// input. Nothing the closure touched is used again after a panic (the
/// decoder is dropped and the buffer discarded), so asserting unwind safety
/// is sound. The panic hook still reports the panic on stderr.
fn catch_panic<T>(format: Format, step: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    panic::catch_unwind(AssertUnwindSafe(step)).unwrap_or(Err(Error::DecoderPanic {
        format: format.name(),
    }))
}

/// The error for an image without a single pixel to sum.
fn no_pixels() -> Error {
    Error::NotAnImage("image has no pixels".into())
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

#[cfg(test)]
mod tests {
    use super::testing::{Alpha, LAYOUTS, Rng, naive_sums, synthetic};
    use super::*;
    use crate::config::DEFAULT_MAX_PIXELS;
    use std::path::{Path, PathBuf};
    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("test-data/images")
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(fixtures().join(name)).unwrap()
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
        /// Unsupported, with a message naming what.
        Unsupported(&'static str),
        TooComplex,
    }

    const FAILURES: &[(&str, Stage, Kind)] = &[
        ("fail_empty", Stage::Open, Kind::NotAnImage),
        ("fail_not_an_image.txt", Stage::Open, Kind::NotAnImage),
        ("fail_truncated.png", Stage::Classify, Kind::NotAnImage),
        ("fail_truncated.jpg", Stage::Open, Kind::NotAnImage),
        ("fail_truncated_scan.jpg", Stage::Open, Kind::NotAnImage),
        ("fail_truncated_eoi.jpg", Stage::Classify, Kind::NotAnImage),
        (
            "fail_arithmetic.jpg",
            Stage::Open,
            Kind::Unsupported("arithmetic-coded jpeg"),
        ),
        ("fail_bogus_strips.tiff", Stage::Open, Kind::NotAnImage),
        ("fail_tag_lists.tiff", Stage::Open, Kind::TooComplex),
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
                Kind::Unsupported(what) => {
                    matches!(&error, Error::Unsupported(m) if m.contains(what))
                }
                Kind::TooComplex => matches!(error, Error::DecoderLimit(_)),
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
    fn a_decoder_panic_becomes_an_error() {
        let result: Result<(), Error> = contain(Format::Gif, || panic!("decoder bug"));
        assert!(
            matches!(result, Err(Error::DecoderPanic { format: "gif" })),
            "{result:?}"
        );
    }

    #[test]
    fn decodes_stay_within_the_memory_they_announce() {
        // Every fixture, the bench images when `make bench` has made them,
        // and inputs that carry more than their pixels: the most `open`
        // holds is within `open_memory` of the input's length, and the most
        // the whole decode holds (open and decode together, a JPEG's copy
        // of its input included) within the input's length, `open_memory`
        // and `peak_memory`.
        let mut inputs: Vec<(String, Vec<u8>)> = expected()
            .into_iter()
            .map(|(name, ..)| {
                let bytes = fixture(&name);
                (name, bytes)
            })
            .collect();
        let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/assets");
        if let Ok(entries) = std::fs::read_dir(&bench) {
            let mut names: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            names.sort();
            for path in names.into_iter().filter(|p| p.is_file()) {
                if Format::sniff(&std::fs::read(&path).unwrap()).is_some() {
                    let bytes = std::fs::read(&path).unwrap();
                    inputs.push((path.display().to_string(), bytes));
                }
            }
        }
        inputs.push((
            "png with a 600 KiB eXIf chunk".into(),
            png_with_chunk(b"eXIf", &vec![7; 600 << 10]),
        ));
        inputs.push((
            "png with a 1 MiB tEXt chunk".into(),
            png_with_chunk(b"tEXt", &text(1 << 20)),
        ));
        let mut checked = 0;
        let (mut open_margin, mut whole_margin) =
            ((f64::MAX, String::new()), (f64::MAX, String::new()));
        for (name, bytes) in &inputs {
            let len = bytes.len() as u64;
            let (image, open_peak, open_held) =
                alloc_probe::peak_and_held(|| open(bytes, &Limits::default()));
            let image = image.unwrap_or_else(|e| panic!("{name}: {e}"));
            let announced = image.peak_memory();
            let (verdict, decode_peak) = alloc_probe::peak_allocation(|| image.classify());
            verdict.unwrap_or_else(|e| panic!("{name}: {e}"));
            // What `open` still held is held through the decode.
            let whole_peak = open_peak.max(open_held + decode_peak);
            let open_bound = open_memory(bytes);
            assert!(
                open_peak <= open_bound,
                "{name}: open held {open_peak} bytes of {open_bound}"
            );
            let whole_bound = len + open_bound + announced;
            assert!(
                whole_peak <= whole_bound,
                "{name}: decoding held {whole_peak} bytes, {whole_bound} allowed"
            );
            let ratio = |used: u64, bound: u64| used as f64 / bound as f64;
            if 1.0 - ratio(open_peak, open_bound) < open_margin.0 {
                open_margin = (
                    1.0 - ratio(open_peak, open_bound),
                    format!("{name}: {open_peak} of {open_bound}"),
                );
            }
            if 1.0 - ratio(whole_peak, whole_bound) < whole_margin.0 {
                whole_margin = (
                    1.0 - ratio(whole_peak, whole_bound),
                    format!("{name}: {whole_peak} of {whole_bound}"),
                );
            }
            checked += 1;
        }
        eprintln!(
            "tightest open: {}; tightest decode: {}",
            open_margin.1, whole_margin.1
        );
        assert!(checked >= 30, "{checked}");
    }

    /// A 1x1 red PNG with one more chunk of `kind` before its pixel data.
    fn png_with_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let plain = fixture("red_solid.png");
        let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
        chunk.extend_from_slice(kind);
        chunk.extend_from_slice(data);
        let crc = crc32(&chunk[4..]);
        chunk.extend_from_slice(&crc.to_be_bytes());
        // The signature and IHDR are the first 33 bytes.
        [&plain[..33], &chunk, &plain[33..]].concat()
    }

    /// A tEXt body of `len` bytes: keyword, NUL, text.
    fn text(len: usize) -> Vec<u8> {
        let mut body = b"Comment\0".to_vec();
        body.resize(len, b'x');
        body
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    crc >> 1 ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn what_the_rule_does_not_need_is_not_read_and_what_is_kept_grows_with_the_input() {
        // Text of any size is skipped: a 1x1 PNG with 3 MiB of text is
        // classified, and so is one with an ICC profile of 64 MiB.
        let red = png_with_chunk(b"tEXt", &text(3 << 20));
        assert_eq!(
            classify(&red, &Limits::default()).unwrap().class,
            Class::Red
        );
        // An eXIf chunk is kept by the decoder, whatever its size: it is
        // part of the input, and `open` holds at most three times it.
        let exif = png_with_chunk(b"eXIf", &vec![0; 8 << 20]);
        let (image, held) = alloc_probe::peak_allocation(|| open(&exif, &Limits::default()));
        assert_eq!(image.unwrap().classify().unwrap().class, Class::Red);
        assert!(held >= 8 << 20, "{held}");
        assert!(held <= open_memory(&exif), "{held}");
        // One whose length runs past the input's end is not read past it.
        let mut cut = png_with_chunk(b"eXIf", &vec![0; 1 << 20]);
        cut.truncate(33 + 8 + (512 << 10));
        let (result, held) = alloc_probe::peak_allocation(|| open(&cut, &Limits::default()));
        assert!(
            matches!(result, Err(Error::DecoderLimit(_) | Error::NotAnImage(_))),
            "{result:?}"
        );
        assert!(held <= open_memory(&cut), "{held}");
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
            /// Bytes allocated and not yet freed on this thread while armed.
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn note(size: usize) {
            // `try_with`: the allocator also runs while thread-locals are torn down.
            if ARMED.try_with(Cell::get).unwrap_or(false) {
                let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
                change(size as isize);
            }
        }

        fn change(delta: isize) {
            if ARMED.try_with(Cell::get).unwrap_or(false) {
                let live = LIVE.try_with(|live| {
                    live.set(live.get() + delta);
                    live.get()
                });
                if let Ok(live) = live {
                    let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live)));
                }
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
                change(-(layout.size() as isize));
                unsafe { System.realloc(ptr, layout, new_size) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                change(-(layout.size() as isize));
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

        /// Runs `f`, returning its result and the most bytes it held
        /// allocated at once on this thread (frees of memory allocated
        /// before it started count against it, so this can only be an
        /// underestimate when `f` frees what it was given).
        pub fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, u64) {
            let (result, peak, _) = peak_and_held(f);
            (result, peak)
        }

        /// [`peak_allocation`], and the bytes `f` still held when it
        /// returned (in what it returned).
        pub fn peak_and_held<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
            LIVE.with(|live| live.set(0));
            PEAK.with(|peak| peak.set(0));
            ARMED.with(|armed| armed.set(true));
            let result = f();
            ARMED.with(|armed| armed.set(false));
            let held = LIVE.with(Cell::get).max(0) as u64;
            (result, PEAK.with(Cell::get).max(0) as u64, held)
        }
    }
}
