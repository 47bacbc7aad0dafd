//! The SSH wire encoding (RFC 4251 §5) as SSHSIG blobs, key blobs and
//! signature blobs use it: a reader over a borrowed slice that checks every
//! length against what remains before slicing and allocates nothing, and the
//! one writer the signed data needs.

/// Reads wire fields front to back; `None` means the input ended early.
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
    /// without the sign byte. Zero (the empty string) is returned as an
    /// empty magnitude; a negative or padded encoding is `None`.
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

/// Appends a `string`. Only ever given short fields (a namespace, a hash
/// name, a digest), whose lengths fit a u32.
pub(crate) fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_in_order_and_refuse_to_overrun() {
        let mut r = Reader::new(&[7, 0, 0, 0, 2, b'h', b'i', 0, 0, 0, 9, b'x']);
        assert_eq!(r.u8(), Some(7));
        assert_eq!(r.string(), Some(&b"hi"[..]));
        assert_eq!(r.string(), None, "length 9 with one byte left");
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.string(), None);
        let mut r = Reader::new(&[0, 0]);
        assert_eq!(r.u32(), None);
        assert_eq!(Reader::new(&[]).u8(), None);
        assert!(Reader::new(&[]).is_empty());
    }

    #[test]
    fn mpints_must_be_positive_and_minimal() {
        let cases: [(&[u8], Option<&[u8]>); 7] = [
            (&[0, 0, 0, 0], Some(&[])),
            (&[0, 0, 0, 1, 0x7f], Some(&[0x7f])),
            (&[0, 0, 0, 2, 0, 0x80], Some(&[0x80])),
            (&[0, 0, 0, 1, 0x80], None),
            (&[0, 0, 0, 1, 0], None),
            (&[0, 0, 0, 2, 0, 0x7f], None),
            (&[0, 0, 0, 3, 0, 0, 0x80], None),
        ];
        for (wire, want) in cases {
            assert_eq!(Reader::new(wire).mpint(), want, "{wire:?}");
        }
    }

    #[test]
    fn put_string_writes_length_then_bytes() {
        let mut out = Vec::new();
        put_string(&mut out, b"abc");
        put_string(&mut out, b"");
        assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
    }
}
