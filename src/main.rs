//! The `colorsort` command; everything it does lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    colorsort::cli::run(std::env::args_os())
}
