//! Decoding local files (for `classify` and `gallery`) in workers, under
//! one memory budget that several threads share, waiting for room rather
//! than failing: a file's size is reserved before it is read, then its
//! decode's two steps as [`Workers::decode`] charges them.
//!
//! Waiting while holding memory could deadlock threads that each hold
//! some, so a thread waits only while it holds nothing: when a step does
//! not fit at once, it gives everything back, waits for the whole amount
//! it now knows it needs, reads the file again, and decodes within that.

use super::{Config, Decoded, Error, IDLE_WORKERS, Kind, Memory, Workers};
use crate::budget::{Budget, DecodeGate, Guards, Reservation, Turn};
use crate::config::{DEFAULT_DECODE_TIMEOUT, DEFAULT_LARGE_DECODE};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Attempts at a file: one without waiting, one for its opening, one for
/// its whole decode, once its header is known.
const ATTEMPTS: usize = 3;

/// Why a local file could not be decoded.
#[derive(Debug)]
pub enum FileError {
    /// The file could not be opened or read.
    Read(io::Error),
    /// The path names something other than a file (a pipe, a device),
    /// whose size cannot be known before it is read.
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
    /// The decode failed.
    Decode(Error),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Read(e) => e.fmt(f),
            FileError::NotAFile => f.write_str("not a regular file"),
            FileError::Changed => f.write_str("the file changed while it was read"),
            FileError::TooLarge { size, max } => write!(
                f,
                "the file's {size} bytes are over the memory limit of {max} bytes"
            ),
            FileError::Decode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FileError {}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> FileError {
        FileError::Read(e)
    }
}

/// Memory drawn from the shared [`Guards`] as they give it (without
/// waiting). When the whole decode was reserved ahead, its steps
/// are counted out of `within`, a budget of that size, instead.
struct Shared<'a> {
    guards: &'a Guards,
    within: Option<Budget>,
}

impl Memory for Shared<'_> {
    fn limit(&self) -> u64 {
        self.guards.limit()
    }

    fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        match &self.within {
            Some(within) => within.try_reserve(bytes),
            None => self.guards.reserve(bytes),
        }
    }

    fn grow(&self, memory: &mut Reservation<'_>, more: u64) -> bool {
        self.guards.grow(memory, more)
    }

    fn turn(&self, peak: u64) -> Option<Turn<'_>> {
        self.guards.turn(peak)
    }
}

/// What the threads of one `classify` run or gallery build decode local
/// files under: one memory budget and decode gate, and the decode workers.
pub struct Local {
    /// The budget and the gate.
    pub guards: Guards,
    workers: Workers,
}

impl Local {
    /// A budget of `bytes`, the server's decode turns, and a worker for
    /// each of `jobs` threads (and [`IDLE_WORKERS`] more), running
    /// `program`.
    pub fn new(bytes: u64, jobs: usize, program: PathBuf) -> io::Result<Local> {
        Local::with_gate(
            bytes,
            DecodeGate::per_cpu(DEFAULT_LARGE_DECODE),
            jobs,
            program,
        )
    }

    /// [`Local::new`] with decodes taking turns at `gate`.
    pub fn with_gate(
        bytes: u64,
        gate: DecodeGate,
        jobs: usize,
        program: PathBuf,
    ) -> io::Result<Local> {
        let config = Config {
            program,
            ..Config::new(
                jobs.saturating_add(IDLE_WORKERS),
                DEFAULT_DECODE_TIMEOUT,
                bytes,
            )
        };
        Ok(Local {
            guards: Guards {
                budget: Budget::new(bytes),
                gate,
            },
            workers: Workers::new(config)?,
        })
    }

    /// Reads the file at `path` and decodes it in a worker as `kind` asks,
    /// under `max_pixels`, its bytes and decode charged to the budget
    /// (waiting for room), large decodes taking turns at the gate.
    pub fn decode_file(
        &self,
        path: &Path,
        kind: Kind,
        max_pixels: u64,
    ) -> Result<Decoded, FileError> {
        let (budget, workers) = (&self.guards.budget, &self.workers);
        let (mut file, size) = open(path)?;
        let too_large = || FileError::TooLarge {
            size,
            max: budget.limit(),
        };
        // Bytes of the decode reserved ahead, beside the file's.
        let mut ahead = 0;
        let mut last = Error::NoMemory { need: size };
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                file = reopen(path, size)?;
            }
            // Waits holding nothing: the last attempt gave everything back.
            let _held = budget
                .reserve(size.saturating_add(ahead))
                .ok_or_else(too_large)?;
            let bytes = read(&mut file, size)?;
            let memory = Shared {
                guards: &self.guards,
                within: (ahead > 0).then(|| Budget::new(ahead)),
            };
            match workers.decode(&memory, kind, &bytes, size, max_pixels) {
                Err(Error::NoMemory { need }) => {
                    ahead = need.saturating_sub(size);
                    last = Error::NoMemory { need };
                }
                other => return other.map_err(FileError::Decode),
            }
        }
        Err(FileError::Decode(last))
    }
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

/// Opens the file at `path` again, refusing it if its size is no longer
/// `size`.
fn reopen(path: &Path, size: u64) -> Result<File, FileError> {
    let (file, again) = open(path)?;
    if again != size {
        return Err(FileError::Changed);
    }
    Ok(file)
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
