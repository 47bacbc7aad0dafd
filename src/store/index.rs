//! The content index, which makes re-sending idempotent: one entry per
//! stored content, named by its SHA-256 under `.index/sealed/` (the class
//! folders) or `.index/plain/` (`not_trusted/`), a symbolic link whose
//! target text (never followed) records where the content is stored and its
//! colour. Looking an entry up believes it only once the file it names, in a
//! folder of the same trust, still holds that content; creating one is the
//! race-free claim that decides which of two uploads of one content is the
//! duplicate.
//!
//! Dedupe follows trust: an upload is a duplicate only of a copy in the
//! folder class it would itself be filed in. A plaintext upload of content
//! a known sender filed by colour is filed again in `not_trusted/`, so that
//! its reply never names, or confirms the existence of, a trusted file.
//!
//! # Entry format
//!
//! The target text of an entry is, with single spaces and nothing else:
//!
//! ```text
//! v1 FOLDER/NAME R G B
//! ```
//!
//! - `v1`: the format version, always first.
//! - `FOLDER`: `red`, `green`, `blue` or `not_trusted`.
//! - `NAME`: a stored name (see [`crate::name`]): safe characters only, so
//!   never a space or a slash.
//! - `R G B`: the mean of each channel, from 0 to 255, spelt as Rust prints
//!   an `f64`: the shortest decimal that reads back as the same value
//!   (`200.04`, `1`, `0.30000000000000004`), never a sign or an exponent.
//!   Only that spelling is accepted, so an entry's text and its value
//!   determine each other.
//!
//! The format is this module's own, read by [`Entry::parse`] alone: it does
//! not change when the `OK` reply does.
//!
//! Entries from before the format had a version are the reply text of
//! their day: `FOLDER/NAME r=R g=G b=B`, each mean with exactly one decimal
//! (`red/a.png r=200.0 g=10.0 b=0.2`). They are read, with the same checks,
//! for as long as they are sound: taking them for absent would store every
//! file of a re-sent folder a second time. A sound one is never rewritten;
//! a stale one is replaced by a `v1` entry like any other.
//!
//! Any other text (a version this server does not know, such as a newer
//! server's `v2 ...`, or a malformed entry) is one this server cannot
//! judge: it answers no lookup and is never replaced, and an upload of its
//! content is stored and logged as not indexed.
//!
//! # Replacing a stale entry
//!
//! An entry is stale when it is proven to describe nothing: the file it
//! names is missing (`ENOENT`), holds other content, or is in a folder of
//! the other trust. Nothing else makes it stale: an error while hashing the
//! file (`EMFILE`, `EIO`, ...) proves nothing, so the entry stays and the
//! upload is stored unindexed.
//!
//! Claiming is `symlink(2)`, which creates the entry whole or fails with
//! `EEXIST`. On `EEXIST` the claimer takes the index's lock,
//! `.index/sealed.lock` or `.index/plain.lock` (`flock(2)`, on a descriptor
//! of its own, so threads exclude each other as processes do), and only
//! then reads the entry, judges it and acts: a sound entry naming another
//! copy makes this upload the duplicate; a stale one is replaced by
//! `rename(2)` of a new link, made in this server's staging folder, over
//! it. That is a compare-and-swap: the compare (reading and hashing) and
//! the swap happen under one lock that every replacer holds, an entry is
//! never removed (only replaced whole, so it never goes missing for a
//! lock-free `symlink` to fill), and a replacement made by one claimer is
//! sound when the next one reads it, so it is never replaced in turn. Two
//! claimers of one stale entry thus end with one entry and one copy; the
//! second is told of the first's.
//!
//! One race is left to the check after the swap. A stale entry whose file
//! was deleted comes back to life when an upload of the same content takes
//! that very name again (the link is this upload's alone), and a lookup may
//! then answer with it, before any lock is taken. If that happens between a
//! replacer's check and its swap, the replacer finds the named file holding
//! the content afterwards, puts the old entry back, and keeps its own copy
//! unindexed: two copies, and every reply given names a file that exists.
//!
//! Servers from before this format neither read `v1` entries nor take the
//! lock: sharing a data directory with one, a `v1` entry looks stale to it,
//! so it files that content again and rewrites the entry in the old format
//! (which this server reads), and its races may, as before, end with two
//! copies. Nothing is lost either way.

use super::{Digest, Error, Folder, Store, ctx};
use crate::name;
use crate::protocol::Stored;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// The folder, in the data directory, that holds the content indexes.
pub(super) const INDEX: &str = ".index";
/// The version tag that opens every entry this server writes.
const VERSION: &str = "v1";
/// The largest mean a channel can have.
const MAX_MEAN: f64 = 255.0;
/// Attempts to claim an index entry that keeps vanishing (removed by hand,
/// or by an older server) while it is being claimed.
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

    /// The lock file, in [`INDEX`], under which this trust's stale entries
    /// are judged and replaced.
    fn lock(self) -> &'static str {
        match self {
            Trust::Trusted => "sealed.lock",
            Trust::NotTrusted => "plain.lock",
        }
    }
}

/// What an index entry records: where its content is stored, and the
/// colour it was filed by.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) folder: Folder,
    /// A stored name, see [`crate::name`].
    pub(super) name: String,
    pub(super) mean: [f64; 3],
}

/// Why an entry's text is not one this server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// A version tag other than `v1`.
    Version,
    /// Not the fields of a `v1` entry, nor of one from before versions.
    Fields,
    /// A folder that is not one of the data directory's four.
    Folder,
    /// A name that is not a stored name.
    Name,
    /// A mean that is not a number from 0 to 255 spelt as the format says.
    Mean,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unreadable::Version => "an entry format this server does not read",
            Unreadable::Fields => "not the fields of an index entry",
            Unreadable::Folder => "not a folder of the data directory",
            Unreadable::Name => "not a stored name",
            Unreadable::Mean => {
                "a mean that is not a number from 0 to 255 in the format's spelling"
            }
        })
    }
}

impl Entry {
    /// Reads an entry's target text: the `v1` format, or the one from
    /// before versions (see the module documentation).
    pub(super) fn parse(text: &str) -> Result<Entry, Unreadable> {
        let fields: Vec<&str> = text.split(' ').collect();
        match fields[..] {
            [VERSION, path, r, g, b] => Entry::from_fields(path, [r, g, b], v1_mean),
            [VERSION, ..] => Err(Unreadable::Fields),
            [tag, ..] if is_version_tag(tag) => Err(Unreadable::Version),
            [path, r, g, b] => {
                let means = [("r=", r), ("g=", g), ("b=", b)]
                    .map(|(key, word)| word.strip_prefix(key).ok_or(Unreadable::Fields));
                let [r, g, b] = means;
                Entry::from_fields(path, [r?, g?, b?], unversioned_mean)
            }
            _ => Err(Unreadable::Fields),
        }
    }

    fn from_fields(
        path: &str,
        means: [&str; 3],
        mean: fn(&str) -> Option<f64>,
    ) -> Result<Entry, Unreadable> {
        let (folder, name) = path.split_once('/').ok_or(Unreadable::Fields)?;
        let folder = Folder::ALL
            .into_iter()
            .find(|f| f.as_str() == folder)
            .ok_or(Unreadable::Folder)?;
        if name::Name::parse(name.as_bytes()) != Ok(name::Name::Given(name.to_string())) {
            return Err(Unreadable::Name);
        }
        let [r, g, b] = means.map(mean);
        Ok(Entry {
            folder,
            name: name.to_string(),
            mean: [
                r.ok_or(Unreadable::Mean)?,
                g.ok_or(Unreadable::Mean)?,
                b.ok_or(Unreadable::Mean)?,
            ],
        })
    }

    /// `FOLDER/NAME`, as the reply gives it.
    fn path(&self) -> String {
        format!("{}/{}", self.folder, self.name)
    }

    /// The stored copy this entry describes, as the reply gives it.
    pub(super) fn stored(&self, dup: bool) -> Stored {
        Stored {
            path: self.path(),
            mean: self.mean,
            signer: None,
            dup,
        }
    }

    fn file(&self, root: &Path) -> PathBuf {
        root.join(self.folder.as_str()).join(&self.name)
    }
}

/// The `v1` text of the entry.
impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.mean;
        write!(f, "{VERSION} {}/{} {r} {g} {b}", self.folder, self.name)
    }
}

/// `v` and digits: what a version tag looks like, whether or not this
/// server knows it.
fn is_version_tag(word: &str) -> bool {
    word.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A `v1` mean: digits, optionally a dot and digits, exactly as `f64`'s
/// `Display` writes the value, from 0 to 255.
fn v1_mean(word: &str) -> Option<f64> {
    if !word.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value: f64 = word.parse().ok()?;
    ((0.0..=MAX_MEAN).contains(&value) && value.to_string() == word).then_some(value)
}

/// A mean from before versions: digits, a dot and one digit, from 0 to 255.
fn unversioned_mean(word: &str) -> Option<f64> {
    let (whole, tenth) = word.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || tenth.len() != 1 || !digits(tenth) {
        return None;
    }
    let value: f64 = word.parse().ok()?;
    (value <= MAX_MEAN).then_some(value)
}

/// What an index entry says of its content, as far as can be proven.
#[derive(Debug)]
enum State {
    /// There is no entry.
    Absent,
    /// The entry names a file, in a folder of its index's trust, that holds
    /// the content.
    Sound(Entry),
    /// The entry is proven to describe nothing; `text` is what it says.
    Stale { entry: Entry, text: String },
    /// The entry cannot be judged: its text is not one this server reads,
    /// or reading it, or hashing the file it names, failed.
    Unknown(Error),
}

/// The parts of a claim that tests stand in for: hashing a file an entry
/// names, and the steps at which a test may hold a claimer.
trait Hooks {
    /// The digest of the file at `path`.
    fn hash(&self, path: &Path) -> io::Result<Digest> {
        Digest::of_file(path)
    }
    /// Called as a claim reaches `step`.
    fn at(&self, _step: Step) {}
}

/// The steps of a claim that [`Hooks::at`] hears of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The entry exists; the lock is not yet taken.
    Exists,
    /// Under the lock, the entry was found stale and is about to be replaced.
    Stale,
}

/// The real filesystem, for everything but tests.
struct Disk;

impl Hooks for Disk {}

fn entry_path(root: &Path, trust: Trust, digest: &Digest) -> PathBuf {
    root.join(INDEX).join(trust.dir()).join(digest.hex())
}

/// Reads and judges the entry for `digest` in the data directory `root`.
fn inspect(root: &Path, trust: Trust, digest: &Digest, hooks: &impl Hooks) -> State {
    let path = entry_path(root, trust, digest);
    let target = match fs::read_link(&path) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return State::Absent,
        Err(source) => {
            return State::Unknown(Error::Io {
                what: format!("cannot read index entry {}", path.display()),
                source,
            });
        }
    };
    let parsed = target
        .to_str()
        .ok_or(Unreadable::Fields)
        .and_then(|text| Entry::parse(text).map(|entry| (entry, text.to_string())));
    let (entry, text) = match parsed {
        Ok(parsed) => parsed,
        Err(why) => return State::Unknown(Error::IndexUnreadable { path, why }),
    };
    // An entry naming a folder of the other trust (written by hand, or
    // moved between indexes) describes nothing here.
    if entry.folder.trust() != trust {
        return State::Stale { entry, text };
    }
    let file = entry.file(root);
    match hooks.hash(&file) {
        Ok(d) if d == *digest => State::Sound(entry),
        Ok(_) => State::Stale { entry, text },
        Err(e) if e.kind() == io::ErrorKind::NotFound => State::Stale { entry, text },
        Err(source) => State::Unknown(Error::Io {
            what: format!(
                "cannot check index entry {} against {}",
                path.display(),
                file.display()
            ),
            source,
        }),
    }
}

impl Store {
    /// The folder and the copy where content with this digest is stored,
    /// if it is, in a folder of this trust: a trusted upload is a duplicate
    /// only of a copy in a class folder, an untrusted one only of a copy in
    /// `not_trusted/`. The file an entry names is hashed before it is
    /// believed, so an entry whose file was deleted, or replaced by other
    /// content under the same name, does not count. Reads only, and takes
    /// no lock.
    pub fn lookup(&self, trust: Trust, digest: &Digest) -> Option<(Folder, Stored)> {
        match inspect(&self.root, trust, digest, &Disk) {
            State::Sound(entry) => Some((entry.folder, entry.stored(true))),
            _ => None,
        }
    }

    /// Creates the index entry for `ours`, a copy just published. Returns
    /// the copy that won if the content was indexed first by someone else;
    /// then `ours` was never named by an entry and may be removed. An error
    /// leaves `ours` unindexed, and it must stay: it may be named by an
    /// entry, or have been.
    pub(super) fn claim(
        &self,
        trust: Trust,
        digest: &Digest,
        ours: &Entry,
    ) -> Result<Option<Stored>, Error> {
        self.claim_with(trust, digest, ours, &Disk)
    }

    fn claim_with(
        &self,
        trust: Trust,
        digest: &Digest,
        ours: &Entry,
        hooks: &impl Hooks,
    ) -> Result<Option<Stored>, Error> {
        let path = entry_path(&self.root, trust, digest);
        let text = ours.to_string();
        // Never write what no one could read back (a mean out of range or
        // not a number, which classification never gives).
        let readable = match Entry::parse(&text) {
            Ok(back) if back == *ours => Ok(()),
            Ok(_) => Err(Unreadable::Mean),
            Err(why) => Err(why),
        };
        if let Err(why) = readable {
            return Err(Error::Unindexable {
                path: ours.path(),
                why,
            });
        }
        match symlink(&text, &path) {
            Ok(()) => return self.sync_index(trust, &path).map(|()| None),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return ctx(Err(e), "cannot index", &path),
        }
        hooks.at(Step::Exists);
        let _lock = self.lock_index(trust)?;
        for _ in 0..CLAIM_TRIES {
            match inspect(&self.root, trust, digest, hooks) {
                // A sound entry naming the very path just published, which
                // link(2) gave to this call alone: a stale entry whose
                // file came back with this upload. It describes this copy.
                State::Sound(theirs)
                    if theirs.folder == ours.folder && theirs.name == ours.name =>
                {
                    return self.sync_index(trust, &path).map(|()| None);
                }
                State::Sound(theirs) => return Ok(Some(theirs.stored(true))),
                State::Unknown(e) => return Err(e),
                State::Absent => match symlink(&text, &path) {
                    Ok(()) => return self.sync_index(trust, &path).map(|()| None),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return ctx(Err(e), "cannot index", &path),
                },
                State::Stale {
                    entry: old,
                    text: old_text,
                } => {
                    hooks.at(Step::Stale);
                    self.replace_entry(&path, &text)?;
                    if old.folder.trust() == trust && may_hold(&old, &self.root, digest, hooks) {
                        // The old entry's file came back between the check
                        // and the swap, and a lookup may have answered with
                        // it: it is sound again, and goes back.
                        self.replace_entry(&path, &old_text)?;
                        self.sync_index(trust, &path)?;
                        return Err(Error::IndexContended(digest.hex()));
                    }
                    return self.sync_index(trust, &path).map(|()| None);
                }
            }
        }
        Err(Error::IndexContended(digest.hex()))
    }

    /// Takes this trust's index lock, on a descriptor of its own; it is
    /// held until the file is dropped.
    fn lock_index(&self, trust: Trust) -> Result<File, Error> {
        let path = self.root.join(INDEX).join(trust.lock());
        let file = ctx(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path),
            "cannot open",
            &path,
        )?;
        ctx(file.lock(), "cannot lock", &path)?;
        Ok(file)
    }

    /// Replaces the entry at `path` whole with one saying `text`. The new
    /// link is made in this server's staging folder, which a crash leaves
    /// to the next start's sweep.
    fn replace_entry(&self, path: &Path, text: &str) -> Result<(), Error> {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let temp = self.staging.join(format!("{n}.entry"));
        ctx(
            self.in_staging(|| symlink(text, &temp)),
            "cannot stage index entry",
            &temp,
        )?;
        let renamed = fs::rename(&temp, path);
        if renamed.is_err() {
            self.discard(&temp);
        }
        ctx(renamed, "cannot replace index entry", path)
    }

    fn sync_index(&self, trust: Trust, entry: &Path) -> Result<(), Error> {
        let dir = &self.indexes[usize::from(trust == Trust::NotTrusted)];
        ctx(dir.sync_all(), "cannot fsync index of", entry)
    }
}

/// Whether the file `entry` names may hold the content: anything short of
/// proof that it does not (missing, or other content) counts.
fn may_hold(entry: &Entry, root: &Path, digest: &Digest, hooks: &impl Hooks) -> bool {
    match hooks.hash(&entry.file(root)) {
        Ok(d) => d == *digest,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::super::count_files;
    use super::super::tests::{put, store};
    use super::*;
    use std::sync::mpsc;
    use std::sync::{Arc, Barrier, Mutex};
    use std::thread;

    fn entry(folder: Folder, name: &str, mean: [f64; 3]) -> Entry {
        Entry {
            folder,
            name: name.into(),
            mean,
        }
    }

    #[test]
    fn entries_parse_strictly() {
        let red = |mean| Ok(entry(Folder::Red, "a.png", mean));
        let cases: &[(&str, Result<Entry, Unreadable>)] = &[
            ("v1 red/a.png 200.04 10 0.25", red([200.04, 10.0, 0.25])),
            ("v1 red/a.png 0 255 1", red([0.0, 255.0, 1.0])),
            (
                "v1 red/a.png 0.30000000000000004 0.1 85.33333333333333",
                red([0.1 + 0.2, 0.1, 256.0 / 3.0]),
            ),
            (
                "v1 not_trusted/x-1.jpg 1 2 3",
                Ok(entry(Folder::NotTrusted, "x-1.jpg", [1.0, 2.0, 3.0])),
            ),
            // From before versions.
            ("red/a.png r=200.0 g=10.0 b=0.2", red([200.0, 10.0, 0.2])),
            (
                "blue/c.png r=1.5 g=2.5 b=99.0",
                Ok(entry(Folder::Blue, "c.png", [1.5, 2.5, 99.0])),
            ),
            ("red/a.png r=255.0 g=0.0 b=0.0", red([255.0, 0.0, 0.0])),
            // Versions this server does not know.
            ("v2 red/a.png 1 2 3", Err(Unreadable::Version)),
            ("v10", Err(Unreadable::Version)),
            ("v0 anything at all", Err(Unreadable::Version)),
            // Not the fields of either format.
            ("", Err(Unreadable::Fields)),
            ("v1", Err(Unreadable::Fields)),
            ("v1 red/a.png 1 2", Err(Unreadable::Fields)),
            ("v1 red/a.png 1 2 3 4", Err(Unreadable::Fields)),
            ("v1 red/a.png 1 2 3 dup", Err(Unreadable::Fields)),
            ("v1  red/a.png 1 2 3", Err(Unreadable::Fields)),
            ("v1 red/a.png 1 2 3 ", Err(Unreadable::Fields)),
            ("V1 red/a.png 1 2 3", Err(Unreadable::Fields)),
            ("v1 a.png 1 2 3", Err(Unreadable::Fields)),
            ("red/a.png r=1.0 g=2.0 b=3.0 dup", Err(Unreadable::Fields)),
            ("red/a.png r=1.0 g=2.0", Err(Unreadable::Fields)),
            ("red/a.png g=1.0 r=2.0 b=3.0", Err(Unreadable::Fields)),
            ("red/a.png 1.0 2.0 3.0", Err(Unreadable::Fields)),
            (
                "red/a.png r=1.0 g=2.0 b=3.0 signer=x",
                Err(Unreadable::Fields),
            ),
            // Folders.
            ("v1 purple/a.png 1 2 3", Err(Unreadable::Folder)),
            ("v1 /a.png 1 2 3", Err(Unreadable::Folder)),
            ("v1 .staging/a.png 1 2 3", Err(Unreadable::Folder)),
            (
                "signatures/a.png r=1.0 g=2.0 b=3.0",
                Err(Unreadable::Folder),
            ),
            // Names.
            ("v1 red/ 1 2 3", Err(Unreadable::Name)),
            ("v1 red/../key.pem 1 2 3", Err(Unreadable::Name)),
            ("v1 red/sub/a.png 1 2 3", Err(Unreadable::Name)),
            ("v1 red/.hidden 1 2 3", Err(Unreadable::Name)),
            ("v1 red/caf\u{e9}.png 1 2 3", Err(Unreadable::Name)),
            ("v1 red/a(1).png 1 2 3", Err(Unreadable::Name)),
            ("red/-a.png r=1.0 g=2.0 b=3.0", Err(Unreadable::Name)),
            // Means: only the one spelling, only from 0 to 255.
            ("v1 red/a.png 1.0 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png 01 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png +1 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png -0 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png 1e2 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png .5 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png 5. 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png NaN 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png inf 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png 255.00000000000003 2 3", Err(Unreadable::Mean)),
            ("v1 red/a.png 256 2 3", Err(Unreadable::Mean)),
            (
                "v1 red/a.png 0.1000000000000000055511151231257827 2 3",
                Err(Unreadable::Mean),
            ),
            ("v1 red/a.png 1 2 ", Err(Unreadable::Mean)),
            ("red/a.png r=1 g=2.0 b=3.0", Err(Unreadable::Mean)),
            ("red/a.png r=1.00 g=2.0 b=3.0", Err(Unreadable::Mean)),
            ("red/a.png r=.5 g=2.0 b=3.0", Err(Unreadable::Mean)),
            ("red/a.png r=-1.0 g=2.0 b=3.0", Err(Unreadable::Mean)),
            ("red/a.png r=255.1 g=2.0 b=3.0", Err(Unreadable::Mean)),
            ("red/a.png r=1.0 g=2.0 b=", Err(Unreadable::Mean)),
        ];
        for (text, want) in cases {
            assert_eq!(&Entry::parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn what_is_written_reads_back() {
        let means = [
            [0.0, 0.0, 0.0],
            [255.0, 255.0, 255.0],
            [200.04, 10.0, 0.25],
            [0.1 + 0.2, 1.0 / 3.0, 254.99999999999997],
            [f64::MIN_POSITIVE, 5e-324, 1e-7],
        ];
        for mean in means {
            let e = entry(Folder::Green, "x_y-1.tar.gz", mean);
            let text = e.to_string();
            assert!(text.starts_with("v1 green/x_y-1.tar.gz "), "{text}");
            assert_eq!(Entry::parse(&text), Ok(e), "{text}");
        }
    }

    #[test]
    fn same_content_is_stored_once() {
        let (dir, store) = store();
        let digest = Digest::of(b"pixels");
        assert_eq!(store.lookup(Trust::Trusted, &digest), None);
        let first = put(&store, Folder::Green, "a.png", b"pixels");
        let (folder, found) = store.lookup(Trust::Trusted, &digest).unwrap();
        assert_eq!(
            (folder, found.path.as_str(), found.mean, found.dup),
            (Folder::Green, first.as_str(), [1.0, 2.0, 3.0], true)
        );
        let link = fs::read_link(entry_path(dir.path(), Trust::Trusted, &digest)).unwrap();
        assert_eq!(link.to_str(), Some("v1 green/a.png 1 2 3"));
        // Deleting the file makes the entry stale: the content is new again.
        fs::remove_file(dir.path().join(&first)).unwrap();
        assert_eq!(store.lookup(Trust::Trusted, &digest), None);
        assert_eq!(
            put(&store, Folder::Green, "b.png", b"pixels"),
            "green/b.png"
        );
        assert_eq!(
            store.lookup(Trust::Trusted, &digest).unwrap().1.path,
            "green/b.png"
        );
    }

    #[test]
    fn entries_from_before_versions_are_read() {
        // A data directory from before the format: re-sending its content
        // finds the copies, and is not filed twice.
        let (dir, store) = store();
        let digest = Digest::of(b"old pixels");
        fs::write(dir.path().join("red/old.png"), b"old pixels").unwrap();
        let path = entry_path(dir.path(), Trust::Trusted, &digest);
        symlink("red/old.png r=200.0 g=10.0 b=0.2", &path).unwrap();
        let (_, found) = store.lookup(Trust::Trusted, &digest).unwrap();
        assert_eq!(
            (found.path.as_str(), found.mean),
            ("red/old.png", [200.0, 10.0, 0.2])
        );
        let filed = store
            .file(
                Folder::Red,
                "again.png",
                b"old pixels",
                &digest,
                [200.01, 10.0, 0.2],
                None,
            )
            .unwrap();
        assert_eq!(filed.stored.path, "red/old.png");
        assert!(filed.stored.dup);
        assert_eq!(count_files(&dir.path().join("red")).unwrap(), 1);
        // Sound, it is left as it was; stale, it is replaced by a v1 entry.
        assert_eq!(
            fs::read_link(&path).unwrap().to_str(),
            Some("red/old.png r=200.0 g=10.0 b=0.2")
        );
        fs::remove_file(dir.path().join("red/old.png")).unwrap();
        put(&store, Folder::Red, "new.png", b"old pixels");
        assert_eq!(
            fs::read_link(&path).unwrap().to_str(),
            Some("v1 red/new.png 1 2 3")
        );
    }

    #[test]
    fn entries_this_server_cannot_read_are_left_alone() {
        // A newer server's entry, or a damaged one: no lookup believes it,
        // and filing its content keeps the copy unindexed rather than
        // replace what it cannot judge.
        for text in [
            "v2 red/a.png 1 2 3 extra",
            "red/a.png r=x g=2.0 b=3.0",
            "junk",
        ] {
            let (dir, store) = store();
            let digest = Digest::of(b"content");
            fs::write(dir.path().join("red/a.png"), b"content").unwrap();
            let path = entry_path(dir.path(), Trust::Trusted, &digest);
            symlink(text, &path).unwrap();
            assert_eq!(store.lookup(Trust::Trusted, &digest), None, "{text}");
            let filed = store
                .file(Folder::Red, "b.png", b"content", &digest, [1.0; 3], None)
                .unwrap();
            assert_eq!(
                (filed.stored.path.as_str(), filed.stored.dup),
                ("red/b.png", false)
            );
            assert!(
                matches!(filed.unindexed, Some(Error::IndexUnreadable { .. })),
                "{text}: {:?}",
                filed.unindexed
            );
            assert_eq!(fs::read_link(&path).unwrap().to_str(), Some(text));
        }
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
            store.lookup(Trust::Trusted, &secret).unwrap().1.path,
            "blue/alice-private-scan.png"
        );
        assert_eq!(
            store.lookup(Trust::NotTrusted, &secret).unwrap().1.path,
            "not_trusted/guess.png"
        );
        // An entry in one index that names a file of the other class (made
        // by hand, or by an older server) counts for neither, and is stale.
        let entry = dir.path().join(INDEX).join("plain").join(plain.hex());
        fs::remove_file(&entry).unwrap();
        fs::write(dir.path().join("red/p.png"), b"sent plain").unwrap();
        symlink("red/p.png r=1.0 g=2.0 b=3.0", &entry).unwrap();
        assert_eq!(store.lookup(Trust::NotTrusted, &plain), None);
        assert_eq!(
            put(&store, Folder::NotTrusted, "p.png", b"sent plain"),
            "not_trusted/p-1.png"
        );
        assert_eq!(
            store.lookup(Trust::NotTrusted, &plain).unwrap().1.path,
            "not_trusted/p-1.png"
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
        let (_, found) = store
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
            store.lookup(Trust::Trusted, &first).unwrap().1.path,
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
                thread::spawn(move || {
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

    /// Hooks that hash with a stand-in and report each step to a callback.
    struct Fake<H, S> {
        hash: H,
        at: S,
    }

    impl<H: Fn(&Path) -> io::Result<Digest>, S: Fn(Step)> Hooks for Fake<H, S> {
        fn hash(&self, path: &Path) -> io::Result<Digest> {
            (self.hash)(path)
        }
        fn at(&self, step: Step) {
            (self.at)(step)
        }
    }

    /// A data directory whose entry for `content` names `red/gone.png`,
    /// which does not exist: a stale entry. Returns the digest.
    fn stale_entry(dir: &Path, content: &[u8]) -> Digest {
        let digest = Digest::of(content);
        symlink(
            entry(Folder::Red, "gone.png", [1.0; 3]).to_string(),
            entry_path(dir, Trust::Trusted, &digest),
        )
        .unwrap();
        digest
    }

    fn link_text(dir: &Path, digest: &Digest) -> String {
        let link = fs::read_link(entry_path(dir, Trust::Trusted, digest)).unwrap();
        link.into_os_string().into_string().unwrap()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn hashing_errors_never_replace_an_entry() {
        // Only a missing file or other content proves an entry stale.
        use io::ErrorKind::NotFound;
        let errors = [
            (libc::EIO, false),
            (libc::EMFILE, false),
            (libc::ENFILE, false),
            (libc::EACCES, false),
            (libc::ENOTDIR, false),
            (libc::ENOENT, true),
        ];
        for (errno, stale) in errors {
            let (dir, store) = store();
            let content = b"held";
            let digest = Digest::of(content);
            put(&store, Folder::Red, "first.png", content);
            let before = link_text(dir.path(), &digest);
            fs::write(dir.path().join("red/second.png"), content).unwrap();
            let hooks = Fake {
                hash: |path: &Path| {
                    if path.ends_with("first.png") {
                        Err(io::Error::from_raw_os_error(errno))
                    } else {
                        Digest::of_file(path)
                    }
                },
                at: |_| {},
            };
            let ours = entry(Folder::Red, "second.png", [1.0; 3]);
            let result = store.claim_with(Trust::Trusted, &digest, &ours, &hooks);
            let after = link_text(dir.path(), &digest);
            if stale {
                assert_eq!(io::Error::from_raw_os_error(errno).kind(), NotFound);
                assert!(matches!(result, Ok(None)), "{errno}: {result:?}");
                assert_eq!(after, ours.to_string());
            } else {
                assert!(
                    matches!(&result, Err(Error::Io { source, .. }) if source.raw_os_error() == Some(errno)),
                    "{errno}: {result:?}"
                );
                assert_eq!(after, before, "errno {errno} replaced the entry");
            }
        }
    }

    #[test]
    fn the_index_lock_excludes_other_descriptors() {
        // flock(2) belongs to an open file description: a second open, in
        // this process or another, is refused while the first holds it.
        let (dir, store) = store();
        let held = store.lock_index(Trust::Trusted).unwrap();
        let other = File::options()
            .write(true)
            .open(dir.path().join(INDEX).join("sealed.lock"))
            .unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        // The other index has its own.
        drop(store.lock_index(Trust::NotTrusted).unwrap());
        drop(held);
        other.try_lock().unwrap();
    }

    #[test]
    fn two_claimers_of_a_stale_entry_leave_one_entry() {
        // A has found the entry stale, under the lock, and is about to
        // replace it. B, claiming the same content meanwhile, must wait for
        // the lock, and then find A's entry sound: B is the duplicate. (The
        // unlocked version let B replace it too, or remove A's fresh entry,
        // leaving two copies each told it was indexed.)
        let (dir, store) = store();
        let store = Arc::new(store);
        let content = b"stale content";
        let digest = stale_entry(dir.path(), content);
        fs::write(dir.path().join("red/a.png"), content).unwrap();
        fs::write(dir.path().join("red/b.png"), content).unwrap();
        let lock_path = dir.path().join(INDEX).join("sealed.lock");

        let (a_stale, a_is_stale) = mpsc::channel();
        let (a_go, a_wait) = mpsc::channel::<()>();
        let a_wait = Mutex::new(a_wait);
        let a = {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let hooks = Fake {
                    hash: Digest::of_file,
                    at: |step| {
                        if step == Step::Stale {
                            a_stale.send(()).unwrap();
                            a_wait.lock().unwrap().recv().unwrap();
                        }
                    },
                };
                let ours = entry(Folder::Red, "a.png", [1.0; 3]);
                store.claim_with(Trust::Trusted, &digest, &ours, &hooks)
            })
        };
        a_is_stale.recv().unwrap();

        let (b_exists, b_has_found) = mpsc::channel();
        let b = {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let hooks = Fake {
                    hash: Digest::of_file,
                    at: |step| {
                        if step == Step::Exists {
                            // The lock B is about to take is held.
                            let probe = File::options().write(true).open(&lock_path).unwrap();
                            let held =
                                matches!(probe.try_lock(), Err(fs::TryLockError::WouldBlock));
                            b_exists.send(held).unwrap();
                        }
                    },
                };
                let ours = entry(Folder::Red, "b.png", [1.0; 3]);
                store.claim_with(Trust::Trusted, &digest, &ours, &hooks)
            })
        };
        assert!(
            b_has_found.recv().unwrap(),
            "A's check and swap are not under the lock"
        );
        a_go.send(()).unwrap();

        let a = a.join().unwrap().unwrap();
        let b = b.join().unwrap().unwrap();
        assert!(a.is_none(), "A indexed its copy: {a:?}");
        assert_eq!(b.map(|s| (s.path, s.dup)), Some(("red/a.png".into(), true)));
        assert_eq!(link_text(dir.path(), &digest), "v1 red/a.png 1 1 1");
    }

    #[test]
    fn a_stale_entry_whose_file_comes_back_is_put_back() {
        // B finds the entry naming red/gone.png stale (the file is missing)
        // and is about to replace it when another upload of the content
        // takes that very name; a lookup may already have answered with it.
        // B puts the entry back and keeps its own copy, unindexed.
        let (dir, store) = store();
        let content = b"revived";
        let digest = stale_entry(dir.path(), content);
        let before = link_text(dir.path(), &digest);
        fs::write(dir.path().join("red/b.png"), content).unwrap();
        let hooks = Fake {
            hash: Digest::of_file,
            at: |step| {
                if step == Step::Stale {
                    fs::write(dir.path().join("red/gone.png"), content).unwrap();
                }
            },
        };
        let ours = entry(Folder::Red, "b.png", [1.0; 3]);
        let result = store.claim_with(Trust::Trusted, &digest, &ours, &hooks);
        assert!(
            matches!(result, Err(Error::IndexContended(_))),
            "{result:?}"
        );
        assert_eq!(link_text(dir.path(), &digest), before);
        assert_eq!(
            store.lookup(Trust::Trusted, &digest).unwrap().1.path,
            "red/gone.png"
        );
        // The upload that took the name finds the entry describing its copy.
        let revived = entry(Folder::Red, "gone.png", [1.0; 3]);
        assert!(matches!(
            store.claim(Trust::Trusted, &digest, &revived),
            Ok(None)
        ));
        // Nothing was left in staging but the lock.
        let staged: Vec<_> = fs::read_dir(&store.staging).unwrap().collect();
        assert_eq!(staged.len(), 1);
    }

    #[test]
    fn many_claimers_of_a_stale_entry_leave_one_copy() {
        // Rounds of N claimers of one content against a stale entry, each
        // with its own published copy, yielding the processor at every step
        // to mix their turns: each round ends with one copy, the one the
        // entry names and every claimer was told of.
        const THREADS: usize = 8;
        const ROUNDS: usize = 25;
        let (dir, store) = store();
        let store = Arc::new(store);
        let content: &'static [u8] = b"contended";
        let digest = stale_entry(dir.path(), content);
        for round in 0..ROUNDS {
            let barrier = Arc::new(Barrier::new(THREADS));
            let threads: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                    thread::spawn(move || {
                        let ours = entry(Folder::Red, &format!("r{round}-t{i}.png"), [1.0; 3]);
                        let copy = ours.file(&store.root);
                        fs::write(&copy, content).unwrap();
                        let hooks = Fake {
                            hash: |path: &Path| {
                                thread::yield_now();
                                Digest::of_file(path)
                            },
                            at: |_| thread::yield_now(),
                        };
                        barrier.wait();
                        let theirs = store.claim_with(Trust::Trusted, &digest, &ours, &hooks);
                        match theirs.unwrap() {
                            Some(theirs) => {
                                fs::remove_file(&copy).unwrap();
                                theirs.path
                            }
                            None => ours.path(),
                        }
                    })
                })
                .collect();
            let told: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let kept = count_files(&dir.path().join("red")).unwrap();
            assert_eq!(kept, 1, "round {round}: {told:?}");
            assert!(
                told.iter().all(|p| *p == told[0]),
                "round {round}: {told:?}"
            );
            assert_eq!(
                store.lookup(Trust::Trusted, &digest).unwrap().1.path,
                told[0]
            );
            // The next round starts from a stale entry again.
            fs::remove_file(dir.path().join(&told[0])).unwrap();
        }
    }
}
