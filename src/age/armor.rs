//! age's ASCII armor: a strict PEM block labelled `AGE ENCRYPTED FILE`.
//! [`armor`] writes it; [`dearmor_in_place`] accepts exactly the layout an
//! encoder produces (LF or CRLF throughout, whitespace only around the
//! block) and decodes it toward the start of the buffer it arrived in.

use super::{BYTES_PER_LINE, COLUMNS, Error};
use base64ct::{Base64, Encoding};

const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &[u8] = b"-----END AGE ENCRYPTED FILE-----";

/// Encodes a binary age file in age's ASCII armor: a strict PEM block with
/// label `AGE ENCRYPTED FILE`, padded base64 in 64-column lines, LF line
/// endings and a final LF.
pub fn armor(binary: &[u8]) -> Vec<u8> {
    let lines = binary.len().div_ceil(BYTES_PER_LINE);
    let mut out =
        Vec::with_capacity(ARMOR_BEGIN.len() + ARMOR_END.len() + 2 + lines * (COLUMNS + 1));
    out.extend_from_slice(ARMOR_BEGIN);
    out.push(b'\n');
    let mut line = [0u8; COLUMNS];
    for chunk in binary.chunks(BYTES_PER_LINE) {
        // A 48-byte chunk always fits the 64-character line.
        if let Ok(text) = Base64::encode(chunk, &mut line) {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
    }
    out.extend_from_slice(ARMOR_END);
    out.push(b'\n');
    out
}

fn is_armor_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Armored files start with the begin line, after optional whitespace; a
/// binary file starts with its version line, never with whitespace.
pub(super) fn is_armored(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| !is_armor_space(b))
        .unwrap_or(buf.len());
    buf[start..].starts_with(ARMOR_BEGIN)
}

/// Decodes the armored file in `buf` toward its start and returns the
/// binary length. The layout must be exactly what an encoder produces: the
/// begin line, full 64-column lines, one shorter final line (or none, if the
/// last full line ends the data), the end line; one line ending (LF or
/// CRLF) throughout; only whitespace before and after.
pub(super) fn dearmor_in_place(buf: &mut [u8]) -> Result<usize, Error> {
    let mut r = buf
        .iter()
        .position(|&b| !is_armor_space(b))
        .unwrap_or(buf.len());
    if !buf[r..].starts_with(ARMOR_BEGIN) {
        return Err(Error::Armor);
    }
    r += ARMOR_BEGIN.len();
    let crlf = match buf.get(r..) {
        Some([b'\n', ..]) => false,
        Some([b'\r', b'\n', ..]) => true,
        _ => return Err(Error::Armor),
    };
    r += if crlf { 2 } else { 1 };

    let mut w = 0;
    let mut short_line_seen = false;
    loop {
        let rest = &buf[r..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                let line = if crlf {
                    line.strip_suffix(b"\r").ok_or(Error::Armor)?
                } else {
                    line
                };
                (line, r + i + 1)
            }
            // Only the end line may lack its line ending.
            None if rest == ARMOR_END => (rest, buf.len()),
            None => return Err(Error::Armor),
        };
        if line == ARMOR_END {
            if w == 0 {
                return Err(Error::Armor);
            }
            if !buf[next..].iter().all(|&b| is_armor_space(b)) {
                return Err(Error::Armor);
            }
            return Ok(w);
        }
        if short_line_seen || line.is_empty() || line.len() > COLUMNS {
            return Err(Error::Armor);
        }
        let mut bytes = [0u8; BYTES_PER_LINE];
        let bytes = Base64::decode(line, &mut bytes).map_err(|_| Error::Armor)?;
        if bytes.len() < BYTES_PER_LINE {
            short_line_seen = true;
        }
        // The decoded line is shorter than the text it came from, so the
        // write position stays behind the unread input.
        let n = bytes.len();
        buf[w..w + n].copy_from_slice(bytes);
        w += n;
        r = next;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::XorShift;
    use super::*;

    #[test]
    fn armor_round_trip() {
        let mut rng = XorShift(42);
        for len in [1, 2, 3, 47, 48, 49, 95, 96, 97, 1000] {
            let data = rng.bytes(len);
            let mut text = armor(&data);
            assert!(text.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----\n"));
            assert!(text.ends_with(b"\n-----END AGE ENCRYPTED FILE-----\n"));
            assert!(text.split(|&b| b == b'\n').all(|l| l.len() <= COLUMNS + 2));
            let n = dearmor_in_place(&mut text).unwrap();
            assert_eq!(&text[..n], data.as_slice(), "len {len}");
        }
    }

    #[test]
    fn armor_layout_rules() {
        let data: Vec<u8> = (0..100u8).collect();
        let good = armor(&data);
        let text = String::from_utf8(good.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let join = |lines: &[&str]| lines.join("\n") + "\n";
        let cases: Vec<(&str, Vec<u8>, Option<usize>)> = vec![
            ("as made", good.clone(), Some(100)),
            ("crlf", text.replace('\n', "\r\n").into_bytes(), Some(100)),
            ("no final eol", good[..good.len() - 1].to_vec(), Some(100)),
            (
                "surrounding whitespace",
                format!(" \n\t{text}\r\n \n").into_bytes(),
                Some(100),
            ),
            (
                "begin lowercase",
                text.replace("BEGIN AGE", "begin AGE").into_bytes(),
                None,
            ),
            (
                "wrong label",
                text.replace("AGE ENCRYPTED FILE", "PGP MESSAGE")
                    .into_bytes(),
                None,
            ),
            (
                "space after begin",
                text.replacen("-----\n", "----- \n", 1).into_bytes(),
                None,
            ),
            (
                "header line",
                join(&[
                    lines[0],
                    "Comment: x",
                    lines[1],
                    lines[2],
                    lines[3],
                    lines[4],
                ])
                .into_bytes(),
                None,
            ),
            (
                "empty line before end",
                join(&[lines[0], lines[1], lines[2], lines[3], "", lines[4]]).into_bytes(),
                None,
            ),
            (
                "empty line after begin",
                join(&[lines[0], "", lines[1], lines[2], lines[3], lines[4]]).into_bytes(),
                None,
            ),
            (
                "leading space in line",
                join(&[
                    lines[0],
                    &format!(" {}", lines[1]),
                    lines[2],
                    lines[3],
                    lines[4],
                ])
                .into_bytes(),
                None,
            ),
            (
                "trailing space in line",
                join(&[
                    lines[0],
                    &format!("{} ", lines[1]),
                    lines[2],
                    lines[3],
                    lines[4],
                ])
                .into_bytes(),
                None,
            ),
            (
                "trailing space on end line",
                format!("{} \n", text.trim_end()).into_bytes(),
                None,
            ),
            ("no end", join(&lines[..4]).into_bytes(), None),
            (
                "end twice",
                format!("{text}{}\n", lines[4]).into_bytes(),
                None,
            ),
            ("data after end", format!("{text}AAAA\n").into_bytes(), None),
            ("data before begin", format!("x{text}").into_bytes(), None),
            (
                "short line first",
                join(&[
                    lines[0],
                    &lines[1][..60],
                    &format!("{}{}", &lines[1][60..], lines[2]),
                    lines[3],
                    lines[4],
                ])
                .into_bytes(),
                None,
            ),
            (
                "missing padding",
                text.replace("==\n", "\n").into_bytes(),
                None,
            ),
            ("begin only", format!("{}\n", lines[0]).into_bytes(), None),
            (
                "begin and end",
                join(&[lines[0], lines[4]]).into_bytes(),
                None,
            ),
            (
                "invalid character",
                text.replacen('A', "*", 1).into_bytes(),
                None,
            ),
        ];
        assert!(
            text.contains("==\n"),
            "100 bytes end in two padding characters"
        );
        for (name, mut input, want) in cases {
            let got = dearmor_in_place(&mut input);
            match want {
                Some(n) => {
                    assert_eq!(got, Ok(n), "{name}");
                    assert_eq!(&input[..n], data.as_slice(), "{name}");
                }
                None => assert_eq!(got, Err(Error::Armor), "{name}"),
            }
        }
    }

    #[test]
    fn armor_full_last_line() {
        // 96 bytes: two full lines, then the end line directly.
        let data = [0xabu8; 96];
        let mut text = armor(&data);
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 4);
        assert_eq!(dearmor_in_place(&mut text), Ok(96));
    }
}
