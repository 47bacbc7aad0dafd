//! `colorsort stats`: asks the server how many files each folder holds and
//! prints its reply.

use super::args::{Args, client_args};
use super::exit::{EXIT_OK, Error, print};
use crate::client::Client;

/// Help for `colorsort stats`.
pub(super) const USAGE: &str = "\
Usage: colorsort stats [--host HOST:PORT]

Prints the number of files in each folder: red=N green=N blue=N not_trusted=N.
";

/// Runs `colorsort stats`.
pub(super) fn run(args: Args) -> Result<u8, Error> {
    let Some((host, [])) = client_args(args, USAGE, [])? else {
        return Ok(EXIT_OK);
    };
    let text = Client::connect(&host)?.request("STATS")?;
    print(&format!("{text}\n")).map(|()| EXIT_OK)
}
