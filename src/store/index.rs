//! The content index, which makes re-sending idempotent: one entry per
//! stored content, named by its SHA-256 under `.index/sealed/` or
//! `.index/plain/`, a symbolic link whose target text is the stored path and
//! colour. Looking an entry up believes it only once the file it names still
//! holds that content; creating one is the race-free claim that decides
//! which of two uploads of one content is the duplicate.

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

/// Which content index an upload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A SEAL upload, filed by colour.
    Sealed,
    /// A PUT upload, filed in `not_trusted/`.
    Plain,
}

impl Trust {
    /// The folder, in [`INDEX`], of this trust's index.
    pub(super) fn dir(self) -> &'static str {
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
}
