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
//! - **Limits.** Every limit an operator may tune is a named constant in
//!   [`config`] with a `serve` flag and a `COLORSORT_*` variable each
//!   (`config::SETTINGS`); [`config`] also holds the fixed timings and caps
//!   no client can lengthen (`EVICTION_WAIT`, `FILING_WAIT`, `LINGER`,
//!   `MAX_LINGERING`, the metrics responder's `METRICS_MAX_*`). A cap that is a fact of the wire or of a format is a
//!   named constant in that format's module: `protocol::MAX_LINE`,
//!   `name::MAX_NAME`, `sshsig::MAX_SIGNATURE`, `age`'s header caps,
//!   `allowed_signers`' file caps, `classify`'s decoder caps and `open_memory`.
//!   docs/SECURITY.md's limits table lists each, with where it lives.
//! - **Leaves.** Leaves import only other leaves, without cycles; what
//!   every module may import is the table `LAYERS` in `tests/tidy.rs`,
//!   which fails on anything else, and docs/ARCHITECTURE.md explains the
//!   layers. The client side (`client`, `pins`, the client subcommands)
//!   never imports `server` or `store`.

#[macro_use]
pub(crate) mod log;

pub mod age;
pub mod allowed_signers;
pub mod budget;
pub(crate) mod calendar;
pub mod classify;
pub mod cli;
pub mod client;
pub mod config;
pub(crate) mod gallery;
pub mod identity;
pub mod memcpy;
pub(crate) mod metrics;
pub mod name;
pub(crate) mod parallel;
pub(crate) mod pins;
pub(crate) mod process;
pub mod protocol;
pub(crate) mod random;
pub mod sandbox;
pub(crate) mod server;
pub(crate) mod ssh;
pub mod sshsig;
pub mod store;
