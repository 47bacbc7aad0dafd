//! The structure of a JPEG file, read without decoding it: its segments and
//! scans walked from the start-of-image marker to the first end-of-image
//! marker after the frame, the frame header, and a check that every scan's
//! entropy-coded data holds every block its header promises.
//!
//! The decoder is lenient where a sorter must not be: it fills a scan that
//! ends early with made-up coefficients, and it would read a file's trailer
//! (a Motion Photo's video, a multi-picture file's second image) for
//! markers. [`layout`] finds where the image ends by walking the segments
//! (lengths, entropy-coded data with its `FF 00` stuffing and restart
//! markers), names what the decoder cannot do (arithmetic coding, lossless
//! and hierarchical modes, 12-bit samples), and checks that the scans cover
//! every coefficient of every component; [`check_scans`] then reads every
//! Huffman code of every scan and refuses data that ends before its last
//! block. A leaf: it knows bytes, not decoders.

use std::ops::Range;

/// Why a JPEG is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The data is truncated or malformed; the text says where.
    Corrupt(&'static str),
    /// The file uses a JPEG feature the decoder does not have.
    Unsupported(&'static str),
}

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

    /// Blocks across and down that a component's data holds when the
    /// component is scanned alone: its own size in blocks, not padded to
    /// whole MCUs.
    fn blocks_alone(&self, c: Component) -> (usize, usize) {
        let (h, v) = self.max_sampling();
        let width = (usize::from(self.width) * usize::from(c.h)).div_ceil(h);
        let height = (usize::from(self.height) * usize::from(c.v)).div_ceil(v);
        (width.div_ceil(8), height.div_ceil(8))
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
    /// A start-of-scan header and the entropy-coded data after it, up to
    /// the next marker other than a restart marker.
    Scan { header: &'a [u8], data: &'a [u8] },
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
const DHT: u8 = 0xC4;
const DRI: u8 = 0xDD;

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
            let start = self.at;
            self.at = entropy_end(bytes, start);
            return Ok(Ok(Segment::Scan {
                header: body,
                data: &bytes[start..self.at],
            }));
        }
    }
}

/// Where entropy-coded data starting at `from` ends: at the 0xFF of the
/// first marker that is neither stuffing (`FF 00`) nor a restart marker, or
/// at the end of the input.
fn entropy_end(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == 0xFF) {
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

/// A scan header: the frame's components it holds with their tables, and
/// the spectral selection and successive approximation.
struct ScanHeader {
    /// (index into the frame's components, DC table, AC table).
    components: Vec<(usize, usize, usize)>,
    spectral: Range<usize>,
    high: u8,
    low: u8,
}

fn parse_scan(header: &[u8], frame: &Frame) -> Result<ScanHeader, Refusal> {
    let corrupt = Refusal::Corrupt("a malformed scan header");
    let (&count, rest) = header.split_first().ok_or(corrupt.clone())?;
    let count = usize::from(count);
    if count == 0 || count > 4 || rest.len() < 2 * count + 3 {
        return Err(corrupt);
    }
    let mut components: Vec<(usize, usize, usize)> = Vec::with_capacity(count);
    for c in rest[..2 * count].chunks_exact(2) {
        let index = frame
            .components
            .iter()
            .position(|f| f.id == c[0])
            .ok_or(corrupt.clone())?;
        let (dc, ac) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
        if dc > 3 || ac > 3 || components.iter().any(|&(i, ..)| i == index) {
            return Err(corrupt);
        }
        components.push((index, dc, ac));
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
    let (high, low) = if frame.progressive {
        (high, low)
    } else {
        (0, 0)
    };
    Ok(ScanHeader {
        components,
        spectral,
        high,
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
            Segment::Scan { header, .. } => {
                let frame = frame
                    .as_ref()
                    .ok_or(Refusal::Corrupt("a scan before the frame header"))?;
                let scan = parse_scan(header, frame)?;
                if scan.low == 0 {
                    let bits = spectral_bits(&scan.spectral);
                    for &(index, ..) in &scan.components {
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

/// A Huffman table from a DHT segment, with an 8-bit lookahead.
struct Huffman {
    /// For each 8-bit prefix whose code is at most 8 bits: length << 8 | symbol, else 0.
    fast: [u16; 256],
    /// The largest code of each length (1 to 16), or -1.
    max_code: [i32; 17],
    /// For each length: index in `symbols` of its first code, less that code.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn parse(body: &[u8]) -> Result<(Huffman, &[u8]), Refusal> {
        let corrupt = Refusal::Corrupt("a malformed Huffman table");
        let counts = body.get(..16).ok_or(corrupt.clone())?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = body.get(16..16 + total).ok_or(corrupt.clone())?.to_vec();
        let mut table = Huffman {
            fast: [0; 256],
            max_code: [-1; 17],
            offset: [0; 17],
            symbols,
        };
        let mut code = 0i32;
        let mut index = 0i32;
        for len in 1..=16 {
            let count = i32::from(counts[len - 1]);
            if count > 0 {
                table.offset[len] = index - code;
                for _ in 0..count {
                    // Counts that ask for more codes of this length than
                    // there are: the table is over-subscribed.
                    if code >= 1 << len {
                        return Err(corrupt);
                    }
                    if len <= 8 {
                        let shift = 8 - len;
                        let first = (code as usize) << shift;
                        let entry = (len as u16) << 8 | u16::from(table.symbols[index as usize]);
                        for slot in &mut table.fast[first..first + (1 << shift)] {
                            *slot = entry;
                        }
                    }
                    code += 1;
                    index += 1;
                }
                table.max_code[len] = code - 1;
            }
            code <<= 1;
        }
        Ok((table, &body[16 + total..]))
    }
}

/// Reads entropy-coded data: bits, most significant first, with stuffed
/// zero bytes removed, stopping at a restart marker or the end.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    buffer: u64,
    count: u32,
}

const TRUNCATED: Refusal = Refusal::Corrupt("scan data ends before the last block");
const BAD_CODE: Refusal = Refusal::Corrupt("a bad Huffman code in the scan data");

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            at: 0,
            buffer: 0,
            count: 0,
        }
    }

    fn refill(&mut self) {
        while self.count <= 56 {
            let Some(&byte) = self.data.get(self.at) else {
                return;
            };
            if byte == 0xFF {
                // Inside the data every 0xFF is stuffing or a restart
                // marker; a marker ends the bits of this interval.
                if self.data.get(self.at + 1) != Some(&0x00) {
                    return;
                }
                self.at += 2;
            } else {
                self.at += 1;
            }
            self.buffer = self.buffer << 8 | u64::from(byte);
            self.count += 8;
        }
    }

    fn bits(&mut self, n: u32) -> Result<u32, Refusal> {
        if n == 0 {
            return Ok(0);
        }
        if self.count < n {
            self.refill();
            if self.count < n {
                return Err(TRUNCATED);
            }
        }
        self.count -= n;
        Ok((self.buffer >> self.count) as u32 & ((1 << n) - 1))
    }

    fn decode(&mut self, table: &Huffman) -> Result<u8, Refusal> {
        if self.count < 16 {
            self.refill();
        }
        if self.count >= 8 {
            let entry = table.fast[(self.buffer >> (self.count - 8)) as usize & 0xFF];
            if entry != 0 {
                self.count -= u32::from(entry >> 8);
                return Ok(entry as u8);
            }
        }
        let mut code = 0i32;
        for len in 1..=16 {
            code = code << 1 | self.bits(1)? as i32;
            if code <= table.max_code[len] {
                let index = (code + table.offset[len]) as usize;
                return table.symbols.get(index).copied().ok_or(BAD_CODE);
            }
        }
        Err(BAD_CODE)
    }

    /// Moves past the restart marker that must come next, dropping the
    /// padding bits before it. Bytes before the marker are skipped, as
    /// libjpeg does.
    fn restart(&mut self) -> Result<(), Refusal> {
        self.buffer = 0;
        self.count = 0;
        while self.at + 1 < self.data.len() {
            if self.data[self.at] == 0xFF && is_restart(self.data[self.at + 1]) {
                self.at += 2;
                return Ok(());
            }
            self.at += 1;
        }
        Err(TRUNCATED)
    }
}

/// Reads every Huffman code of every scan of a JPEG that [`layout`]
/// accepted, and refuses it if a scan's data ends before its last block or
/// holds a code its table does not have.
///
/// For progressive refinement scans it keeps, per block, which coefficients
/// are already non-zero: a bit per coefficient, 8 bytes per block of the
/// components refined (at most [`Layout::coefficient_bytes`] / 16).
pub(super) fn check_scans(bytes: &[u8]) -> Result<(), Refusal> {
    let mut segments = Segments::new(bytes)?;
    let mut frame: Option<Frame> = None;
    let mut dc: [Option<Huffman>; 4] = Default::default();
    let mut ac: [Option<Huffman>; 4] = Default::default();
    let mut restart_interval = 0usize;
    let mut nonzero: Vec<Vec<u64>> = Vec::new();
    while let Ok(segment) = segments.next_segment()? {
        match segment {
            Segment::Marker { marker, body } => {
                if let Some(kind) = frame_kind(marker) {
                    let parsed = parse_frame(body, kind?)?;
                    nonzero = vec![Vec::new(); parsed.components.len()];
                    frame = Some(parsed);
                } else if marker == DHT {
                    let mut rest = body;
                    while let Some((&class_id, tail)) = rest.split_first() {
                        let (class, id) = (class_id >> 4, usize::from(class_id & 15));
                        if class > 1 || id > 3 {
                            return Err(Refusal::Corrupt("a malformed Huffman table"));
                        }
                        let (table, tail) = Huffman::parse(tail)?;
                        rest = tail;
                        let slot = if class == 0 { &mut dc[id] } else { &mut ac[id] };
                        *slot = Some(table);
                    }
                } else if marker == DRI {
                    let interval = body
                        .get(..2)
                        .ok_or(Refusal::Corrupt("a malformed restart interval"))?;
                    restart_interval = usize::from(u16::from_be_bytes([interval[0], interval[1]]));
                }
            }
            Segment::Scan { header, data } => {
                let frame = frame
                    .as_ref()
                    .ok_or(Refusal::Corrupt("a scan before the frame header"))?;
                let scan = parse_scan(header, frame)?;
                // A file that leaves out its Huffman tables relies on the
                // decoder's standard ones; its data cannot be checked here.
                let needs_dc = scan.spectral.start == 0 && scan.high == 0;
                let needs_ac = scan.spectral.end > 1;
                let missing = scan.components.iter().any(|&(_, d, a)| {
                    (needs_dc && dc[d].is_none()) || (needs_ac && ac[a].is_none())
                });
                if missing {
                    return Ok(());
                }
                let mut reader = ScanReader {
                    frame,
                    scan: &scan,
                    dc: &dc,
                    ac: &ac,
                    bits: Bits::new(data),
                    eob_run: 0,
                };
                reader.read(restart_interval, &mut nonzero)?;
            }
        }
    }
    Ok(())
}

/// Reads one scan's entropy-coded data.
struct ScanReader<'s, 'a> {
    frame: &'s Frame,
    scan: &'s ScanHeader,
    dc: &'s [Option<Huffman>; 4],
    ac: &'s [Option<Huffman>; 4],
    bits: Bits<'a>,
    eob_run: u32,
}

impl ScanReader<'_, '_> {
    fn read(&mut self, restart_interval: usize, nonzero: &mut [Vec<u64>]) -> Result<(), Refusal> {
        let frame = self.frame;
        let scan = self.scan;
        // The blocks of each MCU, as (scan component, block index in the
        // component's padded grid).
        let (mcu_count, single) = if scan.components.len() == 1 {
            let c = frame.components[scan.components[0].0];
            let (across, down) = frame.blocks_alone(c);
            (across * down, Some((across, frame.blocks_padded(c).0)))
        } else {
            let (across, down) = frame.mcus();
            (across * down, None)
        };
        let refining_ac = scan.spectral.start > 0 && scan.high > 0;
        let first_ac = scan.spectral.start > 0 && scan.high == 0;
        if frame.progressive && scan.spectral.start > 0 {
            let index = scan.components[0].0;
            if nonzero[index].is_empty() {
                let (across, down) = frame.blocks_padded(frame.components[index]);
                nonzero[index] = vec![0; across * down];
            }
        }
        let (mcus_across, _) = frame.mcus();
        for mcu in 0..mcu_count {
            if restart_interval > 0 && mcu > 0 && mcu % restart_interval == 0 {
                self.bits.restart()?;
                self.eob_run = 0;
            }
            match single {
                Some((across, stride)) => {
                    let (x, y) = (mcu % across, mcu / across);
                    let (index, d, a) = scan.components[0];
                    let mask = nonzero
                        .get_mut(index)
                        .and_then(|n| n.get_mut(y * stride + x));
                    self.block(d, a, mask, first_ac, refining_ac)?;
                }
                None => {
                    let (mx, my) = (mcu % mcus_across, mcu / mcus_across);
                    for &(index, d, a) in &scan.components {
                        let c = frame.components[index];
                        let stride = mcus_across * usize::from(c.h);
                        for by in 0..usize::from(c.v) {
                            for bx in 0..usize::from(c.h) {
                                let at = (my * usize::from(c.v) + by) * stride
                                    + mx * usize::from(c.h)
                                    + bx;
                                let mask = nonzero.get_mut(index).and_then(|n| n.get_mut(at));
                                self.block(d, a, mask, first_ac, refining_ac)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads one block's codes; `mask` is its non-zero coefficients, kept
    /// for progressive AC scans.
    fn block(
        &mut self,
        dc: usize,
        ac: usize,
        mask: Option<&mut u64>,
        first_ac: bool,
        refining_ac: bool,
    ) -> Result<(), Refusal> {
        let spectral = self.scan.spectral.clone();
        if !self.frame.progressive {
            let size = self.bits.decode(table(self.dc, dc)?)?;
            self.skip_magnitude(size)?;
            let ac = table(self.ac, ac)?;
            let mut k = 1;
            while k < 64 {
                let rs = self.bits.decode(ac)?;
                let (run, size) = (usize::from(rs >> 4), rs & 15);
                if size == 0 {
                    if run != 15 {
                        break;
                    }
                    k += 16;
                    continue;
                }
                k += run;
                self.skip_magnitude(size)?;
                k += 1;
            }
            return Ok(());
        }
        if spectral.start == 0 {
            if self.scan.high == 0 {
                let size = self.bits.decode(table(self.dc, dc)?)?;
                self.skip_magnitude(size)?;
            } else {
                self.bits.bits(1)?;
            }
            return Ok(());
        }
        let mut unused = 0u64;
        let mask = mask.unwrap_or(&mut unused);
        let (start, end) = (spectral.start, spectral.end - 1);
        let ac = table(self.ac, ac)?;
        if first_ac {
            if self.eob_run > 0 {
                self.eob_run -= 1;
                return Ok(());
            }
            let mut k = start;
            while k <= end {
                let rs = self.bits.decode(ac)?;
                let (run, size) = (u32::from(rs >> 4), rs & 15);
                if size == 0 {
                    if run < 15 {
                        self.eob_run = (1 << run) - 1 + self.bits.bits(run)?;
                        break;
                    }
                    k += 16;
                    continue;
                }
                k += run as usize;
                if k > end {
                    return Err(BAD_CODE);
                }
                self.skip_magnitude(size)?;
                *mask |= 1 << k;
                k += 1;
            }
            return Ok(());
        }
        debug_assert!(refining_ac);
        let mut k = start;
        if self.eob_run == 0 {
            while k <= end {
                let rs = self.bits.decode(ac)?;
                let (mut run, size) = (i32::from(rs >> 4), rs & 15);
                if size != 0 {
                    if size != 1 {
                        return Err(BAD_CODE);
                    }
                    self.bits.bits(1)?;
                } else if run != 15 {
                    self.eob_run = (1 << run) + self.bits.bits(run as u32)?;
                    break;
                }
                // Past already non-zero coefficients (a correction bit
                // each) and `run` zero ones, to the one this code sets.
                loop {
                    if *mask & 1 << k != 0 {
                        self.bits.bits(1)?;
                    } else {
                        run -= 1;
                        if run < 0 {
                            break;
                        }
                    }
                    k += 1;
                    if k > end {
                        break;
                    }
                }
                if size != 0 {
                    if k > end {
                        return Err(BAD_CODE);
                    }
                    *mask |= 1 << k;
                }
                k += 1;
            }
        }
        if self.eob_run > 0 {
            while k <= end {
                if *mask & 1 << k != 0 {
                    self.bits.bits(1)?;
                }
                k += 1;
            }
            self.eob_run -= 1;
        }
        Ok(())
    }

    fn skip_magnitude(&mut self, size: u8) -> Result<(), Refusal> {
        if size > 16 {
            return Err(BAD_CODE);
        }
        self.bits.bits(u32::from(size)).map(drop)
    }
}

fn table(tables: &[Option<Huffman>; 4], id: usize) -> Result<&Huffman, Refusal> {
    tables[id]
        .as_ref()
        .ok_or(Refusal::Corrupt("a scan uses a Huffman table not defined"))
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

    const PHOTOS: [&str; 6] = [
        "photo_astronaut.jpg",
        "photo_chelsea.jpg",
        "photo_chelsea_progressive.jpg",
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
                check_scans(&bytes[..layout.end]).unwrap_or_else(|e| panic!("{name}: {e:?}"));
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
                let refused = layout(&bytes).and_then(|l| check_scans(&bytes[..l.end]));
                assert!(
                    matches!(refused, Err(Refusal::Corrupt(_))),
                    "{name} cut at {fraction}: {refused:?}"
                );
            }
        }
        let refused = layout(&fixture("fail_truncated_eoi.jpg"))
            .and_then(|l| check_scans(&fixture("fail_truncated_eoi.jpg")[..l.end]));
        assert_eq!(refused, Err(TRUNCATED));
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
    fn huffman_tables_whose_counts_overflow_their_lengths_are_corrupt() {
        // Counts per length 1..=16, then the symbols they promise.
        let table = |counts: [u8; 16]| {
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            [&counts[..], &vec![0u8; total]].concat()
        };
        let mut full = [0u8; 16];
        full[7] = 255; // 255 of the 256 codes of length 8: fits
        let mut over = [0u8; 16];
        over[0] = 3; // three codes of length 1, where two exist
        let mut late = [0u8; 16];
        late[1] = 3; // three of length 2...
        late[2] = 3; // ...leave two of length 3, not three
        let mut wide = [0u8; 16];
        wide[4] = 33; // 33 of length 5, found by fuzzing as a panic
        let corrupt = Err(Refusal::Corrupt("a malformed Huffman table"));
        let cases = [(full, true), (over, false), (late, false), (wide, false)];
        for (counts, fits) in cases {
            let parsed = Huffman::parse(&table(counts)).map(|_| ());
            if fits {
                assert_eq!(parsed, Ok(()), "{counts:?}");
            } else {
                assert_eq!(parsed, corrupt, "{counts:?}");
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
