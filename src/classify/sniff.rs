//! Recognising an input's container format by its magic bytes, and the
//! header fields read straight from fixed positions before any decoder runs:
//! PNG's and GIF's dimensions, a GIF's first frame, a WebP's kind, and the
//! containers we recognise but do not decode.
//! A leaf: it knows bytes, not decoders or errors.

/// The container formats we decode, each recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Png,
    Jpeg,
    Gif,
    Bmp,
    WebP,
    Tiff,
}

impl Format {
    pub(super) fn sniff(bytes: &[u8]) -> Option<Format> {
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

    pub(super) const fn name(self) -> &'static str {
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
    pub(super) fn peek_dimensions(self, bytes: &[u8]) -> Option<(u32, u32)> {
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

/// Bytes of the chunks a PNG decoder keeps as it reads up to the first
/// pixel data: every chunk before the first `IDAT` but the header and the
/// text and ICC chunks, which are skipped unread. A walk over the chunks'
/// lengths and types, allocating nothing; a chunk that runs past the end
/// counts only the bytes that are there.
pub(super) fn png_kept_chunks(bytes: &[u8]) -> u64 {
    let mut at = 8;
    let mut kept = 0u64;
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let kind = &head[4..8];
        if kind == b"IDAT" || kind == b"IEND" {
            break;
        }
        let present = len.min((bytes.len() - at - 8) as u64);
        if !matches!(kind, b"IHDR" | b"tEXt" | b"zTXt" | b"iTXt" | b"iCCP") {
            kept = kept.saturating_add(present);
        }
        // Length, type, data and CRC.
        at = at.saturating_add(12).saturating_add(present as usize);
    }
    kept
}

/// Width and height of a GIF's first frame, from its image descriptor:
/// after the header, the logical screen descriptor and the global colour
/// table come extension blocks (each a label and sub-blocks ending in an
/// empty one) until the first image descriptor. `None` if the stream ends
/// or holds something else first.
pub(super) fn gif_first_frame(bytes: &[u8]) -> Option<(u32, u32)> {
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

/// The format an input starts like (`png`, `jpeg`, `gif`, `bmp`, `webp` or
/// `tiff`), judged from its magic bytes alone: the first 12 bytes suffice.
/// `None` if it is none of these.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    Format::sniff(head).map(Format::name)
}

/// The kinds of WebP, which decode through different paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WebPKind {
    /// A simple file of one lossy (`VP8 `) image.
    Lossy,
    /// A simple file of one lossless (`VP8L`) image.
    Lossless,
    /// An extended (`VP8X`) file, animated or not.
    Extended { animated: bool },
}

impl WebPKind {
    /// The kind of a WebP from its first chunk's header; `None` if it is not
    /// a WebP or the chunk is none of the three.
    pub(super) fn of(bytes: &[u8]) -> Option<WebPKind> {
        if Format::sniff(bytes) != Some(Format::WebP) {
            return None;
        }
        match bytes.get(12..16)? {
            b"VP8 " => Some(WebPKind::Lossy),
            b"VP8L" => Some(WebPKind::Lossless),
            // The VP8X flags byte: bit 1 says animated.
            b"VP8X" => Some(WebPKind::Extended {
                animated: bytes.get(20)? & 0x02 != 0,
            }),
            _ => None,
        }
    }
}

/// The name of an image container we recognise but do not decode: HEIF
/// (HEIC) and AVIF, by the major brand of their ISO `ftyp` box, and JPEG XL.
pub(super) fn unsupported_container(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0x0A]) || bytes.starts_with(b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Some("jpeg xl");
    }
    if bytes.get(4..8)? != b"ftyp" {
        return None;
    }
    match bytes.get(8..12)? {
        b"avif" | b"avis" => Some("avif"),
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" => {
            Some("heic")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Error, Limits, open};

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
    fn containers_that_are_not_decoded_are_named() {
        let cases: [(&[u8], Option<&str>); 6] = [
            (b"\0\0\0\x18ftypheic\0\0\0\0", Some("heic")),
            (b"\0\0\0\x18ftypmif1\0\0\0\0", Some("heic")),
            (b"\0\0\0\x1cftypavif\0\0\0\0", Some("avif")),
            (b"\xff\x0a\xfa\x7f", Some("jpeg xl")),
            (b"\0\0\0\x18ftypisom\0\0\0\0", None),
            (b"ftyp", None),
        ];
        for (head, name) in cases {
            assert_eq!(unsupported_container(head), name, "{head:?}");
        }
        let error = open(b"\0\0\0\x18ftypheic\0\0\0\0", &Limits::default()).unwrap_err();
        assert!(
            matches!(&error, Error::Unsupported(m) if m.contains("heic")),
            "{error:?}"
        );
        assert_eq!(
            WebPKind::of(b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0\x12"),
            Some(WebPKind::Extended { animated: true })
        );
        assert_eq!(
            WebPKind::of(b"RIFF\0\0\0\0WEBPVP8L"),
            Some(WebPKind::Lossless)
        );
        assert_eq!(WebPKind::of(b"RIFF\0\0\0\0WEBPVP8 "), Some(WebPKind::Lossy));
    }
}
