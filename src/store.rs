//! The data directory: its layout, the server key file, durable filing of
//! uploads, and the per-folder counts that `STATS` reports.
//!
//! ```text
//! DATA/
//!   key.pem          the server's RSA private key, PKCS#1 PEM, mode 0600
//!   key.pub          its OpenSSH public key line, for `age -R`
//!   red/ green/ blue/ not_trusted/
//!   .staging/        files being written; one folder per running server
//!   .index/sealed/   content index of red/, green/ and blue/
//!   .index/plain/    content index of not_trusted/
//! ```
//!
//! Filing is durable: a file is written into this server's staging folder,
//! fsynced, published into its class folder with `link(2)`, which fails
//! rather than overwrite, and the class folder is fsynced, all before the
//! caller replies `OK`. A crash at any step leaves either no file in the class
//! folder or the whole file; the staging folder it leaves behind is removed at
//! the next start.
//!
//! The content index makes re-sending idempotent. Each stored upload has an
//! entry named by the SHA-256 of its content: a symbolic link whose target
//! text (never followed) is where the file was stored and its colour, as the
//! `OK` reply gives them. A symbolic link is created whole, in one step, and
//! creation fails if the name exists, so the entry is also a race-free claim:
//! when two uploads of the same content race, both are filed, the first to
//! claim the entry wins, and the other removes its copy and reports the
//! winner's as a duplicate. Sealed and plain uploads are indexed apart, so
//! that sealing content first sent plain still files it by colour.
//!
//! Several servers may share one data directory (replicas on one volume).
//! Everything here is safe across processes, not just threads: names are
//! claimed by `link(2)`, the key by the same, and each server's staging
//! folder is guarded by an advisory lock (`flock(2)`) that a starting server
//! tests before it removes a folder as a crashed server's leftover.

use crate::key::{self, Identity};
use crate::name;
use crate::protocol::Stored;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Name of the private key file in the data directory.
pub const KEY_FILE: &str = "key.pem";
/// Name of the public key file in the data directory.
pub const PUB_FILE: &str = "key.pub";
const STAGING: &str = ".staging";
const INDEX: &str = ".index";
const STAGING_LOCK: &str = ".lock";
const INSTANCE_LOCK: &str = "lock";
/// Random suffixes tried after the numbered variants of a taken name.
const RANDOM_NAME_TRIES: usize = 16;
/// Attempts to claim an index entry whose file was deleted behind our back.
const CLAIM_TRIES: usize = 3;

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
            Folder::Red => "red",
            Folder::Green => "green",
            Folder::Blue => "blue",
            Folder::NotTrusted => "not_trusted",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The content index the folder's files belong to.
    pub fn trust(self) -> Trust {
        match self {
            Folder::NotTrusted => Trust::Plain,
            Folder::Red | Folder::Green | Folder::Blue => Trust::Sealed,
        }
    }
}

impl From<crate::classify::Class> for Folder {
    fn from(class: crate::classify::Class) -> Folder {
        match class {
            crate::classify::Class::Red => Folder::Red,
            crate::classify::Class::Green => Folder::Green,
            crate::classify::Class::Blue => Folder::Blue,
        }
    }
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which content index an upload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A SEAL upload, filed by colour.
    Sealed,
    /// A PUT upload, filed in `not_trusted/`.
    Plain,
}

impl Trust {
    fn dir(self) -> &'static str {
        match self {
            Trust::Sealed => "sealed",
            Trust::Plain => "plain",
        }
    }

    /// The indexes that count as "already stored" for an upload of this
    /// trust: a sealed copy satisfies a plain upload, not the reverse.
    fn satisfied_by(self) -> &'static [Trust] {
        match self {
            Trust::Sealed => &[Trust::Sealed],
            Trust::Plain => &[Trust::Sealed, Trust::Plain],
        }
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
    KeyInvalid { path: PathBuf, source: key::Error },
    /// A key could not be generated.
    KeyGeneration(key::Error),
    /// No free variant of the name was found.
    NameExhausted(String),
    /// The content index entry kept changing under other servers' writes.
    IndexContended(String),
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
    _staging_lock: File,
    /// Open handles on the class folders, for fsync.
    folders: [File; 4],
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
    /// it is writable, and removing staging folders left by servers that are
    /// no longer running.
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
        let staging_root = root.join(STAGING);
        fs::create_dir(&staging_root)
            .or_else(ignore_exists)
            .map_err(|source| Error::NotWritable {
                path: root.to_path_buf(),
                source,
            })?;

        // Creating our staging folder and sweeping dead ones happen under one
        // lock shared by every server on this directory, so that no server
        // sees another's folder between its creation and its locking.
        let sweep_path = staging_root.join(STAGING_LOCK);
        let sweep = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&sweep_path)
            .map_err(|source| Error::NotWritable {
                path: root.to_path_buf(),
                source,
            })?;
        ctx(sweep.lock(), "cannot lock", &sweep_path)?;
        let (staging, staging_lock) = create_instance(&staging_root)?;
        sweep_dead_instances(&staging_root, &staging);
        drop(sweep);

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
        let [sealed, plain] =
            [Trust::Sealed, Trust::Plain].map(|t| open_dir(root.join(INDEX).join(t.dir())));
        let indexes = [sealed?, plain?];
        // The folders' own entries must be durable before any upload in them
        // is acknowledged; after the first start this finds nothing to write.
        for dir in [root.to_path_buf(), root.join(INDEX)] {
            ctx(
                File::open(&dir).and_then(|d| d.sync_all()),
                "cannot fsync",
                &dir,
            )?;
        }
        let store = Store {
            root: root.to_path_buf(),
            staging,
            _staging_lock: staging_lock,
            folders,
            indexes,
            next_temp: AtomicU64::new(0),
            counts: Mutex::new([CountCache::default(); 4]),
        };
        store.check_writable()?;
        Ok(store)
    }

    /// Removes this server's staging folder, for a clean stop. The caller
    /// promises that nothing is being filed any more; if removal fails, the
    /// next server to start sweeps the folder.
    pub fn close(&self) {
        let _ = fs::remove_dir_all(&self.staging);
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

    /// Loads the server key, or generates a `bits`-bit key if there is none.
    /// Returns the key and whether it was generated now.
    ///
    /// An existing key is never replaced, even if unreadable or corrupt: the
    /// clients that pinned it would be orphaned. If several servers start on
    /// one empty directory, each may generate a key, but only the first to
    /// publish it wins and the others load the winner's, so exactly one key
    /// results.
    pub fn load_or_create_key(&self, bits: usize) -> Result<(Identity, bool), Error> {
        let path = self.root.join(KEY_FILE);
        if let Some(identity) = load_key(&path)? {
            self.write_public(&identity)?;
            return Ok((identity, false));
        }
        let identity = Identity::generate(bits).map_err(Error::KeyGeneration)?;
        let pem = identity.to_pem().map_err(Error::KeyGeneration)?;
        let temp = self.write_staged(pem.as_bytes(), 0o600)?;
        let published = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        let (identity, created) = match published {
            Ok(()) => {
                ctx(
                    File::open(&self.root).and_then(|d| d.sync_all()),
                    "cannot fsync",
                    &self.root,
                )?;
                (identity, true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match load_key(&path)? {
                Some(theirs) => (theirs, false),
                None => {
                    return Err(Error::Io {
                        what: format!("cannot read {}", path.display()),
                        source: e,
                    });
                }
            },
            Err(e) => return ctx(Err(e), "cannot publish key", &path),
        };
        self.write_public(&identity)?;
        Ok((identity, created))
    }

    /// Keeps `key.pub` in step with the key. It is derived data, so unlike
    /// uploads it is replaced in place (atomically, by rename) when stale.
    fn write_public(&self, identity: &Identity) -> Result<(), Error> {
        let path = self.root.join(PUB_FILE);
        let line = format!("{}\n", identity.public().to_ssh_line(crate::key::COMMENT));
        if fs::read(&path).is_ok_and(|old| old == line.as_bytes()) {
            return Ok(());
        }
        let temp = self.write_staged(line.as_bytes(), 0o644)?;
        ctx(fs::rename(&temp, &path), "cannot write", &path)
    }

    /// Writes `bytes` to a new file in this server's staging folder and
    /// fsyncs it. The caller publishes or removes it.
    fn write_staged(&self, bytes: &[u8], mode: u32) -> Result<PathBuf, Error> {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let path = self.staging.join(format!("{n}.tmp"));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(bytes)?;
                // A failed fsync is a failed store: the page cache may already
                // have dropped the dirty pages, so retrying could "succeed" with
                // the data lost.
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return ctx(Err(e), "cannot write", &path);
        }
        Ok(path)
    }

    /// Where content with this digest is already stored, if it is; see
    /// [`lookup`].
    pub fn lookup(&self, trust: Trust, digest: &Digest) -> Option<Stored> {
        lookup(&self.root, trust, digest)
    }

    fn entry_path(&self, trust: Trust, digest: &Digest) -> PathBuf {
        entry_path(&self.root, trust, digest)
    }

    /// Files `bytes` in `folder` under `name`, or under a free variant of it
    /// if taken, durably, and indexes it under `digest`. `name` must be a
    /// safe name (see [`crate::name`]); `mean` is the colour to record.
    ///
    /// When this returns `Ok`, the file is complete, fsynced, and reachable
    /// through an fsynced folder entry. If the same content was filed by
    /// another upload meanwhile, this upload's copy is removed again and the
    /// other copy is returned, marked `dup`. When this returns `Err`, no file
    /// was published.
    pub fn file(
        &self,
        folder: Folder,
        name: &str,
        bytes: &[u8],
        digest: &Digest,
        mean: [f64; 3],
    ) -> Result<Filed, Error> {
        let temp = self.write_staged(bytes, 0o644)?;
        let published = self.publish(&temp, folder, name);
        let _ = fs::remove_file(&temp);
        let stored = Stored {
            path: published?,
            mean,
            dup: false,
        };
        match self.claim(folder.trust(), digest, &stored) {
            Ok(None) => Ok(Filed {
                stored,
                unindexed: None,
            }),
            Ok(Some(theirs)) => {
                self.unpublish(folder, &stored.path);
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

    /// Removes a file this call published but must not keep. Best effort:
    /// if it fails, a duplicate copy stays, which loses nothing.
    fn unpublish(&self, folder: Folder, path: &str) {
        if fs::remove_file(self.root.join(path)).is_ok() {
            let _ = self.folders[folder.index()].sync_all();
        }
    }

    /// Creates the index entry for `stored`. Returns the copy that won if
    /// the content was indexed first by someone else.
    fn claim(
        &self,
        trust: Trust,
        digest: &Digest,
        stored: &Stored,
    ) -> Result<Option<Stored>, Error> {
        let entry = self.entry_path(trust, digest);
        let dir = &self.indexes[usize::from(trust == Trust::Plain)];
        let sync = || ctx(dir.sync_all(), "cannot fsync index of", &entry);
        for _ in 0..CLAIM_TRIES {
            match std::os::unix::fs::symlink(stored.to_string(), &entry) {
                Ok(()) => return sync().map(|()| None),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match read_entry(&self.root, trust, digest) {
                        // A stale entry that names the very path just
                        // published, which link(2) gave to this call alone,
                        // with this content: it describes this copy now.
                        Some(theirs) if theirs.path == stored.path => return sync().map(|()| None),
                        Some(theirs) => return Ok(Some(theirs)),
                        // The entry names a file that is gone or holds other
                        // content: it describes nothing, so it may be replaced.
                        None => {
                            let _ = fs::remove_file(&entry);
                        }
                    }
                }
                Err(e) => return ctx(Err(e), "cannot index", &entry),
            }
        }
        Err(Error::IndexContended(digest.hex()))
    }

    fn publish(&self, temp: &Path, folder: Folder, name: &str) -> Result<String, Error> {
        let dir = self.root.join(folder.as_str());
        let random =
            (0..RANDOM_NAME_TRIES).map(|_| name::with_suffix(name, &crate::random::hex(4)));
        for candidate in name::variants(name).chain(random) {
            let dest = dir.join(&candidate);
            match fs::hard_link(temp, &dest) {
                Ok(()) => {
                    if let Err(e) = self.folders[folder.index()].sync_all() {
                        // The entry may or may not survive a crash; it must
                        // not stay behind an error reply.
                        let _ = fs::remove_file(&dest);
                        return ctx(Err(e), "cannot fsync", &dir);
                    }
                    return Ok(format!("{folder}/{candidate}"));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return ctx(Err(e), "cannot publish", &dest),
            }
        }
        Err(Error::NameExhausted(name.to_string()))
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

/// Where content with this digest is stored in the data directory `root`,
/// if it is: for a sealed upload, in a class folder; for a plain one,
/// anywhere. The file an entry names is hashed before it is believed, so
/// an entry whose file was deleted, or replaced by other content under the
/// same name, does not count. Reads only; the gallery uses it without
/// opening a [`Store`].
pub fn lookup(root: &Path, trust: Trust, digest: &Digest) -> Option<Stored> {
    trust
        .satisfied_by()
        .iter()
        .find_map(|&t| read_entry(root, t, digest))
}

fn entry_path(root: &Path, trust: Trust, digest: &Digest) -> PathBuf {
    root.join(INDEX).join(trust.dir()).join(digest.hex())
}

/// The stored copy an index entry names, if the entry is sound and the file
/// there still holds the content.
fn read_entry(root: &Path, trust: Trust, digest: &Digest) -> Option<Stored> {
    let target = fs::read_link(entry_path(root, trust, digest)).ok()?;
    let stored = Stored::parse(target.to_str()?)?;
    let folder = Folder::ALL
        .into_iter()
        .find(|f| f.as_str() == stored.folder())?;
    let name = stored.path.split_once('/')?.1;
    let sound = name::Name::parse(name.as_bytes()) == Ok(name::Name::Given(name.to_string()));
    let path = root.join(folder.as_str()).join(name);
    let present = sound && Digest::of_file(&path).is_ok_and(|d| d == *digest);
    present.then_some(Stored {
        dup: true,
        ..stored
    })
}

fn ignore_exists(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::AlreadyExists {
        Ok(())
    } else {
        Err(e)
    }
}

/// Reads and checks the key file; `None` if there is none.
fn load_key(path: &Path) -> Result<Option<Identity>, Error> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return ctx(Err(e), "cannot read key file", path),
    };
    if !meta.is_file() {
        let e = io::Error::other("not a regular file");
        return ctx(Err(e), "cannot use key file", path);
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let pem = ctx(fs::read_to_string(path), "cannot read key file", path)?;
    Identity::from_pem(&pem)
        .map(Some)
        .map_err(|source| Error::KeyInvalid {
            path: path.to_path_buf(),
            source,
        })
}

/// Creates and locks this server's staging folder, `.staging/<random>/`.
fn create_instance(staging_root: &Path) -> Result<(PathBuf, File), Error> {
    loop {
        let dir = staging_root.join(crate::random::hex(8));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return ctx(Err(e), "cannot create", &dir),
        }
        let lock_path = dir.join(INSTANCE_LOCK);
        let lock = ctx(File::create(&lock_path), "cannot create", &lock_path)?;
        ctx(lock.lock(), "cannot lock", &lock_path)?;
        return Ok((dir, lock));
    }
}

/// Removes every staging folder whose lock no running server holds.
/// Failures are left for the next start: they cost disk space, not data.
fn sweep_dead_instances(staging_root: &Path, ours: &Path) {
    let Ok(entries) = fs::read_dir(staging_root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let alive = File::open(path.join(INSTANCE_LOCK)).is_ok_and(|f| f.try_lock().is_err());
        if !alive {
            let _ = fs::remove_dir_all(&path);
        }
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
    use std::sync::Arc;

    /// Files `bytes` and returns its path; panics on error or duplicate.
    fn put(store: &Store, folder: Folder, name: &str, bytes: &[u8]) -> String {
        let stored = store
            .file(folder, name, bytes, &Digest::of(bytes), [1.0, 2.0, 3.0])
            .unwrap()
            .stored;
        assert!(!stored.dup, "{name} was a duplicate");
        stored.path
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn layout_is_created() {
        let (dir, _store) = store();
        for f in ["red", "green", "blue", "not_trusted", ".staging"] {
            assert!(dir.path().join(f).is_dir(), "{f}");
        }
    }

    #[test]
    fn taken_names_get_variants_and_nothing_is_overwritten() {
        let (dir, store) = store();
        let a = put(&store, Folder::Red, "a.png", b"one");
        let b = put(&store, Folder::Red, "a.png", b"two");
        let c = put(&store, Folder::Blue, "a.png", b"three");
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("red/a.png", "red/a-1.png", "blue/a.png")
        );
        assert_eq!(fs::read(dir.path().join("red/a.png")).unwrap(), b"one");
        assert_eq!(fs::read(dir.path().join("red/a-1.png")).unwrap(), b"two");
        // Staging holds only the lock once files are filed.
        let left: Vec<_> = fs::read_dir(&store.staging)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("lock")]);
    }

    #[test]
    fn concurrent_filing_of_one_name_loses_nothing() {
        let (dir, store) = store();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    (0..10)
                        .map(|i| {
                            put(
                                &store,
                                Folder::Green,
                                "same.jpg",
                                format!("{t}-{i}").as_bytes(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut paths: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 80);
        assert_eq!(count_files(&dir.path().join("green")).unwrap(), 80);
    }

    #[test]
    fn same_content_is_stored_once() {
        let (dir, store) = store();
        let digest = Digest::of(b"pixels");
        assert_eq!(store.lookup(Trust::Sealed, &digest), None);
        let first = put(&store, Folder::Green, "a.png", b"pixels");
        let found = store.lookup(Trust::Sealed, &digest).unwrap();
        assert_eq!(
            (found.path.as_str(), found.mean, found.dup),
            (first.as_str(), [1.0, 2.0, 3.0], true)
        );
        // A plain upload of sealed content is a duplicate; a sealed upload of
        // plain content is not.
        assert!(store.lookup(Trust::Plain, &digest).is_some());
        put(&store, Folder::NotTrusted, "p.png", b"plain only");
        assert!(
            store
                .lookup(Trust::Sealed, &Digest::of(b"plain only"))
                .is_none()
        );
        // Deleting the file makes the entry stale: the content is new again.
        fs::remove_file(dir.path().join(&first)).unwrap();
        assert_eq!(store.lookup(Trust::Sealed, &digest), None);
        assert_eq!(
            put(&store, Folder::Green, "b.png", b"pixels"),
            "green/b.png"
        );
        assert_eq!(
            store.lookup(Trust::Sealed, &digest).unwrap().path,
            "green/b.png"
        );
    }

    #[test]
    fn content_refiled_under_its_deleted_name_is_kept() {
        // The index entry outlives a file deleted by hand; filing the same
        // content under the same name publishes at the path the stale entry
        // names. That copy is the upload's own and must stay.
        let (dir, store) = store();
        let first = put(&store, Folder::Red, "same.png", b"pixels");
        fs::remove_file(dir.path().join(&first)).unwrap();
        assert_eq!(
            put(&store, Folder::Red, "same.png", b"pixels"),
            "red/same.png"
        );
        assert_eq!(
            fs::read(dir.path().join("red/same.png")).unwrap(),
            b"pixels"
        );
        let found = store.lookup(Trust::Sealed, &Digest::of(b"pixels")).unwrap();
        assert_eq!(found.path, "red/same.png");
    }

    #[test]
    fn an_entry_whose_name_now_holds_other_content_does_not_count() {
        let (dir, store) = store();
        put(&store, Folder::Red, "a.png", b"first content");
        fs::remove_file(dir.path().join("red/a.png")).unwrap();
        put(&store, Folder::Red, "a.png", b"other content");
        // The first content's entry names red/a.png, which now holds other
        // bytes: the first content is not stored, and must be filed again.
        let first = Digest::of(b"first content");
        assert_eq!(store.lookup(Trust::Sealed, &first), None);
        assert_eq!(
            put(&store, Folder::Red, "a.png", b"first content"),
            "red/a-1.png"
        );
        assert_eq!(
            store.lookup(Trust::Sealed, &first).unwrap().path,
            "red/a-1.png"
        );
    }

    #[test]
    fn racing_uploads_of_one_content_leave_one_copy() {
        let (dir, store) = store();
        let store = Arc::new(store);
        let digest = Digest::of(b"same bytes");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    store
                        .file(Folder::Blue, "same.png", b"same bytes", &digest, [0.0; 3])
                        .map(|filed| filed.stored)
                        .unwrap()
                })
            })
            .collect();
        let results: Vec<Stored> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|s| !s.dup).count(), 1, "{results:?}");
        assert!(results.iter().all(|s| s.path == results[0].path));
        assert_eq!(count_files(&dir.path().join("blue")).unwrap(), 1);
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
    fn dead_staging_is_swept_and_live_staging_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let dead = dir.path().join(".staging/deadbeef");
        fs::create_dir_all(&dead).unwrap();
        fs::write(dead.join("lock"), b"").unwrap();
        fs::write(dead.join("7.tmp"), b"half a file").unwrap();
        let no_lock = dir.path().join(".staging/nolock");
        fs::create_dir_all(&no_lock).unwrap();
        let second = Store::open(dir.path()).unwrap();
        assert!(!dead.exists());
        assert!(!no_lock.exists());
        assert!(
            first.staging.exists(),
            "a running server's staging folder must survive"
        );
        assert!(second.staging.exists());
        assert_ne!(first.staging, second.staging);
        let first_staging = first.staging.clone();
        drop(first);
        let _third = Store::open(dir.path()).unwrap();
        assert!(
            !first_staging.exists(),
            "a stopped server's staging folder is swept"
        );
        assert!(second.staging.exists());
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

    #[test]
    fn key_problems_are_reported_not_repaired() {
        let (dir, store) = store();
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, b"not a key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            store.load_or_create_key(2048),
            Err(Error::KeyPermissions { mode: 0o644, .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            store.load_or_create_key(2048),
            Err(Error::KeyInvalid { .. })
        ));
        assert_eq!(
            fs::read(&path).unwrap(),
            b"not a key",
            "an existing key file must never be replaced"
        );
    }

    #[test]
    fn existing_key_is_loaded_and_public_line_written() {
        let (dir, store) = store();
        let pem = fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/test-data/keys/test-only-server-key.pem"
        ))
        .unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, pem).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let (identity, created) = store.load_or_create_key(2048).unwrap();
        assert!(!created);
        let public = fs::read_to_string(dir.path().join(PUB_FILE)).unwrap();
        assert_eq!(
            public.trim_end(),
            identity.public().to_ssh_line(crate::key::COMMENT)
        );
    }
}
