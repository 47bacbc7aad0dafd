//! Every setting of `colorsort serve`, with its default, in one place.
//!
//! Each setting is a row of [`SETTINGS`]: its flag, its `COLORSORT_*`
//! environment variable, its help text and how to parse it. The environment
//! is read first and flags override it, so a container image can bake in
//! variables that a command line still beats. The help text and the defaults
//! printed by `colorsort serve --help` come from the same table, so they
//! cannot drift apart.
//!
//! Three files: `constants.rs`, every default and fixed limit as a named
//! constant; `serve_config.rs`, the [`ServeConfig`] and [`Limits`] the
//! settings fill in; `settings.rs`, the table and the parsers of its
//! values. Everything is reached through this module.

mod constants;
mod serve_config;
mod settings;

pub use constants::*;
pub use serve_config::{Limits, ServeConfig};
pub use settings::{
    Error, SETTINGS, Setting, apply_env, parse_duration, parse_size, setting, show_size,
};
