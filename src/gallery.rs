//! `colorsort gallery`: a static HTML page of a data directory, one section
//! per folder with its count, and for each image a thumbnail, a swatch of
//! its mean colour, its name and its means.
//!
//! The page loads nothing external: its CSS is inline, and thumbnails are
//! either files in `DATA/.thumbs/` (when the page is written into the data
//! directory, next to the images it links to) or embedded as `data:` URIs
//! (anywhere else, and on stdout), so the page can leave the volume alone.
//!
//! Thumbnails are cached: `DATA/.thumbs/manifest.tsv` records, for each
//! image, the size and modification time it was made from and the image's
//! means. An image whose size and time still match, and whose thumbnail is
//! still there, costs one `stat`; only new or changed images are decoded,
//! in parallel. Means come from the server's content index where it has
//! them, so a new image is decoded once, for its thumbnail; images the
//! server did not file are classified as `colorsort classify` would.
//!
//! Decoding is held to what the server holds an upload to: the header is
//! checked by [`classify::open`] under the same pixel limit before any
//! pixel exists, the file and the decode's peak memory are reserved against
//! one memory budget shared by every thread (sized as the server's default,
//! fitted to a container's limit), and large decodes take turns, one per
//! CPU. A thread waits for memory rather than fail, and never waits for it
//! while holding any, so the threads cannot starve each other for good.
//!
//! A trusted image the server kept a signature for
//! (`DATA/signatures/FOLDER/NAME.sig`) shows its signer: the principal that
//! an allowed_signers file lists for the signature's key, or else the key's
//! fingerprint. The signature is read, not checked against the image; the
//! server checked it when it filed the image, and `ssh-keygen -Y verify`
//! checks it again.

use crate::budget::{self, Budget, DecodeGate, Reservation};
use crate::classify;
use crate::config::DEFAULT_LARGE_DECODE;
use crate::signers::AllowedSigners;
use crate::sshsig::{self, Signature};
use crate::store::{self, Digest, Folder, SIGNATURES};
use base64ct::{Base64, Encoding};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The thumbnail cache, under the data directory.
pub const THUMBS: &str = ".thumbs";
/// The cache's record of what each thumbnail was made from.
const MANIFEST: &str = "manifest.tsv";
/// Longest side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 160;
/// JPEG quality of thumbnails.
const THUMB_QUALITY: u8 = 80;
/// Largest image decoded for a thumbnail, as for classification.
const MAX_PIXELS: u64 = crate::config::DEFAULT_MAX_PIXELS;

/// What can stop a gallery from being written.
#[derive(Debug)]
pub enum Error {
    /// The data directory or one of its folders cannot be read.
    Read { path: PathBuf, source: io::Error },
    /// The page could not be written.
    Write { path: PathBuf, source: io::Error },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Error::Write { path, source } => write!(f, "cannot write {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

/// Where the page goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A file. Written into the data directory, it links its thumbnails and
    /// images; elsewhere, it embeds the thumbnails.
    File(PathBuf),
    /// Standard output, with embedded thumbnails.
    Stdout,
}

/// One image of the page.
#[derive(Debug, Clone)]
struct Item {
    folder: Folder,
    name: String,
    /// Means, if the image could be read.
    mean: Option<[f64; 3]>,
    /// The thumbnail's file name in `.thumbs/FOLDER/`, if there is one.
    thumb: Option<String>,
    /// The thumbnail itself, when it could not be cached on disk.
    jpeg: Option<Vec<u8>>,
}

/// What the cache knew of an image.
#[derive(Debug, Clone, PartialEq)]
struct Cached {
    size: u64,
    mtime: u128,
    mean: Option<[f64; 3]>,
}

/// What a run did, for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Images per folder, in [`Folder::ALL`] order.
    pub counts: [usize; 4],
    /// Thumbnails made in this run.
    pub made: usize,
    /// Thumbnails reused from the cache.
    pub cached: usize,
    /// Files that could not be read as images.
    pub unreadable: usize,
    /// Thumbnails that could not be cached on disk (read-only data).
    pub uncached: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b, n] = self.counts;
        let total: usize = self.counts.iter().sum();
        write!(
            f,
            "{total} image(s) (red {r}, green {g}, blue {b}, not_trusted {n}); {} thumbnail(s) made, {} cached, {} unreadable",
            self.made, self.cached, self.unreadable
        )?;
        if self.uncached > 0 {
            write!(f, ", {} not cached (cannot write {THUMBS}/)", self.uncached)?;
        }
        Ok(())
    }
}

/// What every thumbnail thread decodes under: one memory budget and one
/// decode gate for them all.
struct Guards {
    budget: Budget,
    gate: DecodeGate,
}

impl Guards {
    /// The server's defaults: its memory budget, fitted to a container's
    /// limit, and its decode turns.
    fn new() -> Guards {
        Guards::with_budget(budget::default_limit().0)
    }

    fn with_budget(bytes: u64) -> Guards {
        Guards {
            budget: Budget::new(bytes),
            gate: DecodeGate::per_cpu(DEFAULT_LARGE_DECODE),
        }
    }
}

/// Builds the gallery of `data` and writes it to `out`, using `jobs`
/// threads for new thumbnails and `signers` to name who signed what.
/// Returns the page and what was done.
pub fn build(
    data: &Path,
    out: &Output,
    jobs: usize,
    signers: Option<&AllowedSigners>,
) -> Result<(String, Summary), Error> {
    build_guarded(data, out, jobs, signers, &Guards::new())
}

/// [`build`], decoding under `guards`.
fn build_guarded(
    data: &Path,
    out: &Output,
    jobs: usize,
    signers: Option<&AllowedSigners>,
    guards: &Guards,
) -> Result<(String, Summary), Error> {
    if let Err(source) = fs::read_dir(data) {
        return Err(Error::Read {
            path: data.to_path_buf(),
            source,
        });
    }
    let thumbs = data.join(THUMBS);
    let manifest = read_manifest(&thumbs.join(MANIFEST));
    let mut summary = Summary::default();
    let mut items = Vec::new();
    let mut todo = Vec::new();
    let mut fresh: HashMap<String, Cached> = HashMap::new();
    for folder in Folder::ALL {
        let names = list(&data.join(folder.as_str()))?;
        summary.counts[folder as usize] = names.len();
        for (name, size, mtime) in names {
            let key = format!("{folder}/{name}");
            let thumb = format!("{name}.jpg");
            let hit = manifest
                .get(&key)
                .filter(|c| c.size == size && c.mtime == mtime);
            let cached = hit.filter(|c| {
                c.mean.is_none() || thumbs.join(folder.as_str()).join(&thumb).is_file()
            });
            match cached {
                Some(c) => {
                    summary.cached += usize::from(c.mean.is_some());
                    summary.unreadable += usize::from(c.mean.is_none());
                    let thumb = c.mean.map(|_| thumb);
                    items.push(Item {
                        folder,
                        name,
                        mean: c.mean,
                        thumb,
                        jpeg: None,
                    });
                    fresh.insert(key, c.clone());
                }
                None => {
                    todo.push(items.len());
                    items.push(Item {
                        folder,
                        name,
                        mean: None,
                        thumb: None,
                        jpeg: None,
                    });
                    fresh.insert(
                        key,
                        Cached {
                            size,
                            mtime,
                            mean: None,
                        },
                    );
                }
            }
        }
    }

    let embed = embeds(data, out);
    let made = make_thumbnails(data, &items, &todo, jobs.max(1), guards);
    for (i, result) in todo.iter().zip(made) {
        let item = &mut items[*i];
        match result {
            Made::Thumb { mean, uncached } => {
                let cached = uncached.is_none();
                item.mean = Some(mean);
                item.thumb = Some(format!("{}.jpg", item.name));
                item.jpeg = uncached;
                summary.made += 1;
                summary.uncached += usize::from(!cached);
                if let Some(c) = fresh.get_mut(&format!("{}/{}", item.folder, item.name)) {
                    c.mean = Some(mean);
                    // An uncached thumbnail must be made again next time.
                    if !cached {
                        c.mtime = 0;
                    }
                }
            }
            Made::Unreadable => summary.unreadable += 1,
        }
    }
    // The cache is best effort: a read-only volume still gets its page.
    if (!todo.is_empty() || fresh.len() != manifest.len())
        && write_manifest(&thumbs, &fresh).is_ok()
    {
        prune(&thumbs, &fresh);
    }
    let page = render(data, &items, &summary, embed, signers);
    write_output(out, &page)?;
    Ok((page, summary))
}

/// True if the page embeds its thumbnails rather than linking them.
fn embeds(data: &Path, out: &Output) -> bool {
    match out {
        Output::Stdout => true,
        Output::File(path) => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let same = |a: &Path, b: &Path| {
                fs::canonicalize(a)
                    .ok()
                    .is_some_and(|a| fs::canonicalize(b).ok() == Some(a))
            };
            !same(parent, data)
        }
    }
}

/// The images of a folder, as (name, size, mtime in ns), sorted by name.
/// Hidden files and anything but regular files are left out, as in `STATS`.
fn list(dir: &Path) -> Result<Vec<(String, u64, u128)>, Error> {
    let read_error = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_error)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if name.starts_with('.') || !meta.is_file() {
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        out.push((name, meta.len(), mtime));
    }
    out.sort();
    Ok(out)
}

/// The outcome of one new image.
enum Made {
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
fn make_thumbnails(
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
fn limits() -> classify::Limits {
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

/// Writes `bytes` to `dir/name` through a temporary file and a rename, so a
/// reader never sees half a file.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    // Random, not the process id: in a container every process is PID 1.
    let temp = dir.join(format!(".{name}.{}.tmp", crate::random::hex(8)));
    fs::write(&temp, bytes)?;
    fs::rename(&temp, dir.join(name)).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

fn read_manifest(path: &Path) -> HashMap<String, Cached> {
    let Ok(text) = fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [key, size, mtime, mean] = f[..] else {
                return None;
            };
            let mean = match mean {
                "-" => None,
                m => {
                    let v: Vec<f64> = m.split(',').filter_map(|x| x.parse().ok()).collect();
                    Some(<[f64; 3]>::try_from(v).ok()?)
                }
            };
            Some((
                key.to_string(),
                Cached {
                    size: size.parse().ok()?,
                    mtime: mtime.parse().ok()?,
                    mean,
                },
            ))
        })
        .collect()
}

fn write_manifest(thumbs: &Path, entries: &HashMap<String, Cached>) -> io::Result<()> {
    let mut keys: Vec<&String> = entries.keys().collect();
    keys.sort();
    let mut text = String::new();
    for key in keys {
        let c = &entries[key];
        let mean = c
            .mean
            .map_or("-".to_string(), |[r, g, b]| format!("{r},{g},{b}"));
        let _ = writeln!(text, "{key}\t{}\t{}\t{mean}", c.size, c.mtime);
    }
    write_atomically(thumbs, MANIFEST, text.as_bytes())
}

/// Removes thumbnails of images that are no longer there.
fn prune(thumbs: &Path, live: &HashMap<String, Cached>) {
    for folder in Folder::ALL {
        let Ok(entries) = fs::read_dir(thumbs.join(folder.as_str())) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file) = entry.file_name().into_string() else {
                continue;
            };
            let image = file.strip_suffix(".jpg").unwrap_or(&file);
            if !file.starts_with('.') && !live.contains_key(&format!("{folder}/{image}")) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn write_output(out: &Output, page: &str) -> Result<(), Error> {
    match out {
        Output::Stdout => Ok(()),
        Output::File(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            write_atomically(dir, &name, page.as_bytes()).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })
        }
    }
}

const STYLE: &str = "\
:root{color-scheme:light dark;--card:#f4f4f5;--muted:#666}\
@media (prefers-color-scheme:dark){:root{--card:#1f1f23;--muted:#aaa}}\
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:1rem 1.5rem;max-width:1400px}\
header h1{margin:.2rem 0}header p{color:var(--muted);margin:.2rem 0 1rem}\
nav a{margin-right:1rem}\
h2{border-bottom:1px solid var(--muted);padding-bottom:.3rem;margin-top:2rem}\
h2 .count{font-weight:normal;color:var(--muted)}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.8rem}\
figure{margin:0;background:var(--card);border-radius:6px;padding:.5rem;overflow:hidden}\
figure img,.none{display:block;width:100%;height:160px;object-fit:contain;background:#8883}\
.none{display:flex;align-items:center;justify-content:center;color:var(--muted)}\
figcaption{margin-top:.4rem;display:grid;grid-template-columns:1.2rem 1fr;gap:.1rem .4rem;align-items:center}\
.swatch{width:1.2rem;height:1.2rem;border-radius:3px;border:1px solid #8888;grid-row:span 2}\
.name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-weight:600}\
.rgb{color:var(--muted);font:12px ui-monospace,monospace}\
.signer{grid-column:2;color:var(--muted);font-size:12px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}\
.red{--accent:#d33}.green{--accent:#2a2}.blue{--accent:#36d}.not_trusted{--accent:#999}\
section h2{border-color:var(--accent)}";

/// The page.
fn render(
    data: &Path,
    items: &[Item],
    summary: &Summary,
    embed: bool,
    signers: Option<&AllowedSigners>,
) -> String {
    let total: usize = summary.counts.iter().sum();
    let mut page = String::with_capacity(1024 + items.len() * 400);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>colorsort gallery</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>colorsort</h1><p>{total} image(s) in {}, made {}</p><nav>",
        escape(&data.display().to_string()),
        crate::log::timestamp(std::time::SystemTime::now())
    );
    for folder in Folder::ALL {
        let _ = write!(
            page,
            "<a href=\"#{folder}\">{folder} ({})</a>",
            summary.counts[folder as usize]
        );
    }
    page.push_str("</nav></header>\n");
    for folder in Folder::ALL {
        let count = summary.counts[folder as usize];
        let _ = write!(
            page,
            "<section id=\"{folder}\" class=\"{folder}\" data-folder=\"{folder}\" data-count=\"{count}\">\n\
             <h2>{folder} <span class=\"count\">{count}</span></h2>\n<div class=\"grid\">\n"
        );
        for item in items.iter().filter(|i| i.folder == folder) {
            card(&mut page, data, item, embed, signers);
        }
        page.push_str("</div>\n</section>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn card(
    page: &mut String,
    data: &Path,
    item: &Item,
    embed: bool,
    signers: Option<&AllowedSigners>,
) {
    let name = escape(&item.name);
    // A thumbnail that could not be cached can only be embedded.
    let src = match (&item.thumb, embed || item.jpeg.is_some()) {
        (Some(thumb), false) => Some(format!("{THUMBS}/{}/{}", item.folder, percent(thumb))),
        (Some(thumb), true) => item
            .jpeg
            .clone()
            .or_else(|| fs::read(data.join(THUMBS).join(item.folder.as_str()).join(thumb)).ok())
            .map(|jpeg| format!("data:image/jpeg;base64,{}", Base64::encode_string(&jpeg))),
        (None, _) => None,
    };
    let picture = match src {
        Some(src) => format!("<img src=\"{src}\" alt=\"{name}\" loading=\"lazy\">"),
        None => "<div class=\"none\">not an image</div>".to_string(),
    };
    let picture = if embed || item.thumb.is_none() {
        picture
    } else {
        format!(
            "<a href=\"{}/{}\">{picture}</a>",
            item.folder,
            percent(&item.name)
        )
    };
    let (swatch, rgb) = match item.mean {
        Some([r, g, b]) => (
            format!("rgb({},{},{})", r.round(), g.round(), b.round()),
            format!("r={r:.1} g={g:.1} b={b:.1}"),
        ),
        None => ("transparent".to_string(), "-".to_string()),
    };
    let signer = match signer(data, item, signers) {
        None => String::new(),
        Some(Signed::By { label, title }) => format!(
            "<span class=\"signer\" title=\"{}\">signed by {}</span>",
            escape(&title),
            escape(&label)
        ),
        Some(Signed::Unreadable(why)) => format!(
            "<span class=\"signer\" title=\"{}\">signature unreadable</span>",
            escape(&why)
        ),
    };
    let _ = writeln!(
        page,
        "<figure>{picture}<figcaption><span class=\"swatch\" style=\"background:{swatch}\"></span>\
         <span class=\"name\" title=\"{name}\">{name}</span><span class=\"rgb\">{rgb}</span>{signer}</figcaption></figure>"
    );
}

/// Who signed an image, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signed {
    /// A signature names its key: `label` is the principal listed for it,
    /// or its fingerprint; `title` gives the details.
    By { label: String, title: String },
    /// The kept signature cannot be read or parsed; the text says why.
    Unreadable(String),
}

/// The signer of a trusted image, from the signature the server kept for
/// it; `None` for an image kept without one.
fn signer(data: &Path, item: &Item, signers: Option<&AllowedSigners>) -> Option<Signed> {
    if item.folder == Folder::NotTrusted {
        return None;
    }
    let path = data
        .join(SIGNATURES)
        .join(item.folder.as_str())
        .join(format!("{}.sig", item.name));
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Signed::Unreadable(e.to_string())),
    };
    let mut armored = Vec::new();
    if let Err(e) = file
        .take(sshsig::MAX_SIGNATURE as u64 + 1)
        .read_to_end(&mut armored)
    {
        return Some(Signed::Unreadable(e.to_string()));
    }
    Some(named(&armored, signers))
}

/// Names the key of an armored signature.
fn named(armored: &[u8], signers: Option<&AllowedSigners>) -> Signed {
    let signature = match Signature::parse(armored) {
        Ok(s) => s,
        Err(e) => return Signed::Unreadable(e.to_string()),
    };
    let key = signature.public_key();
    let namespace = String::from_utf8_lossy(signature.namespace());
    let fingerprint = key.fingerprint();
    let title = format!("{} {fingerprint}, namespace {namespace}", key.algorithm());
    // The entry the server would match now, else any entry listing the key:
    // one expired since still names who signed.
    let listed = signers.and_then(|s| {
        s.find(key, &namespace, SystemTime::now())
            .ok()
            .or_else(|| s.signers().iter().find(|e| e.key() == key))
    });
    match listed {
        Some(entry) => Signed::By {
            label: entry.principals().to_string(),
            title,
        },
        None => Signed::By {
            label: fingerprint,
            title,
        },
    }
}

/// Escapes text for HTML content and attribute values.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Percent-encodes a file name for a relative URL.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Builds and writes a gallery and returns the summary line, timed.
pub fn run(
    data: &Path,
    out: &Output,
    jobs: usize,
    signers: Option<&AllowedSigners>,
) -> Result<(String, String), Error> {
    let started = Instant::now();
    let (page, summary) = build(data, out, jobs, signers)?;
    let line = format!(
        "gallery: {summary} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok((page, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(rgb: [u8; 3], w: u32, h: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in Folder::ALL {
            fs::create_dir(dir.path().join(f.as_str())).unwrap();
        }
        fs::write(dir.path().join("red/a.png"), png([200, 10, 10], 400, 300)).unwrap();
        fs::write(dir.path().join("red/b <&>.png"), png([150, 0, 0], 20, 20)).unwrap();
        fs::write(dir.path().join("blue/c.png"), png([0, 0, 99], 8, 8)).unwrap();
        fs::write(dir.path().join("not_trusted/junk.txt"), b"not an image").unwrap();
        fs::write(dir.path().join("green/.hidden"), b"x").unwrap();
        dir
    }

    #[test]
    fn page_lists_every_folder_with_counts_and_cards() {
        let dir = data_dir();
        let out = Output::File(dir.path().join("gallery.html"));
        let (page, summary) = build(dir.path(), &out, 2, None).unwrap();
        assert_eq!(summary.counts, [2, 0, 1, 1]);
        assert_eq!(
            (summary.made, summary.cached, summary.unreadable),
            (3, 0, 1)
        );
        for (folder, count) in [("red", 2), ("green", 0), ("blue", 1), ("not_trusted", 1)] {
            assert!(
                page.contains(&format!("data-folder=\"{folder}\" data-count=\"{count}\"")),
                "{folder}"
            );
        }
        assert!(
            page.contains("r=200.0 g=10.0 b=10.0") && page.contains("background:rgb(200,10,10)")
        );
        assert!(
            page.contains("b &lt;&amp;&gt;.png") && !page.contains("b <&>.png"),
            "names are escaped"
        );
        assert!(
            page.contains("src=\".thumbs/red/a.png.jpg\"")
                && page.contains("href=\"red/b%20%3C%26%3E.png\"")
        );
        assert!(page.contains("not an image"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing external"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("gallery.html")).unwrap(),
            page
        );
        let thumb =
            image::load_from_memory(&fs::read(dir.path().join(".thumbs/red/a.png.jpg")).unwrap())
                .unwrap();
        assert_eq!((thumb.width(), thumb.height()), (160, 120));
    }

    #[test]
    fn decodes_share_one_memory_budget() {
        let dir = data_dir();
        // A budget that holds one 500x500 decode (its pixels and the
        // decoder's working memory) but never two at once, so that they
        // wait for each other; a 1000x1000 one never fits.
        let peak = |bytes: &[u8]| classify::open(bytes, &limits()).unwrap().peak_memory();
        let budget = peak(&png([0, 200, 0], 500, 500)) * 3 / 2;
        for (name, rgb) in [
            ("g1", [0, 200, 0]),
            ("g2", [0, 190, 0]),
            ("g3", [0, 180, 0]),
        ] {
            fs::write(
                dir.path().join(format!("green/{name}.png")),
                png(rgb, 500, 500),
            )
            .unwrap();
        }
        let big = png([0, 99, 0], 1000, 1000);
        assert!(peak(&big) > budget);
        fs::write(dir.path().join("green/big.png"), big).unwrap();
        let guards = Guards::with_budget(budget);
        let out = Output::File(dir.path().join("gallery.html"));
        let (page, summary) = build_guarded(dir.path(), &out, 4, None, &guards).unwrap();
        assert_eq!(summary.counts, [2, 4, 1, 1]);
        // Made: a, b, c and the three that fit one at a time; unreadable:
        // the junk and the image that could never fit.
        assert_eq!((summary.made, summary.unreadable), (6, 2));
        assert!(page.contains("r=0.0 g=180.0 b=0.0"));
        assert!(!dir.path().join(".thumbs/green/big.png.jpg").exists());
        assert_eq!(guards.budget.used(), 0, "every reservation was given back");
    }

    #[test]
    fn thumbnails_are_cached_and_remade_only_when_needed() {
        let dir = data_dir();
        let out = Output::File(dir.path().join("gallery.html"));
        build(dir.path(), &out, 2, None).unwrap();
        let (_, again) = build(dir.path(), &out, 2, None).unwrap();
        assert_eq!((again.made, again.cached, again.unreadable), (0, 3, 1));
        // A replaced image and a missing thumbnail are made again; a deleted
        // image's thumbnail goes.
        fs::write(dir.path().join("blue/c.png"), png([0, 0, 250], 9, 9)).unwrap();
        fs::remove_file(dir.path().join(".thumbs/red/a.png.jpg")).unwrap();
        fs::remove_file(dir.path().join("red/b <&>.png")).unwrap();
        let (page, third) = build(dir.path(), &out, 2, None).unwrap();
        assert_eq!((third.made, third.cached), (2, 0));
        assert!(page.contains("r=0.0 g=0.0 b=250.0"));
        assert!(!dir.path().join(".thumbs/red/b <&>.png.jpg").exists());
    }

    #[test]
    fn elsewhere_or_on_stdout_the_page_embeds_its_thumbnails() {
        let dir = data_dir();
        let (page, _) = build(dir.path(), &Output::Stdout, 1, None).unwrap();
        assert_eq!(page.matches("src=\"data:image/jpeg;base64,").count(), 3);
        assert!(
            !page.contains("href=\"red/"),
            "no links into a volume the page left"
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let (page, _) = build(
            dir.path(),
            &Output::File(elsewhere.path().join("g.html")),
            1,
            None,
        )
        .unwrap();
        assert_eq!(page.matches("data:image/jpeg;base64,").count(), 3);
    }

    #[test]
    fn means_come_from_the_index_when_the_server_filed_the_image() {
        let dir = data_dir();
        let bytes = fs::read(dir.path().join("blue/c.png")).unwrap();
        let index = dir.path().join(".index/sealed");
        fs::create_dir_all(&index).unwrap();
        std::os::unix::fs::symlink(
            "blue/c.png r=1.5 g=2.5 b=99.0",
            index.join(Digest::of(&bytes).hex()),
        )
        .unwrap();
        let (page, _) = build(dir.path(), &Output::Stdout, 1, None).unwrap();
        assert!(
            page.contains("r=1.5 g=2.5 b=99.0"),
            "the recorded means are used"
        );
    }

    #[test]
    fn a_missing_data_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        assert!(matches!(
            build(&missing, &Output::Stdout, 1, None),
            Err(Error::Read { .. })
        ));
        assert!(!missing.exists(), "nothing is created");
        let empty = tempfile::tempdir().unwrap();
        let (page, summary) = build(empty.path(), &Output::Stdout, 1, None).unwrap();
        assert_eq!(summary.counts, [0; 4]);
        assert!(page.contains("0 image(s)"));
    }

    #[test]
    fn trusted_images_show_who_signed_them() {
        let dir = data_dir();
        let fixture = |f: &str| {
            fs::read(format!(
                "{}/test-data/sshsig/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let sigs = dir.path().join(SIGNATURES);
        for folder in ["red", "blue", "not_trusted"] {
            fs::create_dir_all(sigs.join(folder)).unwrap();
        }
        fs::write(sigs.join("red/a.png.sig"), fixture("ed25519.sig")).unwrap();
        fs::write(sigs.join("red/b <&>.png.sig"), b"not a signature").unwrap();
        fs::write(sigs.join("blue/c.png.sig"), fixture("rsa3072.sig")).unwrap();
        // Only the trusted folders have signers.
        fs::write(
            sigs.join("not_trusted/junk.txt.sig"),
            fixture("ed25519.sig"),
        )
        .unwrap();
        let alice = Signature::parse(&fixture("ed25519.sig")).unwrap();
        let alice = alice.public_key().fingerprint();
        let rsa = Signature::parse(&fixture("rsa3072.sig")).unwrap();
        let rsa = rsa.public_key().fingerprint();

        let (page, _) = build(dir.path(), &Output::Stdout, 1, None).unwrap();
        assert_eq!(page.matches("class=\"signer\"").count(), 3, "{page}");
        assert!(page.contains(&format!("signed by {alice}")), "{page}");
        assert!(page.contains(&format!("signed by {rsa}")), "{page}");
        assert!(page.contains("signature unreadable"), "{page}");

        let listed =
            AllowedSigners::parse(&String::from_utf8(fixture("allowed_signers")).unwrap()).unwrap();
        let (page, _) = build(dir.path(), &Output::Stdout, 1, Some(&listed)).unwrap();
        assert!(page.contains("signed by alice@example.com<"), "{page}");
        assert!(
            page.contains(&format!(
                "title=\"ssh-ed25519 {alice}, namespace colorsort\""
            )),
            "{page}"
        );
        assert!(page.contains("signed by rsa@example.com<"), "{page}");
        // A file listing neither key names them by fingerprint.
        let other = fs::read_to_string(format!(
            "{}/test-data/sshsig/keys/other-ed25519.pub",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let other = AllowedSigners::parse(&format!("bob@example.com {other}")).unwrap();
        let (page, _) = build(dir.path(), &Output::Stdout, 1, Some(&other)).unwrap();
        assert!(page.contains(&format!("signed by {alice}<")), "{page}");
        assert!(!page.contains("bob@example.com"), "{page}");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(percent("a b/ü.png"), "a%20b%2F%C3%BC.png");
    }
}
