//! colorsort sorts images by their average colour into `red/`, `green/` and
//! `blue/` folders of a data directory. Clients seal each image with age to
//! the server's RSA key and send it over a small line protocol; plaintext
//! uploads are kept apart in `not_trusted/`.
//!
//! The crate is a library so that tests, benchmarks and fuzz targets reach the
//! same code the `colorsort` binary runs. docs/ARCHITECTURE.md maps the
//! modules and what each may import.
//!
//! # Conventions
//!
//! - **Errors.** Each layer has one error enum, with a doc comment on every
//!   variant and a lowercase `Display`. An error's `Display` prints its cause
//!   inline (`what: cause`), so `source()` is left unimplemented: a printer
//!   that walked the chain as well would print every cause twice. Crypto
//!   errors stay coarse on purpose.
//! - **Limits.** Every limit a client can run into is a named constant in
//!   [`config`], overridable by a `serve` flag and a `COLORSORT_*` variable.
//! - **Leaves.** `log`, `name`, `protocol`, `config`, `key`, `random`,
//!   `sys` and `budget` import nothing of the crate but each other's constants;
//!   the client side (`client`, `pins`, the client subcommands) never imports
//!   `server` or `store`.

#[macro_use]
pub mod log;

pub mod age;
pub mod budget;
pub mod classify;
pub mod cli;
pub mod client;
pub mod config;
pub mod gallery;
pub mod key;
pub mod mem;
pub mod metrics;
pub mod name;
pub mod pins;
pub mod protocol;
pub mod random;
pub mod server;
pub mod signers;
pub mod sshsig;
pub mod store;
pub(crate) mod sys;
