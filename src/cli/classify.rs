//! `colorsort classify`: classifies local images exactly as the server
//! does, without a server, on every CPU, and prints one line per file in
//! the order the files were given.
//!
//! Memory is held to a budget as the server holds it ([`crate::budget`]):
//! before a file is read its size is reserved, and before it is decoded
//! the image's peak memory, waiting for room while other files finish;
//! large decodes take turns, one per CPU. A file whose decode could never
//! fit the whole budget fails, as the server would refuse it.

use super::args::{self, Args, Flags, Item, unknown};
use super::exit::{EXIT_FAILED, EXIT_OK, Error, print};
use super::pool;
use super::walk::walk;
use crate::budget::{self, Budget, DecodeGate};
use crate::classify::{self, Image, Limits, Verdict};
use crate::config;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
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
    let memory = Memory {
        budget: Budget::new(max_memory.unwrap_or_else(|| budget::default_limit().0)),
        decodes: DecodeGate::per_cpu(config::DEFAULT_LARGE_DECODE),
    };
    let mut failed = 0;
    let files = walk(&paths, &mut |path, e| {
        failed += 1;
        report(path, &e);
    });
    pool::ordered(
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
                    report(path, &e);
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

/// The memory that the files being classified share.
struct Memory {
    budget: Budget,
    decodes: DecodeGate,
}

/// Why one file could not be classified.
#[derive(Debug)]
enum FileError {
    /// The file could not be opened or read.
    Read(io::Error),
    /// The path names something other than a file (a pipe, a device), whose
    /// size cannot be known before it is read.
    NotAFile,
    /// The file changed size or content while it was read.
    Changed,
    /// The file alone is larger than the memory budget.
    TooLarge {
        /// Its size, in bytes.
        size: u64,
        /// The memory budget, in bytes.
        max: u64,
    },
    /// Decoding the image would take more than the whole memory budget.
    OverBudget {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The file's size and the decode's peak memory, in bytes.
        need: u64,
        /// The memory budget, in bytes.
        max: u64,
    },
    /// The file is not an image, or not one that can be decoded.
    Image(classify::Error),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Read(e) => e.fmt(f),
            FileError::NotAFile => f.write_str("not a regular file"),
            FileError::Changed => f.write_str("the file changed while it was read"),
            FileError::TooLarge { size, max } => write!(
                f,
                "the file's {size} bytes are over the memory limit of {max} bytes (--max-memory)"
            ),
            FileError::OverBudget {
                width,
                height,
                need,
                max,
            } => write!(
                f,
                "a {width}x{height} image needs {need} bytes to decode, over the memory \
                 limit of {max} bytes (--max-memory)"
            ),
            FileError::Image(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> FileError {
        FileError::Read(e)
    }
}

impl From<classify::Error> for FileError {
    fn from(e: classify::Error) -> FileError {
        FileError::Image(e)
    }
}

/// Reads and classifies the file at `path`, first reserving its size from
/// the budget, then the peak memory of its decode.
fn classify_file(path: &Path, limits: &Limits, memory: &Memory) -> Result<Verdict, FileError> {
    let budget = &memory.budget;
    let (mut file, size) = open(path)?;
    let too_large = || FileError::TooLarge {
        size,
        max: budget.limit(),
    };
    // Waiting while holding nothing cannot deadlock: whoever holds memory
    // is reading or decoding, which ends.
    let mut held = budget.reserve(size).ok_or_else(too_large)?;
    let bytes = read(&mut file, size)?;
    let image = classify::open(&bytes, limits)?;
    let peak = image.peak_memory();
    let need = size.saturating_add(peak);
    if need > budget.limit() {
        return Err(FileError::OverBudget {
            width: image.width(),
            height: image.height(),
            need,
            max: budget.limit(),
        });
    }
    if held.try_grow(peak) {
        return decode(image, peak, &memory.decodes);
    }
    // Waiting for more while holding some could deadlock with the other
    // threads doing the same: give it all back, wait for the whole amount
    // at once, and read the file again.
    drop(image);
    drop((bytes, held));
    let _held = budget.reserve(need).ok_or_else(too_large)?;
    let (mut file, again) = open(path)?;
    if again != size {
        return Err(FileError::Changed);
    }
    let bytes = read(&mut file, size)?;
    let image = classify::open(&bytes, limits)?;
    if image.peak_memory() != peak {
        return Err(FileError::Changed);
    }
    decode(image, peak, &memory.decodes)
}

/// Decodes and classifies `image`, taking a turn at `decodes` if it is
/// large; its memory is already reserved.
fn decode(image: Image<'_>, peak: u64, decodes: &DecodeGate) -> Result<Verdict, FileError> {
    let _turn = decodes.enter_if_large(peak);
    Ok(image.classify()?)
}

/// Opens a regular file, and says how large it is.
fn open(path: &Path) -> Result<(File, u64), FileError> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileError::NotAFile);
    }
    Ok((file, meta.len()))
}

/// Reads all of a file of `size` bytes, refusing one that has grown or
/// shrunk since.
fn read(file: &mut File, size: u64) -> Result<Vec<u8>, FileError> {
    let capacity = usize::try_from(size)
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or(io::Error::from(io::ErrorKind::OutOfMemory))?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(capacity)
        .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    // One byte more than expected shows a file that has grown.
    file.take(size.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != size {
        return Err(FileError::Changed);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn memory(limit: u64) -> Memory {
        Memory {
            budget: Budget::new(limit),
            decodes: DecodeGate::new(1, 0),
        }
    }

    /// The outcome, reduced to what the cases compare.
    fn kind(result: &Result<Verdict, FileError>) -> String {
        match result {
            Ok(v) => format!("ok {}x{}", v.width, v.height),
            Err(FileError::Read(e)) => format!("read {:?}", e.kind()),
            Err(FileError::NotAFile) => "not a file".into(),
            Err(FileError::Changed) => "changed".into(),
            Err(FileError::TooLarge { size, max }) => format!("too large {size} {max}"),
            Err(FileError::OverBudget {
                width,
                height,
                need,
                max,
            }) => format!("over budget {width}x{height} {need} {max}"),
            Err(FileError::Image(e)) => format!("image {e}"),
        }
    }

    /// The peak memory the decoders estimate for decoding the file at `path`.
    fn peak(path: &Path) -> u64 {
        let bytes = fs::read(path).unwrap();
        classify::open(&bytes, &Limits::default())
            .unwrap()
            .peak_memory()
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
        // The file and its decode's peak, as the decoders estimate it.
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
                1 << 20,
                "image not an image: unrecognised format".into(),
            ),
            (dir.path(), 1 << 20, "not a file".into()),
            (&missing, 1 << 20, "read NotFound".into()),
        ];
        for (path, limit, want) in cases {
            let memory = memory(limit);
            let result = classify_file(path, &Limits::default(), &memory);
            assert_eq!(kind(&result), want, "{} in {limit} bytes", path.display());
            assert_eq!(memory.budget.used(), 0, "everything is given back");
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
        let other = memory.budget.try_reserve(need - size).unwrap();
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
        assert_eq!(memory.budget.used(), 0);
    }
}
