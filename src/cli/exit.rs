//! How a command ends: the documented exit codes, the error that stops a
//! command, writing to stdout, and turning a command's result into the
//! process's exit status.
//!
//! A closed stdout is not an error. [`print()`] reports it as [`Error::Io`]
//! with a broken pipe ([`is_broken_pipe`]). A command whose work is its
//! output (`colorsort key | head -c 10`, `classify`, `stats`, help) passes
//! it up, and [`status`] ends the command quietly with [`EXIT_OK`]: the
//! reader took what it wanted. A command whose work is elsewhere does not
//! stop for it: `send` stops writing its report, goes on sending, and exits
//! by its uploads (see `report`), so `colorsort send DIR | head -1` sends
//! every file and fails if one was not stored.

use crate::client;
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The operation failed.
pub const EXIT_FAILED: u8 = 1;
/// The command line was wrong.
pub const EXIT_USAGE: u8 = 2;
/// The server's key does not match the pinned key.
pub const EXIT_KEY_CHANGED: u8 = 3;

/// A failure that ends a command.
#[derive(Debug)]
pub enum Error {
    /// The command line is wrong.
    Usage(String),
    /// The command ran and failed; the message says why.
    Failed(String),
    /// Writing to stdout or stderr failed.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Failed(m) => f.write_str(m),
            Error::Io(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<client::Error> for Error {
    fn from(e: client::Error) -> Error {
        Error::Failed(e.to_string())
    }
}

/// Writes to stdout; a broken pipe surfaces as [`Error::Io`].
pub fn print(text: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Whether `e` is a write to a closed stdout.
pub fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io(e) if e.kind() == io::ErrorKind::BrokenPipe)
}

/// The exit status for a command's result. An error other than a broken
/// pipe is printed to stderr first.
pub(super) fn status(result: Result<u8, Error>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let code = if matches!(e, Error::Usage(_)) {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
            let _ = writeln!(io::stderr(), "colorsort: {e}");
            ExitCode::from(code)
        }
    }
}
