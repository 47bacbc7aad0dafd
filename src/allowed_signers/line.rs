//! One line of an allowed_signers file: `principals [options] keytype
//! base64 [comment]`, read as ssh-keygen reads it
//! (`parse_principals_key_and_options`, `sshsigopt_parse`) except that
//! whatever ssh-keygen would skip with a warning, or accept only by quirk,
//! is an error here:
//!
//! - principals are one whitespace-free field or one wholly quoted field
//!   followed by whitespace (ssh-keygen also strips quotes from the middle
//!   of a field and needs no space after one), and every pattern in them is
//!   non-empty;
//! - options are `namespaces=`, `valid-after=` and `valid-before=` with
//!   quoted values, case-insensitive names, each at most once, separated by
//!   single commas; `cert-authority` is refused (certificates are not
//!   verified here), as is any other name;
//! - times must name UTC (see [`super::time`]) and valid-before must be
//!   after valid-after;
//! - the key must be one [`PublicKey::from_openssh`] accepts.

use super::pattern::{self, ListError};
use super::time;
use super::{MAX_LINE, Reason, Signer};
use crate::sshsig::{self, PublicKey, excerpt};

/// Key type names OpenSSH knows besides the supported ones: a field that is
/// one of them is a key (refused by name), not options.
const OTHER_KEY_TYPES: [&str; 15] = [
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-xmss@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ssh-xmss-cert-v01@openssh.com",
];

/// The options of one entry.
#[derive(Debug, Default)]
struct Options {
    namespaces: Option<String>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
}

/// Parses line number `number` (without its `\n`): `None` for a blank or
/// comment line.
pub(super) fn parse(line: &str, number: usize) -> Result<Option<Signer>, Reason> {
    if line.len() > MAX_LINE {
        return Err(Reason::TooLong);
    }
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Reason::Control);
    }
    let line = skip_space(line);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }

    let (principals, rest) = principals(line)?;
    if is_key_type(principals) {
        return Err(Reason::Principals("a key type where the principals belong"));
    }
    pattern::check_list(principals).map_err(|e| {
        Reason::Principals(match e {
            ListError::Empty => "empty principal pattern",
            ListError::TooLong => "principal pattern too long",
        })
    })?;
    let rest = skip_space(rest);
    let (first, _) = field(rest);
    let (options, rest) = if is_key_type(first) {
        (Options::default(), rest)
    } else {
        let (token, rest) = options_field(rest)?;
        (options(token)?, skip_space(rest))
    };
    let (kind, rest) = field(rest);
    let (base64, _comment) = field(skip_space(rest));
    if kind.is_empty() || base64.is_empty() {
        return Err(Reason::MissingKey);
    }
    if !is_key_type(kind) {
        return Err(Reason::UnsupportedKey(excerpt(kind.as_bytes())));
    }
    let key = PublicKey::from_openssh(kind, base64).map_err(|e| match e {
        sshsig::Error::UnsupportedKey(kind) => Reason::UnsupportedKey(kind),
        other => Reason::Key(other),
    })?;
    Ok(Some(Signer {
        line: number,
        principals: principals.to_owned(),
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        key,
    }))
}

fn skip_space(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// The text up to the first space or tab, and the rest from there.
fn field(s: &str) -> (&str, &str) {
    s.split_at(s.find([' ', '\t']).unwrap_or(s.len()))
}

fn is_key_type(s: &str) -> bool {
    [sshsig::ED25519, sshsig::SK_ED25519, sshsig::RSA].contains(&s) || OTHER_KEY_TYPES.contains(&s)
}

/// The principals field, without its quotes, and the rest of the line.
fn principals(line: &str) -> Result<(&str, &str), Reason> {
    let (principals, rest) = if let Some(quoted) = line.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or(Reason::Principals("unterminated quote"))?;
        let rest = &quoted[end + 1..];
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return Err(Reason::Principals("no space after the closing quote"));
        }
        (&quoted[..end], rest)
    } else {
        let (principals, rest) = field(line);
        if principals.contains('"') {
            return Err(Reason::Principals("quote inside the principals"));
        }
        (principals, rest)
    };
    if skip_space(rest).is_empty() {
        return Err(Reason::MissingKey);
    }
    Ok((principals, rest))
}

/// The options field: up to the first space or tab outside double quotes,
/// where `\"` does not end a quote (`sshkey_advance_past_options`).
fn options_field(s: &str) -> Result<(&str, &str), Reason> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => return Ok(s.split_at(i)),
            _ => {}
        }
    }
    if quoted {
        return Err(Reason::Options("unterminated quote"));
    }
    Ok((s, ""))
}

/// Parses `name="value",...`.
fn options(mut s: &str) -> Result<Options, Reason> {
    let mut out = Options::default();
    loop {
        let end = s.find(['=', ',']).unwrap_or(s.len());
        let name = &s[..end];
        let has_value = s[end..].starts_with('=');
        let lower = name.to_ascii_lowercase();
        let option: &'static str = match lower.as_str() {
            "" => return Err(Reason::Options("empty option")),
            "cert-authority" => return Err(Reason::UnsupportedOption("cert-authority")),
            "namespaces" => "namespaces",
            "valid-after" => "valid-after",
            "valid-before" => "valid-before",
            _ => return Err(Reason::UnknownOption(excerpt(name.as_bytes()))),
        };
        if !has_value {
            return Err(Reason::Options("option without =\"value\""));
        }
        let (value, rest) = dequote(&s[end + 1..])?;
        match option {
            "namespaces" => {
                if out.namespaces.is_some() {
                    return Err(Reason::DuplicateOption(option));
                }
                pattern::check_list(&value).map_err(Reason::Namespaces)?;
                out.namespaces = Some(value);
            }
            _ => {
                let slot = if option == "valid-after" {
                    &mut out.valid_after
                } else {
                    &mut out.valid_before
                };
                if slot.is_some() {
                    return Err(Reason::DuplicateOption(option));
                }
                *slot = Some(time::parse(&value).map_err(|error| Reason::Time { option, error })?);
            }
        }
        s = match rest.strip_prefix(',') {
            Some("") => return Err(Reason::Options("comma after the last option")),
            Some(next) => next,
            None if rest.is_empty() => break,
            None => return Err(Reason::Options("text after an option value")),
        };
    }
    if let (Some(after), Some(before)) = (out.valid_after, out.valid_before)
        && before <= after
    {
        return Err(Reason::TimeOrder);
    }
    Ok(out)
}

/// A double-quoted value, with `\"` standing for `"`, and what follows it.
fn dequote(s: &str) -> Result<(String, &str), Reason> {
    let body = s
        .strip_prefix('"')
        .ok_or(Reason::Options("option value not in double quotes"))?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' if body[i + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            _ => value.push(c),
        }
    }
    Err(Reason::Options("unterminated quote"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowed_signers::{ListError, TimeError};

    const ED: &str = include_str!("../../test-data/sshsig/keys/ed25519.pub");
    const RSA: &str = include_str!("../../test-data/sshsig/keys/rsa3072.pub");
    const SK: &str = include_str!("../../test-data/sshsig/keys/sk-ed25519.pub");
    const ECDSA: &str = include_str!("../../test-data/sshsig/keys/ecdsa.pub");
    const RSA1024: &str = include_str!("../../test-data/sshsig/keys/rsa1024.pub");

    /// `type base64` of a .pub file, without its comment.
    fn key(pub_line: &str) -> String {
        pub_line.split(' ').take(2).collect::<Vec<_>>().join(" ")
    }

    fn parse_one(line: &str) -> Result<Option<Signer>, Reason> {
        parse(line, 7)
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        for line in [
            "",
            " ",
            "\t \t",
            "\r",
            "# a comment",
            "  # indented",
            "#ssh-ed25519 x",
        ] {
            assert!(parse_one(line).unwrap().is_none(), "{line:?}");
        }
    }

    #[test]
    fn entries_parse_to_their_fields() {
        let ed = key(ED);
        // Line, then the principals, namespaces, valid-after and
        // valid-before it must yield.
        type Case<'a> = (String, &'a str, Option<&'a str>, Option<u64>, Option<u64>);
        let cases: Vec<Case> = vec![
            (
                format!("alice@example.com {ed}"),
                "alice@example.com",
                None,
                None,
                None,
            ),
            (format!("a,b\t{ed}\tcomment here"), "a,b", None, None, None),
            (format!("  a {ed}\r"), "a", None, None, None),
            (format!("\"q name,b\" {ed}"), "q name,b", None, None, None),
            (format!("\"q\"\t{ed}"), "q", None, None, None),
            (format!("*@x,!m@x {ed}"), "*@x,!m@x", None, None, None),
            (
                format!("a namespaces=\"colorsort,file\" {ed}"),
                "a",
                Some("colorsort,file"),
                None,
                None,
            ),
            (
                format!("a NameSpaces=\"x\\\"y\" {ed}"),
                "a",
                Some("x\"y"),
                None,
                None,
            ),
            (
                format!("a namespaces=\"with space\" {ed}"),
                "a",
                Some("with space"),
                None,
                None,
            ),
            (
                format!("a valid-after=\"20200101Z\",VALID-BEFORE=\"203001010000Z\" {ed}"),
                "a",
                None,
                Some(1_577_836_800),
                Some(1_893_456_000),
            ),
            (
                format!("a valid-before=\"20300101000001UTC\",namespaces=\"*\" {ed}"),
                "a",
                Some("*"),
                None,
                Some(1_893_456_001),
            ),
            (format!("r {}", key(RSA)), "r", None, None, None),
            (format!("s {}", key(SK)), "s", None, None, None),
        ];
        for (line, principals, namespaces, after, before) in cases {
            let signer = parse_one(&line)
                .unwrap_or_else(|e| panic!("{line}: {e}"))
                .unwrap();
            assert_eq!(signer.line, 7);
            assert_eq!(signer.principals, principals, "{line}");
            assert_eq!(signer.namespaces.as_deref(), namespaces, "{line}");
            assert_eq!(signer.valid_after, after, "{line}");
            assert_eq!(signer.valid_before, before, "{line}");
        }
        let signer = parse_one(&format!("s {}", key(SK))).unwrap().unwrap();
        assert_eq!(signer.key.algorithm(), crate::sshsig::SK_ED25519);
    }

    #[test]
    fn refused_lines_name_the_reason() {
        let ed = key(ED);
        let ed_b64 = ed.split(' ').nth(1).unwrap();
        let cases: Vec<(String, Reason)> = vec![
            ("alice".into(), Reason::MissingKey),
            ("alice ".into(), Reason::MissingKey),
            ("alice ssh-ed25519".into(), Reason::MissingKey),
            (
                format!("alice {ed_b64}"),
                Reason::UnknownOption(excerpt(ed_b64.as_bytes())),
            ),
            (
                ed.clone(),
                Reason::Principals("a key type where the principals belong"),
            ),
            ("alice namespaces=\"x\"".into(), Reason::MissingKey),
            (
                format!("\"alice {ed}"),
                Reason::Principals("unterminated quote"),
            ),
            (
                format!("\"alice\"x {ed}"),
                Reason::Principals("no space after the closing quote"),
            ),
            (
                format!("\"a\",b {ed}"),
                Reason::Principals("no space after the closing quote"),
            ),
            (
                format!("al\"ic\"e {ed}"),
                Reason::Principals("quote inside the principals"),
            ),
            (
                format!("a,,b {ed}"),
                Reason::Principals("empty principal pattern"),
            ),
            (
                format!("a, {ed}"),
                Reason::Principals("empty principal pattern"),
            ),
            (
                format!("\"\" {ed}"),
                Reason::Principals("empty principal pattern"),
            ),
            (
                format!("{} {ed}", "p".repeat(MAX_PATTERN_TEST)),
                Reason::Principals("principal pattern too long"),
            ),
            (
                format!("a cert-authority {ed}"),
                Reason::UnsupportedOption("cert-authority"),
            ),
            (
                format!("a Cert-Authority,namespaces=\"x\" {ed}"),
                Reason::UnsupportedOption("cert-authority"),
            ),
            (
                format!("a namespace=\"x\" {ed}"),
                Reason::UnknownOption("namespace".into()),
            ),
            (
                format!("a no-touch-required {ed}"),
                Reason::UnknownOption("no-touch-required".into()),
            ),
            (
                format!("a namespaces=x {ed}"),
                Reason::Options("option value not in double quotes"),
            ),
            (
                format!("a namespaces {ed}"),
                Reason::Options("option without =\"value\""),
            ),
            (
                format!("a namespaces=\"x {ed}"),
                Reason::Options("unterminated quote"),
            ),
            (
                format!("a namespaces=\"x\\\" {ed}"),
                Reason::Options("unterminated quote"),
            ),
            (
                format!("a ,namespaces=\"x\" {ed}"),
                Reason::Options("empty option"),
            ),
            (
                format!("a namespaces=\"x\", {ed}"),
                Reason::Options("comma after the last option"),
            ),
            (
                format!("a namespaces=\"x\",,valid-after=\"20200101Z\" {ed}"),
                Reason::Options("empty option"),
            ),
            (
                format!("a namespaces=\"x\"y {ed}"),
                Reason::Options("text after an option value"),
            ),
            (
                format!("a namespaces=\"x\",namespaces=\"y\" {ed}"),
                Reason::DuplicateOption("namespaces"),
            ),
            (
                format!("a valid-after=\"20200101Z\",Valid-After=\"20210101Z\" {ed}"),
                Reason::DuplicateOption("valid-after"),
            ),
            (
                format!("a namespaces=\"\" {ed}"),
                Reason::Namespaces(ListError::Empty),
            ),
            (
                format!("a namespaces=\"x,!\" {ed}"),
                Reason::Namespaces(ListError::Empty),
            ),
            (
                format!("a valid-before=\"20990101\" {ed}"),
                Reason::Time {
                    option: "valid-before",
                    error: TimeError::LocalTime,
                },
            ),
            (
                format!("a valid-after=\"20230229Z\" {ed}"),
                Reason::Time {
                    option: "valid-after",
                    error: TimeError::Calendar,
                },
            ),
            (
                format!("a valid-after=\"2023Z\" {ed}"),
                Reason::Time {
                    option: "valid-after",
                    error: TimeError::Format,
                },
            ),
            (
                format!("a valid-after=\"20300101Z\",valid-before=\"20300101Z\" {ed}"),
                Reason::TimeOrder,
            ),
            (
                format!("a valid-before=\"20200101Z\",valid-after=\"20300101Z\" {ed}"),
                Reason::TimeOrder,
            ),
            (
                format!("a {}", key(ECDSA)),
                Reason::UnsupportedKey("ecdsa-sha2-nistp256".into()),
            ),
            (
                format!("a namespaces=\"x\" {}", key(ECDSA)),
                Reason::UnsupportedKey("ecdsa-sha2-nistp256".into()),
            ),
            (
                format!("a ssh-ed25519-cert-v01@openssh.com {ed_b64}"),
                Reason::UnsupportedKey("ssh-ed25519-cert-v01@openssh.com".into()),
            ),
            (
                format!("a namespaces=\"x\" ssh-ed2551 {ed_b64}"),
                Reason::UnsupportedKey("ssh-ed2551".into()),
            ),
            (
                format!("a {}", key(RSA1024)),
                Reason::Key(crate::sshsig::Error::KeySize(1024)),
            ),
            (
                format!("a ssh-rsa {ed_b64}"),
                Reason::Key(crate::sshsig::Error::Malformed(
                    "key type differs from its blob",
                )),
            ),
            (
                format!("a ssh-ed25519 {}", &ed_b64[1..]),
                Reason::Key(crate::sshsig::Error::Malformed("key base64")),
            ),
            (format!("a {ed}\0"), Reason::Control),
            (format!("a {ed}\r\r"), Reason::Control),
            (format!("a\r{ed}"), Reason::Control),
            (format!("a {ed} {}", "c".repeat(MAX_LINE)), Reason::TooLong),
        ];
        for (line, want) in cases {
            assert_eq!(parse_one(&line).map(|_| ()), Err(want), "{line:?}");
        }
    }

    const MAX_PATTERN_TEST: usize = crate::allowed_signers::MAX_PATTERN + 1;
}
