//! The frames between the server and a decode worker, as pure functions:
//! what each side writes, and what each side accepts from the other.
//!
//! All integers are little-endian. The server writes, on the worker's
//! standard input:
//!
//! ```text
//! job     = "CSW1" kind:u8 max_pixels:u64 thumb_side:u32 len:u64  (25 bytes)
//! input   = len bytes
//! go      = "G"                       (after the worker's header frame)
//! ```
//!
//! `kind` is 1 for a classification, 2 for a thumbnail and classification.
//! The worker answers on its standard output, at most twice:
//!
//! ```text
//! header  = "H" format:u8 width:u32 height:u32 peak:u64           (18 bytes)
//! verdict = "V" sums:3×u64 weight:u64 thumb_len:u32 thumb          (37 + thumb_len)
//! refusal = "E" kind:u8 len:u16 text                                (4 + len)
//! ```
//!
//! A refusal ends the exchange; `text` is at most [`MAX_TEXT`] bytes of
//! UTF-8, a thumbnail at most [`MAX_THUMBNAIL`] bytes. The worker's
//! answers are read as hostile: anything else, or anything longer, is a
//! malformed answer.

use crate::classify::{self, Class, Verdict};

/// The job header's magic.
const MAGIC: &[u8; 4] = b"CSW1";
/// Bytes of a job header.
pub(super) const JOB_LEN: usize = 25;
/// Bytes of a header frame.
pub(super) const HEADER_LEN: usize = 18;
/// Bytes of a verdict frame before its thumbnail.
pub(super) const VERDICT_LEN: usize = 37;
/// Bytes of a refusal frame before its text.
pub(super) const REFUSAL_LEN: usize = 4;
/// The longest refusal text a worker may send.
pub(super) const MAX_TEXT: usize = 512;
/// The largest thumbnail a worker may send: a JPEG of a few hundred pixels
/// a side is tens of kilobytes.
pub(super) const MAX_THUMBNAIL: usize = 1 << 20;
/// The byte that lets a worker decode, once its header has been answered.
pub(super) const GO: u8 = b'G';

/// What a worker is asked to do with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Decode and classify.
    Classify,
    /// Decode, classify, and make a JPEG thumbnail at most `side` pixels a
    /// side.
    Thumbnail {
        /// The longest side of the thumbnail, in pixels.
        side: u32,
    },
}

/// One job, as the worker reads it before its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Job {
    pub(super) kind: Kind,
    pub(super) max_pixels: u64,
    pub(super) len: u64,
}

/// What the worker found in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The container format: `png`, `jpeg`, `gif`, `bmp`, `webp` or `tiff`.
    pub format: &'static str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// [`classify::Image::peak_memory`]: what the decode may hold beside
    /// what opening it took.
    pub peak: u64,
}

/// The kinds of [`classify::Error`] a refusal carries.
const REFUSALS: [&str; 5] = [
    "not-an-image",
    "unsupported",
    "decoder-limit",
    "too-many-pixels",
    "out-of-memory",
];

/// Encodes `job`.
pub(super) fn job(job: &Job) -> [u8; JOB_LEN] {
    let mut out = [0; JOB_LEN];
    out[..4].copy_from_slice(MAGIC);
    let (kind, side) = match job.kind {
        Kind::Classify => (1, 0),
        Kind::Thumbnail { side } => (2, side),
    };
    out[4] = kind;
    out[5..13].copy_from_slice(&job.max_pixels.to_le_bytes());
    out[13..17].copy_from_slice(&side.to_le_bytes());
    out[17..25].copy_from_slice(&job.len.to_le_bytes());
    out
}

/// Decodes a job header; `None` if it is not one.
pub(super) fn parse_job(bytes: &[u8; JOB_LEN]) -> Option<Job> {
    if &bytes[..4] != MAGIC {
        return None;
    }
    let side = u32_at(bytes, 13);
    let kind = match bytes[4] {
        1 => Kind::Classify,
        2 if side > 0 => Kind::Thumbnail { side },
        _ => return None,
    };
    Some(Job {
        kind,
        max_pixels: u64_at(bytes, 5),
        len: u64_at(bytes, 17),
    })
}

/// Encodes a header frame.
pub(super) fn header(h: &Header) -> [u8; HEADER_LEN] {
    let mut out = [0; HEADER_LEN];
    out[0] = b'H';
    out[1] = format_index(h.format);
    out[2..6].copy_from_slice(&h.width.to_le_bytes());
    out[6..10].copy_from_slice(&h.height.to_le_bytes());
    out[10..18].copy_from_slice(&h.peak.to_le_bytes());
    out
}

/// Decodes a header frame; `None` if it is malformed.
pub(super) fn parse_header(bytes: &[u8; HEADER_LEN]) -> Option<Header> {
    if bytes[0] != b'H' {
        return None;
    }
    Some(Header {
        format: classify::FORMATS.get(usize::from(bytes[1]))?,
        width: u32_at(bytes, 2),
        height: u32_at(bytes, 6),
        peak: u64_at(bytes, 10),
    })
}

/// Encodes a verdict frame, its thumbnail (at most [`MAX_THUMBNAIL`] bytes)
/// after it.
pub(super) fn verdict(v: &Verdict, thumbnail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VERDICT_LEN + thumbnail.len());
    out.push(b'V');
    for s in v.sums {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(&v.weight.to_le_bytes());
    let len = u32::try_from(thumbnail.len().min(MAX_THUMBNAIL)).unwrap_or(0);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&thumbnail[..len as usize]);
    out
}

/// Decodes the fixed part of a verdict frame, for an image of `header`:
/// the verdict, and the length of the thumbnail that follows. `None` if it
/// is malformed: a weight of zero, sums over what the weight allows, or a
/// thumbnail over [`MAX_THUMBNAIL`].
pub(super) fn parse_verdict(
    bytes: &[u8; VERDICT_LEN],
    header: &Header,
) -> Option<(Verdict, usize)> {
    if bytes[0] != b'V' {
        return None;
    }
    let sums = [u64_at(bytes, 1), u64_at(bytes, 9), u64_at(bytes, 17)];
    let weight = u64_at(bytes, 25);
    let thumb = u32_at(bytes, 33) as usize;
    // A mean is at most 255: no honest decode sums more.
    if weight == 0 || sums.iter().any(|&s| s > weight.saturating_mul(255)) || thumb > MAX_THUMBNAIL
    {
        return None;
    }
    let verdict = Verdict {
        class: Class::of_sums(sums),
        mean: sums.map(|s| s as f64 / weight as f64),
        width: header.width,
        height: header.height,
        sums,
        weight,
        format: header.format,
    };
    Some((verdict, thumb))
}

/// Encodes a refusal frame for `error`.
pub(super) fn refusal(error: &classify::Error) -> Vec<u8> {
    use classify::Error as E;
    let (kind, text) = match error {
        E::NotAnImage(t) => (0, t.clone()),
        E::Unsupported(t) => (1, t.clone()),
        E::DecoderLimit(t) => (2, t.clone()),
        E::TooManyPixels {
            width,
            height,
            limit,
        } => (3, format!("{width} {height} {limit}")),
        E::OutOfMemory { bytes } => (4, bytes.to_string()),
        // A panic is contained in the worker, and reported as the crash it is.
        E::DecoderPanic { format } => (0, format!("the {format} decoder failed abnormally")),
    };
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(REFUSAL_LEN + end);
    out.push(b'E');
    out.push(kind);
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
    out
}

/// The kind and text length of a refusal frame's fixed part; `None` if it
/// is malformed.
pub(super) fn parse_refusal_head(bytes: &[u8; REFUSAL_LEN]) -> Option<(u8, usize)> {
    let len = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
    (bytes[0] == b'E' && usize::from(bytes[1]) < REFUSALS.len() && len <= MAX_TEXT)
        .then_some((bytes[1], len))
}

/// The [`classify::Error`] of a refusal of `kind` with `text`; `None` if
/// the text does not fit the kind.
pub(super) fn parse_refusal(kind: u8, text: &[u8]) -> Option<classify::Error> {
    use classify::Error as E;
    let text = std::str::from_utf8(text).ok()?.to_string();
    Some(match kind {
        0 => E::NotAnImage(text),
        1 => E::Unsupported(text),
        2 => E::DecoderLimit(text),
        3 => {
            let mut n = text.split(' ').map(str::parse::<u64>);
            let (Some(Ok(w)), Some(Ok(h)), Some(Ok(limit)), None) =
                (n.next(), n.next(), n.next(), n.next())
            else {
                return None;
            };
            E::TooManyPixels {
                width: u32::try_from(w).ok()?,
                height: u32::try_from(h).ok()?,
                limit,
            }
        }
        4 => E::OutOfMemory {
            bytes: text.parse().ok()?,
        },
        _ => return None,
    })
}

fn format_index(format: &str) -> u8 {
    classify::FORMATS
        .iter()
        .position(|f| *f == format)
        .map_or(u8::MAX, |i| i as u8)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_junk_is_refused() {
        let jobs = [
            Job {
                kind: Kind::Classify,
                max_pixels: 100_000_000,
                len: 12345,
            },
            Job {
                kind: Kind::Thumbnail { side: 240 },
                max_pixels: 1,
                len: u64::MAX,
            },
        ];
        for j in jobs {
            assert_eq!(parse_job(&job(&j)), Some(j));
        }
        let mut bad = job(&jobs[0]);
        bad[0] = b'X';
        assert_eq!(parse_job(&bad), None);
        let mut bad = job(&jobs[0]);
        bad[4] = 3;
        assert_eq!(parse_job(&bad), None);
        // A thumbnail of no side is no job.
        let mut bad = job(&jobs[1]);
        bad[13..17].fill(0);
        assert_eq!(parse_job(&bad), None);
    }

    #[test]
    fn headers_round_trip_and_unknown_formats_are_refused() {
        for format in classify::FORMATS {
            let h = Header {
                format,
                width: 7,
                height: 9,
                peak: 1 << 40,
            };
            assert_eq!(parse_header(&header(&h)), Some(h));
        }
        let mut bad = header(&Header {
            format: "png",
            width: 1,
            height: 1,
            peak: 1,
        });
        bad[1] = 200;
        assert_eq!(parse_header(&bad), None);
        bad[1] = 0;
        bad[0] = b'V';
        assert_eq!(parse_header(&bad), None);
    }

    fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
        bytes[..N].try_into().unwrap()
    }

    #[test]
    fn verdicts_round_trip_and_impossible_sums_are_refused() {
        let header = Header {
            format: "png",
            width: 2,
            height: 1,
            peak: 0,
        };
        let v = Verdict {
            class: Class::Green,
            mean: [1.0, 254.0, 0.5],
            width: 2,
            height: 1,
            sums: [2 * 255, 508 * 255, 255],
            weight: 2 * 255,
            format: "png",
        };
        let frame = verdict(&v, b"thumb");
        let (back, thumb) = parse_verdict(&fixed(&frame), &header).unwrap();
        assert_eq!((back, thumb), (v, 5));
        assert_eq!(&frame[VERDICT_LEN..], b"thumb");
        let cases: [(usize, u8); 3] = [
            (0, b'H'),  // not a verdict
            (25, 0),    // weight 0 (with the rest of its bytes 0 below)
            (16, 0xff), // a sum over 255 × weight
        ];
        for (at, byte) in cases {
            let mut bad: [u8; VERDICT_LEN] = fixed(&frame);
            if at == 25 {
                bad[25..33].fill(0);
            }
            bad[at] = byte;
            assert_eq!(parse_verdict(&bad, &header), None, "byte {at}");
        }
        let mut bad: [u8; VERDICT_LEN] = fixed(&frame);
        bad[33..37].copy_from_slice(&(MAX_THUMBNAIL as u32 + 1).to_le_bytes());
        assert_eq!(parse_verdict(&bad, &header), None);
    }

    #[test]
    fn refusals_round_trip_by_kind() {
        use classify::Error as E;
        let cases = [
            E::NotAnImage("truncated".into()),
            E::Unsupported("cmyk".into()),
            E::DecoderLimit("tables".into()),
            E::TooManyPixels {
                width: 3,
                height: 4,
                limit: 5,
            },
            E::OutOfMemory { bytes: 99 },
        ];
        for error in cases {
            let frame = refusal(&error);
            let (kind, len) = parse_refusal_head(&fixed(&frame)).unwrap();
            let back = parse_refusal(kind, &frame[REFUSAL_LEN..REFUSAL_LEN + len]).unwrap();
            assert_eq!(back.to_string(), error.to_string());
        }
        // A long text is cut at a character boundary.
        let long = refusal(&E::NotAnImage("é".repeat(MAX_TEXT)));
        let (_, len) = parse_refusal_head(&fixed(&long)).unwrap();
        assert!(len <= MAX_TEXT);
        assert!(std::str::from_utf8(&long[REFUSAL_LEN..]).is_ok());
        // Malformed refusals.
        assert_eq!(parse_refusal_head(&[b'E', 9, 0, 0]), None);
        assert_eq!(parse_refusal_head(&[b'E', 0, 0xff, 0xff]), None);
        assert!(parse_refusal(3, b"1 2").is_none());
        assert!(parse_refusal(4, b"x").is_none());
        assert!(parse_refusal(0, &[0xff]).is_none());
    }
}
