//! The server key files: `key.pem`, the RSA private key, loaded after its
//! owner and permissions are checked, or generated and published by
//! `link(2)` so that servers starting together agree on one; and `key.pub`,
//! its OpenSSH public line, kept in step with it. An existing key is never
//! replaced.

use super::{Error, Store, ctx};
use crate::identity::{self, Identity};
use crate::process;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Name of the private key file in the data directory.
pub const KEY_FILE: &str = "key.pem";
/// Name of the public key file in the data directory.
pub const PUB_FILE: &str = "key.pub";

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
    // Whoever owns the file can change its mode, so only our own is trusted.
    if let Some(uid) = process::effective_uid()
        && meta.uid() != uid
    {
        let e = io::Error::other(format!(
            "owned by uid {}, but the server runs as uid {uid}; run chown {uid} on it",
            meta.uid()
        ));
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

impl Store {
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
        let line = format!("{}\n", identity.public().to_ssh_line(identity::COMMENT));
        if fs::read(&path).is_ok_and(|old| old == line.as_bytes()) {
            return Ok(());
        }
        let temp = self.write_staged(line.as_bytes(), 0o644)?;
        ctx(fs::rename(&temp, &path), "cannot write", &path)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::store;
    use super::*;
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
            identity.public().to_ssh_line(identity::COMMENT)
        );
    }
}
