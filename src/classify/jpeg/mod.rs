//! JPEG: the structure of the file, read without decoding it, and the
//! decode.
//!
//! The decoder is lenient where a sorter must not be: it would read a
//! file's trailer (a Motion Photo's video, a multi-picture file's second
//! image) for markers, and by default it fills a scan that ends early with
//! made-up coefficients. [`layout`] (this file, a walk over bytes) finds
//! where the image ends by walking the segments from the start-of-image
//! marker (lengths, entropy-coded data with its `FF 00` stuffing and
//! restart markers) to the first end-of-image marker after the frame, reads
//! the frame header, names what the decoder cannot do (arithmetic coding,
//! lossless and hierarchical modes, 12-bit samples), and checks that the
//! scans cover every coefficient of every component, each component of a
//! sequential image in one scan. [`decode`] (`decoder.rs`) then decodes
//! exactly those bytes with zune-jpeg told to check its scans: a scan whose
//! data ends before its last block, even where an end-of-image marker
//! follows, is refused by the decode itself, so each Huffman code is read
//! once.

mod decoder;

pub(super) use decoder::decode;
use std::ops::Range;

/// Why a JPEG is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The data is truncated or malformed; the text says where.
    Corrupt(&'static str),
    /// The file uses a JPEG feature the decoder does not have.
    Unsupported(&'static str),
}

/// The refusal of a scan whose data ends before its last block.
const TRUNCATED: Refusal = Refusal::Corrupt("scan data ends before the last block");

/// One component of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Component {
    id: u8,
    h: u8,
    v: u8,
}

/// The frame header: size, components and their sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    width: u16,
    height: u16,
    progressive: bool,
    components: Vec<Component>,
}

impl Frame {
    fn max_sampling(&self) -> (usize, usize) {
        let h = self.components.iter().map(|c| c.h).max().unwrap_or(1);
        let v = self.components.iter().map(|c| c.v).max().unwrap_or(1);
        (usize::from(h), usize::from(v))
    }

    /// MCUs across and down.
    fn mcus(&self) -> (usize, usize) {
        let (h, v) = self.max_sampling();
        (
            usize::from(self.width).div_ceil(8 * h),
            usize::from(self.height).div_ceil(8 * v),
        )
    }

    /// Blocks across and down of a component padded to whole MCUs, as the
    /// decoder stores them.
    fn blocks_padded(&self, c: Component) -> (usize, usize) {
        let (across, down) = self.mcus();
        (across * usize::from(c.h), down * usize::from(c.v))
    }
}

/// What [`layout`] learnt about a JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    /// Bytes from the start of the file to the end of its end-of-image
    /// marker: all that is the image.
    pub(super) end: usize,
    /// Width from the frame header.
    pub(super) width: u32,
    /// Height from the frame header.
    pub(super) height: u32,
    /// Components in the frame: 1 (grey), 3 (colour) or 4 (CMYK).
    pub(super) components: usize,
    /// True if the decoder holds every coefficient of the image before it
    /// makes pixels: a progressive image, or one whose components come in
    /// separate scans.
    pub(super) buffered: bool,
    /// Bytes of the image's DCT coefficients, two per sample, padded to
    /// whole MCUs.
    pub(super) coefficient_bytes: u64,
    /// Bytes of one row of MCUs of coefficients.
    pub(super) mcu_row_bytes: u64,
    /// Bytes of application and comment segments (EXIF, ICC profiles, XMP),
    /// which the decoder may copy.
    pub(super) metadata_bytes: u64,
}

/// One marker segment, or a scan with its entropy-coded data.
enum Segment<'a> {
    /// A marker with a length field; `body` is what follows the length.
    Marker { marker: u8, body: &'a [u8] },
    /// A start-of-scan header, after which the walk skips the entropy-coded
    /// data up to the next marker other than a restart marker.
    Scan { header: &'a [u8] },
}

/// Walks the segments after the start-of-image marker up to the
/// end-of-image marker, which ends the walk with the offset just past it.
struct Segments<'a> {
    bytes: &'a [u8],
    at: usize,
}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;

fn is_restart(marker: u8) -> bool {
    (0xD0..=0xD7).contains(&marker)
}

impl<'a> Segments<'a> {
    fn new(bytes: &'a [u8]) -> Result<Segments<'a>, Refusal> {
        if !bytes.starts_with(&[0xFF, SOI]) {
            return Err(Refusal::Corrupt("no start-of-image marker"));
        }
        Ok(Segments { bytes, at: 2 })
    }

    /// The next segment, or `Ok(Err(end))` at the end-of-image marker.
    fn next_segment(&mut self) -> Result<Result<Segment<'a>, usize>, Refusal> {
        let bytes = self.bytes;
        loop {
            // A marker is 0xFF, any number of 0xFF fill bytes, then the
            // code. Other bytes between segments are skipped, as libjpeg
            // does ("extraneous bytes before marker").
            while bytes.get(self.at).is_some_and(|&b| b != 0xFF) {
                self.at += 1;
            }
            while bytes.get(self.at) == Some(&0xFF) {
                self.at += 1;
            }
            let Some(&marker) = bytes.get(self.at) else {
                return Err(Refusal::Corrupt("no end-of-image marker"));
            };
            self.at += 1;
            match marker {
                EOI => return Ok(Err(self.at)),
                // Stuffing outside entropy-coded data, a stray restart
                // marker or TEM: no length follows.
                0x00 | 0x01 => continue,
                m if is_restart(m) => continue,
                SOI => return Err(Refusal::Corrupt("a second start-of-image marker")),
                _ => {}
            }
            let len = match bytes.get(self.at..self.at + 2) {
                Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                _ => return Err(Refusal::Corrupt("a segment cut short")),
            };
            if len < 2 {
                return Err(Refusal::Corrupt("a segment length under 2"));
            }
            let body = bytes
                .get(self.at + 2..self.at + len)
                .ok_or(Refusal::Corrupt("a segment cut short"))?;
            self.at += len;
            if marker != SOS {
                return Ok(Ok(Segment::Marker { marker, body }));
            }
            self.at = entropy_end(bytes, self.at);
            return Ok(Ok(Segment::Scan { header: body }));
        }
    }
}

/// Where entropy-coded data starting at `from` ends: at the 0xFF of the
/// first marker that is neither stuffing (`FF 00`) nor a restart marker, or
/// at the end of the input.
fn entropy_end(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(offset) = first_ff(&bytes[at..]) {
        let ff = at + offset;
        match bytes.get(ff + 1) {
            None => return bytes.len(),
            Some(&next) if next == 0x00 || is_restart(next) => at = ff + 2,
            // A fill byte: the marker starts at the last 0xFF.
            Some(&0xFF) => at = ff + 1,
            Some(_) => return ff,
        }
    }
    bytes.len()
}

/// The offset of the first `0xFF` in `bytes`. Eight bytes at a time: the
/// walk reads every byte of the entropy-coded data, where a byte at a time
/// cost a few per cent of a large decode.
fn first_ff(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let (words, rest) = bytes.as_chunks::<8>();
    for (i, word) in words.iter().enumerate() {
        // A zero byte of `inverted` is an 0xFF of the word. The lowest
        // flagged byte is always a true zero (a borrow only flags bytes
        // above one), and the lowest byte comes first in little-endian.
        let inverted = !u64::from_le_bytes(*word);
        let zeros = inverted.wrapping_sub(ONES) & !inverted & HIGHS;
        if zeros != 0 {
            return Some(8 * i + (zeros.trailing_zeros() / 8) as usize);
        }
    }
    let done = 8 * words.len();
    rest.iter().position(|&b| b == 0xFF).map(|i| done + i)
}

/// The frame header's meaning for the decoder: a frame it can decode, or
/// the feature it lacks.
fn frame_kind(marker: u8) -> Option<Result<bool, Refusal>> {
    Some(match marker {
        // Baseline and extended sequential, Huffman-coded.
        0xC0 | 0xC1 => Ok(false),
        0xC2 => Ok(true),
        0xC3 => Err(Refusal::Unsupported("lossless jpeg")),
        0xC5..=0xC7 | 0xDE | 0xDF => Err(Refusal::Unsupported("hierarchical jpeg")),
        // The arithmetic-coded frames, and DAC (0xCC), their conditioning.
        0xC9..=0xCF => Err(Refusal::Unsupported("arithmetic-coded jpeg")),
        0xC8 => Err(Refusal::Unsupported("jpeg extension frame")),
        _ => return None,
    })
}

fn parse_frame(body: &[u8], progressive: bool) -> Result<Frame, Refusal> {
    let corrupt = Refusal::Corrupt("a malformed frame header");
    let (head, rest) = body.split_first_chunk::<6>().ok_or(corrupt.clone())?;
    let [precision, h1, h0, w1, w0, count] = *head;
    if precision != 8 {
        return Err(Refusal::Unsupported(
            "jpeg with samples of more than 8 bits",
        ));
    }
    let height = u16::from_be_bytes([h1, h0]);
    let width = u16::from_be_bytes([w1, w0]);
    if height == 0 {
        return Err(Refusal::Unsupported(
            "jpeg whose height comes after the scan (DNL)",
        ));
    }
    if width == 0 {
        return Err(corrupt);
    }
    let count = usize::from(count);
    if !matches!(count, 1 | 3 | 4) {
        return Err(Refusal::Unsupported(
            "jpeg with other than 1, 3 or 4 components",
        ));
    }
    if rest.len() < 3 * count {
        return Err(corrupt);
    }
    let components = rest[..3 * count]
        .chunks_exact(3)
        .map(|c| {
            let (h, v) = (c[1] >> 4, c[1] & 15);
            if (1..=4).contains(&h) && (1..=4).contains(&v) {
                Ok(Component { id: c[0], h, v })
            } else {
                Err(corrupt.clone())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Frame {
        width,
        height,
        progressive,
        components,
    })
}

/// A scan header: the frame's components it holds, and the coefficients
/// it brings to full precision or not.
struct ScanHeader {
    /// Indices into the frame's components.
    components: Vec<usize>,
    /// The spectral selection.
    spectral: Range<usize>,
    /// The successive approximation's low bit: 0 in a scan that leaves its
    /// coefficients whole.
    low: u8,
}

fn parse_scan(header: &[u8], frame: &Frame) -> Result<ScanHeader, Refusal> {
    let corrupt = Refusal::Corrupt("a malformed scan header");
    let (&count, rest) = header.split_first().ok_or(corrupt.clone())?;
    let count = usize::from(count);
    if count == 0 || count > 4 || rest.len() < 2 * count + 3 {
        return Err(corrupt);
    }
    let mut components: Vec<usize> = Vec::with_capacity(count);
    for c in rest[..2 * count].chunks_exact(2) {
        let index = frame
            .components
            .iter()
            .position(|f| f.id == c[0])
            .ok_or(corrupt.clone())?;
        let (dc, ac) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
        if dc > 3 || ac > 3 || components.contains(&index) {
            return Err(corrupt);
        }
        components.push(index);
    }
    let tail = &rest[2 * count..];
    let (start, end) = (usize::from(tail[0]), usize::from(tail[1]));
    let (high, low) = (tail[2] >> 4, tail[2] & 15);
    let spectral = if frame.progressive {
        // DC and AC never share a progressive scan, and AC scans hold one
        // component.
        let dc_only = start == 0 && end == 0;
        let ac_only = start >= 1 && start <= end && end <= 63 && count == 1;
        if !(dc_only || ac_only) || low > 13 || (high != 0 && high != low + 1) {
            return Err(corrupt);
        }
        start..end + 1
    } else {
        0..64
    };
    let low = if frame.progressive { low } else { 0 };
    Ok(ScanHeader {
        components,
        spectral,
        low,
    })
}

/// Walks a JPEG's segments from its start-of-image marker to the
/// end-of-image marker that follows its scans, reading the frame header and
/// checking that the scans cover every coefficient of every component.
/// Reads no entropy-coded data beyond finding where it ends, and allocates
/// only for the frame's few components.
pub(super) fn layout(bytes: &[u8]) -> Result<Layout, Refusal> {
    let mut segments = Segments::new(bytes)?;
    let mut frame: Option<Frame> = None;
    // Per component: the coefficients that some scan brought to full
    // precision (successive approximation down to 0).
    let mut complete: Vec<u64> = Vec::new();
    let mut scans = 0usize;
    let mut metadata_bytes = 0u64;
    let end = loop {
        let segment = match segments.next_segment()? {
            Ok(segment) => segment,
            Err(end) => break end,
        };
        match segment {
            Segment::Marker { marker, body } => {
                if let Some(kind) = frame_kind(marker) {
                    if frame.is_some() {
                        return Err(Refusal::Corrupt("a second frame header"));
                    }
                    let parsed = parse_frame(body, kind?)?;
                    complete = vec![0; parsed.components.len()];
                    frame = Some(parsed);
                } else if matches!(marker, 0xE0..=0xEF | 0xFE) {
                    metadata_bytes += body.len() as u64;
                }
            }
            Segment::Scan { header } => {
                let frame = frame
                    .as_ref()
                    .ok_or(Refusal::Corrupt("a scan before the frame header"))?;
                let scan = parse_scan(header, frame)?;
                // The decoder stops at the first scan after which every
                // component is whole, and never reads a later one.
                if !frame.progressive && scan.components.iter().any(|&i| complete[i] != 0) {
                    return Err(Refusal::Corrupt("a component in two scans"));
                }
                if scan.low == 0 {
                    let bits = spectral_bits(&scan.spectral);
                    for &index in &scan.components {
                        complete[index] |= bits;
                    }
                }
                scans += 1;
            }
        }
    };
    let frame = frame.ok_or(Refusal::Corrupt("no frame header"))?;
    if scans == 0 || complete.iter().any(|&c| c != u64::MAX) {
        return Err(Refusal::Corrupt("scans missing at the end of the image"));
    }
    let blocks: u64 = frame
        .components
        .iter()
        .map(|&c| {
            let (across, down) = frame.blocks_padded(c);
            (across * down) as u64
        })
        .sum();
    let (_, mcus_down) = frame.mcus();
    let coefficient_bytes = blocks * 64 * 2;
    Ok(Layout {
        end,
        width: u32::from(frame.width),
        height: u32::from(frame.height),
        components: frame.components.len(),
        buffered: frame.progressive || scans > 1,
        coefficient_bytes,
        mcu_row_bytes: coefficient_bytes / mcus_down.max(1) as u64,
        metadata_bytes,
    })
}

fn spectral_bits(range: &Range<usize>) -> u64 {
    let width = range.end - range.start;
    let ones = if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    ones << range.start
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("test-data/images")
            .join(name);
        std::fs::read(path).unwrap()
    }

    /// `bytes` walked and decoded as the classifier does, the error's text
    /// if refused.
    pub(super) fn walk_and_decode(bytes: &[u8]) -> Result<(), String> {
        let layout =
            layout(bytes).map_err(|e| crate::classify::from_jpeg_refusal(e).to_string())?;
        let color = if layout.components == 1 {
            image::ColorType::L8
        } else {
            image::ColorType::Rgb8
        };
        decode(&bytes[..layout.end], layout.width, layout.height, color)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The offset of the first `FF D9` after the first `FF DA`, plus 2: the
    /// end of the image in the fixtures, whose scans hold no such bytes.
    fn first_end(bytes: &[u8]) -> usize {
        let scan = bytes.windows(2).position(|w| w == [0xFF, SOS]).unwrap();
        scan + bytes[scan..]
            .windows(2)
            .position(|w| w == [0xFF, EOI])
            .unwrap()
            + 2
    }

    const PHOTOS: [&str; 8] = [
        "photo_astronaut.jpg",
        "photo_chelsea.jpg",
        "photo_chelsea_progressive.jpg",
        "photo_chelsea_progressive_restart.jpg",
        "photo_chelsea_restart.jpg",
        "photo_coffee.jpg",
        "photo_retina.jpg",
        "photo_rocket.jpg",
    ];

    #[test]
    fn the_image_ends_at_its_end_of_image_marker_whatever_follows() {
        let trailers: [&[u8]; 4] = [
            b"",
            // An MP4 whose data holds markers, a scan's among them.
            b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom\xff\xda\x00\x0c\x01\x02",
            // A second picture, as in a multi-picture file.
            b"\xff\xd8\xff\xdb\x00\x04\x00\x00\xff\xda",
            &[0xFF; 5000],
        ];
        for name in PHOTOS {
            let photo = fixture(name);
            for trailer in trailers {
                let bytes = [&photo[..], trailer].concat();
                let layout = layout(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(layout.end, first_end(&photo), "{name}");
                walk_and_decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let mpf = fixture("red_mpf.jpg");
        let layout = layout(&mpf).unwrap();
        assert_eq!(layout.end, first_end(&mpf));
        assert!(
            layout.end < mpf.len() / 2 + 200,
            "{} of {}",
            layout.end,
            mpf.len()
        );
    }

    const CUT_SHORT: &str =
        "not an image: truncated or corrupt jpeg data: scan data ends before the last block";

    #[test]
    fn scans_cut_short_are_refused_even_with_an_end_marker() {
        for name in PHOTOS {
            let photo = fixture(name);
            let scan = photo.windows(2).position(|w| w == [0xFF, SOS]).unwrap();
            let end = first_end(&photo);
            for fraction in [0.2, 0.5, 0.9, 0.99] {
                let cut = scan + ((end - 2 - scan) as f64 * fraction) as usize;
                // Cut where a byte is not the first of a marker or stuffing.
                let cut = (cut..end).find(|&i| photo[i - 1] != 0xFF).unwrap();
                let bytes = [&photo[..cut], &[0xFF, EOI][..]].concat();
                let refused = walk_and_decode(&bytes);
                assert!(
                    refused.as_ref().is_err_and(
                        |e| e.starts_with("not an image: truncated or corrupt jpeg data")
                    ),
                    "{name} cut at {fraction}: {refused:?}"
                );
            }
        }
        assert_eq!(
            walk_and_decode(&fixture("fail_truncated_eoi.jpg")),
            Err(CUT_SHORT.into())
        );
    }

    #[test]
    fn restart_intervals_cut_short_are_refused() {
        for name in [
            "photo_chelsea_restart.jpg",
            "photo_chelsea_progressive_restart.jpg",
        ] {
            let photo = fixture(name);
            let restarts: Vec<usize> = photo
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w[0] == 0xFF && is_restart(w[1]))
                .map(|(i, _)| i)
                .collect();
            assert!(restarts.len() > 10, "{name}");
            // An interval in the middle of the first scan, and the last of
            // it, each ended half way by the restart marker that follows.
            for pair in [restarts.len() / 4, restarts.len() / 2].map(|i| &restarts[i..i + 2]) {
                let (start, marker) = (pair[0] + 2, pair[1]);
                let half = (start + (marker - start) / 2..marker)
                    .find(|&i| photo[i - 1] != 0xFF)
                    .unwrap();
                let bytes = [&photo[..half], &photo[marker..]].concat();
                assert_eq!(
                    walk_and_decode(&bytes),
                    Err(CUT_SHORT.into()),
                    "{name} at {half}"
                );
            }
            walk_and_decode(&photo).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn a_component_in_two_scans_of_a_sequential_image_is_refused() {
        // The decoder would stop after the first scan and never read the
        // second, whole or not.
        let photo = fixture("photo_chelsea.jpg");
        let scan = photo.windows(2).position(|w| w == [0xFF, SOS]).unwrap();
        let end = first_end(&photo);
        let bytes = [&photo[..end - 2], &photo[scan..end]].concat();
        assert_eq!(
            layout(&bytes),
            Err(Refusal::Corrupt("a component in two scans"))
        );
    }

    #[test]
    fn frames_the_decoder_cannot_decode_are_named() {
        let photo = fixture("green_solid.jpg");
        let sof = photo.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let cases = [
            (0xC3, "lossless jpeg"),
            (0xC5, "hierarchical jpeg"),
            (0xC9, "arithmetic-coded jpeg"),
            (0xCA, "arithmetic-coded jpeg"),
        ];
        for (marker, what) in cases {
            let mut bytes = photo.clone();
            bytes[sof + 1] = marker;
            assert_eq!(
                layout(&bytes),
                Err(Refusal::Unsupported(what)),
                "{marker:x}"
            );
        }
        let mut twelve_bit = photo.clone();
        twelve_bit[sof + 4] = 12;
        assert!(matches!(layout(&twelve_bit), Err(Refusal::Unsupported(_))));
        assert_eq!(
            layout(&fixture("fail_arithmetic.jpg")),
            Err(Refusal::Unsupported("arithmetic-coded jpeg"))
        );
    }

    #[test]
    fn the_first_ff_is_found_at_every_offset_and_length() {
        for len in 0..40 {
            for at in 0..=len {
                // 0xFE and 0x7F around it, the bytes a borrow could flag.
                let mut bytes: Vec<u8> = (0..len).map(|i| [0xFE, 0x7F, 0x00][i % 3]).collect();
                if at < len {
                    bytes[at] = 0xFF;
                    // A second one later never wins.
                    if at + 3 < len {
                        bytes[at + 3] = 0xFF;
                    }
                }
                let expected = bytes.iter().position(|&b| b == 0xFF);
                assert_eq!(first_ff(&bytes), expected, "len {len}, at {at}");
            }
        }
    }

    #[test]
    fn entropy_coded_data_ends_at_the_first_marker_other_than_a_restart() {
        let cases: [(&[u8], usize); 6] = [
            (b"\x12\x34", 2),
            (b"\x12\xff\x00\x34\xff\xd9", 4),
            (b"\x12\xff\xd0\x34\xff\xd7\x56\xff\xc4", 7),
            (b"\x12\xff\xff\xff\xd9", 3),
            (b"\x12\xff", 2),
            (b"\xff\xda", 0),
        ];
        for (bytes, end) in cases {
            assert_eq!(entropy_end(bytes, 0), end, "{bytes:02x?}");
        }
    }
}
