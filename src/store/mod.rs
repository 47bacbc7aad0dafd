//! The data directory: its layout, the server key file, durable filing of
//! uploads, and the per-folder counts that `STATS` reports.
//!
//! ```text
//! DATA/
//!   key.pem          the server's RSA private key, PKCS#1 PEM, mode 0600
//!   key.pub          its OpenSSH public key line, for `age -R`
//!   allowed_signers  the known senders, if the operator put it there
//!   red/ green/ blue/ not_trusted/
//!   signatures/FOLDER/NAME.sig
//!                    the signature each signed upload FOLDER/NAME came
//!                    with, exactly as received
//!   .staging/        files being written; one folder per running server
//!   .index/sealed/   content index of red/, green/ and blue/
//!   .index/plain/    content index of not_trusted/
//!   .index/sealed.lock, .index/plain.lock
//!                    under which stale entries are replaced
//! ```
//!
//! Filing is durable: a file is written into this server's staging folder,
//! fsynced, published into its class folder with `link(2)`, which fails
//! rather than overwrite, and the class folder is fsynced, all before the
//! caller replies `OK`. A crash at any step leaves either no file in the class
//! folder or the whole file; the staging folder it leaves behind is removed at
//! the next start.
//!
//! A signed upload's signature is published first, under the name the
//! image is about to take: staged and fsynced like the image, linked as
//! `signatures/FOLDER/NAME.sig` (which fails rather than overwrite, so a
//! taken signature name moves the image to the next free variant too), and
//! that folder fsynced, before the image is linked. So an image never
//! exists, even after a crash, without the signature it was filed with.
//! What a crash can leave is the reverse: a `.sig` whose image was never
//! linked. Such a leftover vouches for nothing (a signature is checked
//! against the image, and there is none), is outside the folders `STATS`
//! counts, and is never paired with a later image: signed uploads cannot
//! take its name, and unsigned ones skip it.
//!
//! The content index makes re-sending idempotent. Each stored upload has an
//! entry named by the SHA-256 of its content: a symbolic link whose target
//! text (never followed) is where the file was stored and its colour, in a
//! versioned format of the index's own, independent of the `OK` reply. A
//! symbolic link is created whole, in one step, and creation fails if the
//! name exists, so the entry is also a race-free claim: when two uploads of
//! the same content race, both are filed, the first to claim the entry wins,
//! and the other removes its copy and reports the winner's as a duplicate.
//! An entry proven stale (its file gone, or holding other content) is
//! replaced under a lock, so that two claimers of it end with one copy.
//! Trusted uploads (the class folders) and untrusted ones (`not_trusted/`)
//! are indexed apart, and an upload is a duplicate only of a copy in its own
//! class: content first sent plain and then by a trusted sender is filed by
//! colour, and content a trusted sender filed, sent again plain, is filed
//! again in `not_trusted/`.
//!
//! Several servers may share one data directory (replicas on one volume).
//! Everything here is safe across processes, not just threads: names are
//! claimed by `link(2)`, the key by the same, stale index entries are
//! replaced under each index's advisory lock (`flock(2)`), and each server's
//! staging folder is guarded by another that a starting server tests before
//! it removes a folder as a crashed server's leftover.
//!
//! This file holds the store, its folders and its filing; beside it,
//! `staging` owns the staging folders and publishing by link, `index` the
//! content index, and `keyfile` the key files.

use crate::classify::Class;
use crate::identity;
use crate::protocol::Stored;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

mod identity_files;
mod index;
mod staging;

/// The folder, in the data directory, that holds each signed upload's
/// signature, in a folder named like the upload's.
pub const SIGNATURES: &str = "signatures";

pub use identity_files::{KEY_FILE, PUB_FILE};
pub use index::{Trust, Unreadable};
pub use staging::Lack;

use index::{Entry, INDEX};

/// The folders uploads are filed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Folder {
    /// Sealed uploads whose mean is reddest.
    Red,
    /// Sealed uploads whose mean is greenest.
    Green,
    /// Sealed uploads whose mean is bluest.
    Blue,
    /// Plaintext uploads, whatever their colour.
    NotTrusted,
}

impl Folder {
    /// Every folder, in `STATS` order.
    pub const ALL: [Folder; 4] = [Folder::Red, Folder::Green, Folder::Blue, Folder::NotTrusted];

    /// The folder's name on disk and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Folder::Red => Class::Red.as_str(),
            Folder::Green => Class::Green.as_str(),
            Folder::Blue => Class::Blue.as_str(),
            Folder::NotTrusted => "not_trusted",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The content index the folder's files belong to.
    pub fn trust(self) -> Trust {
        match self {
            Folder::NotTrusted => Trust::NotTrusted,
            Folder::Red | Folder::Green | Folder::Blue => Trust::Trusted,
        }
    }
}

impl From<Class> for Folder {
    fn from(class: Class) -> Folder {
        match class {
            Class::Red => Folder::Red,
            Class::Green => Folder::Green,
            Class::Blue => Folder::Blue,
        }
    }
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where [`Store::file`] put an upload.
#[derive(Debug)]
pub struct Filed {
    /// The stored copy: this upload's, or, marked `dup`, the copy of the
    /// same content that another upload filed first.
    pub stored: Stored,
    /// Why the copy could not be indexed, if it could not; the file is
    /// stored and durable all the same, but a later upload of the same
    /// content may not be recognised as a duplicate.
    pub unindexed: Option<Error>,
}

/// The SHA-256 of an upload's content, naming its index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Hashes `content`.
    pub fn of(content: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(content).into())
    }

    /// Hashes the file at `path`, reading it in pieces.
    pub fn of_file(path: &Path) -> io::Result<Digest> {
        use sha2::Digest as _;
        use std::io::Read;
        let mut file = File::open(path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(Digest(hasher.finalize().into())),
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Lowercase hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What can go wrong with the data directory.
#[derive(Debug)]
pub enum Error {
    /// A filesystem operation failed; `what` says which, on which path.
    Io { what: String, source: io::Error },
    /// The data directory cannot be written: the server could not store
    /// anything, so it refuses to start.
    NotWritable { path: PathBuf, source: io::Error },
    /// The key file exists but others may read it.
    KeyPermissions { path: PathBuf, mode: u32 },
    /// The key file exists but is not a usable key. It is never replaced:
    /// clients hold its public half.
    KeyInvalid {
        path: PathBuf,
        source: identity::Error,
    },
    /// A key could not be generated.
    KeyGeneration(identity::Error),
    /// No free variant of the name was found.
    NameExhausted(String),
    /// The content index entry kept changing under other uploads' writes.
    IndexContended(String),
    /// The content index entry is not one this server reads; it is left
    /// as it is.
    IndexUnreadable { path: PathBuf, why: Unreadable },
    /// The upload at `path` cannot be described by an index entry.
    Unindexable { path: String, why: Unreadable },
    /// The data directory's filesystem lacks what filing relies on, as the
    /// probe at start found: the server refuses to start.
    Unsuitable { path: PathBuf, lack: Lack },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::NotWritable { path, source } => {
                write!(
                    f,
                    "data directory {} is not writable: {source}",
                    path.display()
                )
            }
            Error::KeyPermissions { path, mode } => write!(
                f,
                "key file {} has mode {mode:04o}, readable by others; run chmod 600 on it",
                path.display()
            ),
            Error::KeyInvalid { path, source } => write!(
                f,
                "key file {} is not a usable key ({source}); it is left as it is: move it away to make a new key",
                path.display()
            ),
            Error::KeyGeneration(e) => write!(f, "cannot generate a key: {e}"),
            Error::NameExhausted(name) => write!(f, "no free name for {name}"),
            Error::IndexContended(hex) => write!(f, "index entry {hex} kept changing"),
            Error::IndexUnreadable { path, why } => write!(
                f,
                "index entry {} is not one this server reads ({why}); it is left as it is",
                path.display()
            ),
            Error::Unindexable { path, why } => write!(f, "cannot index {path}: {why}"),
            Error::Unsuitable { path, lack } => write!(
                f,
                "data directory {} {lack} (see docs/OPERATIONS.md)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Error {
        Error::Io {
            what: "i/o error".into(),
            source,
        }
    }
}

/// Attaches what was being done, and to which path, to an I/O error.
fn ctx<T>(result: io::Result<T>, what: &str, path: &Path) -> Result<T, Error> {
    result.map_err(|source| Error::Io {
        what: format!("{what} {}", path.display()),
        source,
    })
}

/// An open data directory.
pub struct Store {
    root: PathBuf,
    /// This server's own staging folder, locked for the process's life.
    staging: PathBuf,
    /// The lock on it; replaced if the folder has to be made again.
    staging_lock: Mutex<File>,
    /// Staging files whose removal failed, removed at the next filing.
    leftovers: Mutex<Vec<PathBuf>>,
    /// Open handles on the class folders, for fsync.
    folders: [File; 4],
    /// Open handles on their folders in [`SIGNATURES`], for fsync.
    signatures: [File; 4],
    /// Open handles on the two index folders, sealed then plain, for fsync.
    indexes: [File; 2],
    /// Sequence for staging file names.
    next_temp: AtomicU64,
    counts: Mutex<[CountCache; 4]>,
}

/// A folder's file count and the folder mtime it was taken at.
#[derive(Clone, Copy, Default)]
struct CountCache {
    mtime: Option<SystemTime>,
    count: u64,
}

/// How old a folder's mtime must be before a count taken at it is reused.
/// Timestamps are coarse on some filesystems, so a folder changed within
/// this window may change again without its mtime moving.
const COUNT_SETTLE: Duration = Duration::from_secs(2);

impl Store {
    /// Opens the data directory at `root`, creating its layout, checking that
    /// it is writable and that its filesystem has what filing relies on, and
    /// removing staging folders left by servers that are no longer running.
    pub fn open(root: &Path) -> Result<Store, Error> {
        ctx(
            fs::create_dir_all(root),
            "cannot create data directory",
            root,
        )?;
        for folder in Folder::ALL {
            let path = root.join(folder.as_str());
            match fs::create_dir(&path) {
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(Error::NotWritable {
                        path: root.to_path_buf(),
                        source: e,
                    });
                }
                other => other.or_else(ignore_exists).map_err(|source| Error::Io {
                    what: format!("cannot create {}", path.display()),
                    source,
                })?,
            }
        }
        let (staging, staging_lock) = staging::open_instance(root)?;

        let open_dir = |path: PathBuf| {
            fs::create_dir_all(&path)
                .and_then(|()| File::open(&path))
                .map_err(|source| Error::Io {
                    what: format!("cannot open {}", path.display()),
                    source,
                })
        };
        let [r, g, b, n] = Folder::ALL.map(|f| open_dir(root.join(f.as_str())));
        let folders = [r?, g?, b?, n?];
        let [r, g, b, n] = Folder::ALL.map(|f| open_dir(root.join(SIGNATURES).join(f.as_str())));
        let signatures = [r?, g?, b?, n?];
        let [sealed, plain] =
            [Trust::Trusted, Trust::NotTrusted].map(|t| open_dir(root.join(INDEX).join(t.dir())));
        let indexes = [sealed?, plain?];
        // The folders' own entries must be durable before any upload in them
        // is acknowledged; after the first start this finds nothing to write.
        for dir in [root.to_path_buf(), root.join(INDEX), root.join(SIGNATURES)] {
            ctx(
                File::open(&dir).and_then(|d| d.sync_all()),
                "cannot fsync",
                &dir,
            )?;
        }
        let store = Store {
            root: root.to_path_buf(),
            staging,
            staging_lock: Mutex::new(staging_lock),
            leftovers: Mutex::new(Vec::new()),
            folders,
            signatures,
            indexes,
            next_temp: AtomicU64::new(0),
            counts: Mutex::new([CountCache::default(); 4]),
        };
        store.check_writable()?;
        Ok(store)
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes, fsyncs and removes a probe file, so that a read-only volume
    /// is reported at start rather than on the first upload.
    fn check_writable(&self) -> Result<(), Error> {
        let probe = self.staging.join("probe");
        let result = File::create(&probe).and_then(|mut f| {
            f.write_all(b"probe")?;
            f.sync_all()
        });
        let _ = fs::remove_file(&probe);
        result.map_err(|source| Error::NotWritable {
            path: self.root.clone(),
            source,
        })
    }

    /// Files `bytes` in `folder` under `name`, or under a free variant of it
    /// if taken, durably, with the `signature` it came with, if any, and
    /// indexes it under `digest`. `name` must be a safe name (see
    /// [`crate::name`]); `mean` is the colour to record.
    ///
    /// When this returns `Ok`, the file and its signature are complete,
    /// fsynced, and reachable through fsynced folder entries. If the same
    /// content was filed by another upload meanwhile, this upload's copy
    /// and signature are removed again and the other copy is returned,
    /// marked `dup`. When this returns `Err`, no file was published.
    pub fn file(
        &self,
        folder: Folder,
        name: &str,
        bytes: &[u8],
        digest: &Digest,
        mean: [f64; 3],
        signature: Option<&[u8]>,
    ) -> Result<Filed, Error> {
        self.remove_leftovers();
        let temp = self.write_staged(bytes, 0o644)?;
        let sig_temp = match signature.map(|s| self.write_staged(s, 0o644)).transpose() {
            Ok(sig_temp) => sig_temp,
            Err(e) => {
                self.discard(&temp);
                return Err(e);
            }
        };
        let published = self.publish(&temp, folder, name, sig_temp.as_deref());
        self.discard(&temp);
        if let Some(sig_temp) = &sig_temp {
            self.discard(sig_temp);
        }
        let entry = Entry {
            folder,
            name: published?,
            mean,
        };
        let stored = entry.stored(false);
        match self.claim(folder.trust(), digest, &entry) {
            Ok(None) => Ok(Filed {
                stored,
                unindexed: None,
            }),
            Ok(Some(theirs)) => {
                self.unpublish(folder, &stored.path, signature.is_some());
                Ok(Filed {
                    stored: theirs,
                    unindexed: None,
                })
            }
            // The file is durable already: only duplicate detection for it
            // is at risk. Removing it now could take away the copy that
            // another upload, which saw the entry, was just told is stored.
            Err(e) => Ok(Filed {
                stored,
                unindexed: Some(e),
            }),
        }
    }

    /// Files per folder, in [`Folder::ALL`] order, counted from disk. A
    /// folder is recounted only when its mtime moved, so counts stay right
    /// when other servers share the directory, at the cost of one `stat` per
    /// folder per call.
    pub fn counts(&self) -> Result<[u64; 4], Error> {
        let mut cache = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = [0; 4];
        for folder in Folder::ALL {
            let dir = self.root.join(folder.as_str());
            let mtime = ctx(
                fs::metadata(&dir).and_then(|m| m.modified()),
                "cannot stat",
                &dir,
            )?;
            let slot = &mut cache[folder.index()];
            if slot.mtime != Some(mtime) {
                slot.count = ctx(count_files(&dir), "cannot list", &dir)?;
                let settled = SystemTime::now()
                    .duration_since(mtime)
                    .is_ok_and(|age| age >= COUNT_SETTLE);
                slot.mtime = settled.then_some(mtime);
            }
            out[folder.index()] = slot.count;
        }
        Ok(out)
    }
}

fn ignore_exists(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::AlreadyExists {
        Ok(())
    } else {
        Err(e)
    }
}

/// Regular files in `dir` whose names do not start with a dot.
fn count_files(dir: &Path) -> io::Result<u64> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && !entry.file_name().as_encoded_bytes().starts_with(b".") {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    /// Files `bytes` and returns its path; panics on error or duplicate.
    pub(super) fn put(store: &Store, folder: Folder, name: &str, bytes: &[u8]) -> String {
        let stored = store
            .file(
                folder,
                name,
                bytes,
                &Digest::of(bytes),
                [1.0, 2.0, 3.0],
                None,
            )
            .unwrap()
            .stored;
        assert!(!stored.dup, "{name} was a duplicate");
        stored.path
    }

    pub(super) fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn layout_is_created() {
        let (dir, _store) = store();
        for f in ["red", "green", "blue", "not_trusted", ".staging"] {
            assert!(dir.path().join(f).is_dir(), "{f}");
            assert!(dir.path().join(SIGNATURES).join(f).is_dir() || f == ".staging");
        }
    }

    #[test]
    fn counts_follow_the_disk() {
        let (dir, store) = store();
        assert_eq!(store.counts().unwrap(), [0, 0, 0, 0]);
        put(&store, Folder::Red, "a", b"1");
        put(&store, Folder::NotTrusted, "b", b"2");
        assert_eq!(store.counts().unwrap(), [1, 0, 0, 1]);
        // Another process's file, and files that are not uploads.
        fs::write(dir.path().join("blue/x.png"), b"x").unwrap();
        fs::write(dir.path().join("blue/.hidden"), b"x").unwrap();
        fs::create_dir(dir.path().join("blue/sub")).unwrap();
        assert_eq!(store.counts().unwrap(), [1, 0, 1, 1]);
    }

    #[test]
    fn read_only_directory_is_refused_at_open() {
        if is_root() {
            // Root ignores permission bits; the container test covers this.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(err, Error::NotWritable { .. }), "{err}");
    }

    fn is_root() -> bool {
        fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
    }
}
