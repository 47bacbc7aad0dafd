//! The check that a JPEG's scans hold every block their headers promise:
//! its Huffman tables parsed, and every code of every scan read, bit by
//! bit, through stuffing and restart intervals, for baseline and
//! progressive scans alike. Reads a file that [`layout`](super::layout)
//! accepted.

use super::{
    DHT, DRI, Frame, Refusal, ScanHeader, Segment, Segments, frame_kind, is_restart, parse_frame,
    parse_scan,
};

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

pub(super) const TRUNCATED: Refusal = Refusal::Corrupt("scan data ends before the last block");
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
}
