//! Making the thumbnails of new or changed images: each one read and its
//! header checked under the pixel limit, its bytes and decode reserved
//! against the one shared memory budget, large decodes taking turns, and
//! the means taken from the content index or found by classifying.

use super::cache::write_atomically;
use super::{Item, THUMB_SIDE, THUMBS};
use crate::budget::{self, Budget, DecodeGate};
use crate::config::{DEFAULT_DECODE_TIMEOUT, DEFAULT_LARGE_DECODE, SELF_EXE};
use crate::parallel;
use crate::sandbox::{self, Workers};
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};

/// Largest image decoded for a thumbnail, as for classification.
const MAX_PIXELS: u64 = crate::config::DEFAULT_MAX_PIXELS;

/// What every thumbnail thread decodes under: one memory budget, one
/// decode gate and the decode workers, for them all.
pub(super) struct Guards {
    pub(super) budget: Budget,
    gate: DecodeGate,
    workers: Workers,
}

impl Guards {
    /// The server's defaults: its memory budget, fitted to a container's
    /// limit, and its decode turns; a worker for each of `jobs` threads.
    pub(super) fn new(jobs: usize) -> io::Result<Guards> {
        Guards::with(budget::default_limit().0, jobs, PathBuf::from(SELF_EXE))
    }

    /// Guards with a budget of `bytes`, a worker for each of `jobs`
    /// threads, the workers running `program`.
    pub(super) fn with(bytes: u64, jobs: usize, program: PathBuf) -> io::Result<Guards> {
        let config = sandbox::Config {
            program,
            ..sandbox::Config::new(
                jobs.saturating_add(sandbox::IDLE_WORKERS),
                DEFAULT_DECODE_TIMEOUT,
                bytes,
            )
        };
        Ok(Guards {
            budget: Budget::new(bytes),
            gate: DecodeGate::per_cpu(DEFAULT_LARGE_DECODE),
            workers: Workers::new(config)?,
        })
    }
}

/// The outcome of one new image.
pub(super) enum Made {
    /// A thumbnail was made and cached on disk; if caching failed, the
    /// thumbnail is in `uncached`.
    Thumb {
        mean: [f64; 3],
        uncached: Option<Vec<u8>>,
    },
    /// The file is not a readable image.
    Unreadable,
}

/// Makes the thumbnails of `items[todo]` on `jobs` threads; the outcomes
/// are in the order of `todo`.
pub(super) fn make_thumbnails(
    data: &Path,
    items: &[Item],
    todo: &[usize],
    jobs: usize,
    guards: &Guards,
) -> Vec<Made> {
    let mut made = Vec::with_capacity(todo.len());
    let done: Result<(), Infallible> = parallel::ordered(
        todo,
        jobs,
        |&i| make_one(data, &items[i], guards),
        |_, one| {
            made.push(one);
            Ok(())
        },
    );
    let Ok(()) = done;
    made
}

/// Decodes one image in a worker, which makes its thumbnail and finds its
/// means, and writes the thumbnail to the cache.
fn make_one(data: &Path, item: &Item, guards: &Guards) -> Made {
    let path = data.join(item.folder.as_str()).join(&item.name);
    let kind = sandbox::Kind::Thumbnail { side: THUMB_SIDE };
    let Ok(decoded) = sandbox::decode_file(
        &guards.workers,
        &guards.budget,
        &guards.gate,
        &path,
        kind,
        MAX_PIXELS,
    ) else {
        return Made::Unreadable;
    };
    let jpeg = decoded.thumbnail;
    let dir = data.join(THUMBS).join(item.folder.as_str());
    let uncached = write_atomically(&dir, &format!("{}.jpg", item.name), &jpeg)
        .err()
        .map(|_| jpeg);
    Made::Thumb {
        mean: decoded.verdict.mean,
        uncached,
    }
}
