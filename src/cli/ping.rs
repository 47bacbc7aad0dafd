//! `colorsort ping`: the container's health check; succeeds only if the
//! server answers `PING` with `PONG`.

use super::args::{Args, client_args};
use super::exit::{EXIT_OK, Error, print};
use crate::client::Client;

/// Help for `colorsort ping`.
pub(super) const USAGE: &str = "\
Usage: colorsort ping [--host HOST:PORT]

Exits 0 if the server answers PING, 1 otherwise. Used as the container's
health check.
";

/// Runs `colorsort ping`.
pub(super) fn run(args: Args) -> Result<u8, Error> {
    let Some((host, [])) = client_args(args, USAGE, [])? else {
        return Ok(EXIT_OK);
    };
    let text = Client::connect(&host)?.request("PING")?;
    if text != "PONG" {
        return Err(Error::Failed(format!(
            "unexpected reply to PING: OK {text}"
        )));
    }
    print("PONG\n").map(|()| EXIT_OK)
}
