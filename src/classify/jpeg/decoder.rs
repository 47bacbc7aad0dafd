//! JPEG decoding with zune-jpeg (the decoder `image` uses) driven directly,
//! so that the decoder itself proves that every scan is whole: with
//! `set_strict_scans`, a patch of ours to zune-jpeg (vendor/README.md), a
//! decode error inside a scan is returned instead of ending the image with
//! grey, and a scan or restart interval whose data a marker cuts short
//! (even the end-of-image marker) is refused instead of completed with
//! zeroes. Each Huffman code is thus read once, by the decode. The pixels
//! come out as `image`'s JPEG decoder gives them: grey, or RGB converted
//! from YCbCr, CMYK or YCCK.

use image::error::{LimitError, LimitErrorKind, UnsupportedError, UnsupportedErrorKind};
use image::{ColorType, ImageError, ImageFormat};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::{DecodeErrors, SCAN_CUT_SHORT};

use super::TRUNCATED;
use crate::classify::buffer::pixel_buffer;
use crate::classify::{Error, Format, catch_panic, corrupt, from_image_error, from_jpeg_refusal};

/// Decodes `bytes`, a JPEG that [`layout`](super::layout) accepted and cut
/// at its end-of-image marker, into a new buffer of `width` x `height`
/// pixels of `color`, the layout [`layout`](super::layout)'s components
/// imply. A scan that ends before its last block is refused with the same
/// words as [`layout`](super::layout)'s refusals.
pub(in crate::classify) fn decode(
    bytes: &[u8],
    width: u32,
    height: u32,
    color: ColorType,
) -> Result<Vec<u8>, Error> {
    // As `image` sets them: no size limit of the decoder's own (the caller
    // has checked the pixel count) and tolerant of what lies between
    // segments.
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.set_strict_scans(true);
    catch_panic(Format::Jpeg, || decoder.decode_headers().map_err(from_zune))?;
    let (out, out_color) = match decoder.input_colorspace() {
        Some(ColorSpace::Luma) => (ColorSpace::Luma, ColorType::L8),
        Some(_) => (ColorSpace::RGB, ColorType::Rgb8),
        None => return Err(corrupt(Format::Jpeg)),
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(out));
    let size = usize::try_from(width)
        .ok()
        .zip(usize::try_from(height).ok());
    if decoder.dimensions() != size || out_color != color {
        return Err(corrupt(Format::Jpeg));
    }
    let len = decoder
        .output_buffer_size()
        .ok_or_else(|| corrupt(Format::Jpeg))?;
    let mut pixels = pixel_buffer(len as u64)?;
    catch_panic(Format::Jpeg, || {
        decoder.decode_into(&mut pixels).map_err(from_zune)
    })?;
    Ok(pixels)
}

/// The error for a decoder failure, worded as `image` words zune-jpeg's,
/// except for a scan cut short, which is worded as [`layout`](super::layout)
/// words its refusals.
fn from_zune(e: DecodeErrors) -> Error {
    let jpeg = || ImageFormat::Jpeg.into();
    match e {
        DecodeErrors::FormatStatic(SCAN_CUT_SHORT) => from_jpeg_refusal(TRUNCATED),
        DecodeErrors::Unsupported(what) => from_image_error(
            Format::Jpeg,
            ImageError::Unsupported(UnsupportedError::from_format_and_kind(
                jpeg(),
                UnsupportedErrorKind::GenericFeature(format!("{what:?}")),
            )),
        ),
        DecodeErrors::LargeDimensions(_) => from_image_error(
            Format::Jpeg,
            ImageError::Limits(LimitError::from_kind(LimitErrorKind::DimensionError)),
        ),
        _ => corrupt(Format::Jpeg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// zune-jpeg alone, lenient or strict, with scan checking or not.
    fn zune(bytes: &[u8], strict: bool, scans: bool) -> Result<Vec<u8>, DecodeErrors> {
        let options = DecoderOptions::default().set_strict_mode(strict);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        decoder.set_strict_scans(scans);
        decoder.decode()
    }

    #[test]
    fn only_checked_scans_refuse_a_scan_that_the_end_of_image_cuts_short() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/test-data/images/");
        let cut = std::fs::read(format!("{path}fail_truncated_eoi.jpg")).unwrap();
        let whole = std::fs::read(format!("{path}photo_chelsea.jpg")).unwrap();
        // Unpatched, zune-jpeg made up the missing blocks in strict mode
        // too; patched, strict mode and checked scans refuse them.
        for (strict, scans, refused) in [
            (false, false, false),
            (true, false, true),
            (false, true, true),
            (true, true, true),
        ] {
            let result = zune(&cut, strict, scans);
            if refused {
                assert!(
                    matches!(result, Err(DecodeErrors::FormatStatic(SCAN_CUT_SHORT))),
                    "strict {strict}, scans {scans}: {:?}",
                    result.map(|p| p.len())
                );
            } else {
                assert!(result.is_ok(), "{result:?}");
            }
            assert!(zune(&whole, strict, scans).is_ok());
        }
    }
}
