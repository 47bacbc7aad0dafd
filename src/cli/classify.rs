//! `colorsort classify`: classifies local images exactly as the server
//! does, without a server, on every CPU, and prints one line per file in
//! the order the files were given.
//!
//! Each file is decoded in a decode worker, as the server decodes an
//! upload: a downloaded file can be a bomb too. Memory is held to a budget
//! as the server holds it ([`crate::budget`]): before a file is read its
//! size is reserved, and before it is decoded what the worker may hold,
//! waiting for room while other files finish ([`sandbox::Local::decode_file`]);
//! large decodes take turns, one per CPU. A file whose decode could never
//! fit the whole budget fails, as the server would refuse it.

use super::args::{self, Args, Flags, Item, unknown};
use super::exit::{EXIT_FAILED, EXIT_OK, Error, print};
use super::walk::walk;
use crate::budget;
use crate::classify::{Limits, Verdict};
use crate::config;
use crate::parallel;
use crate::sandbox::{self, FileError, Local};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Help for `colorsort classify`.
pub(super) const USAGE: &str = "\
Usage: colorsort classify [-j N] [--max-memory BYTES] [--max-pixels N] FILE|DIR...

Classifies local images exactly as the server does and prints one line per
file, in the order given: FILE CLASS r=R g=G b=B. Folders are walked in name
order; files that are not images are reported as errors, and the exit status
is then 1.

  -j, --jobs N          files classified at once [the CPUs this process may use]
  --max-memory BYTES    memory for file contents and decoded pixels together, as
                        serve's --max-memory; a file that alone needs more fails
                        [as serve: 1G, or less under a container memory limit]
  --max-pixels N        largest image, in pixels [100000000]
";

const FLAGS: Flags = Flags {
    values: &["-j", "--jobs", "--max-memory", "--max-pixels"],
    switches: &[],
};

/// Runs `colorsort classify`.
pub(super) fn run(mut args: Args) -> Result<u8, Error> {
    let mut limits = Limits::new(config::DEFAULT_MAX_PIXELS);
    let mut jobs = None;
    let mut max_memory = None;
    let mut paths = Vec::new();
    while let Some(item) = args.next_item(&FLAGS)? {
        match item {
            Item::Help => return print(USAGE).map(|()| EXIT_OK),
            Item::Value(f @ ("-j" | "--jobs"), v) => jobs = Some(args::positive(f, &v)?),
            Item::Value(f @ "--max-memory", v) => {
                let bytes = config::parse_size(&v)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        Error::Usage(format!("{f}: {v:?} is not a size above 0 like 64M or 1G"))
                    })?;
                max_memory = Some(bytes);
            }
            Item::Value(f @ "--max-pixels", v) => {
                limits = Limits::new(args::positive(f, &v)?);
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
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bytes = max_memory.unwrap_or_else(|| budget::default_limit().0);
    let memory = Local::new(bytes, jobs, PathBuf::from(config::SELF_EXE))
        .map_err(|e| Error::Failed(format!("cannot start the decode workers: {e}")))?;
    let mut failed = 0;
    let files = walk(&paths, &mut |path, e| {
        failed += 1;
        report(path, &e);
    });
    parallel::ordered(
        &files,
        jobs,
        |path| classify_file(path, &limits, &memory),
        |path, result| {
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
                    report(path, &Failed(e));
                }
            }
            Ok::<(), Error>(())
        },
    )?;
    Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
}

/// Prints why `path` could not be classified.
fn report(path: &Path, e: &dyn fmt::Display) {
    let _ = writeln!(io::stderr(), "colorsort: {}: {e}", path.display());
}

/// Why a file failed, naming the flag that sets the limit it is over.
struct Failed(FileError);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use sandbox::Error as E;
        match &self.0 {
            e @ (FileError::TooLarge { .. } | FileError::Decode(E::OverBudget { .. })) => {
                write!(f, "{e} (--max-memory)")
            }
            e => e.fmt(f),
        }
    }
}

/// Reads and classifies the file at `path` in a decode worker, its size,
/// then its decode's memory charged to the shared budget.
fn classify_file(path: &Path, limits: &Limits, memory: &Local) -> Result<Verdict, FileError> {
    memory
        .decode_file(path, sandbox::Kind::Classify, limits.max_pixels)
        .map(|decoded| decoded.verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify;
    use image::ImageEncoder;
    use std::fs;
    use std::sync::mpsc;
    use std::time::Duration;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let pixels = vec![200u8; (w * h * 3) as usize];
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn memory(limit: u64) -> Local {
        let program = sandbox::testing::program();
        Local::with_gate(limit, crate::budget::DecodeGate::new(1, 0), 2, program).unwrap()
    }

    /// The outcome, reduced to what the cases compare.
    fn kind(result: &Result<Verdict, FileError>) -> String {
        match result {
            Ok(v) => format!("ok {}x{}", v.width, v.height),
            Err(FileError::Read(e)) => format!("read {:?}", e.kind()),
            Err(FileError::NotAFile) => "not a file".into(),
            Err(FileError::Changed) => "changed".into(),
            Err(FileError::TooLarge { size, max }) => format!("too large {size} {max}"),
            Err(FileError::Decode(sandbox::Error::OverBudget {
                size: Some((width, height)),
                need,
                max,
            })) => format!("over budget {width}x{height} {need} {max}"),
            Err(FileError::Decode(sandbox::Error::Image(e))) => format!("image {e}"),
            Err(FileError::Decode(e)) => format!("decode {e}"),
        }
    }

    /// What decoding the file at `path` is charged beside the file: its
    /// copy in the worker, what opening it takes, and its decode's peak.
    fn peak(path: &Path) -> u64 {
        let bytes = fs::read(path).unwrap();
        let len = bytes.len() as u64;
        let peak = classify::open(&bytes, &Limits::default())
            .unwrap()
            .peak_memory();
        sandbox::OVERHEAD + len + classify::open_memory(&bytes) + peak
    }

    #[test]
    fn files_are_charged_to_the_budget_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.png");
        let large = dir.path().join("large.png");
        let junk = dir.path().join("junk.png");
        fs::write(&small, png(8, 8)).unwrap();
        fs::write(&large, png(300, 300)).unwrap();
        fs::write(&junk, b"not an image").unwrap();
        let missing = dir.path().join("missing");
        let len = |p: &Path| fs::metadata(p).unwrap().len();
        // The file and its decode's charge, as the decoders estimate it.
        let large_need = len(&large) + peak(&large);
        let cases: Vec<(&Path, u64, String)> = vec![
            (&small, 1 << 30, "ok 8x8".into()),
            (&large, 1 << 30, "ok 300x300".into()),
            (&large, large_need, "ok 300x300".into()),
            (
                &large,
                large_need - 1,
                format!("over budget 300x300 {large_need} {}", large_need - 1),
            ),
            (
                &small,
                len(&small) - 1,
                format!("too large {} {}", len(&small), len(&small) - 1),
            ),
            (
                &junk,
                1 << 30,
                "image not an image: unrecognised format".into(),
            ),
            (dir.path(), 1 << 20, "not a file".into()),
            (&missing, 1 << 20, "read NotFound".into()),
        ];
        for (path, limit, want) in cases {
            let memory = memory(limit);
            let result = classify_file(path, &Limits::default(), &memory);
            assert_eq!(kind(&result), want, "{} in {limit} bytes", path.display());
            assert_eq!(memory.guards.budget.used(), 0, "everything is given back");
        }
    }

    #[test]
    fn a_decode_that_does_not_fit_yet_waits_for_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        fs::write(&path, png(100, 100)).unwrap();
        let size = fs::metadata(&path).unwrap().len();
        let need = size + peak(&path);
        let memory = memory(need);
        // Someone else holds all but room for the file: the decode must
        // give that back and wait for the whole amount.
        let other = memory.guards.budget.try_reserve(need - size).unwrap();
        let (path, memory) = (&path, &memory);
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            s.spawn(move || {
                let result = classify_file(path, &Limits::default(), memory);
                tx.send(kind(&result)).unwrap();
            });
            assert!(
                rx.recv_timeout(Duration::from_millis(200)).is_err(),
                "it cannot decode while the memory is held"
            );
            drop(other);
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(10)).as_deref(),
                Ok("ok 100x100")
            );
        });
        assert_eq!(memory.guards.budget.used(), 0);
    }
}
