//! The command-line lexer that every subcommand reads its arguments with.
//! Flags are `--flag VALUE` or `--flag=VALUE`, `--` ends them, and
//! everything else is positional. A subcommand names the flags it takes in
//! [`Flags`] and gets back [`Item`]s: `--help` and `-h` are recognised,
//! values are fetched, and unknown flags, missing values and values given to
//! switches are refused with the same usage errors everywhere.
//!
//! [`Args`], [`Flags`] and [`Item`] are public so that the benchmarks
//! (`benches/bench/`) read their command line with this same lexer.

use super::exit::{Error, print};
use crate::client;
use std::ffi::OsString;
use std::str::FromStr;

/// A cursor over the arguments after the program name.
pub struct Args {
    items: std::vec::IntoIter<OsString>,
    /// Set after `--`: everything left is positional.
    positional_only: bool,
}

/// One command-line item, before it is checked against [`Flags`].
enum Arg {
    /// `--name` or `-n`, with the value attached by `=` if there was one.
    Flag(String, Option<String>),
    /// Anything else.
    Positional(OsString),
}

/// The flags a subcommand takes, besides `--help` and `-h`.
pub struct Flags<'a> {
    /// Flags followed by a value.
    pub values: &'a [&'a str],
    /// Flags that take no value.
    pub switches: &'a [&'a str],
}

/// One item of a subcommand's command line.
pub enum Item<'a> {
    /// `--help` or `-h` (with any value).
    Help,
    /// One of [`Flags::values`], as given, and its value.
    Value(&'a str, String),
    /// One of [`Flags::switches`], as given.
    Switch(&'a str),
    /// Anything else.
    Positional(OsString),
}

impl Args {
    /// Wraps the arguments after the program name.
    pub fn new(args: Vec<OsString>) -> Args {
        Args {
            items: args.into_iter(),
            positional_only: false,
        }
    }

    /// The next item exactly as given, flag or not: a command's name.
    pub(super) fn word(&mut self) -> Option<OsString> {
        self.items.next()
    }

    /// The next item, checked against `flags`, or `None` at the end; a
    /// usage error for an unknown flag, a missing value, or a value given
    /// to a switch.
    pub fn next_item<'a>(&mut self, flags: &Flags<'a>) -> Result<Option<Item<'a>>, Error> {
        let (flag, attached) = match self.next_arg()? {
            None => return Ok(None),
            Some(Arg::Positional(p)) => return Ok(Some(Item::Positional(p))),
            Some(Arg::Flag(f, _)) if f == "--help" || f == "-h" => return Ok(Some(Item::Help)),
            Some(Arg::Flag(f, attached)) => (f, attached),
        };
        if let Some(&name) = flags.values.iter().find(|&&name| name == flag) {
            return Ok(Some(Item::Value(name, self.value(&flag, attached)?)));
        }
        if let Some(&name) = flags.switches.iter().find(|&&name| name == flag) {
            no_value(&flag, &attached)?;
            return Ok(Some(Item::Switch(name)));
        }
        Err(unknown(&flag))
    }

    /// The next item, or `None` at the end.
    fn next_arg(&mut self) -> Result<Option<Arg>, Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        if self.positional_only {
            return Ok(Some(Arg::Positional(item)));
        }
        let Some(text) = item.to_str() else {
            return Ok(Some(Arg::Positional(item)));
        };
        if text == "--" {
            self.positional_only = true;
            return self.next_arg();
        }
        if !text.starts_with('-') || text == "-" {
            return Ok(Some(Arg::Positional(item)));
        }
        Ok(Some(match text.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                Arg::Flag(flag.to_string(), Some(value.to_string()))
            }
            _ => Arg::Flag(text.to_string(), None),
        }))
    }

    /// The value of a flag: the part after `=`, or the next item.
    fn value(&mut self, flag: &str, attached: Option<String>) -> Result<String, Error> {
        if let Some(v) = attached {
            return Ok(v);
        }
        match self.items.next().map(OsString::into_string) {
            Some(Ok(v)) => Ok(v),
            Some(Err(_)) => Err(Error::Usage(format!("{flag}: value is not valid UTF-8"))),
            None => Err(Error::Usage(format!("{flag} needs a value"))),
        }
    }
}

/// Refuses an unexpected flag.
pub(super) fn unknown(flag: &str) -> Error {
    Error::Usage(format!("unknown option {flag}; see --help"))
}

/// Refuses a value given to a flag that takes none.
fn no_value(flag: &str, attached: &Option<String>) -> Result<(), Error> {
    match attached {
        Some(_) => Err(Error::Usage(format!("{flag} takes no value"))),
        None => Ok(()),
    }
}

/// The value of `flag` as a number above zero.
pub(super) fn positive<T: FromStr + PartialOrd + From<u8>>(
    flag: &str,
    value: &str,
) -> Result<T, Error> {
    value
        .parse()
        .ok()
        .filter(|n| *n > T::from(0))
        .ok_or_else(|| Error::Usage(format!("{flag}: {value:?} is not a positive number")))
}

/// Parses the `--host` and `--help` options common to the small client
/// commands, plus any boolean flags in `switches`, which are returned set or
/// not in order. `None` means help was asked for and printed.
pub(super) fn client_args<const N: usize>(
    mut args: Args,
    usage: &str,
    switches: [&str; N],
) -> Result<Option<(String, [bool; N])>, Error> {
    let mut host = client::default_host();
    let mut set = [false; N];
    let flags = Flags {
        values: &["--host"],
        switches: &switches,
    };
    while let Some(item) = args.next_item(&flags)? {
        match item {
            Item::Help => {
                print(usage)?;
                return Ok(None);
            }
            Item::Value(_host, value) => host = value,
            Item::Switch(f) => {
                let i = switches
                    .iter()
                    .position(|s| *s == f)
                    .ok_or_else(|| unknown(f))?;
                set[i] = true;
            }
            Item::Positional(p) => return Err(Error::Usage(format!("unexpected argument {p:?}"))),
        }
    }
    Ok(Some((host, set)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    #[test]
    fn args_split_flags_values_and_positionals() {
        let mut a = Args::new(os(&["--host=h:1", "-j", "4", "file", "--", "--not-a-flag"]));
        let mut seen = Vec::new();
        while let Some(arg) = a.next_arg().unwrap() {
            seen.push(match arg {
                Arg::Flag(f, attached) => {
                    let v = a.value(&f, attached).unwrap();
                    format!("{f}={v}")
                }
                Arg::Positional(p) => p.into_string().unwrap(),
            });
        }
        assert_eq!(seen, ["--host=h:1", "-j=4", "file", "--not-a-flag"]);
    }

    #[test]
    fn missing_values_and_unknown_flags_are_usage_errors() {
        let mut a = Args::new(os(&["--host"]));
        let Some(Arg::Flag(f, attached)) = a.next_arg().unwrap() else {
            panic!()
        };
        assert!(matches!(a.value(&f, attached), Err(Error::Usage(_))));
        assert!(matches!(
            client_args(Args::new(os(&["--frob"])), "", []),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            client_args(Args::new(os(&["--fingerprint=yes"])), "", ["--fingerprint"]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            client_args(Args::new(os(&["extra"])), "", []),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn items_follow_the_flags() {
        let flags = Flags {
            values: &["--host", "-j"],
            switches: &["--json"],
        };
        // The arguments, then the items they give or the usage error.
        type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], &'a str>);
        let cases: &[Case] = &[
            (&["--host", "h:1", "-j", "2"], Ok(&["--host=h:1", "-j=2"])),
            (
                &["--host=h:1", "-j", "--json"],
                Ok(&["--host=h:1", "-j=--json"]),
            ),
            (
                &["--json", "a", "-", "--", "-j"],
                Ok(&["--json", "a", "-", "-j"]),
            ),
            (&["--host=a=b"], Ok(&["--host=a=b"])),
            (&["--help=x"], Ok(&["help"])),
            (&["-h", "--frob"], Ok(&["help"])),
            (&["--json=yes"], Err("--json takes no value")),
            (&["--frob=yes"], Err("unknown option --frob; see --help")),
            (&["-j=2"], Err("unknown option -j=2; see --help")),
            (&["-jx"], Err("unknown option -jx; see --help")),
            (&["a", "--host"], Err("--host needs a value")),
        ];
        for (input, want) in cases {
            let mut args = Args::new(os(input));
            let mut seen = Vec::new();
            let got = loop {
                match args.next_item(&flags) {
                    Ok(Some(Item::Help)) => {
                        seen.push("help".to_string());
                        break Ok(seen);
                    }
                    Ok(Some(Item::Value(f, v))) => seen.push(format!("{f}={v}")),
                    Ok(Some(Item::Switch(f))) => seen.push(f.to_string()),
                    Ok(Some(Item::Positional(p))) => seen.push(p.into_string().unwrap()),
                    Ok(None) => break Ok(seen),
                    Err(Error::Usage(m)) => break Err(m),
                    Err(e) => panic!("{input:?}: {e}"),
                }
            };
            let want = want
                .map(|items| items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map_err(str::to_string);
            assert_eq!(got, want, "{input:?}");
        }
    }
}
