//! TIFF decoding: a check of the first directory before any decoder reads
//! it, and samples read per the TIFF defaults.
//!
//! The `tiff` crate reads the values of the tags it needs (dimensions,
//! strip and tile tables, bits per sample, ...) as it opens a file, each
//! value widened to a 32-byte entry of a list, whatever the tag, and it
//! makes room for a list before it reads it. [`check_tags`] walks the
//! first directory from the bytes alone: the directory and every value the
//! decoders read at open must lie within the file, and those values, as
//! the decoder holds them, must fit the memory allowed for the input, so
//! that a file's tables may grow with the file but never beyond it.
//! `image`'s TIFF decoder reads 32-bit samples as floats unless the
//! SampleFormat tag says otherwise, where TIFF's default is unsigned
//! integers; such images are read here, each sample `c` becoming the float
//! `c / (2³² − 1)`, so that the float rule applies.

use std::io::Cursor;

use image::error::{
    DecodingError, ImageFormatHint, LimitError, LimitErrorKind, UnsupportedError,
    UnsupportedErrorKind,
};
use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageResult};
use tiff::decoder::{Decoder, Limits};
use tiff::tags::{SampleFormat, Tag};

/// The tags whose values the decoders read as they open a file:
/// ImageWidth, ImageLength, BitsPerSample, Compression, Photometric,
/// StripOffsets, SamplesPerPixel, RowsPerStrip, StripByteCounts,
/// PlanarConfiguration, Predictor, TileWidth, TileLength, TileOffsets,
/// TileByteCounts, ExtraSamples, SampleFormat, JPEGTables and
/// YCbCrSubsampling. Others (ICC profiles, XMP, private tags) are not read.
const READ_AT_OPEN: [u64; 19] = [
    256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 338, 339, 347, 530,
];

/// Bytes the decoder holds for one value of a tag while it reads the tag:
/// its 32-byte entry in the list of values, and the 8-byte number the
/// list becomes.
const READ_VALUE: u64 = 40;

/// Bytes the decoder keeps of each value once the tag is read (the strip
/// and tile tables, as 8-byte numbers).
const KEPT_VALUE: u64 = 8;

/// Why [`check_tags`] refused a directory.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TagRefusal {
    /// The directory, or a value the decoders read, does not fit the file.
    Corrupt,
    /// The values the decoders read at open would take more than the
    /// allowance; the bytes they would take.
    TooLarge(u64),
}

/// Checks the first directory from the bytes alone: that it and each value
/// the decoders read at open lie within the file, and that those values,
/// as the decoder holds them while reading them, take at most `allowance`
/// bytes.
pub(super) fn check_tags(bytes: &[u8], allowance: u64) -> Result<(), TagRefusal> {
    let little = bytes.starts_with(b"II");
    let u16_at = |at: u64| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(u64::from(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }))
    };
    let u32_at = |at: u64| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u64::from(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }))
    };
    let u64_at = |at: u64| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let b: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let len = bytes.len() as u64;
    let big = u16_at(2) == Some(43);
    let walk = || -> Option<Result<(), TagRefusal>> {
        let ifd = if big { u64_at(8)? } else { u32_at(4)? };
        let (count, first, entry, inline) = if big {
            (u64_at(ifd)?, ifd.checked_add(8)?, 20, 8)
        } else {
            (u16_at(ifd)?, ifd.checked_add(2)?, 12, 4)
        };
        // The entries must be in the file: this also bounds the walk.
        if count.checked_mul(entry)?.checked_add(first)? > len {
            return None;
        }
        let (mut kept, mut reading) = (0u64, 0u64);
        for i in 0..count {
            let at = first + i * entry;
            let tag = u16_at(at)?;
            if !READ_AT_OPEN.contains(&tag) {
                continue;
            }
            let kind = u16_at(at + 2)?;
            let (values, offset) = if big {
                (u64_at(at + 4)?, at + 12)
            } else {
                (u32_at(at + 4)?, at + 8)
            };
            let size = match kind {
                1 | 2 | 6 | 7 => 1,
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 | 16 | 17 | 18 => 8,
                // Unknown types are skipped by the decoder.
                _ => continue,
            };
            let value_bytes = values.checked_mul(size)?;
            if value_bytes > inline {
                let start = if big {
                    u64_at(offset)?
                } else {
                    u32_at(offset)?
                };
                if start.checked_add(value_bytes)? > len {
                    return None;
                }
            }
            kept = kept.saturating_add(values.saturating_mul(KEPT_VALUE));
            reading = reading.max(values.saturating_mul(READ_VALUE));
        }
        let needed = kept.saturating_add(reading);
        Some(if needed > allowance {
            Err(TagRefusal::TooLarge(needed))
        } else {
            Ok(())
        })
    };
    walk().unwrap_or(Err(TagRefusal::Corrupt))
}

/// The decoder for a TIFF: this module's for 32-bit unsigned RGB and RGBA,
/// `image`'s for everything else.
pub(super) fn decoder<'a>(bytes: &'a [u8]) -> ImageResult<Box<dyn ImageDecoder + Send + 'a>> {
    let mut inner = Decoder::new(Cursor::new(bytes)).map_err(from_tiff)?;
    let color = match inner.colortype().map_err(from_tiff)? {
        tiff::ColorType::RGB(32) => ColorType::Rgb32F,
        tiff::ColorType::RGBA(32) => ColorType::Rgba32F,
        _ => return image_decoder(inner, bytes),
    };
    let formats = inner
        .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
        .map_err(from_tiff)?
        .unwrap_or_default();
    let unsigned = formats
        .iter()
        .all(|&f| SampleFormat::from_u16(f) == Some(SampleFormat::Uint));
    if !unsigned {
        return image_decoder(inner, bytes);
    }
    let layout = inner.image_buffer_layout().map_err(from_tiff)?;
    let (width, height) = inner.dimensions().map_err(from_tiff)?;
    let len = u64::from(width) * u64::from(height) * u64::from(color.bytes_per_pixel());
    if layout.complete_len as u64 != len {
        return Err(unsupported("planar 32-bit unsigned samples"));
    }
    // The pixels go straight into the caller's buffer; what else the
    // decoder holds is a strip's compressed bytes at a time.
    let mut limits = Limits::default();
    limits.decoding_buffer_size = usize::try_from(len).unwrap_or(usize::MAX);
    limits.intermediate_buffer_size = bytes.len();
    Ok(Box::new(UnsignedTiff {
        inner: inner.with_limits(limits),
        width,
        height,
        color,
    }))
}

/// `image`'s decoder for `bytes`, made once `inner` (which read the same
/// tables) is dropped, so that one decoder's tables are held at a time.
fn image_decoder<'a>(
    inner: Decoder<Cursor<&'a [u8]>>,
    bytes: &'a [u8],
) -> ImageResult<Box<dyn ImageDecoder + Send + 'a>> {
    drop(inner);
    Ok(Box::new(image::codecs::tiff::TiffDecoder::new(
        Cursor::new(bytes),
    )?))
}

/// A TIFF of 32-bit unsigned RGB or RGBA samples, read as floats.
struct UnsignedTiff<'a> {
    inner: Decoder<Cursor<&'a [u8]>>,
    width: u32,
    height: u32,
    color: ColorType,
}

impl ImageDecoder for UnsignedTiff<'_> {
    fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn color_type(&self) -> ColorType {
        self.color
    }

    fn read_image(mut self, buf: &mut [u8]) -> ImageResult<()> {
        self.inner.read_image_bytes(buf).map_err(from_tiff)?;
        for sample in buf.as_chunks_mut::<4>().0 {
            let c = u32::from_ne_bytes(*sample);
            *sample = ((f64::from(c) / f64::from(u32::MAX)) as f32).to_ne_bytes();
        }
        Ok(())
    }

    fn read_image_boxed(self: Box<Self>, buf: &mut [u8]) -> ImageResult<()> {
        (*self).read_image(buf)
    }
}

fn unsupported(what: &str) -> ImageError {
    ImageError::Unsupported(UnsupportedError::from_format_and_kind(
        ImageFormat::Tiff.into(),
        UnsupportedErrorKind::GenericFeature(what.to_string()),
    ))
}

fn from_tiff(e: tiff::TiffError) -> ImageError {
    match e {
        tiff::TiffError::LimitsExceeded | tiff::TiffError::IntSizeError => {
            ImageError::Limits(LimitError::from_kind(LimitErrorKind::InsufficientMemory))
        }
        tiff::TiffError::UnsupportedError(e) => unsupported(&e.to_string()),
        other => ImageError::Decoding(DecodingError::new(
            ImageFormatHint::Exact(ImageFormat::Tiff),
            other.to_string(),
        )),
    }
}
