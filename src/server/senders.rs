//! Known senders: the allowed_signers file in force, if any, which decides
//! whether a `SEAL` is filed by colour, and its reload on SIGHUP.
//!
//! Known-senders mode is on when the file was given (`--allowed-signers`)
//! or exists in the data directory. Then only a `SEAL` signed by a key the
//! file lists for the server's namespace is filed by colour. Without a file
//! (v1 mode) every `SEAL` is. A reload that fails leaves the list in force
//! as it was; a reload that finds the data directory's file newly created
//! turns the mode on. Deleting the file never turns it off again: that
//! takes a restart, so that a lost file cannot open the class folders to
//! anyone who fetches the key.

use crate::allowed_signers::{self, AllowedSigners};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

/// The allowed_signers file and the list read from it.
pub(super) struct KnownSenders {
    path: PathBuf,
    /// The path was given, so the file must exist.
    given: bool,
    /// The list in force; `None` in v1 mode.
    current: RwLock<Option<Arc<AllowedSigners>>>,
}

/// The allowed_signers file could not be used at start.
#[derive(Debug)]
pub struct LoadError {
    path: PathBuf,
    source: allowed_signers::Error,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            // Names the path itself.
            allowed_signers::Error::Read { .. } => self.source.fmt(f),
            other => write!(f, "{}: {other}", self.path.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// What a reload did, for the log.
#[derive(Debug)]
pub enum Reload {
    /// The file was read; its list is in force now.
    Loaded {
        path: PathBuf,
        entries: usize,
        /// The server was in v1 mode until now.
        turned_on: bool,
    },
    /// No file was given and the data directory has none: v1 mode stays.
    NoFile { path: PathBuf },
    /// The file could not be used; what was in force stays.
    Refused {
        error: LoadError,
        /// Entries of the list that stays in force; `None` in v1 mode.
        kept: Option<usize>,
    },
}

impl fmt::Display for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reload::Loaded {
                path,
                entries,
                turned_on,
            } => {
                write!(
                    f,
                    "reloaded {}: {entries} signer(s) listed, in force now",
                    path.display()
                )?;
                if *turned_on {
                    f.write_str("; known senders: on, unsigned SEALs now go to not_trusted/")?;
                }
                Ok(())
            }
            Reload::NoFile { path } => write!(
                f,
                "no {} to load: known senders stay off, every SEAL is still filed by colour",
                path.display()
            ),
            Reload::Refused {
                error,
                kept: Some(n),
            } => write!(
                f,
                "reload refused: {error}; the previous list of {n} signer(s) stays in force"
            ),
            Reload::Refused { error, kept: None } => {
                write!(f, "reload refused: {error}; known senders stay off")
            }
        }
    }
}

impl KnownSenders {
    /// Reads the file at `path` if it was `given` or exists. Anything at
    /// that name that cannot be read or parsed is an error, so a broken
    /// file never starts the server in v1 mode.
    pub(super) fn open(path: PathBuf, given: bool) -> Result<KnownSenders, LoadError> {
        let current = if given || exists(&path) {
            Some(Arc::new(load(&path)?))
        } else {
            None
        };
        Ok(KnownSenders {
            path,
            given,
            current: RwLock::new(current),
        })
    }

    /// The list in force, or `None` in v1 mode. An upload checks against one
    /// list from start to end, whatever reloads meanwhile.
    pub(super) fn current(&self) -> Option<Arc<AllowedSigners>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The file, whether or not it is in use.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again and puts its list in force, or keeps what is in
    /// force if the file cannot be used.
    pub(super) fn reload(&self) -> Reload {
        let kept = self.current().map(|list| list.len());
        if kept.is_none() && !self.given && !exists(&self.path) {
            return Reload::NoFile {
                path: self.path.clone(),
            };
        }
        match load(&self.path) {
            Ok(list) => {
                let entries = list.len();
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::new(list));
                Reload::Loaded {
                    path: self.path.clone(),
                    entries,
                    turned_on: kept.is_none(),
                }
            }
            Err(error) => Reload::Refused { error, kept },
        }
    }
}

/// True if anything is at `path`, even a dangling link or a file that
/// cannot be read: those must fail loudly, not mean "no file".
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

fn load(path: &Path) -> Result<AllowedSigners, LoadError> {
    AllowedSigners::load(path).map_err(|source| LoadError {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const ED25519: &str = include_str!("../../test-data/sshsig/keys/ed25519.pub");
    const OTHER: &str = include_str!("../../test-data/sshsig/keys/other-ed25519.pub");

    fn entry(principal: &str, public: &str) -> String {
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        format!("{principal} {}\n", key.join(" "))
    }

    #[test]
    fn mode_follows_the_file_and_bad_reloads_keep_the_old_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowed_signers");
        let senders = KnownSenders::open(path.clone(), false).unwrap();
        assert!(senders.current().is_none(), "no file: v1 mode");
        assert!(matches!(senders.reload(), Reload::NoFile { .. }));

        fs::write(&path, entry("alice", ED25519)).unwrap();
        let reload = senders.reload();
        assert!(
            matches!(
                reload,
                Reload::Loaded {
                    entries: 1,
                    turned_on: true,
                    ..
                }
            ),
            "{reload}"
        );
        fs::write(&path, "alice ssh-ed25519 AAAA-not-base64\n").unwrap();
        let reload = senders.reload();
        assert!(
            matches!(reload, Reload::Refused { kept: Some(1), .. }),
            "{reload}"
        );
        assert!(reload.to_string().contains("line 1"), "{reload}");
        assert_eq!(senders.current().unwrap().len(), 1);

        fs::write(&path, entry("alice", ED25519) + &entry("bob", OTHER)).unwrap();
        assert!(matches!(
            senders.reload(),
            Reload::Loaded {
                entries: 2,
                turned_on: false,
                ..
            }
        ));
        // A deleted file does not turn the mode off.
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            senders.reload(),
            Reload::Refused { kept: Some(2), .. }
        ));
        assert_eq!(senders.current().unwrap().len(), 2);
    }

    #[test]
    fn a_file_that_cannot_be_used_refuses_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowed_signers");
        // Given but missing; present but invalid; a dangling link.
        let missing = KnownSenders::open(path.clone(), true).err().unwrap();
        assert!(missing.to_string().starts_with("cannot read "), "{missing}");
        fs::write(&path, format!("# ok\n{}bob\n", entry("alice", ED25519))).unwrap();
        let invalid = KnownSenders::open(path.clone(), false).err().unwrap();
        assert_eq!(
            invalid.to_string(),
            format!("{}: allowed signers line 3: missing key", path.display())
        );
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), &path).unwrap();
        assert!(KnownSenders::open(path, false).is_err());
    }
}
