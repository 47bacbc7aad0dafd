//! Inputs whose decoding takes memory their header does not predict, made
//! here byte by byte so that their sizes can be chosen: a lossless WebP
//! whose entropy image declares many prefix-code groups, and a TIFF whose
//! ordinary tags hold huge lists of values.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

/// Writes bits least significant first, as VP8L reads them.
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    fn new() -> Bits {
        Bits {
            bytes: Vec::new(),
            used: 0,
        }
    }

    /// `value`'s low `n` bits, least significant first.
    fn put(&mut self, value: u32, n: u32) {
        for i in 0..n {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let last = self.bytes.len() - 1;
            self.bytes[last] |= (((value >> i) & 1) as u8) << (self.used % 8);
            self.used += 1;
        }
    }

    /// A prefix code of `len` bits, most significant bit first, as a
    /// canonical code is read.
    fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.put(code >> i, 1);
        }
    }
}

/// The canonical code of each code length 1 to 10 under the code-length
/// code used below: lengths 1 to 6 take three bits, 7 to 10 four.
fn length_code(length: u32) -> (u32, u32) {
    if length <= 6 {
        (length - 1, 3)
    } else {
        (0b1100 + length - 7, 4)
    }
}

/// A "normal" prefix code whose lengths are 1, 2, ..., 9, 10, 10 for its
/// first eleven symbols: complete, and long enough that the decoder builds
/// a lookup table of 2¹⁰ entries for it, from about twelve bytes.
fn put_chain_code(bits: &mut Bits) {
    // Not a simple code.
    bits.put(0, 1);
    // Lengths of the code-length code, in the order VP8L stores them:
    // 17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10 (fourteen of them).
    bits.put(14 - 4, 4);
    for symbol in [17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10] {
        let length = match symbol {
            1..=6 => 3,
            7..=10 => 4,
            _ => 0,
        };
        bits.put(length, 3);
    }
    // Eleven lengths are read, the rest are zero.
    bits.put(1, 1);
    bits.put(1, 3); // length_nbits = 2 + 2 * 1
    bits.put(11 - 2, 4);
    for length in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10] {
        let (code, len) = length_code(length);
        bits.code(code, len);
    }
}

/// A simple prefix code of one 8-bit symbol: read in no bits.
fn put_single_code(bits: &mut Bits, symbol: u32) {
    bits.put(1, 1); // simple
    bits.put(0, 1); // one symbol
    bits.put(1, 1); // of eight bits
    bits.put(symbol, 8);
}

/// A 1x1 lossless WebP whose entropy image points at prefix-code group
/// `groups - 1`, so that the decoder reads and builds all `groups` groups
/// of five codes, each with a table of 2¹⁰ entries: about 60 bytes of file
/// and 20 KiB of decoder memory a group. `groups` is 1 to 65536. The image
/// itself is valid: its one pixel is transparent black.
pub fn webp_prefix_groups(groups: u32) -> Vec<u8> {
    assert!((1..=1 << 16).contains(&groups), "{groups}");
    let index = groups - 1;
    let mut bits = Bits::new();
    bits.put(0x2f, 8);
    bits.put(0, 14); // width - 1
    bits.put(0, 14); // height - 1
    bits.put(0, 1); // alpha hint
    bits.put(0, 3); // version
    bits.put(0, 1); // no transform
    bits.put(0, 1); // no colour cache
    bits.put(1, 1); // meta prefix codes
    bits.put(0, 3); // 2 + 0 bits a block: one entropy pixel for 1x1
    // The entropy image: no colour cache, five single-symbol codes, so
    // that its one pixel (red = high byte, green = low byte of the group
    // index) takes no bits.
    bits.put(0, 1);
    put_single_code(&mut bits, index & 0xFF); // green
    put_single_code(&mut bits, index >> 8); // red
    put_single_code(&mut bits, 0); // blue
    put_single_code(&mut bits, 0); // alpha
    put_single_code(&mut bits, 0); // distance
    for _ in 0..groups {
        for _ in 0..5 {
            put_chain_code(&mut bits);
        }
    }
    // The pixel: green, red, blue and alpha are each symbol 0, the
    // one-bit code 0.
    bits.put(0, 4);
    let mut vp8l = bits.bytes;
    // Room for the reader's look-ahead.
    vp8l.extend_from_slice(&[0; 8]);
    if !vp8l.len().is_multiple_of(2) {
        vp8l.push(0);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(4 + 8 + vp8l.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WEBPVP8L");
    out.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    out.extend_from_slice(&vp8l);
    out
}

/// TIFF field types, for [`tiff_tag_list`].
#[derive(Debug, Clone, Copy)]
pub enum TiffType {
    /// 1-byte unsigned values.
    Byte,
    /// 4-byte unsigned values.
    Long,
}

/// A little-endian 1x1 RGB8 TIFF whose ImageWidth tag holds `count` values
/// of type `kind` (the first is 1, the rest 0) instead of one. The `tiff`
/// crate reads the list into 32-byte entries before it finds that a width
/// is one number: a file of `count` bytes of Byte values makes it hold 32
/// times as much (it reads at most 8 Mi values, 256 MiB of them).
pub fn tiff_tag_list(count: u32, kind: TiffType) -> Vec<u8> {
    let (type_id, size) = match kind {
        TiffType::Byte => (1u16, 1usize),
        TiffType::Long => (4, 4),
    };
    // Header, then the pixel (3 bytes, padded), then the directory, then
    // the list.
    let mut out = b"II*\0".to_vec();
    let ifd: u32 = 12;
    out.extend_from_slice(&ifd.to_le_bytes());
    out.extend_from_slice(&[200, 40, 50, 0]);
    let entries: [(u16, u16, u32, u32); 9] = [
        (256, type_id, count, 0), // ImageWidth, offset patched below
        (257, 3, 1, 1),           // ImageLength
        (258, 3, 1, 8),           // BitsPerSample (one for all samples)
        (259, 3, 1, 1),           // Compression: none
        (262, 3, 1, 2),           // Photometric: RGB
        (273, 4, 1, 8),           // StripOffsets
        (277, 3, 1, 3),           // SamplesPerPixel
        (278, 3, 1, 1),           // RowsPerStrip
        (279, 4, 1, 3),           // StripByteCounts
    ];
    let list = ifd + 2 + 12 * entries.len() as u32 + 4;
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, values, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&values.to_le_bytes());
        let value = if tag == 256 { list } else { value };
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut values = vec![0u8; count as usize * size];
    values[0] = 1;
    out.extend_from_slice(&values);
    out
}
