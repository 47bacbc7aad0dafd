//! PNG decoding with the `png` crate driven directly, so that nothing the
//! colour rule does not need is read: `image`'s own PNG decoder keeps every
//! text chunk (inflating zTXt and iTXt) and inflates the ICC profile while
//! it reads the header, and a chunk of a few hundred kilobytes can inflate
//! to hundreds of megabytes. Here text and ICC chunks are skipped unread,
//! and what the decoder still keeps beside the pixels (an eXIf chunk, the
//! palette) is never more than [`metadata_limit`], twice the input: a chunk
//! is read only as far as its bytes are there. The pixels come out as
//! `image`'s decoder gives them: low bit depths and palettes expanded to 8
//! bits, 16-bit samples in native byte order.

use std::io::Cursor;

use image::error::{
    DecodingError, ImageFormatHint, LimitError, LimitErrorKind, UnsupportedError,
    UnsupportedErrorKind,
};
use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageResult};

/// Bytes the PNG decoder may reserve for chunks other than pixel data (an
/// eXIf chunk is the only large one left), besides one output row, for an
/// input of `input_len` bytes: twice the input, since a chunk's buffer
/// grows by doubling as its bytes arrive. A chunk's bytes are in the input,
/// so only a chunk whose length runs past the input's end can be refused
/// for it, as too complex. The decoder keeps a copy of an eXIf chunk
/// beside its buffer, outside this limit: three times the input in all.
pub(super) fn metadata_limit(input_len: usize) -> usize {
    input_len.saturating_mul(2)
}

/// A PNG whose header and chunks up to the first pixel data have been read.
pub(super) struct PngDecoder<'a> {
    reader: png::Reader<Cursor<&'a [u8]>>,
    color: ColorType,
}

impl<'a> PngDecoder<'a> {
    /// Reads the header and the chunks before the pixel data, skipping text
    /// and ICC chunks.
    pub(super) fn new(bytes: &'a [u8]) -> ImageResult<PngDecoder<'a>> {
        let metadata = metadata_limit(bytes.len());
        let limits = png::Limits { bytes: metadata };
        let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
        decoder.set_ignore_text_chunk(true);
        decoder.set_ignore_iccp_chunk(true);
        let info = decoder.read_header_info().map_err(from_png)?;
        // The decoder charges one output row to the same limit: the widest
        // is 8 bytes a pixel.
        let row = usize::try_from(u64::from(info.width) * 8).unwrap_or(usize::MAX);
        decoder.set_limits(png::Limits {
            bytes: metadata.saturating_add(row),
        });
        decoder.set_transformations(png::Transformations::EXPAND);
        let reader = decoder.read_info().map_err(from_png)?;
        use png::{BitDepth as B, ColorType as C};
        let color = match reader.output_color_type() {
            (C::Grayscale, B::Eight) => ColorType::L8,
            (C::Grayscale, B::Sixteen) => ColorType::L16,
            (C::GrayscaleAlpha, B::Eight) => ColorType::La8,
            (C::GrayscaleAlpha, B::Sixteen) => ColorType::La16,
            (C::Rgb, B::Eight) => ColorType::Rgb8,
            (C::Rgb, B::Sixteen) => ColorType::Rgb16,
            (C::Rgba, B::Eight) => ColorType::Rgba8,
            (C::Rgba, B::Sixteen) => ColorType::Rgba16,
            (color, depth) => {
                return Err(ImageError::Unsupported(
                    UnsupportedError::from_format_and_kind(
                        ImageFormat::Png.into(),
                        UnsupportedErrorKind::GenericFeature(format!(
                            "{color:?} at {} bits",
                            depth as u8
                        )),
                    ),
                ));
            }
        };
        Ok(PngDecoder { reader, color })
    }
}

impl ImageDecoder for PngDecoder<'_> {
    fn dimensions(&self) -> (u32, u32) {
        self.reader.info().size()
    }

    fn color_type(&self) -> ColorType {
        self.color
    }

    fn read_image(mut self, buf: &mut [u8]) -> ImageResult<()> {
        self.reader.next_frame(buf).map_err(from_png)?;
        // PNG's samples are big-endian; `read_image` promises native order.
        if self.color.bytes_per_pixel() / self.color.channel_count() == 2 {
            for sample in buf.as_chunks_mut::<2>().0 {
                *sample = u16::from_be_bytes(*sample).to_ne_bytes();
            }
        }
        Ok(())
    }

    fn read_image_boxed(self: Box<Self>, buf: &mut [u8]) -> ImageResult<()> {
        (*self).read_image(buf)
    }
}

fn from_png(e: png::DecodingError) -> ImageError {
    match e {
        png::DecodingError::LimitsExceeded => {
            ImageError::Limits(LimitError::from_kind(LimitErrorKind::InsufficientMemory))
        }
        other => ImageError::Decoding(DecodingError::new(
            ImageFormatHint::Exact(ImageFormat::Png),
            other.to_string(),
        )),
    }
}
