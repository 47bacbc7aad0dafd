//! TIFF decoding: a check of the first directory's tag sizes before any
//! decoder reads it, and samples read per the TIFF defaults.
//!
//! The `tiff` crate reads a directory's tables (strip offsets and byte
//! counts, bits per sample, ...) as it opens a file, each value widened to
//! 24 bytes, under a limit of 256 MiB; a few kilobytes of header can make it
//! hold far more than the image. [`check_tags`] refuses a directory with
//! more than [`MAX_TAGS`] entries or a value of more than
//! [`MAX_TAG_BYTES`] before that. `image`'s TIFF decoder reads 32-bit
//! samples as floats unless the SampleFormat tag says otherwise, where TIFF's
//! default is unsigned integers; such images are read here, each sample
//! `c` becoming the float `c / (2³² − 1)`, so that the float rule applies.

use std::io::Cursor;

use image::error::{
    DecodingError, ImageFormatHint, LimitError, LimitErrorKind, UnsupportedError,
    UnsupportedErrorKind,
};
use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageResult};
use tiff::decoder::{Decoder, Limits};
use tiff::tags::{SampleFormat, Tag};

/// The most entries the first directory may have. Real files have a few
/// dozen.
pub(super) const MAX_TAGS: u64 = 1024;

/// The most bytes a value the decoder reads at open (strip and tile tables,
/// bits per sample and the like, [`TABLE_TAGS`]) may take in the file:
/// 16 Ki strips of 4-byte offsets, a strip of one row for each row of a
/// 10000 × 10000 image. Other tags (ICC profiles, XMP) are not read.
pub(super) const MAX_TAG_BYTES: u64 = 64 << 10;

/// The tags whose values the decoder reads into tables as it opens a file:
/// BitsPerSample, StripOffsets, StripByteCounts, TileOffsets,
/// TileByteCounts, ExtraSamples, SampleFormat, JPEGTables,
/// YCbCrSubsampling, and ColorMap.
const TABLE_TAGS: [u64; 10] = [258, 273, 279, 324, 325, 338, 339, 347, 530, 320];

/// Why [`check_tags`] refused a directory.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TagRefusal {
    /// The directory does not fit the file.
    Corrupt,
    /// The directory is over [`MAX_TAGS`] or a value over [`MAX_TAG_BYTES`].
    TooLarge,
}

/// Checks the first directory's entry count and each value's size, from
/// the bytes alone.
pub(super) fn check_tags(bytes: &[u8]) -> Result<(), TagRefusal> {
    let little = bytes.starts_with(b"II");
    let u16_at = |at: usize| -> Option<u64> {
        let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(u64::from(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }))
    };
    let u32_at = |at: usize| -> Option<u64> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u64::from(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }))
    };
    let u64_at = |at: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let big = u16_at(2) == Some(43);
    let walk = || -> Option<Result<(), TagRefusal>> {
        let ifd = usize::try_from(if big { u64_at(8)? } else { u32_at(4)? }).ok()?;
        let (count, first, entry) = if big {
            (u64_at(ifd)?, ifd + 8, 20)
        } else {
            (u16_at(ifd)?, ifd + 2, 12)
        };
        if count > MAX_TAGS {
            return Some(Err(TagRefusal::TooLarge));
        }
        for i in 0..count as usize {
            let at = first + i * entry;
            let tag = u16_at(at)?;
            let kind = u16_at(at + 2)?;
            let values = if big {
                u64_at(at + 4)?
            } else {
                u32_at(at + 4)?
            };
            let size = match kind {
                1 | 2 | 6 | 7 => 1,
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 | 16 | 17 | 18 => 8,
                // Unknown types are skipped by the decoder.
                _ => 0,
            };
            if TABLE_TAGS.contains(&tag) && values.saturating_mul(size) > MAX_TAG_BYTES {
                return Some(Err(TagRefusal::TooLarge));
            }
        }
        Some(Ok(()))
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
        _ => {
            return Ok(Box::new(image::codecs::tiff::TiffDecoder::new(
                Cursor::new(bytes),
            )?));
        }
    };
    let formats = inner
        .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
        .map_err(from_tiff)?
        .unwrap_or_default();
    let unsigned = formats
        .iter()
        .all(|&f| SampleFormat::from_u16(f) == Some(SampleFormat::Uint));
    if !unsigned {
        return Ok(Box::new(image::codecs::tiff::TiffDecoder::new(
            Cursor::new(bytes),
        )?));
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
