//! The check that a JPEG's scans hold every block their headers promise:
//! its Huffman tables parsed, and every code of every scan read, through
//! stuffing and restart intervals, for baseline and progressive scans
//! alike. Reads a file that [`layout`](super::layout) accepted.
//!
//! It reads no more than it must: a lookahead table gives a code and the
//! magnitude bits after it in one step, eight bytes of data go into the
//! bit buffer at a time where they hold no `FF`, and magnitudes and the
//! correction bits of refinement scans are skipped, never made into values.

use super::{
    DHT, DRI, Frame, Refusal, Segment, Segments, frame_kind, is_restart, parse_frame, parse_scan,
};

/// Bits of lookahead in [`Huffman::fast`]: most codes fit in them.
const LOOKAHEAD: u32 = 10;

/// Bits of lookahead in [`Huffman::run`]: often two or three AC codes with
/// their magnitudes.
const RUN_LOOKAHEAD: u32 = 12;

/// A Huffman table from a DHT segment, with a [`LOOKAHEAD`]-bit lookahead.
struct Huffman {
    /// For each [`LOOKAHEAD`]-bit prefix that starts with a code of at most
    /// that many bits: its symbol | its length << 8 | the magnitude bits
    /// that follow it << 16; else 0. A DC symbol that asks for more than
    /// 16 magnitude bits, which is corrupt, is left to the slow path.
    fast: Box<[u32; 1 << LOOKAHEAD]>,
    /// For an AC table, for each [`RUN_LOOKAHEAD`]-bit prefix: the AC codes
    /// of a sequential block that start it, with their magnitude bits, as
    /// many as fit whole, up to and with an end of block: their bits | the
    /// coefficients they move past (at most 127) << 4 | 1 << 11 if they end
    /// the block; 0 if not even one fits.
    run: Box<[u16; 1 << RUN_LOOKAHEAD]>,
    /// True for an AC table, whose symbols give their magnitude bits in
    /// the low four bits; a DC table's symbol is the count itself.
    ac: bool,
    /// The largest code of each length (1 to 16), or -1.
    max_code: [i32; 17],
    /// For each length: index in `symbols` of its first code, less that code.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn parse(body: &[u8], ac: bool) -> Result<(Huffman, &[u8]), Refusal> {
        let corrupt = Refusal::Corrupt("a malformed Huffman table");
        let counts = body.get(..16).ok_or(corrupt.clone())?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = body.get(16..16 + total).ok_or(corrupt.clone())?.to_vec();
        let mut table = Huffman {
            fast: Box::new([0; 1 << LOOKAHEAD]),
            run: Box::new([0; 1 << RUN_LOOKAHEAD]),
            ac,
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
                    let symbol = table.symbols[index as usize];
                    let magnitude = table.magnitude(symbol);
                    if len as u32 <= LOOKAHEAD && magnitude <= 16 {
                        let entry =
                            u32::from(magnitude) << 16 | (len as u32) << 8 | u32::from(symbol);
                        let shift = LOOKAHEAD as usize - len;
                        let first = (code as usize) << shift;
                        table.fast[first..first + (1 << shift)].fill(entry);
                    }
                    code += 1;
                    index += 1;
                }
                table.max_code[len] = code - 1;
            }
            code <<= 1;
        }
        if ac {
            for (prefix, slot) in table.run.iter_mut().enumerate() {
                *slot = run_of(
                    &table.max_code,
                    &table.offset,
                    &table.symbols,
                    prefix as u32,
                );
            }
        }
        Ok((table, &body[16 + total..]))
    }

    /// The code at the top of the `width` low bits of `window`, as its
    /// length and symbol, if it is whole there.
    fn first_code(
        max_code: &[i32; 17],
        offset: &[i32; 17],
        symbols: &[u8],
        window: u32,
        width: u32,
    ) -> Option<(u32, u8)> {
        for len in 1..=width.min(16) {
            let code = (window >> (width - len)) as i32;
            if code <= max_code[len as usize] {
                let index = (code + offset[len as usize]) as usize;
                return symbols.get(index).map(|&symbol| (len, symbol));
            }
        }
        None
    }

    /// The magnitude bits that follow `symbol`'s code.
    fn magnitude(&self, symbol: u8) -> u8 {
        if self.ac { symbol & 15 } else { symbol }
    }
}

/// The [`Huffman::run`] entry for the [`RUN_LOOKAHEAD`]-bit `prefix`.
fn run_of(max_code: &[i32; 17], offset: &[i32; 17], symbols: &[u8], prefix: u32) -> u16 {
    let (mut used, mut moved, mut ends) = (0, 0u32, false);
    while let Some((len, rs)) = Huffman::first_code(
        max_code,
        offset,
        symbols,
        prefix & ((1 << (RUN_LOOKAHEAD - used)) - 1),
        RUN_LOOKAHEAD - used,
    ) {
        let (run, size) = (u32::from(rs >> 4), u32::from(rs & 15));
        if used + len + size > RUN_LOOKAHEAD {
            break;
        }
        used += len + size;
        if size == 0 && run != 15 {
            ends = true;
            break;
        }
        moved += if size == 0 { 16 } else { run + 1 };
        if used == RUN_LOOKAHEAD {
            break;
        }
    }
    (used | moved.min(127) << 4 | u32::from(ends) << 11) as u16
}

/// Reads entropy-coded data: bits, most significant first, with stuffed
/// zero bytes removed, stopping at a restart marker or the end.
///
/// Its methods are all inlined, and a block is read from a copy of it on
/// the stack: so the bit buffer stays in registers, not in memory that
/// each code would write and read back.
#[derive(Clone, Copy)]
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    /// The next `count` bits, from the most significant; the bits below
    /// them are zero.
    buffer: u64,
    count: u32,
}

pub(super) const TRUNCATED: Refusal = Refusal::Corrupt("scan data ends before the last block");
const BAD_CODE: Refusal = Refusal::Corrupt("a bad Huffman code in the scan data");

/// True if one of the eight bytes of `word` is `FF`.
fn has_ff(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A zero byte in !word: the classic test, exact for "any".
    (!word).wrapping_sub(ONES) & word & HIGHS != 0
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            at: 0,
            buffer: 0,
            count: 0,
        }
    }

    /// Fills the buffer to more than 56 bits, or up to the next marker or
    /// the end of the data.
    #[inline(always)]
    fn refill(&mut self) {
        while self.count <= 56 {
            if let Some(word) = self.data.get(self.at..).and_then(<[u8]>::first_chunk::<8>) {
                let word = u64::from_be_bytes(*word);
                if !has_ff(word) {
                    // As many whole bytes as fit.
                    let bytes = (63 - self.count) / 8;
                    let end = self.count + 8 * bytes;
                    self.buffer |= (word >> self.count) & !(u64::MAX >> end);
                    self.count = end;
                    self.at += bytes as usize;
                    return;
                }
            }
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
            self.buffer |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buffer <<= n;
        self.count -= n;
    }

    /// The next `n` bits (at most 16).
    #[inline(always)]
    fn bits(&mut self, n: u32) -> Result<u32, Stop> {
        if n == 0 {
            return Ok(0);
        }
        if self.count < n {
            self.refill();
            if self.count < n {
                return Err(Stop::Truncated);
            }
        }
        let value = (self.buffer >> (64 - n)) as u32;
        self.consume(n);
        Ok(value)
    }

    /// Moves past `n` bits, any number.
    #[inline(always)]
    fn skip(&mut self, n: u32) -> Result<(), Stop> {
        if n <= self.count {
            self.consume(n);
            return Ok(());
        }
        self.skip_slow(n)
    }

    #[inline(always)]
    fn skip_slow(&mut self, mut n: u32) -> Result<(), Stop> {
        while n > 0 {
            let step = n.min(16);
            self.bits(step)?;
            n -= step;
        }
        Ok(())
    }

    /// Moves past the magnitude bits of a code.
    #[inline(always)]
    fn skip_magnitude(&mut self, size: u8) -> Result<(), Stop> {
        if size > 16 {
            return Err(Stop::BadCode);
        }
        self.skip(u32::from(size))
    }

    /// Reads one code; returns its symbol and the magnitude bits after it
    /// still to read: none if they were in the buffer too, and were read
    /// with the code.
    #[inline(always)]
    fn code(&mut self, table: &Huffman) -> Result<(u8, u8), Stop> {
        if self.count < 32 {
            self.refill();
        }
        let entry = table.fast[(self.buffer >> (64 - LOOKAHEAD)) as usize];
        let (len, magnitude) = (entry >> 8 & 0xFF, entry >> 16);
        if len != 0 && len + magnitude <= self.count {
            self.consume(len + magnitude);
            return Ok((entry as u8, 0));
        }
        self.code_slow(table)
    }

    #[inline(always)]
    fn code_slow(&mut self, table: &Huffman) -> Result<(u8, u8), Stop> {
        let symbol = self.decode(table)?;
        Ok((symbol, table.magnitude(symbol)))
    }

    /// Reads one code, and only the code.
    #[inline(always)]
    fn decode(&mut self, table: &Huffman) -> Result<u8, Stop> {
        if self.count < 16 {
            self.refill();
        }
        let entry = table.fast[(self.buffer >> (64 - LOOKAHEAD)) as usize];
        let len = entry >> 8 & 0xFF;
        if len != 0 && len <= self.count {
            self.consume(len);
            return Ok(entry as u8);
        }
        // A longer code, or one that the lookahead table leaves out: try
        // each length on the next 16 bits, zeros past the data's end.
        let next = (self.buffer >> 48) as i32;
        for len in 1..=16 {
            let code = next >> (16 - len);
            if code <= table.max_code[len] {
                if len as u32 > self.count {
                    return Err(Stop::Truncated);
                }
                self.consume(len as u32);
                let index = (code + table.offset[len]) as usize;
                return table.symbols.get(index).copied().ok_or(Stop::BadCode);
            }
        }
        // No code in 16 bits; or the data ended before a code did.
        Err(if self.count < 16 {
            Stop::Truncated
        } else {
            Stop::BadCode
        })
    }

    /// Moves past the restart marker that must come next, dropping the
    /// padding bits before it. Bytes before the marker are skipped, as
    /// libjpeg does.
    fn restart(&mut self) -> Result<(), Stop> {
        self.buffer = 0;
        self.count = 0;
        while self.at + 1 < self.data.len() {
            if self.data[self.at] == 0xFF && is_restart(self.data[self.at + 1]) {
                self.at += 2;
                return Ok(());
            }
            self.at += 1;
        }
        Err(Stop::Truncated)
    }
}

/// Reads every Huffman code of every scan of a JPEG that
/// [`layout`](super::layout) accepted, and refuses it if a scan's data ends
/// before its last block or holds a code its table does not have.
///
/// For progressive refinement scans it keeps, per block, which coefficients
/// are already non-zero: a bit per coefficient, 8 bytes per block of the
/// components refined (at most
/// [`Layout::coefficient_bytes`](super::Layout::coefficient_bytes) / 16).
pub(in crate::classify) fn check_scans(bytes: &[u8]) -> Result<(), Refusal> {
    let mut segments = Segments::new(bytes)?;
    let mut frame: Option<Frame> = None;
    let mut dc: [Option<Huffman>; 4] = Default::default();
    let mut ac: [Option<Huffman>; 4] = Default::default();
    // Stands for the tables a scan does not use.
    let unused = Huffman::parse(&[0; 16], false)?.0;
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
                        let (table, tail) = Huffman::parse(tail, class == 1)?;
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
                let (start, end) = (scan.spectral.start as u32, scan.spectral.end as u32 - 1);
                let mut reader = ScanReader {
                    bits: Bits::new(data),
                    start,
                    end,
                    eob_run: 0,
                    restart_interval,
                    left: restart_interval,
                };
                let components: Vec<Blocks> = scan
                    .components
                    .iter()
                    .map(|&(index, d, a)| Blocks {
                        index,
                        dc: if needs_dc { dc[d].as_ref() } else { None }.unwrap_or(&unused),
                        ac: if needs_ac { ac[a].as_ref() } else { None }.unwrap_or(&unused),
                    })
                    .collect();
                let walk = Walk {
                    frame,
                    components: &components,
                    nonzero: &mut nonzero,
                };
                match (frame.progressive, start, scan.high) {
                    (false, ..) => walk.run(&mut reader, ScanReader::sequential),
                    (true, 0, 0) => walk.run(&mut reader, ScanReader::dc_first),
                    (true, 0, _) => walk.run(&mut reader, ScanReader::dc_refine),
                    (true, _, 0) => walk.run(&mut reader, ScanReader::ac_first),
                    (true, _, _) => walk.run(&mut reader, ScanReader::ac_refine),
                }
                .map_err(Refusal::from)?;
            }
        }
    }
    Ok(())
}

/// Why a scan's data is refused: a [`Refusal`] in a byte, so that the
/// reading loops return it in a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Truncated,
    BadCode,
}

impl From<Stop> for Refusal {
    fn from(stop: Stop) -> Refusal {
        match stop {
            Stop::Truncated => TRUNCATED,
            Stop::BadCode => BAD_CODE,
        }
    }
}

/// One component of a scan: its index in the frame, and its tables.
struct Blocks<'t> {
    index: usize,
    dc: &'t Huffman,
    ac: &'t Huffman,
}

/// The order of a scan's blocks.
struct Walk<'s, 't> {
    frame: &'s Frame,
    components: &'s [Blocks<'t>],
    nonzero: &'s mut [Vec<u64>],
}

impl Walk<'_, '_> {
    /// Reads every block of the scan with `block` (given the block's
    /// tables and its mask of non-zero coefficients), and the restart
    /// markers between intervals.
    #[inline(always)]
    fn run<'a, F>(self, reader: &mut ScanReader<'a>, block: F) -> Result<(), Stop>
    where
        F: Fn(&mut ScanReader<'a>, &Huffman, &Huffman, &mut u64) -> Result<(), Stop>,
    {
        let frame = self.frame;
        let mut unused = 0u64;
        if let [Blocks { index, dc, ac }] = self.components {
            // One component alone: its blocks in raster order, unpadded.
            let c = frame.components[*index];
            let (across, down) = frame.blocks_alone(c);
            let (stride, padded_down) = frame.blocks_padded(c);
            // Only progressive AC scans need the masks, and make them.
            let masks: &mut [u64] = if frame.progressive && reader.start > 0 {
                let masks = &mut self.nonzero[*index];
                if masks.is_empty() {
                    *masks = vec![0; stride * padded_down];
                }
                masks
            } else {
                &mut []
            };
            for y in 0..down {
                for x in 0..across {
                    reader.next_mcu()?;
                    let mask = masks.get_mut(y * stride + x).unwrap_or(&mut unused);
                    block(reader, dc, ac, mask)?;
                }
            }
            return Ok(());
        }
        // Interleaved: whole MCUs, each each component's h x v blocks. Only
        // DC and sequential scans interleave, so no block needs its mask.
        let (across, down) = frame.mcus();
        let counts: Vec<usize> = self
            .components
            .iter()
            .map(|b| {
                let c = frame.components[b.index];
                usize::from(c.h) * usize::from(c.v)
            })
            .collect();
        for _ in 0..across * down {
            reader.next_mcu()?;
            for (b, &count) in self.components.iter().zip(&counts) {
                for _ in 0..count {
                    block(reader, b.dc, b.ac, &mut unused)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads one scan's entropy-coded data.
struct ScanReader<'a> {
    bits: Bits<'a>,
    /// The scan's spectral selection: its first and last coefficient.
    start: u32,
    end: u32,
    eob_run: u32,
    restart_interval: usize,
    /// MCUs left before the next restart marker.
    left: usize,
}

impl ScanReader<'_> {
    /// Moves past a restart marker when one is due before the next MCU.
    #[inline(always)]
    fn next_mcu(&mut self) -> Result<(), Stop> {
        if self.restart_interval > 0 {
            if self.left == 0 {
                self.bits.restart()?;
                self.eob_run = 0;
                self.left = self.restart_interval;
            }
            self.left -= 1;
        }
        Ok(())
    }

    /// A block of a sequential scan: every coefficient.
    #[inline(always)]
    fn sequential(&mut self, dc: &Huffman, ac: &Huffman, _: &mut u64) -> Result<(), Stop> {
        let mut copy = self.bits;
        let bits = &mut copy;
        let (_, magnitude) = bits.code(dc)?;
        bits.skip_magnitude(magnitude)?;
        let mut k = 1;
        while k < 64 {
            if bits.count < 32 {
                bits.refill();
            }
            // Several codes at once, when they all fall short of the
            // block's end.
            let run = u32::from(ac.run[(bits.buffer >> (64 - RUN_LOOKAHEAD)) as usize]);
            let (used, moved) = (run & 15, run >> 4 & 127);
            if used != 0 && used <= bits.count && k + moved < 64 {
                bits.consume(used);
                if run >> 11 != 0 {
                    break;
                }
                k += moved;
                continue;
            }
            let (rs, magnitude) = bits.code(ac)?;
            let (run, size) = (rs >> 4, rs & 15);
            if size == 0 {
                if run != 15 {
                    break;
                }
                k += 16;
                continue;
            }
            bits.skip_magnitude(magnitude)?;
            k += u32::from(run) + 1;
        }
        self.bits = copy;
        Ok(())
    }

    /// A block of a progressive DC scan's first pass: the high bits.
    #[inline(always)]
    fn dc_first(&mut self, dc: &Huffman, _: &Huffman, _: &mut u64) -> Result<(), Stop> {
        let (_, magnitude) = self.bits.code(dc)?;
        self.bits.skip_magnitude(magnitude)
    }

    /// A block of a DC refinement scan: one more bit.
    #[inline(always)]
    fn dc_refine(&mut self, _: &Huffman, _: &Huffman, _: &mut u64) -> Result<(), Stop> {
        self.bits.skip(1)
    }

    /// A block of a progressive AC scan's first pass: the high bits of its
    /// coefficients in the band, in runs and runs of empty blocks.
    #[inline(always)]
    fn ac_first(&mut self, _: &Huffman, ac: &Huffman, mask: &mut u64) -> Result<(), Stop> {
        if self.eob_run > 0 {
            self.eob_run -= 1;
            return Ok(());
        }
        let mut copy = self.bits;
        let bits = &mut copy;
        let (mut k, end) = (self.start, self.end);
        while k <= end {
            let (rs, magnitude) = bits.code(ac)?;
            let (run, size) = (u32::from(rs >> 4), rs & 15);
            if size == 0 {
                if run < 15 {
                    self.eob_run = (1 << run) - 1 + bits.bits(run)?;
                    break;
                }
                k += 16;
                continue;
            }
            k += run;
            if k > end {
                return Err(Stop::BadCode);
            }
            bits.skip_magnitude(magnitude)?;
            *mask |= 1 << k;
            k += 1;
        }
        self.bits = copy;
        Ok(())
    }

    /// A block of an AC refinement scan: a bit more of the coefficients
    /// already non-zero, and the coefficients that become non-zero.
    #[inline(always)]
    fn ac_refine(&mut self, _: &Huffman, ac: &Huffman, mask: &mut u64) -> Result<(), Stop> {
        let mut copy = self.bits;
        let bits = &mut copy;
        let (mut k, end) = (self.start, self.end);
        if self.eob_run == 0 {
            while k <= end {
                let (rs, magnitude) = bits.code(ac)?;
                let (run, size) = (u32::from(rs >> 4), rs & 15);
                if size != 0 {
                    if size != 1 {
                        return Err(Stop::BadCode);
                    }
                    // The new coefficient's sign.
                    bits.skip_magnitude(magnitude)?;
                } else if run != 15 {
                    self.eob_run = (1 << run) + bits.bits(run)?;
                    break;
                }
                // Past `run` zero coefficients, and the already non-zero
                // ones among them with a correction bit each, to the zero
                // one this code sets.
                let span = span(k, end);
                let mut zeros = !*mask & span;
                for _ in 0..run {
                    zeros &= zeros.wrapping_sub(1);
                }
                let stop = if zeros == 0 {
                    end + 1
                } else {
                    zeros.trailing_zeros()
                };
                bits.skip((*mask & span & below(stop)).count_ones())?;
                k = stop;
                if size != 0 {
                    if k > end {
                        return Err(Stop::BadCode);
                    }
                    *mask |= 1 << k;
                }
                k += 1;
            }
        }
        if self.eob_run > 0 {
            // The rest of the band: a correction bit for each non-zero
            // coefficient.
            bits.skip((*mask & span(k, end)).count_ones())?;
            self.eob_run -= 1;
        }
        self.bits = copy;
        Ok(())
    }
}

/// Bits `from..=to` of a block's mask; none if `from > to`.
fn span(from: u32, to: u32) -> u64 {
    if from > to {
        return 0;
    }
    (u64::MAX >> (63 - to)) & (u64::MAX << from)
}

/// Bits below `stop` (at most 64) of a block's mask.
fn below(stop: u32) -> u64 {
    if stop >= 64 {
        u64::MAX
    } else {
        (1 << stop) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let parsed = Huffman::parse(&table(counts), true).map(|_| ());
            if fits {
                assert_eq!(parsed, Ok(()), "{counts:?}");
            } else {
                assert_eq!(parsed, corrupt, "{counts:?}");
            }
        }
    }
}
