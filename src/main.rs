//! The `colorsort` command; everything it does lives in the library.

use std::process::ExitCode;

/// The system allocator, except in a decode worker, where an allocation
/// that fails against the worker's memory limit ends it with a status that
/// says so.
#[global_allocator]
static ALLOCATOR: colorsort::sandbox::worker::ExitOnOom = colorsort::sandbox::worker::ExitOnOom;

fn main() -> ExitCode {
    colorsort::cli::run(std::env::args_os())
}
