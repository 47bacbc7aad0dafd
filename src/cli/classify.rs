//! `colorsort classify`: classifies local images exactly as the server
//! does, without a server, and prints one line per file.

use super::args::{self, Args, Flags, Item, unknown};
use super::exit::{EXIT_FAILED, EXIT_OK, Error, print};
use super::walk::walk;
use crate::classify;
use crate::config;
use std::io::{self, Write};
use std::path::PathBuf;

/// Help for `colorsort classify`.
pub(super) const USAGE: &str = "\
Usage: colorsort classify [--max-pixels N] FILE|DIR...

Classifies local images exactly as the server does and prints one line per
file: FILE CLASS r=R g=G b=B. Folders are walked; files that are not images
are reported as errors.
";

const FLAGS: Flags = Flags {
    values: &["--max-pixels"],
    switches: &[],
};

/// Runs `colorsort classify`.
pub(super) fn run(mut args: Args) -> Result<u8, Error> {
    let mut limits = classify::Limits::new(config::DEFAULT_MAX_PIXELS);
    let mut paths = Vec::new();
    while let Some(item) = args.next_item(&FLAGS)? {
        match item {
            Item::Help => return print(USAGE).map(|()| EXIT_OK),
            Item::Value(f @ "--max-pixels", v) => {
                limits = classify::Limits::new(args::positive(f, &v)?);
            }
            Item::Value(f, _) | Item::Switch(f) => return Err(unknown(f)),
            Item::Positional(p) => paths.push(PathBuf::from(p)),
        }
    }
    if paths.is_empty() {
        return Err(Error::Usage(
            "classify needs at least one FILE or DIR".into(),
        ));
    }
    let mut failed = 0;
    for path in walk(&paths, &mut |path, e| {
        failed += 1;
        let _ = writeln!(io::stderr(), "colorsort: {}: {e}", path.display());
    }) {
        let result = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| classify::classify(&bytes, &limits).map_err(|e| e.to_string()));
        match result {
            Ok(v) => {
                let [r, g, b] = v.mean;
                print(&format!(
                    "{} {} r={r:.1} g={g:.1} b={b:.1}\n",
                    path.display(),
                    v.class.as_str()
                ))?;
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(io::stderr(), "colorsort: {}: {e}", path.display());
            }
        }
    }
    Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
}
