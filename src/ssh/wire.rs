//! The SSH wire encoding (RFC 4251 §5) as key blobs, signature blobs and
//! SSHSIG blobs use it: a reader over a borrowed slice that checks every
//! length against what remains before slicing and allocates nothing, the
//! writers of `string` and `mpint`, and the bit length of an mpint's
//! magnitude, by which RSA key sizes are checked.

/// Reads wire fields front to back; `None` means the input ended early or,
/// for [`Reader::mpint`], that the field is not a minimal non-negative
/// mpint.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader(bytes)
    }

    /// The next `n` raw bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    /// A `string`: a u32 length and that many bytes.
    pub(crate) fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()?;
        self.bytes(usize::try_from(len).ok()?)
    }

    /// A non-negative, minimally encoded `mpint`; returns its magnitude
    /// without the sign byte, so with no leading zero byte. Zero (the empty
    /// string) is returned as an empty magnitude; a negative or padded
    /// encoding is `None`.
    pub(crate) fn mpint(&mut self) -> Option<&'a [u8]> {
        match self.string()? {
            [] => Some(&[]),
            [first, ..] if first & 0x80 != 0 => None,
            [0] => None,
            [0, second, ..] if second & 0x80 == 0 => None,
            [0, rest @ ..] => Some(rest),
            raw => Some(raw),
        }
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Appends a `string`. Callers give fields of a few KiB at most (key parts,
/// names, digests); a longer one's length would not fit the u32 and is
/// written as `u32::MAX`, which no reader accepts.
pub(crate) fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len());
    out.extend_from_slice(s);
}

/// Appends a non-negative integer, given as big-endian bytes that may have
/// leading zeros, as an `mpint`: minimal two's complement, so with a
/// leading zero byte exactly when the top bit is set.
pub(crate) fn put_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let start = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let magnitude = &magnitude[start..];
    let pad = magnitude.first().is_some_and(|&b| b & 0x80 != 0);
    put_len(out, magnitude.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(magnitude);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

/// Number of significant bits in a big-endian magnitude, leading zero bytes
/// allowed.
pub(crate) fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a read: what is read and what it must give.
    #[derive(Debug)]
    enum Step {
        U8(Option<u8>),
        U32(Option<u32>),
        Bytes(usize, Option<&'static [u8]>),
        String(Option<&'static [u8]>),
        Empty(bool),
    }

    #[test]
    fn reads_check_bounds_and_stop_at_truncation() {
        use Step::*;
        let cases: [(&str, &[u8], &[Step]); 11] = [
            (
                "nothing",
                &[],
                &[Empty(true), U8(None), U32(None), String(None)],
            ),
            (
                "zero bytes of nothing",
                &[],
                &[Bytes(0, Some(&[])), Empty(true)],
            ),
            (
                "u8 then rest",
                &[7, 1],
                &[U8(Some(7)), Empty(false), U8(Some(1)), Empty(true)],
            ),
            (
                "u32 big-endian",
                &[1, 2, 3, 4],
                &[U32(Some(0x0102_0304)), Empty(true)],
            ),
            ("u32 of three bytes", &[1, 2, 3], &[U32(None), U8(Some(1))]),
            (
                "bytes past the end",
                &[1, 2],
                &[Bytes(3, None), Bytes(2, Some(&[1, 2]))],
            ),
            (
                "strings in order",
                &[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 0],
                &[String(Some(b"hi")), String(Some(b"")), Empty(true)],
            ),
            (
                "string one byte short",
                &[0, 0, 0, 9, b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x'],
                &[String(None)],
            ),
            (
                "string length u32::MAX",
                &[0xff, 0xff, 0xff, 0xff, 0],
                &[String(None)],
            ),
            ("string length cut", &[0, 0, 1], &[String(None)]),
            (
                "string then truncated string",
                &[0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b'],
                &[String(Some(b"a")), String(None)],
            ),
        ];
        for (name, input, steps) in cases {
            let mut r = Reader::new(input);
            for (i, step) in steps.iter().enumerate() {
                let ok = match *step {
                    U8(want) => r.u8() == want,
                    U32(want) => r.u32() == want,
                    Bytes(n, want) => r.bytes(n) == want,
                    String(want) => r.string() == want,
                    Empty(want) => r.is_empty() == want,
                };
                assert!(ok, "{name}: step {i} ({step:?})");
            }
        }
    }

    /// A case's name, its wire bytes and the magnitude read, if any.
    type MpintCase = (&'static str, &'static [u8], Option<&'static [u8]>);

    #[test]
    fn mpints_read_must_be_non_negative_and_minimal() {
        let cases: [MpintCase; 9] = [
            ("zero", &[0, 0, 0, 0], Some(&[])),
            ("small", &[0, 0, 0, 1, 0x7f], Some(&[0x7f])),
            (
                "top bit behind a sign byte",
                &[0, 0, 0, 2, 0, 0x80],
                Some(&[0x80]),
            ),
            ("two bytes", &[0, 0, 0, 2, 0x01, 0x00], Some(&[0x01, 0x00])),
            ("negative", &[0, 0, 0, 1, 0x80], None),
            ("zero as one byte", &[0, 0, 0, 1, 0], None),
            ("needless sign byte", &[0, 0, 0, 2, 0, 0x7f], None),
            ("two sign bytes", &[0, 0, 0, 3, 0, 0, 0x80], None),
            ("truncated", &[0, 0, 0, 2, 0x01], None),
        ];
        for (name, wire, want) in cases {
            assert_eq!(Reader::new(wire).mpint(), want, "{name}");
        }
    }

    #[test]
    fn writes_are_length_prefixed_and_mpints_minimal() {
        let strings: [(&[u8], &[u8]); 2] = [
            (b"abc", &[0, 0, 0, 3, b'a', b'b', b'c']),
            (b"", &[0, 0, 0, 0]),
        ];
        for (s, want) in strings {
            let mut out = Vec::new();
            put_string(&mut out, s);
            assert_eq!(out, want, "string {s:?}");
        }
        let mpints: [(&[u8], &[u8]); 7] = [
            (&[], &[0, 0, 0, 0]),
            (&[0, 0], &[0, 0, 0, 0]),
            (&[0x7f], &[0, 0, 0, 1, 0x7f]),
            (&[0, 0, 0x7f], &[0, 0, 0, 1, 0x7f]),
            (&[0x80], &[0, 0, 0, 2, 0, 0x80]),
            (&[0, 0xff, 0x01], &[0, 0, 0, 3, 0, 0xff, 0x01]),
            (&[0x01, 0x00, 0x01], &[0, 0, 0, 3, 0x01, 0x00, 0x01]),
        ];
        for (magnitude, want) in mpints {
            let mut out = Vec::new();
            put_mpint(&mut out, magnitude);
            assert_eq!(out, want, "mpint {magnitude:?}");
            // What is written reads back as the magnitude without its
            // leading zeros.
            let start = magnitude.iter().position(|&b| b != 0);
            let trimmed = start.map_or(&[][..], |i| &magnitude[i..]);
            assert_eq!(Reader::new(&out).mpint(), Some(trimmed), "{magnitude:?}");
        }
    }

    #[test]
    fn bit_lengths_skip_leading_zeros() {
        let cases: [(&[u8], usize); 8] = [
            (&[], 0),
            (&[0, 0], 0),
            (&[1], 1),
            (&[0x80], 8),
            (&[0xff], 8),
            (&[0x01, 0x00], 9),
            (&[0, 0x01, 0xff], 9),
            (&[0x80, 0, 0, 0], 32),
        ];
        for (be, want) in cases {
            assert_eq!(bit_length(be), want, "{be:?}");
        }
    }
}
