//! `colorsort gallery`: writes the static HTML page of a data directory,
//! to a file or to stdout, with the thumbnails it needs made first.

use super::args::{self, Args, Flags, Item, unknown};
use super::exit::{EXIT_OK, Error, print};
use crate::config;
use crate::gallery;
use std::io::{self, Write};
use std::path::PathBuf;

/// Help for `colorsort gallery`.
pub(super) const USAGE: &str = "\
Usage: colorsort gallery [--data DIR] [--out FILE|-] [-j N]

Writes a static HTML page of the data directory: one section per folder with
its count, and for each image a thumbnail, a swatch of its mean colour, its
name and its means. Thumbnails are cached in DIR/.thumbs/ and made only for
new or changed images.
  --data DIR     data directory [$COLORSORT_DATA or /data]
  --out FILE     the page [DIR/gallery.html]; `-` writes it to stdout. A page
                 outside DIR, or on stdout, embeds its thumbnails, so it
                 stands alone; one inside DIR links them and the images.
  -j, --jobs N   threads for new thumbnails [number of CPUs]

From the container's volume:
  docker run --rm -v colorsort-data:/data colorsort gallery --out - > gallery.html
";

const FLAGS: Flags = Flags {
    values: &["--data", "--out", "-j", "--jobs"],
    switches: &[],
};

/// Runs `colorsort gallery`.
pub(super) fn run(mut args: Args) -> Result<u8, Error> {
    let mut data = std::env::var_os("COLORSORT_DATA")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR), PathBuf::from);
    let mut out = None;
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    while let Some(item) = args.next_item(&FLAGS)? {
        match item {
            Item::Help => return print(USAGE).map(|()| EXIT_OK),
            Item::Value("--data", v) => data = PathBuf::from(v),
            Item::Value("--out", v) => out = Some(v),
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
    let (page, summary) =
        gallery::run(&data, &out, jobs).map_err(|e| Error::Failed(e.to_string()))?;
    let _ = writeln!(io::stderr(), "{summary}");
    match &out {
        gallery::Output::Stdout => print(&page)?,
        gallery::Output::File(path) => {
            let _ = writeln!(io::stderr(), "wrote {}", path.display());
        }
    }
    Ok(EXIT_OK)
}
