//! The command line: the subcommands, matched by hand, the top-level help,
//! and which file runs each subcommand.
//!
//! Exit codes (documented in `colorsort --help` and the README):
//! - 0: success;
//! - 1: the operation failed (server unreachable or replying `ERR`, a file
//!   not stored);
//! - 2: usage error, or `send` refused: the server files only signed
//!   uploads by colour and neither `--sign` nor `--unsigned` was given;
//! - 3: `send` refused: the server's key differs from the pinned one.
//!
//! The hidden `decode-worker`, which only the decode workers' pool starts,
//! exits 0 once it has answered, or with its own statuses: 86, an
//! allocation over its memory limit; 87, its parent is gone; 88, its
//! sandbox could not be installed (`sandbox::EXIT_*`).
//!
//! A closed stdout is not an error: a command whose work is its output
//! (`colorsort key | head -c 10`) stops quietly with 0; `send` goes on
//! sending and exits by its uploads.
//!
//! Each subcommand has its own file. `exit` (exit codes, the command error,
//! stdout and the broken-pipe rule) and `args` (the lexer) are leaves that
//! they all import; nothing imports this file back. `serve` is the server
//! side; `key`, `stats`, `ping`, `send` and its `report` and `sign` are the
//! client side and never import the server or the store; `classify` and
//! `gallery` work on local files, which `walk` finds, and `classify` runs
//! them on `parallel`'s threads.

pub mod args;
mod classify;
mod exit;
mod gallery;
mod key;
mod ping;
mod report;
mod send;
mod serve;
mod sign;
mod stats;
mod walk;

pub use exit::{EXIT_FAILED, EXIT_KEY_CHANGED, EXIT_OK, EXIT_USAGE, Error};

use args::Args;
use exit::print;
use std::ffi::OsString;
use std::process::ExitCode;

const USAGE: &str = "\
colorsort: sorts images by average colour into red/, green/ and blue/

Usage:
  colorsort serve [OPTIONS]            run the server
  colorsort key [--fingerprint]        print the server's public key (an age recipient)
  colorsort send [OPTIONS] FILE|DIR... seal images to the server's key and send them
  colorsort classify FILE|DIR...       classify local images, without a server
  colorsort stats                      files stored per folder
  colorsort gallery [--data DIR]       write an HTML page of the sorted images
  colorsort ping                       exit 0 if the server answers
  colorsort help [COMMAND]             help on a command

Client commands talk to --host HOST:PORT, default $COLORSORT_HOST or 127.0.0.1:6666.

Exit codes: 0 success, 1 failure, 2 usage error (or send refused by the server's
signing policy), 3 server key changed (send).
";

/// Runs the command line `args` (program name first) and returns its exit
/// code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let mut args = Args::new(args.into_iter().skip(1).collect());
    let command = args.word();
    let result = match command.as_ref().and_then(|c| c.to_str()) {
        None => Err(Error::Usage(USAGE.trim_end().into())),
        Some("serve") => serve::run(args),
        Some("key") => key::run(args),
        Some("send") => send::run(args),
        Some("classify") => classify::run(args),
        Some("stats") => stats::run(args),
        Some("gallery") => gallery::run(args),
        Some("ping") => ping::run(args),
        // Hidden: started by the decode workers' pool, never by hand.
        Some(crate::sandbox::COMMAND) => {
            let parent = args.word().unwrap_or_default();
            return ExitCode::from(crate::sandbox::worker::main(&parent.to_string_lossy()));
        }
        Some("help" | "--help" | "-h") => help(args),
        Some("version" | "--version" | "-V") => {
            print(&format!("colorsort {}\n", env!("CARGO_PKG_VERSION"))).map(|()| EXIT_OK)
        }
        Some(other) => Err(Error::Usage(format!(
            "unknown command {other:?}; see colorsort --help"
        ))),
    };
    exit::status(result)
}

fn help(mut args: Args) -> Result<u8, Error> {
    let topic = args.word();
    let text = match topic.as_ref().and_then(|a| a.to_str()) {
        None => USAGE.to_string(),
        Some("serve") => serve::usage(),
        Some("key") => key::USAGE.into(),
        Some("send") => send::USAGE.into(),
        Some("classify") => classify::USAGE.into(),
        Some("stats") => stats::USAGE.into(),
        Some("gallery") => gallery::USAGE.into(),
        Some("ping") => ping::USAGE.into(),
        Some(other) => {
            return Err(Error::Usage(format!(
                "no help for {other:?}; see colorsort --help"
            )));
        }
    };
    print(&text).map(|()| EXIT_OK)
}
