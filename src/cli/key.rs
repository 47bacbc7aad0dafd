//! `colorsort key`: fetches the server's public key and prints it as an
//! OpenSSH line (an age recipient) or as its fingerprint.

use super::args::{Args, client_args};
use super::exit::{EXIT_OK, Error, print};
use crate::client::Client;

/// Help for `colorsort key`.
pub(super) const USAGE: &str = "\
Usage: colorsort key [--host HOST:PORT] [--fingerprint]

Prints the server's public key as an OpenSSH line, usable as a recipient
file for age: `colorsort key > server.pub; age -R server.pub ...`.
  --fingerprint   print its SHA256 fingerprint instead, as ssh-keygen -l does
";

/// Runs `colorsort key`.
pub(super) fn run(args: Args) -> Result<u8, Error> {
    let Some((host, [fingerprint])) = client_args(args, USAGE, ["--fingerprint"])? else {
        return Ok(EXIT_OK);
    };
    let key = Client::connect(&host)?.key()?;
    let text = if fingerprint {
        key.fingerprint()
    } else {
        key.to_ssh_line(crate::identity::COMMENT)
    };
    print(&format!("{text}\n")).map(|()| EXIT_OK)
}
