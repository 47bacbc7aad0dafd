//! Staging and publishing: each server's own staging folder under
//! `.staging/`, held by an instance lock for the process's life; the sweep
//! that removes the folders of servers no longer running; the probe at
//! start that the filesystem has what publishing relies on; writing a file
//! there durably; and publishing it into a class folder by `link(2)` under
//! the first free variant of its name, after its signature, if it has one.

use super::{Error, Folder, SIGNATURES, Store, ctx, ignore_exists};
use crate::name;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// The folder, in the data directory, that holds every server's staging folder.
const STAGING: &str = ".staging";
/// The lock, in [`STAGING`], under which folders are created and swept.
const STAGING_LOCK: &str = ".lock";
/// The lock in each staging folder that its server holds while it runs.
const INSTANCE_LOCK: &str = "lock";
/// Random suffixes tried after the numbered variants of a taken name.
const RANDOM_NAME_TRIES: usize = 16;
/// Staging files whose removal failed that are remembered for a retry: a
/// file is only left when storage fails between its creation and its
/// removal, so this many cover every upload in flight at an outage.
const MAX_LEFTOVERS: usize = 1024;

/// Creates and locks this server's staging folder in the data directory
/// `root`, and removes those of servers no longer running. Returns the
/// folder and its lock, which must be held for as long as the folder is used.
pub(super) fn open_instance(root: &Path) -> Result<(PathBuf, File), Error> {
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
    let (staging, staging_lock) = create_instance(root, &staging_root)?;
    sweep_dead_instances(&staging_root, &staging);
    drop(sweep);
    Ok((staging, staging_lock))
}

/// Creates and locks this server's staging folder, `.staging/<random>/`,
/// once [`probe`] has found in it that the filesystem of the data
/// directory `root` will do.
fn create_instance(root: &Path, staging_root: &Path) -> Result<(PathBuf, File), Error> {
    loop {
        let dir = staging_root.join(crate::random::hex(8));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return ctx(Err(e), "cannot create", &dir),
        }
        // Before the lock exists, so that a failed probe can remove the
        // folder: NFS and FUSE keep an open file that is unlinked under a
        // hidden name until it is closed. Unlocked, the folder is still safe
        // from sweeping, which needs the lock this server holds.
        probe(root, &dir)?;
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
        // Opened for writing: NFS emulates flock(2) with a byte-range lock,
        // and an exclusive one needs a file open for writing, so read-only
        // every folder would seem alive. A lock that cannot be opened but
        // is there may be a live server's.
        let alive = match OpenOptions::new()
            .write(true)
            .open(path.join(INSTANCE_LOCK))
        {
            Ok(lock) => lock.try_lock().is_err(),
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        };
        if !alive {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// What the filesystem of the data directory lacks, as found by `probe`.
#[derive(Debug)]
pub enum Lack {
    /// `link(2)` failed: the filesystem has no hard links.
    Link(io::Error),
    /// `link(2)` succeeded, but the new name is not a second name of the
    /// file: it has another inode, or the link count did not become 2.
    LinkCopied,
    /// `link(2)` onto an existing name succeeded instead of failing with
    /// EEXIST, or the name no longer names the file it did.
    LinkReplaced,
    /// `link(2)` onto an existing name failed, but not with EEXIST.
    LinkExisting(io::Error),
    /// Creating a file that exists, with O_EXCL, succeeded.
    Exclusive,
    /// `fsync(2)` of a file failed.
    FileSync(io::Error),
    /// `fsync(2)` of a directory failed.
    DirSync(io::Error),
}

impl fmt::Display for Lack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LINK: &str = "colorsort publishes uploads with link(2)";
        match self {
            Lack::Link(e) => write!(
                f,
                "does not support hard links: link(2) failed: {e}; {LINK}: use a filesystem that has them"
            ),
            Lack::LinkCopied => write!(
                f,
                "does not support hard links: link(2) made a new file, not a second name for the same one; {LINK}: use a filesystem that has real hard links"
            ),
            Lack::LinkReplaced => write!(
                f,
                "lets link(2) replace an existing name instead of failing with EEXIST; {LINK}, which must never overwrite: use a filesystem whose link(2) refuses an existing name"
            ),
            Lack::LinkExisting(e) => write!(
                f,
                "answers link(2) onto an existing name with {e}, not EEXIST; {LINK} and takes EEXIST to mean the name is taken: use a filesystem that answers EEXIST"
            ),
            Lack::Exclusive => f.write_str(
                "ignores O_EXCL: creating a file that exists succeeded; colorsort creates its files with O_EXCL: use a filesystem that honours it",
            ),
            Lack::FileSync(e) => write!(
                f,
                "cannot fsync a file: fsync(2) failed: {e}; colorsort fsyncs every upload before it replies OK: use a filesystem that supports it"
            ),
            Lack::DirSync(e) => write!(
                f,
                "cannot fsync a directory: fsync(2) failed: {e}; colorsort fsyncs an upload's folder before it replies OK: use a filesystem that supports it"
            ),
        }
    }
}

/// The filesystem calls [`probe`] makes, so that its judgement can be
/// tested on answers that no filesystem at hand gives.
trait ProbeFs {
    /// Creates an empty file with O_EXCL.
    fn create(&self, path: &Path) -> io::Result<()>;
    /// Writes to the file and fsyncs it.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// `link(2)`.
    fn link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// The file a name refers to, (device, inode), and its link count.
    fn identity(&self, path: &Path) -> io::Result<((u64, u64), u64)>;
    /// Fsyncs the directory.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Removes the name, if it can.
    fn remove(&self, path: &Path);
}

/// The real filesystem.
struct Disk;

impl ProbeFs for Disk {
    fn create(&self, path: &Path) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.write_all(b"probe")?;
        file.sync_all()
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }

    fn identity(&self, path: &Path) -> io::Result<((u64, u64), u64)> {
        let meta = fs::symlink_metadata(path)?;
        Ok(((meta.dev(), meta.ino()), meta.nlink()))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn remove(&self, path: &Path) {
        let _ = fs::remove_file(path);
    }
}

/// Checks, in the new, empty staging folder `dir`, that the filesystem of
/// the data directory `root` has what filing relies on: O_EXCL, fsync of
/// files and directories, and `link(2)` that makes a second name and fails
/// with EEXIST on an existing one. On failure `dir` is removed again, and
/// the server must not start.
fn probe(root: &Path, dir: &Path) -> Result<(), Error> {
    let result = probe_with(&Disk, root, dir);
    if result.is_err() {
        let _ = fs::remove_dir_all(dir);
    }
    result
}

/// [`probe`] on `fs`, leaving none of its files behind.
fn probe_with(fs: &impl ProbeFs, root: &Path, dir: &Path) -> Result<(), Error> {
    let [a, b, c] = ["probe.a", "probe.b", "probe.c"].map(|n| dir.join(n));
    let result = probe_steps(fs, root, dir, [&a, &b, &c]);
    for path in [&a, &b, &c] {
        fs.remove(path);
    }
    result
}

/// The steps of [`probe_with`], on the three names `a`, `b` and `c`.
fn probe_steps(
    fs: &impl ProbeFs,
    root: &Path,
    dir: &Path,
    [a, b, c]: [&Path; 3],
) -> Result<(), Error> {
    let lacks = |lack| Error::Unsuitable {
        path: root.to_path_buf(),
        lack,
    };
    let not_writable = |source| Error::NotWritable {
        path: root.to_path_buf(),
        source,
    };
    fs.create(a).map_err(not_writable)?;
    match fs.create(a) {
        Ok(()) => return Err(lacks(Lack::Exclusive)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return ctx(Err(e), "cannot create", a),
    }
    fs.sync_file(a).map_err(|e| lacks(Lack::FileSync(e)))?;
    fs.link(a, b).map_err(|e| lacks(Lack::Link(e)))?;
    let (file, _) = ctx(fs.identity(a), "cannot stat", a)?;
    let second_name = |path: &Path| ctx(fs.identity(path), "cannot stat", path);
    if second_name(b)? != (file, 2) {
        return Err(lacks(Lack::LinkCopied));
    }
    fs.create(c).map_err(not_writable)?;
    match fs.link(c, b) {
        Ok(()) => return Err(lacks(Lack::LinkReplaced)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(lacks(Lack::LinkExisting(e))),
    }
    if second_name(b)?.0 != file {
        return Err(lacks(Lack::LinkReplaced));
    }
    fs.sync_dir(dir).map_err(|e| lacks(Lack::DirSync(e)))
}

impl Store {
    /// Removes this server's staging folder, for a clean stop. The caller
    /// promises that nothing is being filed any more; if removal fails, the
    /// next server to start sweeps the folder.
    pub fn close(&self) {
        let _ = fs::remove_dir_all(&self.staging);
    }

    /// Writes `bytes` to a new file in this server's staging folder and
    /// fsyncs it. The caller publishes or removes it (see [`Store::discard`]).
    pub(super) fn write_staged(&self, bytes: &[u8], mode: u32) -> Result<PathBuf, Error> {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let path = self.staging.join(format!("{n}.tmp"));
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
        };
        let mut file = ctx(self.in_staging(create), "cannot write", &path)?;
        let written = file.write_all(bytes).and_then(|()| {
            // A failed fsync is a failed store: the page cache may already
            // have dropped the dirty pages, so retrying could "succeed" with
            // the data lost.
            file.sync_all()
        });
        if let Err(e) = written {
            self.discard(&path);
            return ctx(Err(e), "cannot write", &path);
        }
        Ok(path)
    }

    /// Runs `create`, which makes a new file in this server's staging
    /// folder; if the folder is gone, makes it again, locked, and runs
    /// `create` once more.
    ///
    /// The folder goes when another server, starting, takes it for a
    /// crashed server's: where locks do not outlive a restart of the
    /// storage servers (GlusterFS drops them when a brick restarts, see
    /// docs/OPERATIONS.md), this server's instance lock can vanish while it
    /// runs. Filing then goes on in the new folder; the uploads staged in
    /// the old one fail, unacknowledged.
    pub(super) fn in_staging<T>(&self, create: impl Fn() -> io::Result<T>) -> io::Result<T> {
        match create() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.restore_staging()?;
                create()
            }
            other => other,
        }
    }

    /// Makes this server's staging folder again if it is gone, and locks
    /// it, under the lock that sweeps are made under.
    fn restore_staging(&self) -> io::Result<()> {
        let mut held = self.staging_lock.lock().unwrap_or_else(|p| p.into_inner());
        let staging_root = self.root.join(STAGING);
        let sweep = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(staging_root.join(STAGING_LOCK))?;
        sweep.lock()?;
        let lock_path = self.staging.join(INSTANCE_LOCK);
        // Another thread of this server may have made it again already.
        if lock_path.exists() {
            return Ok(());
        }
        fs::create_dir(&self.staging).or_else(ignore_exists)?;
        let lock = File::create(&lock_path)?;
        lock.try_lock().map_err(io::Error::from)?;
        *held = lock;
        Ok(())
    }

    /// Removes a staging file this server no longer needs. If that fails
    /// (the storage may be unreachable for a while), the file is noted and
    /// removed at a later filing, so that no staging file outlives an
    /// outage in a running server's folder.
    /// At most [`MAX_LEFTOVERS`] are noted; past that, the rest wait for
    /// the folder's removal at a clean stop, or the sweep after a crash.
    pub(super) fn discard(&self, path: &Path) {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                let mut leftovers = self.leftovers.lock().unwrap_or_else(|p| p.into_inner());
                if leftovers.len() < MAX_LEFTOVERS {
                    leftovers.push(path.to_path_buf());
                }
            }
            _ => {}
        }
    }

    /// Retries the removals [`Store::discard`] noted as failed; those that
    /// fail again stay noted.
    pub(super) fn remove_leftovers(&self) {
        let mut leftovers = self.leftovers.lock().unwrap_or_else(|p| p.into_inner());
        leftovers.retain(|path| match fs::remove_file(path) {
            Err(e) => e.kind() != io::ErrorKind::NotFound,
            Ok(()) => false,
        });
    }

    /// Links the staged file `temp` into `folder` under `name`, or under the
    /// first free variant of it, and fsyncs the folder. Returns the name
    /// it took.
    ///
    /// With a staged signature `sig`, each candidate name is claimed for the
    /// signature first, as `signatures/folder/name.sig`, and that folder
    /// fsynced, before the image is linked: an image never exists without
    /// its signature. If the image's name turns out to be taken, the
    /// signature just linked is removed and the next variant tried. Without
    /// one, a name whose `.sig` is left over from a crash is skipped, so
    /// that it never seems to sign an image it was not made for.
    pub(super) fn publish(
        &self,
        temp: &Path,
        folder: Folder,
        name: &str,
        sig: Option<&Path>,
    ) -> Result<String, Error> {
        let dir = self.root.join(folder.as_str());
        let random =
            (0..RANDOM_NAME_TRIES).map(|_| name::with_suffix(name, &crate::random::hex(4)));
        for candidate in name::variants(name).chain(random) {
            let sig_dest = self.signature_path(folder, &candidate);
            match sig {
                Some(sig) => match fs::hard_link(sig, &sig_dest) {
                    Ok(()) => {
                        if let Err(e) = self.signatures[folder.index()].sync_all() {
                            let _ = fs::remove_file(&sig_dest);
                            return ctx(Err(e), "cannot fsync", &sig_dest);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return ctx(Err(e), "cannot publish", &sig_dest),
                },
                None if sig_dest.symlink_metadata().is_ok() => continue,
                None => {}
            }
            // Removes the signature of a candidate the image did not take.
            let drop_sig = || {
                if sig.is_some() {
                    let _ = fs::remove_file(&sig_dest);
                }
            };
            let dest = dir.join(&candidate);
            match fs::hard_link(temp, &dest) {
                Ok(()) => {
                    if let Err(e) = self.folders[folder.index()].sync_all() {
                        // The entry may or may not survive a crash; it must
                        // not stay behind an error reply.
                        let _ = fs::remove_file(&dest);
                        drop_sig();
                        return ctx(Err(e), "cannot fsync", &dir);
                    }
                    return Ok(candidate);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => drop_sig(),
                Err(e) => {
                    drop_sig();
                    return ctx(Err(e), "cannot publish", &dest);
                }
            }
        }
        Err(Error::NameExhausted(name.to_string()))
    }

    /// Where the signature of the file `name` in `folder` is kept.
    fn signature_path(&self, folder: Folder, name: &str) -> PathBuf {
        self.root
            .join(SIGNATURES)
            .join(folder.as_str())
            .join(format!("{name}.sig"))
    }

    /// Removes a file this call published but must not keep, then, if it
    /// was `signed`, its signature: in that order, so that the image never
    /// outlives its signature. Best effort: if it fails, a duplicate copy
    /// stays, which loses nothing.
    pub(super) fn unpublish(&self, folder: Folder, path: &str, signed: bool) {
        if fs::remove_file(self.root.join(path)).is_err() {
            return;
        }
        let _ = self.folders[folder.index()].sync_all();
        let name = path.split_once('/').map_or(path, |(_, name)| name);
        if signed && fs::remove_file(self.signature_path(folder, name)).is_ok() {
            let _ = self.signatures[folder.index()].sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::count_files;
    use super::super::tests::{put, store};
    use super::*;
    use std::sync::Arc;
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

    /// Files `bytes` with `sig` and returns its path; panics on error or
    /// duplicate.
    fn put_signed(store: &Store, folder: Folder, name: &str, bytes: &[u8], sig: &[u8]) -> String {
        let digest = super::super::Digest::of(bytes);
        let stored = store
            .file(folder, name, bytes, &digest, [0.0; 3], Some(sig))
            .unwrap()
            .stored;
        assert!(!stored.dup, "{name} was a duplicate");
        stored.path
    }

    fn signatures(dir: &Path, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join(SIGNATURES).join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_signature_is_kept_under_the_name_its_image_took() {
        let (dir, store) = store();
        let d = dir.path();
        // A name taken by an unsigned image moves image and signature on together.
        put(&store, Folder::Red, "a.png", b"unsigned");
        assert_eq!(
            put_signed(&store, Folder::Red, "a.png", b"one", b"sig one"),
            "red/a-1.png"
        );
        assert_eq!(
            fs::read(d.join("signatures/red/a-1.png.sig")).unwrap(),
            b"sig one"
        );
        // A leftover signature, whose image was never linked, keeps its
        // name from signed and unsigned uploads alike.
        fs::write(d.join("signatures/red/b.png.sig"), b"leftover").unwrap();
        assert_eq!(
            put_signed(&store, Folder::Red, "b.png", b"two", b"sig two"),
            "red/b-1.png"
        );
        assert_eq!(put(&store, Folder::Red, "b.png", b"three"), "red/b-2.png");
        assert_eq!(
            fs::read(d.join("signatures/red/b.png.sig")).unwrap(),
            b"leftover"
        );
        assert_eq!(
            signatures(d, "red"),
            ["a-1.png.sig", "b-1.png.sig", "b.png.sig"]
        );
        // Signatures are not uploads: STATS does not count them.
        assert_eq!(store.counts().unwrap(), [4, 0, 0, 0]);
        assert_eq!(
            fs::read_dir(&store.staging).unwrap().count(),
            1,
            "staging holds only its lock"
        );
    }

    #[test]
    fn racing_signed_uploads_of_one_content_keep_one_signature() {
        let (dir, store) = store();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let digest = super::super::Digest::of(b"same");
                    let sig = format!("signature {t}");
                    let stored = store
                        .file(
                            Folder::Green,
                            "s.png",
                            b"same",
                            &digest,
                            [0.0; 3],
                            Some(sig.as_bytes()),
                        )
                        .unwrap()
                        .stored;
                    (stored, sig)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(s, _)| !s.dup).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let (winner, sig) = winners[0];
        // The losers took their images and signatures away again; the one
        // copy left has the winner's signature beside it.
        let name = winner.path.strip_prefix("green/").unwrap();
        assert_eq!(count_files(&dir.path().join("green")).unwrap(), 1);
        assert_eq!(signatures(dir.path(), "green"), [format!("{name}.sig")]);
        assert_eq!(
            fs::read(
                dir.path()
                    .join("signatures/green")
                    .join(format!("{name}.sig"))
            )
            .unwrap(),
            sig.as_bytes()
        );
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

    /// How a [`FakeFs`] departs from a filesystem that has everything.
    #[derive(Clone, Copy, Debug)]
    enum Quirk {
        None,
        CreateFails(i32),
        IgnoresExcl,
        FileSyncFails(i32),
        LinkFails(i32),
        LinkCopies,
        LinkReplaces,
        LinkOntoExistingFails(i32),
        ReplacesButSaysExists,
        StatFails(i32),
        DirSyncFails(i32),
    }

    /// Names and inodes in memory, with one [`Quirk`].
    struct FakeFs {
        quirk: Quirk,
        names: std::cell::RefCell<std::collections::HashMap<PathBuf, u64>>,
        next_inode: std::cell::Cell<u64>,
    }

    impl FakeFs {
        fn new(quirk: Quirk) -> FakeFs {
            FakeFs {
                quirk,
                names: Default::default(),
                next_inode: std::cell::Cell::new(1),
            }
        }

        fn new_inode(&self) -> u64 {
            let inode = self.next_inode.get();
            self.next_inode.set(inode + 1);
            inode
        }

        fn inode(&self, path: &Path) -> io::Result<u64> {
            let names = self.names.borrow();
            names
                .get(path)
                .copied()
                .ok_or(io::ErrorKind::NotFound.into())
        }
    }

    impl ProbeFs for FakeFs {
        fn create(&self, path: &Path) -> io::Result<()> {
            if let Quirk::CreateFails(errno) = self.quirk {
                return Err(io::Error::from_raw_os_error(errno));
            }
            let exists = self.names.borrow().contains_key(path);
            match (exists, self.quirk) {
                (true, Quirk::IgnoresExcl) => Ok(()),
                (true, _) => Err(io::ErrorKind::AlreadyExists.into()),
                (false, _) => {
                    let inode = self.new_inode();
                    self.names.borrow_mut().insert(path.to_path_buf(), inode);
                    Ok(())
                }
            }
        }

        fn sync_file(&self, path: &Path) -> io::Result<()> {
            match self.quirk {
                Quirk::FileSyncFails(errno) => Err(io::Error::from_raw_os_error(errno)),
                _ => self.inode(path).map(drop),
            }
        }

        fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
            let inode = self.inode(from)?;
            let exists = self.names.borrow().contains_key(to);
            let inode = match (self.quirk, exists) {
                (Quirk::LinkFails(errno), _) => return Err(io::Error::from_raw_os_error(errno)),
                (Quirk::LinkOntoExistingFails(errno), true) => {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                (Quirk::LinkReplaces, _) => inode,
                (Quirk::ReplacesButSaysExists, true) => {
                    self.names.borrow_mut().insert(to.to_path_buf(), inode);
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                (_, true) => return Err(io::ErrorKind::AlreadyExists.into()),
                (Quirk::LinkCopies, false) => self.new_inode(),
                (_, false) => inode,
            };
            self.names.borrow_mut().insert(to.to_path_buf(), inode);
            Ok(())
        }

        fn identity(&self, path: &Path) -> io::Result<((u64, u64), u64)> {
            if let Quirk::StatFails(errno) = self.quirk {
                return Err(io::Error::from_raw_os_error(errno));
            }
            let inode = self.inode(path)?;
            let links = self
                .names
                .borrow()
                .values()
                .filter(|&&i| i == inode)
                .count();
            Ok(((7, inode), links as u64))
        }

        fn sync_dir(&self, _path: &Path) -> io::Result<()> {
            match self.quirk {
                Quirk::DirSyncFails(errno) => Err(io::Error::from_raw_os_error(errno)),
                _ => Ok(()),
            }
        }

        fn remove(&self, path: &Path) {
            self.names.borrow_mut().remove(path);
        }
    }

    /// The kind of a probe's error, with its OS error number if it has one.
    fn probe_error(e: &Error) -> String {
        let errno = |e: &io::Error| e.raw_os_error().unwrap_or(0);
        match e {
            Error::Unsuitable { lack, .. } => match lack {
                Lack::Link(e) => format!("link {}", errno(e)),
                Lack::LinkCopied => "copied".into(),
                Lack::LinkReplaced => "replaced".into(),
                Lack::LinkExisting(e) => format!("existing {}", errno(e)),
                Lack::Exclusive => "exclusive".into(),
                Lack::FileSync(e) => format!("file sync {}", errno(e)),
                Lack::DirSync(e) => format!("dir sync {}", errno(e)),
            },
            Error::NotWritable { source, .. } => format!("not writable {}", errno(source)),
            Error::Io { what, source } => format!("io {what} {}", errno(source)),
            other => format!("other {other}"),
        }
    }

    #[test]
    fn probe_names_what_the_filesystem_lacks() {
        // EPERM, EACCES, EROFS, EIO, EINVAL, ENOSYS, EOPNOTSUPP.
        let (eperm, eacces, erofs, eio, einval, enosys, eopnotsupp) = (1, 13, 30, 5, 22, 38, 95);
        let cases = [
            (Quirk::None, "ok"),
            (Quirk::CreateFails(erofs), "not writable 30"),
            (Quirk::CreateFails(eacces), "not writable 13"),
            (Quirk::IgnoresExcl, "exclusive"),
            (Quirk::FileSyncFails(einval), "file sync 22"),
            (Quirk::FileSyncFails(eio), "file sync 5"),
            (Quirk::LinkFails(eperm), "link 1"),
            (Quirk::LinkFails(enosys), "link 38"),
            (Quirk::LinkFails(eopnotsupp), "link 95"),
            (Quirk::LinkCopies, "copied"),
            (Quirk::LinkReplaces, "replaced"),
            (Quirk::ReplacesButSaysExists, "replaced"),
            (Quirk::LinkOntoExistingFails(eperm), "existing 1"),
            (Quirk::StatFails(eio), "io cannot stat /s/probe.a 5"),
            (Quirk::DirSyncFails(einval), "dir sync 22"),
            (Quirk::DirSyncFails(enosys), "dir sync 38"),
        ];
        for (quirk, want) in cases {
            let fake = FakeFs::new(quirk);
            let got = match probe_with(&fake, Path::new("/data"), Path::new("/s")) {
                Ok(()) => "ok".to_string(),
                Err(e) => probe_error(&e),
            };
            assert_eq!(got, want, "{quirk:?}");
            assert!(
                fake.names.borrow().is_empty(),
                "{quirk:?} left {:?}",
                fake.names.borrow()
            );
        }
    }

    #[test]
    fn probe_errors_name_the_directory_and_the_cause() {
        let unsuitable = |lack| Error::Unsuitable {
            path: "/data".into(),
            lack,
        };
        let eperm = || io::Error::from_raw_os_error(1);
        let cases = [
            (
                unsuitable(Lack::Link(eperm())),
                "data directory /data does not support hard links: link(2) failed: Operation not permitted (os error 1); colorsort publishes uploads with link(2): use a filesystem that has them (see docs/OPERATIONS.md)",
            ),
            (
                unsuitable(Lack::LinkReplaced),
                "data directory /data lets link(2) replace an existing name instead of failing with EEXIST; colorsort publishes uploads with link(2), which must never overwrite: use a filesystem whose link(2) refuses an existing name (see docs/OPERATIONS.md)",
            ),
            (
                unsuitable(Lack::DirSync(io::Error::from_raw_os_error(22))),
                "data directory /data cannot fsync a directory: fsync(2) failed: Invalid argument (os error 22); colorsort fsyncs an upload's folder before it replies OK: use a filesystem that supports it (see docs/OPERATIONS.md)",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
    }

    #[test]
    fn probe_passes_here_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let probed = dir.path().join("probed");
        fs::create_dir(&probed).unwrap();
        probe(dir.path(), &probed).unwrap();
        assert_eq!(fs::read_dir(&probed).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_probe_removes_the_folder_it_probed_in() {
        let dir = tempfile::tempdir().unwrap();
        let probed = dir.path().join("probed");
        // A name in the way fails the first create, as it cannot in a new
        // staging folder.
        fs::create_dir_all(probed.join("probe.a")).unwrap();
        let err = probe(dir.path(), &probed).unwrap_err();
        assert_eq!(probe_error(&err), "not writable 17", "{err}");
        assert!(!probed.exists());
        assert!(dir.path().exists());
    }

    #[test]
    fn a_staging_folder_swept_while_running_is_made_again() {
        let (dir, store) = store();
        fs::remove_dir_all(&store.staging).unwrap();
        put(&store, Folder::Red, "a", b"1");
        assert_eq!(count_files(&dir.path().join("red")).unwrap(), 1);
        // Locked again, so that the next sweep spares it.
        let other = OpenOptions::new()
            .write(true)
            .open(store.staging.join(INSTANCE_LOCK))
            .unwrap();
        assert!(other.try_lock().is_err());
        let _second = Store::open(dir.path()).unwrap();
        assert!(store.staging.exists());
        assert_eq!(fs::read_dir(&store.staging).unwrap().count(), 1);
    }

    #[test]
    fn staging_files_that_could_not_be_removed_are_removed_later() {
        let (_dir, store) = store();
        // remove_file(2) fails on a directory, as it fails on storage that
        // cannot be reached, and not with NotFound.
        let stuck = store.staging.join("0.tmp");
        fs::create_dir(&stuck).unwrap();
        store.discard(&stuck);
        fs::remove_dir(&stuck).unwrap();
        fs::write(&stuck, b"half a file").unwrap();
        put(&store, Folder::Blue, "b", b"2");
        assert!(!stuck.exists());
        assert!(store.leftovers.lock().unwrap().is_empty());
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
}
