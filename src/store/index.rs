//! The content index, which makes re-sending idempotent: one entry per
//! stored content, named by its SHA-256 under `.index/sealed/` (the class
//! folders) or `.index/plain/` (`not_trusted/`), a symbolic link whose
//! target text is the stored path and colour. Looking an entry up believes
//! it only once the file it names, in a folder of the same trust, still
//! holds that content; creating one is the race-free claim that decides
//! which of two uploads of one content is the duplicate.
//!
//! Dedupe follows trust: an upload is a duplicate only of a copy in the
//! folder class it would itself be filed in. A plaintext upload of content
//! a known sender filed by colour is filed again in `not_trusted/`, so that
//! its reply never names, or confirms the existence of, a trusted file.

use super::{Digest, Error, Folder, Store, ctx};
use crate::name;
use crate::protocol::Stored;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The folder, in the data directory, that holds the content indexes.
pub(super) const INDEX: &str = ".index";
/// Attempts to claim an index entry whose file was deleted behind our back.
const CLAIM_TRIES: usize = 3;

/// Which folder class, and content index, an upload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Filed by colour in `red/`, `green/` or `blue/`: a `SEAL`, signed by
    /// a known sender in known-senders mode.
    Trusted,
    /// Filed in `not_trusted/`: a `PUT`, or an unsigned `SEAL` in
    /// known-senders mode.
    NotTrusted,
}

impl Trust {
    /// The folder, in [`INDEX`], of this trust's index. The names are those
    /// of the verbs that filed there before signatures, kept so that
    /// existing data directories keep their index.
    pub(super) fn dir(self) -> &'static str {
        match self {
            Trust::Trusted => "sealed",
            Trust::NotTrusted => "plain",
        }
    }
}

/// Where content with this digest is stored in the data directory `root`,
/// if it is, in a folder of this trust: a trusted upload is a duplicate
/// only of a copy in a class folder, an untrusted one only of a copy in
/// `not_trusted/`. The file an entry names is hashed before it is believed,
/// so an entry whose file was deleted, or replaced by other content under
/// the same name, does not count. Reads only; the gallery uses it without
/// opening a [`Store`].
pub fn lookup(root: &Path, trust: Trust, digest: &Digest) -> Option<Stored> {
    read_entry(root, trust, digest)
}

fn entry_path(root: &Path, trust: Trust, digest: &Digest) -> PathBuf {
    root.join(INDEX).join(trust.dir()).join(digest.hex())
}

/// The stored copy an index entry names, if the entry is sound and the file
/// there still holds the content.
fn read_entry(root: &Path, trust: Trust, digest: &Digest) -> Option<Stored> {
    let target = fs::read_link(entry_path(root, trust, digest)).ok()?;
    let stored = Stored::parse(target.to_str()?)?;
    // An entry naming a folder of the other trust (written by hand, or
    // moved between indexes) describes nothing here.
    let folder = Folder::ALL
        .into_iter()
        .find(|f| f.as_str() == stored.folder() && f.trust() == trust)?;
    let name = stored.path.split_once('/')?.1;
    let sound = name::Name::parse(name.as_bytes()) == Ok(name::Name::Given(name.to_string()));
    let path = root.join(folder.as_str()).join(name);
    let present = sound && Digest::of_file(&path).is_ok_and(|d| d == *digest);
    present.then_some(Stored {
        dup: true,
        ..stored
    })
}

impl Store {
    /// Where content with this digest is already stored, if it is; see
    /// [`lookup`].
    pub fn lookup(&self, trust: Trust, digest: &Digest) -> Option<Stored> {
        lookup(&self.root, trust, digest)
    }

    fn entry_path(&self, trust: Trust, digest: &Digest) -> PathBuf {
        entry_path(&self.root, trust, digest)
    }

    /// Creates the index entry for `stored`. Returns the copy that won if
    /// the content was indexed first by someone else.
    pub(super) fn claim(
        &self,
        trust: Trust,
        digest: &Digest,
        stored: &Stored,
    ) -> Result<Option<Stored>, Error> {
        let entry = self.entry_path(trust, digest);
        let dir = &self.indexes[usize::from(trust == Trust::NotTrusted)];
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
}

#[cfg(test)]
mod tests {
    use super::super::count_files;
    use super::super::tests::{put, store};
    use super::*;
    use std::sync::Arc;
    #[test]
    fn same_content_is_stored_once() {
        let (dir, store) = store();
        let digest = Digest::of(b"pixels");
        assert_eq!(store.lookup(Trust::Trusted, &digest), None);
        let first = put(&store, Folder::Green, "a.png", b"pixels");
        let found = store.lookup(Trust::Trusted, &digest).unwrap();
        assert_eq!(
            (found.path.as_str(), found.mean, found.dup),
            (first.as_str(), [1.0, 2.0, 3.0], true)
        );
        // Deleting the file makes the entry stale: the content is new again.
        fs::remove_file(dir.path().join(&first)).unwrap();
        assert_eq!(store.lookup(Trust::Trusted, &digest), None);
        assert_eq!(
            put(&store, Folder::Green, "b.png", b"pixels"),
            "green/b.png"
        );
        assert_eq!(
            store.lookup(Trust::Trusted, &digest).unwrap().path,
            "green/b.png"
        );
    }

    #[test]
    fn dedupe_follows_trust() {
        let (dir, store) = store();
        // Trusted content is no duplicate for an untrusted upload, which is
        // filed again in not_trusted/ and never told of the trusted copy;
        // nor the reverse.
        let secret = Digest::of(b"alice's private scan");
        put(
            &store,
            Folder::Blue,
            "alice-private-scan.png",
            b"alice's private scan",
        );
        assert_eq!(store.lookup(Trust::NotTrusted, &secret), None);
        assert_eq!(
            put(
                &store,
                Folder::NotTrusted,
                "guess.png",
                b"alice's private scan"
            ),
            "not_trusted/guess.png"
        );
        let plain = Digest::of(b"sent plain");
        put(&store, Folder::NotTrusted, "p.png", b"sent plain");
        assert_eq!(store.lookup(Trust::Trusted, &plain), None);
        // Each class answers with its own copy.
        assert_eq!(
            store.lookup(Trust::Trusted, &secret).unwrap().path,
            "blue/alice-private-scan.png"
        );
        assert_eq!(
            store.lookup(Trust::NotTrusted, &secret).unwrap().path,
            "not_trusted/guess.png"
        );
        // An entry in one index that names a file of the other class (made
        // by hand, or by an older server) counts for neither.
        let entry = dir.path().join(INDEX).join("plain").join(plain.hex());
        fs::remove_file(&entry).unwrap();
        fs::write(dir.path().join("red/p.png"), b"sent plain").unwrap();
        std::os::unix::fs::symlink("red/p.png r=1.0 g=2.0 b=3.0", &entry).unwrap();
        assert_eq!(store.lookup(Trust::NotTrusted, &plain), None);
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
        let found = store
            .lookup(Trust::Trusted, &Digest::of(b"pixels"))
            .unwrap();
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
        assert_eq!(store.lookup(Trust::Trusted, &first), None);
        assert_eq!(
            put(&store, Folder::Red, "a.png", b"first content"),
            "red/a-1.png"
        );
        assert_eq!(
            store.lookup(Trust::Trusted, &first).unwrap().path,
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
                        .file(
                            Folder::Blue,
                            "same.png",
                            b"same bytes",
                            &digest,
                            [0.0; 3],
                            None,
                        )
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
}
