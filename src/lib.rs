//! colorsort sorts images by their average colour into `red/`, `green/` and
//! `blue/` folders of a data directory. Clients seal each image with age to
//! the server's RSA key and send it over a small line protocol; plaintext
//! uploads are kept apart in `not_trusted/`.
//!
//! The crate is a library so that tests, benchmarks and fuzz targets reach the
//! same code the `colorsort` binary runs.

#[macro_use]
pub mod log;

pub mod age;
pub mod classify;
pub mod cli;
pub mod client;
pub mod config;
pub mod gallery;
pub mod key;
pub mod name;
pub mod pins;
pub mod protocol;
pub mod send;
pub mod server;
pub mod store;
