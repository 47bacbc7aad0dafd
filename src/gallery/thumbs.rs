//! Making the thumbnails of new or changed images: each one read and its
//! header checked under the pixel limit, its bytes and decode reserved
//! against the one shared memory budget, large decodes taking turns, and
//! the means taken from the content index or found by classifying.

use super::cache::write_atomically;
use super::{Item, THUMB_SIDE, THUMBS};
use crate::budget::{self, Budget, DecodeGate, Reservation};
use crate::classify;
use crate::config::DEFAULT_LARGE_DECODE;
use crate::store::{self, Digest};
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// JPEG quality of thumbnails.
const THUMB_QUALITY: u8 = 80;
/// Largest image decoded for a thumbnail, as for classification.
const MAX_PIXELS: u64 = crate::config::DEFAULT_MAX_PIXELS;

/// What every thumbnail thread decodes under: one memory budget and one
/// decode gate for them all.
pub(super) struct Guards {
    pub(super) budget: Budget,
    gate: DecodeGate,
}

impl Guards {
    /// The server's defaults: its memory budget, fitted to a container's
    /// limit, and its decode turns.
    pub(super) fn new() -> Guards {
        Guards::with_budget(budget::default_limit().0)
    }

    pub(super) fn with_budget(bytes: u64) -> Guards {
        Guards {
            budget: Budget::new(bytes),
            gate: DecodeGate::per_cpu(DEFAULT_LARGE_DECODE),
        }
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

/// Makes the thumbnails of `items[todo]` on `jobs` threads.
pub(super) fn make_thumbnails(
    data: &Path,
    items: &[Item],
    todo: &[usize],
    jobs: usize,
    guards: &Guards,
) -> Vec<Made> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Made>>> = Mutex::new((0..todo.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(todo.len()) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { break };
                    let made = make_one(data, &items[i], guards);
                    results.lock().unwrap_or_else(|p| p.into_inner())[k] = Some(made);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results
        .into_iter()
        .map(|r| r.unwrap_or(Made::Unreadable))
        .collect()
}

/// Decodes one image, writes its thumbnail to the cache, and finds its means.
fn make_one(data: &Path, item: &Item, guards: &Guards) -> Made {
    let path = data.join(item.folder.as_str()).join(&item.name);
    let Some((bytes, peak, _memory)) = load(&path, &guards.budget) else {
        return Made::Unreadable;
    };
    // Both decodes below, one after the other, within the one reservation.
    let _turn = guards.gate.enter_if_large(peak);
    let Some(jpeg) = thumbnail(&bytes, peak) else {
        return Made::Unreadable;
    };
    let indexed = store::lookup(data, item.folder.trust(), &Digest::of(&bytes)).map(|s| s.mean);
    let mean = match indexed {
        Some(mean) => mean,
        None => match classify::classify(&bytes, &limits()) {
            Ok(v) => v.mean,
            Err(_) => return Made::Unreadable,
        },
    };
    let dir = data.join(THUMBS).join(item.folder.as_str());
    let uncached = write_atomically(&dir, &format!("{}.jpg", item.name), &jpeg)
        .err()
        .map(|_| jpeg);
    Made::Thumb { mean, uncached }
}

/// The limits an image is opened under: the server's default pixel limit.
pub(super) fn limits() -> classify::Limits {
    classify::Limits::new(MAX_PIXELS)
}

/// Reads the image at `path` and checks its header, with the file's bytes
/// and the peak memory of decoding it reserved against `budget`. Returns
/// the bytes, the decode's peak and the reservation holding both; `None` if
/// the file cannot be read, is not an image within the limits, or could
/// never fit the budget.
///
/// It waits for memory only while holding none: first for the file alone,
/// then, if the decode does not fit beside it at once, for the file and the
/// decode together, after giving the file back.
fn load<'b>(path: &Path, budget: &'b Budget) -> Option<(Vec<u8>, u64, Reservation<'b>)> {
    let len = File::open(path).and_then(|f| f.metadata()).ok()?.len();
    let mut memory = budget.reserve(len)?;
    let bytes = read_at_most(path, len)?;
    let peak = classify::open(&bytes, &limits()).ok()?.peak_memory();
    if memory.try_grow(peak) {
        return Some((bytes, peak, memory));
    }
    drop((bytes, memory));
    let memory = budget.reserve(len.checked_add(peak)?)?;
    let bytes = read_at_most(path, len)?;
    Some((bytes, peak, memory))
}

/// The first `len` bytes of the file at `path`, never more: a file that
/// grew since its length was reserved is read short (and then fails to
/// decode) rather than over the reservation.
fn read_at_most(path: &Path, len: u64) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).ok()?);
    File::open(path)
        .ok()?
        .take(len)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// Working memory a thumbnail's decoder may allocate beyond the decode's
/// peak as estimated from the header (a TIFF strip, metadata): what
/// [`classify`] allows its own decoders for metadata.
const DECODER_ALLOWANCE: u64 = 64 * 1024 * 1024;

/// A JPEG thumbnail of an image, at most [`THUMB_SIDE`] pixels a side, with
/// transparency flattened onto white; `None` if the bytes are not an image
/// within the limits. The decoder may allocate the decode's `peak` (as
/// reserved) twice over, plus [`DECODER_ALLOWANCE`], as a decoder behind
/// [`classify::open`] may.
fn thumbnail(bytes: &[u8], peak: u64) -> Option<Vec<u8>> {
    // Decoders are third-party code meeting whatever is in the folder.
    std::panic::catch_unwind(|| {
        let mut reader = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .ok()?;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(peak.saturating_mul(2).saturating_add(DECODER_ALLOWANCE));
        reader.limits(limits);
        let small = reader
            .decode()
            .ok()?
            .thumbnail(THUMB_SIDE, THUMB_SIDE)
            .into_rgba8();
        let flat = image::RgbImage::from_fn(small.width(), small.height(), |x, y| {
            let [r, g, b, a] = small.get_pixel(x, y).0;
            let over_white =
                |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
            image::Rgb([over_white(r), over_white(g), over_white(b)])
        });
        let mut out = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, THUMB_QUALITY);
        flat.write_with_encoder(encoder).ok()?;
        Some(out)
    })
    .ok()
    .flatten()
}
