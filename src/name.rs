//! File names: which names a client may give an upload, what they become on
//! disk, and how a taken name gets a unique variant.
//!
//! A stored name is a safe basename: only `A-Z a-z 0-9 . _ -`, not starting
//! with a dot or a dash, at most [`MAX_NAME`] bytes. It can never name a
//! folder, a parent or a hidden file, so it cannot escape its folder.
//!
//! The server refuses outright (`ERR bad-name`) a name that is not plain text
//! or that tries to be a path: empty, over [`MAX_NAME`] bytes, not UTF-8, a
//! control character or NUL, a `/` or `\`, `.`, `..`, or a leading dot. Any
//! other name is accepted and made safe: each character outside the safe set
//! becomes `_` (`café (1).jpg` → `caf___1_.jpg`), and a name left with no
//! letter or digit is replaced by one derived from the content.

use std::fmt;

/// Longest name, in bytes, given or stored.
pub const MAX_NAME: usize = 128;

/// Why a client-supplied name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME`] bytes.
    TooLong,
    /// The name is not valid UTF-8.
    NotUtf8,
    /// The name holds a control character or NUL.
    Control,
    /// The name holds `/` or `\`, or is `.` or `..`.
    Path,
    /// The name starts with a dot.
    Hidden,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Empty => "name is empty",
            Error::TooLong => return write!(f, "name is longer than {MAX_NAME} bytes"),
            Error::NotUtf8 => "name is not UTF-8",
            Error::Control => "name holds a control character",
            Error::Path => "name must be a plain file name, not a path",
            Error::Hidden => "name must not start with a dot",
        })
    }
}

impl std::error::Error for Error {}

/// A name the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A safe name made from the client's.
    Given(String),
    /// The client's name had nothing usable in it; the store derives one
    /// from the content.
    Generated,
}

impl Name {
    /// Checks a client-supplied name and makes it safe; see the module
    /// documentation for the rules.
    pub fn parse(raw: &[u8]) -> Result<Name, Error> {
        if raw.is_empty() {
            return Err(Error::Empty);
        }
        if raw.len() > MAX_NAME {
            return Err(Error::TooLong);
        }
        let text = std::str::from_utf8(raw).map_err(|_| Error::NotUtf8)?;
        if text.chars().any(char::is_control) {
            return Err(Error::Control);
        }
        if text.contains(['/', '\\']) || text == "." || text == ".." {
            return Err(Error::Path);
        }
        if text.starts_with('.') {
            return Err(Error::Hidden);
        }
        Ok(match sanitize(text) {
            Some(safe) => Name::Given(safe),
            None => Name::Generated,
        })
    }
}

/// Makes any text a safe basename, or `None` if nothing usable is left: each
/// character outside the safe set becomes `_`, leading dots and dashes go,
/// and the result is cut to [`MAX_NAME`] bytes, keeping the extension. The
/// client uses this on local file names before sending them.
pub fn sanitize(text: &str) -> Option<String> {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(['.', '-']);
    if !trimmed.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(fit(trimmed, "", MAX_NAME))
}

/// `stem` + `suffix` + extension, cutting the stem so the whole fits in
/// `max` bytes. Safe names are ASCII, so any byte is a character boundary.
fn fit(name: &str, suffix: &str, max: usize) -> String {
    let (stem, ext) = split_extension(name);
    let room = max.saturating_sub(suffix.len() + ext.len()).max(1);
    let stem = &stem[..stem.len().min(room)];
    format!("{stem}{suffix}{ext}")
}

/// Splits `photo.tar.gz` into `photo.tar` and `.gz`. A name with no dot, or
/// with only a leading one, has no extension. Extensions over 16 bytes are
/// treated as part of the stem, so cutting never eats a whole name.
pub fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 16 => name.split_at(i),
        _ => (name, ""),
    }
}

/// The candidates for storing `name` when it is taken: `name`, then
/// `stem-1.ext` to `stem-99.ext`. All fit in [`MAX_NAME`] bytes. The store
/// tries them in order, and falls back to random suffixes after.
pub fn variants(name: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(name.to_string())
        .chain((1..100).map(move |n| fit(name, &format!("-{n}"), MAX_NAME)))
}

/// `name` with an arbitrary `-suffix` inserted before the extension, fitted
/// to [`MAX_NAME`] bytes.
pub fn with_suffix(name: &str, suffix: &str) -> String {
    fit(name, &format!("-{suffix}"), MAX_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_names() {
        let long = vec![b'a'; 300];
        let cases: &[(&[u8], Error)] = &[
            (b"", Error::Empty),
            (&long, Error::TooLong),
            (&[b'a'; 129], Error::TooLong),
            (b"\xff\xfe.png", Error::NotUtf8),
            (b"a\x00b", Error::Control),
            (b"a\rb", Error::Control),
            (b"a\x7fb", Error::Control),
            (b"../../etc/passwd", Error::Path),
            (b"/abs", Error::Path),
            (b"a/b", Error::Path),
            (b"a\\b", Error::Path),
            (b".", Error::Path),
            (b"..", Error::Path),
            (b".hidden", Error::Hidden),
            (b"..png", Error::Hidden),
        ];
        for (raw, want) in cases {
            assert_eq!(
                Name::parse(raw),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn accepted_names() {
        let cases: &[(&str, Name)] = &[
            ("photo.jpg", Name::Given("photo.jpg".into())),
            (
                "IMG_0001-final.JPG",
                Name::Given("IMG_0001-final.JPG".into()),
            ),
            ("café(1).jpg", Name::Given("caf__1_.jpg".into())),
            ("-rf", Name::Given("rf".into())),
            ("a..b", Name::Given("a..b".into())),
            ("日本", Name::Generated),
            ("---", Name::Generated),
            ("_.", Name::Generated),
        ];
        for (raw, want) in cases {
            assert_eq!(Name::parse(raw.as_bytes()).as_ref(), Ok(want), "{raw:?}");
        }
        let exactly = "a".repeat(MAX_NAME);
        assert_eq!(
            Name::parse(exactly.as_bytes()),
            Ok(Name::Given(exactly.clone()))
        );
    }

    #[test]
    fn sanitize_keeps_extension_when_cutting() {
        let long = format!("{}.jpeg", "x".repeat(300));
        let s = sanitize(&long).unwrap();
        assert_eq!(s.len(), MAX_NAME);
        assert!(s.ends_with("x.jpeg"));
        assert_eq!(
            sanitize("my holiday photo.png").as_deref(),
            Some("my_holiday_photo.png")
        );
        assert_eq!(sanitize(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(sanitize("..."), None);
    }

    #[test]
    fn variants_are_unique_and_fit() {
        let name = format!("{}.png", "n".repeat(MAX_NAME - 4));
        let all: Vec<String> = variants(&name).collect();
        assert_eq!(all.len(), 100);
        assert_eq!(all[0], name);
        assert!(all[1].ends_with("-1.png"));
        assert!(all.iter().all(
            |v| v.len() <= MAX_NAME && Name::parse(v.as_bytes()) == Ok(Name::Given(v.clone()))
        ));
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        assert_eq!(with_suffix("a.tar.gz", "x1"), "a.tar-x1.gz");
        assert_eq!(variants("noext").nth(2).unwrap(), "noext-2");
    }
}
