//! Recognising an input's container format by its magic bytes, and the
//! header fields read straight from fixed positions before any decoder runs:
//! PNG's and GIF's dimensions, a GIF's first frame, and whether a JPEG ends.
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

    pub(super) fn name(self) -> &'static str {
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

/// True if an end-of-image marker follows the last start-of-scan marker.
///
/// The JPEG decoder is lenient: it decodes a scan cut short as if the rest
/// were there, and would classify a truncated upload on made-up pixels.
/// Inside entropy-coded data every 0xFF byte is followed by 0x00 or a
/// restart marker, so `FF DA` and `FF D9` there are real markers; an EXIF
/// thumbnail's own markers come before the main image's scans.
pub(super) fn jpeg_has_end(bytes: &[u8]) -> bool {
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
}
