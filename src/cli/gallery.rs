//! `colorsort gallery`: writes the static HTML page of a data directory,
//! to a file or to stdout, with the thumbnails it needs made first, and
//! the allowed_signers file that names who signed the trusted images.

use super::args::{self, Args, Flags, Item, unknown};
use super::exit::{EXIT_OK, Error, print};
use crate::allowed_signers::AllowedSigners;
use crate::config;
use crate::gallery;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Help for `colorsort gallery`.
pub(super) const USAGE: &str = "\
Usage: colorsort gallery [--data DIR] [--out FILE|-] [-j N] [--allowed-signers FILE]

Writes a static HTML page of the data directory: one section per folder with
its count, and for each image a thumbnail, a swatch of its mean colour, its
name and its means, and who signed it if the server kept its signature.
Thumbnails are cached in DIR/.thumbs/ and made only for new or changed images.
  --data DIR     data directory [$COLORSORT_DATA or /data]
  --out FILE     the page [DIR/gallery.html]; `-` writes it to stdout. A page
                 outside DIR, or on stdout, embeds its thumbnails, so it
                 stands alone; one inside DIR links them and the images.
  -j, --jobs N   threads for new thumbnails [number of CPUs]
  --allowed-signers FILE
                 names signers by the principal this file lists for their
                 key [$COLORSORT_ALLOWED_SIGNERS or DIR/allowed_signers if
                 it exists]; signers it does not list show their key's
                 fingerprint

From the container's volume:
  docker run --rm -v colorsort-data:/data colorsort gallery --out - > gallery.html
";

const FLAGS: Flags = Flags {
    values: &["--data", "--out", "-j", "--jobs", "--allowed-signers"],
    switches: &[],
};

/// Runs `colorsort gallery`.
pub(super) fn run(mut args: Args) -> Result<u8, Error> {
    let mut data = std::env::var_os("COLORSORT_DATA")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR), PathBuf::from);
    let mut out = None;
    // The flag and variable `colorsort serve` reads the file from.
    let mut allowed = config::setting("--allowed-signers")
        .and_then(|s| std::env::var_os(s.env))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    while let Some(item) = args.next_item(&FLAGS)? {
        match item {
            Item::Help => return print(USAGE).map(|()| EXIT_OK),
            Item::Value("--data", v) => data = PathBuf::from(v),
            Item::Value("--out", v) => out = Some(v),
            Item::Value("--allowed-signers", v) => allowed = Some(PathBuf::from(v)),
            Item::Value(f @ ("-j" | "--jobs"), v) => jobs = args::positive(f, &v)?,
            Item::Value(f, _) | Item::Switch(f) => return Err(unknown(f)),
            Item::Positional(p) => {
                return Err(Error::Usage(format!("gallery takes no argument {p:?}")));
            }
        }
    }
    let out = match out.as_deref() {
        Some("-") => gallery::Output::Stdout,
        Some(path) => gallery::Output::File(PathBuf::from(path)),
        None => gallery::Output::File(data.join("gallery.html")),
    };
    let signers = load_signers(allowed.as_deref(), &data)?;
    let (page, summary) = gallery::run(&data, &out, jobs, signers.as_ref())
        .map_err(|e| Error::Failed(e.to_string()))?;
    let _ = writeln!(io::stderr(), "{summary}");
    match &out {
        gallery::Output::Stdout => print(&page)?,
        gallery::Output::File(path) => {
            let _ = writeln!(io::stderr(), "wrote {}", path.display());
        }
    }
    Ok(EXIT_OK)
}

/// The allowed_signers file named by `given`, which must load, or else the
/// data directory's, if it exists; one that does not load is then passed
/// over with a warning, and signers show as fingerprints.
fn load_signers(given: Option<&Path>, data: &Path) -> Result<Option<AllowedSigners>, Error> {
    if let Some(path) = given {
        return AllowedSigners::load(path)
            .map(Some)
            .map_err(|e| Error::Failed(format!("{}: {e}", path.display())));
    }
    let path = data.join(config::ALLOWED_SIGNERS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    match AllowedSigners::load(&path) {
        Ok(signers) => Ok(Some(signers)),
        Err(e) => {
            let _ = writeln!(
                io::stderr(),
                "colorsort: {}: {e}; signers are shown by key fingerprint",
                path.display()
            );
            Ok(None)
        }
    }
}
