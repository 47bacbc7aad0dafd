//! Making the thumbnails of new or changed images: each one read and its
//! header checked under the pixel limit, its bytes and decode reserved
//! against the one shared memory budget, large decodes taking turns, and
//! the means taken from the content index or found by classifying.

use super::cache::write_atomically;
use super::{Item, THUMB_SIDE, THUMBS};
use crate::budget;
use crate::config::SELF_EXE;
use crate::parallel;
use crate::sandbox::{self, Local};
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};

/// Largest image decoded for a thumbnail, as for classification.
const MAX_PIXELS: u64 = crate::config::DEFAULT_MAX_PIXELS;

/// What every thumbnail thread decodes under, with the server's defaults:
/// its memory budget, fitted to a container's limit, and its decode turns;
/// a worker for each of `jobs` threads.
pub(super) fn local(jobs: usize) -> io::Result<Local> {
    Local::new(budget::default_limit().0, jobs, PathBuf::from(SELF_EXE))
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
    local: &Local,
) -> Vec<Made> {
    let mut made = Vec::with_capacity(todo.len());
    let done: Result<(), Infallible> = parallel::ordered(
        todo,
        jobs,
        |&i| make_one(data, &items[i], local),
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
fn make_one(data: &Path, item: &Item, local: &Local) -> Made {
    let path = data.join(item.folder.as_str()).join(&item.name);
    let kind = sandbox::Kind::Thumbnail { side: THUMB_SIDE };
    let Ok(decoded) = local.decode_file(&path, kind, MAX_PIXELS) else {
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
