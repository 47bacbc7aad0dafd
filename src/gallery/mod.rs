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
//! in parallel. The worker that makes a thumbnail also classifies the
//! image, as `colorsort classify` would.
//!
//! Decoding is held to what the server holds an upload to: each image is
//! decoded in a decode worker ([`crate::sandbox`]), which checks the header
//! under the same pixel limit before any pixel exists and makes the
//! thumbnail; the file and the worker's memory are reserved against one
//! memory budget shared by every thread (sized as the server's default,
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

mod cache;
mod page;
mod signer;
mod thumbs;

use crate::allowed_signers::AllowedSigners;
use crate::sandbox::Local;
use crate::store::Folder;
use cache::{Cached, MANIFEST, prune, read_manifest, write_atomically, write_manifest};
use page::render;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};
use thumbs::{Made, make_thumbnails};

/// The thumbnail cache, under the data directory.
pub const THUMBS: &str = ".thumbs";
/// Longest side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 160;

/// What can stop a gallery from being written.
#[derive(Debug)]
pub enum Error {
    /// The data directory or one of its folders cannot be read.
    Read { path: PathBuf, source: io::Error },
    /// The page could not be written.
    Write { path: PathBuf, source: io::Error },
    /// The decode workers could not be started.
    Workers(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Error::Write { path, source } => write!(f, "cannot write {}: {source}", path.display()),
            Error::Workers(e) => write!(f, "cannot start the decode workers: {e}"),
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

/// Builds the gallery of `data` and writes it to `out`, using `jobs`
/// threads for new thumbnails and `signers` to name who signed what.
/// Returns the page and what was done.
pub fn build(
    data: &Path,
    out: &Output,
    jobs: usize,
    signers: Option<&AllowedSigners>,
) -> Result<(String, Summary), Error> {
    let local = thumbs::local(jobs).map_err(Error::Workers)?;
    build_guarded(data, out, jobs, signers, &local)
}

/// [`build`], decoding under `local`.
fn build_guarded(
    data: &Path,
    out: &Output,
    jobs: usize,
    signers: Option<&AllowedSigners>,
    local: &Local,
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
    let made = make_thumbnails(data, &items, &todo, jobs.max(1), local);
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
    use crate::classify;
    use crate::sshsig::Signature;
    use crate::store::SIGNATURES;
    use std::io::Cursor;

    fn png(rgb: [u8; 3], w: u32, h: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    /// [`build`], with the workers of the test build's binary.
    fn build_test(
        data: &Path,
        out: &Output,
        jobs: usize,
        signers: Option<&AllowedSigners>,
    ) -> Result<(String, Summary), Error> {
        let program = crate::sandbox::testing::program();
        let local = Local::new(crate::budget::default_limit().0, jobs, program).unwrap();
        build_guarded(data, out, jobs, signers, &local)
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
        let (page, summary) = build_test(dir.path(), &out, 2, None).unwrap();
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
        // wait for each other; a 1600x1600 one never fits. A thumbnail's
        // charge: its worker's address space, the file and its copy in the
        // worker, what opening it takes, and two decodes' peak, one after
        // the other.
        let peak = |bytes: &[u8]| {
            let len = bytes.len() as u64;
            let peak = classify::open(bytes, &classify::Limits::default())
                .unwrap()
                .peak_memory();
            crate::sandbox::OVERHEAD + 2 * len + classify::open_memory(bytes) + 2 * peak
        };
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
        let big = png([0, 99, 0], 1600, 1600);
        assert!(peak(&big) > budget);
        fs::write(dir.path().join("green/big.png"), big).unwrap();
        let program = crate::sandbox::testing::program();
        let local = Local::new(budget, 4, program).unwrap();
        let out = Output::File(dir.path().join("gallery.html"));
        let (page, summary) = build_guarded(dir.path(), &out, 4, None, &local).unwrap();
        assert_eq!(summary.counts, [2, 4, 1, 1]);
        // Made: a, b, c and the three that fit one at a time; unreadable:
        // the junk and the image that could never fit.
        assert_eq!((summary.made, summary.unreadable), (6, 2));
        assert!(page.contains("r=0.0 g=180.0 b=0.0"));
        assert!(!dir.path().join(".thumbs/green/big.png.jpg").exists());
        assert_eq!(
            local.guards.budget.used(),
            0,
            "every reservation was given back"
        );
    }

    #[test]
    fn thumbnails_are_cached_and_remade_only_when_needed() {
        let dir = data_dir();
        let out = Output::File(dir.path().join("gallery.html"));
        build_test(dir.path(), &out, 2, None).unwrap();
        let (_, again) = build_test(dir.path(), &out, 2, None).unwrap();
        assert_eq!((again.made, again.cached, again.unreadable), (0, 3, 1));
        // A replaced image and a missing thumbnail are made again; a deleted
        // image's thumbnail goes.
        fs::write(dir.path().join("blue/c.png"), png([0, 0, 250], 9, 9)).unwrap();
        fs::remove_file(dir.path().join(".thumbs/red/a.png.jpg")).unwrap();
        fs::remove_file(dir.path().join("red/b <&>.png")).unwrap();
        let (page, third) = build_test(dir.path(), &out, 2, None).unwrap();
        assert_eq!((third.made, third.cached), (2, 0));
        assert!(page.contains("r=0.0 g=0.0 b=250.0"));
        assert!(!dir.path().join(".thumbs/red/b <&>.png.jpg").exists());
    }

    #[test]
    fn elsewhere_or_on_stdout_the_page_embeds_its_thumbnails() {
        let dir = data_dir();
        let (page, _) = build_test(dir.path(), &Output::Stdout, 1, None).unwrap();
        assert_eq!(page.matches("src=\"data:image/jpeg;base64,").count(), 3);
        assert!(
            !page.contains("href=\"red/"),
            "no links into a volume the page left"
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let (page, _) = build_test(
            dir.path(),
            &Output::File(elsewhere.path().join("g.html")),
            1,
            None,
        )
        .unwrap();
        assert_eq!(page.matches("data:image/jpeg;base64,").count(), 3);
    }

    #[test]
    fn a_missing_data_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        assert!(matches!(
            build_test(&missing, &Output::Stdout, 1, None),
            Err(Error::Read { .. })
        ));
        assert!(!missing.exists(), "nothing is created");
        let empty = tempfile::tempdir().unwrap();
        let (page, summary) = build_test(empty.path(), &Output::Stdout, 1, None).unwrap();
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

        let (page, _) = build_test(dir.path(), &Output::Stdout, 1, None).unwrap();
        assert_eq!(page.matches("class=\"signer\"").count(), 3, "{page}");
        assert!(page.contains(&format!("signed by {alice}")), "{page}");
        assert!(page.contains(&format!("signed by {rsa}")), "{page}");
        assert!(page.contains("signature unreadable"), "{page}");

        let listed =
            AllowedSigners::parse(&String::from_utf8(fixture("allowed_signers")).unwrap()).unwrap();
        let (page, _) = build_test(dir.path(), &Output::Stdout, 1, Some(&listed)).unwrap();
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
        let (page, _) = build_test(dir.path(), &Output::Stdout, 1, Some(&other)).unwrap();
        assert!(page.contains(&format!("signed by {alice}<")), "{page}");
        assert!(!page.contains("bob@example.com"), "{page}");
    }
}
