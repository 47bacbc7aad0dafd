//! age's ASCII armor: a PEM block labelled `AGE ENCRYPTED FILE`.
//! [`armor`] writes it as the reference `age` command does; [`is_armored`]
//! and [`dearmor_in_place`] accept exactly what `age` 1.1.1 accepts (see
//! [`dearmor_in_place`] for the rules) and decode it toward the start of
//! the buffer it arrived in.

use super::{BYTES_PER_LINE, COLUMNS, Error};
use base64ct::{Base64, Encoding};

const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &[u8] = b"-----END AGE ENCRYPTED FILE-----";
/// Most bytes accepted after the end line. age reads up to 1024 and refuses
/// the file if it got that many.
const MAX_TRAILING: usize = 1023;

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

/// Whether `buf` is to be read as armor. Like the `age` command, only a
/// file that starts with the begin line is: anything else, leading
/// whitespace included, is read as a binary file (and fails as one).
pub(super) fn is_armored(buf: &[u8]) -> bool {
    buf.starts_with(ARMOR_BEGIN)
}

/// The line starting at `pos`, without its LF and one CR before that, and
/// the offset after it; `None` at the end of `buf`. The last line may lack
/// its LF.
fn line_at(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..).filter(|rest| !rest.is_empty())?;
    let (line, next) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, buf.len()),
    };
    Some((line.strip_suffix(b"\r").unwrap_or(line), next))
}

/// Decodes one line of the block into `out`; returns the byte count.
fn decode_line(line: &[u8], out: &mut [u8; BYTES_PER_LINE]) -> Result<usize, Error> {
    if line.len() > COLUMNS {
        return Err(Error::Armor);
    }
    // age decodes with Go's base64, which skips CR characters anywhere in
    // its input; they still count toward the column limit.
    let mut text = [0u8; COLUMNS];
    let mut len = 0;
    for &b in line.iter().filter(|&&b| b != b'\r') {
        text[len] = b;
        len += 1;
    }
    Base64::decode(&text[..len], out)
        .map(|bytes| bytes.len())
        .map_err(|_| Error::Armor)
}

/// Checks what follows the end line: fewer than 1024 bytes of UTF-8 text
/// that is all whitespace. That is age's `bytes.TrimSpace`, whose spaces
/// (Go's `unicode.IsSpace`) are the Unicode White_Space characters, as
/// Rust's `char::is_whitespace` are: `\v`, `\f` and U+00A0 count, a lone
/// Latin-1 0xA0 byte does not.
fn check_trailing(rest: &[u8]) -> Result<(), Error> {
    let blank = std::str::from_utf8(rest).is_ok_and(|s| s.chars().all(char::is_whitespace));
    if blank && rest.len() <= MAX_TRAILING {
        Ok(())
    } else {
        Err(Error::Armor)
    }
}

/// Decodes the armored file in `buf` toward its start and returns the
/// binary length. The rules are those of age 1.1.1's armor reader:
///
/// - the first line is exactly the begin line;
/// - every line ends in LF or CRLF, each on its own (endings may mix), and
///   the end line may have none;
/// - lines of 64 columns that decode to 48 bytes each, then at most one
///   shorter line (which may be empty), then the end line;
/// - padded, canonical base64; CR characters inside a line are skipped;
/// - after the end line, fewer than 1024 bytes, all whitespace.
pub(super) fn dearmor_in_place(buf: &mut [u8]) -> Result<usize, Error> {
    let (first, mut r) = line_at(buf, 0).ok_or(Error::Armor)?;
    if first != ARMOR_BEGIN {
        return Err(Error::Armor);
    }
    let mut w = 0;
    let mut short_line_seen = false;
    loop {
        let (line, next) = line_at(buf, r).ok_or(Error::Armor)?;
        if line == ARMOR_END {
            check_trailing(&buf[next..])?;
            return Ok(w);
        }
        if short_line_seen {
            return Err(Error::Armor);
        }
        let mut bytes = [0u8; BYTES_PER_LINE];
        let n = decode_line(line, &mut bytes)?;
        short_line_seen = n < BYTES_PER_LINE;
        // The decoded line is shorter than the text it came from, so the
        // write position stays behind the unread input.
        buf[w..w + n].copy_from_slice(&bytes[..n]);
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

    /// Runs each (name, input, expected length or refusal) case.
    fn check(data: &[u8], cases: Vec<(&str, Vec<u8>, bool)>) {
        for (name, mut input, opens) in cases {
            let got = dearmor_in_place(&mut input);
            if opens {
                assert_eq!(got, Ok(data.len()), "{name}");
                assert_eq!(&input[..data.len()], data, "{name}");
            } else {
                assert_eq!(got, Err(Error::Armor), "{name}");
            }
        }
    }

    #[test]
    fn armor_layout_rules() {
        let data: Vec<u8> = (0..100u8).collect();
        let good = armor(&data);
        let text = String::from_utf8(good.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        let join = |lines: &[&str]| lines.join("\n") + "\n";
        let with_line = |i: usize, line: &str| {
            let mut l = lines.clone();
            l[i] = line;
            join(&l).into_bytes()
        };
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("as made", good.clone(), true),
            ("crlf", text.replace('\n', "\r\n").into_bytes(), true),
            (
                "mixed line endings",
                text.replacen('\n', "\r\n", 2).into_bytes(),
                true,
            ),
            ("no final eol", good[..good.len() - 1].to_vec(), true),
            (
                "cr, no final lf",
                [&good[..good.len() - 1], b"\r"].concat(),
                true,
            ),
            (
                "trailing whitespace",
                format!("{text}\r\n \t\x0b\x0c\u{a0}\u{3000}\u{2028}\n").into_bytes(),
                true,
            ),
            (
                "1023 trailing spaces",
                format!("{text}{}", " ".repeat(MAX_TRAILING)).into_bytes(),
                true,
            ),
            (
                "1024 trailing spaces",
                format!("{text}{}", " ".repeat(MAX_TRAILING + 1)).into_bytes(),
                false,
            ),
            (
                "latin-1 no-break space after",
                [&good[..], b"\xa0"].concat(),
                false,
            ),
            (
                "byte order mark after",
                format!("{text}\u{feff}").into_bytes(),
                false,
            ),
            ("nul after", [&good[..], b"\0"].concat(), false),
            ("leading newline", format!("\n{text}").into_bytes(), false),
            ("leading space", format!(" {text}").into_bytes(), false),
            (
                "cr inside the short line",
                with_line(3, &format!("{}\r{}", &lines[3][..4], &lines[3][4..])),
                true,
            ),
            (
                "cr inside a full line",
                with_line(1, &format!("{}\r{}", &lines[1][..4], &lines[1][4..])),
                false,
            ),
            (
                "crcrlf ending",
                text.replacen('\n', "\r\r\n", 1).into_bytes(),
                false,
            ),
            (
                "begin lowercase",
                text.replace("BEGIN AGE", "begin AGE").into_bytes(),
                false,
            ),
            (
                "wrong label",
                text.replace("AGE ENCRYPTED FILE", "PGP MESSAGE")
                    .into_bytes(),
                false,
            ),
            (
                "space after begin",
                text.replacen("-----\n", "----- \n", 1).into_bytes(),
                false,
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
                false,
            ),
            (
                "empty line after the short line",
                join(&[lines[0], lines[1], lines[2], lines[3], "", lines[4]]).into_bytes(),
                false,
            ),
            (
                "empty line after begin",
                join(&[lines[0], "", lines[1], lines[2], lines[3], lines[4]]).into_bytes(),
                false,
            ),
            (
                "leading space in line",
                with_line(1, &format!(" {}", lines[1])),
                false,
            ),
            (
                "trailing space in line",
                with_line(1, &format!("{} ", lines[1])),
                false,
            ),
            (
                "trailing space on end line",
                format!("{} \n", text.trim_end()).into_bytes(),
                false,
            ),
            ("no end", join(&lines[..4]).into_bytes(), false),
            (
                "end twice",
                format!("{text}{}\n", lines[4]).into_bytes(),
                false,
            ),
            (
                "data after end",
                format!("{text}AAAA\n").into_bytes(),
                false,
            ),
            ("data before begin", format!("x{text}").into_bytes(), false),
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
                false,
            ),
            (
                "missing padding",
                text.replace("==\n", "\n").into_bytes(),
                false,
            ),
            ("begin only", format!("{}\n", lines[0]).into_bytes(), false),
            (
                "invalid character",
                text.replacen('A', "*", 1).into_bytes(),
                false,
            ),
        ];
        assert!(
            text.contains("==\n"),
            "100 bytes end in two padding characters"
        );
        check(&data, cases);
    }

    #[test]
    fn armor_full_last_line() {
        // 96 bytes: two full lines, then the end line directly, or after
        // one empty short line.
        let data = [0xabu8; 96];
        let good = armor(&data);
        let text = String::from_utf8(good.clone()).unwrap();
        assert_eq!(text.lines().count(), 4);
        let end = "-----END";
        let cases = vec![
            ("as made", good.clone(), true),
            (
                "empty line before end",
                text.replace(end, &format!("\n{end}")).into_bytes(),
                true,
            ),
            (
                "crlf empty line before end",
                text.replace(end, &format!("\r\n{end}")).into_bytes(),
                true,
            ),
            (
                "two empty lines before end",
                text.replace(end, &format!("\n\n{end}")).into_bytes(),
                false,
            ),
            (
                "space line before end",
                text.replace(end, &format!(" \n{end}")).into_bytes(),
                false,
            ),
        ];
        check(&data, cases);
        // No data at all: begin, end. It decodes to nothing, which is no
        // age file.
        let mut empty = armor(&[]);
        assert_eq!(dearmor_in_place(&mut empty), Ok(0));
    }

    #[test]
    fn only_a_file_starting_with_begin_is_armor() {
        let text = armor(b"x");
        assert!(is_armored(&text));
        for prefix in [&b"\n"[..], b" ", b"\r\n", b"\xef\xbb\xbf"] {
            assert!(!is_armored(&[prefix, &text].concat()), "{prefix:?}");
        }
    }
}
