//! Pinned server keys, in the manner of ssh's `known_hosts`: the first key a
//! host presents is remembered, and a different key later is refused until
//! the user accepts it. This is trust on first use; the fingerprint printed
//! when a key is pinned is the one to compare out of band.
//!
//! The file is `$XDG_CONFIG_HOME/colorsort/known_hosts`, or
//! `~/.config/colorsort/known_hosts`, unless one is named with
//! `--known-hosts` ([`KNOWN_HOSTS_ENV`]); one `HOST ssh-rsa BASE64` line per
//! host, where HOST is the `--host` value as given. Where no file can be
//! kept (a container without a home), a fingerprint given with `--pin`
//! ([`PIN_ENV`]) checks the key instead.

use crate::identity::PublicKey;
use base64ct::{Base64Unpadded, Encoding};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file name under the configuration folder.
const FILE: &str = "known_hosts";
/// The environment variable naming the pin file, like `--known-hosts`.
pub const KNOWN_HOSTS_ENV: &str = "COLORSORT_KNOWN_HOSTS";
/// The environment variable holding the fingerprint the server's key must
/// have, like `--pin`.
pub const PIN_ENV: &str = "COLORSORT_PIN";
/// How a fingerprint starts.
const SHA256_PREFIX: &str = "SHA256:";
/// Bytes in a SHA-256 digest.
const SHA256_LEN: usize = 32;

/// Parses a fingerprint as [`PublicKey::fingerprint`] and ssh-keygen print
/// it, `SHA256:` and 43 characters of unpadded base64; `None` if `text` is
/// anything else.
pub fn parse_fingerprint(text: &str) -> Option<String> {
    let hash = text.strip_prefix(SHA256_PREFIX)?;
    let mut digest = [0u8; SHA256_LEN];
    match Base64Unpadded::decode(hash, &mut digest) {
        Ok(decoded) if decoded.len() == SHA256_LEN => Some(text.to_string()),
        _ => None,
    }
}

/// Where the pins live, or `None` if there is no home or config folder.
pub fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("colorsort").join(FILE))
}

/// How a presented key compares with the pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No key is pinned for the host.
    New,
    /// The pinned key is the presented key.
    Same,
    /// A different key is pinned; its fingerprint is given.
    Changed { pinned: String },
}

/// A pin file.
pub struct Pins {
    path: PathBuf,
}

impl Pins {
    /// Pins stored at `path`.
    pub fn at(path: &Path) -> Pins {
        Pins {
            path: path.to_path_buf(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Compares `key` with the key pinned for `host`.
    pub fn check(&self, host: &str, key: &PublicKey) -> io::Result<Check> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if no_file(&e) => return Ok(Check::New),
            Err(e) => return Err(e),
        };
        let Some(line) = text
            .lines()
            .find_map(|l| l.strip_prefix(host)?.strip_prefix(' '))
        else {
            return Ok(Check::New);
        };
        Ok(match PublicKey::from_ssh_line(line) {
            Ok(pinned) if pinned.fingerprint() == key.fingerprint() => Check::Same,
            Ok(pinned) => Check::Changed {
                pinned: pinned.fingerprint(),
            },
            Err(_) => Check::Changed {
                pinned: format!("(unreadable pin: {})", line.trim()),
            },
        })
    }

    /// Pins `key` for `host`, replacing any earlier pin. The file is
    /// rewritten whole and renamed into place, so a crash leaves the old
    /// file or the new one.
    pub fn pin(&self, host: &str, key: &PublicKey) -> io::Result<()> {
        let old = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if no_file(&e) => String::new(),
            Err(e) => return Err(e),
        };
        let mut text: String = old
            .lines()
            .filter(|l| {
                l.strip_prefix(host)
                    .is_none_or(|rest| !rest.starts_with(' '))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&format!("{host} {}\n", key.to_ssh_line("").trim_end()));
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let temp = self
            .path
            .with_extension(format!("tmp{}", crate::random::hex(8)));
        fs::write(&temp, text)?;
        fs::rename(&temp, &self.path)
    }
}

/// True if reading failed because there is no file: nothing is there, or
/// a folder on the way is a file.
fn no_file(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn key(file: &str) -> PublicKey {
        let pem = fs::read_to_string(format!(
            "{}/test-data/keys/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        Identity::from_pem(&pem).unwrap().public().clone()
    }

    #[test]
    fn fingerprints_parse_only_in_full() {
        let real = key("test-only-server-key.pem").fingerprint();
        assert_eq!(parse_fingerprint(&real), Some(real.clone()));
        let cases = [
            "",
            "SHA256:",
            &real[SHA256_PREFIX.len()..],
            &real[..real.len() - 1],
            &format!("{real}A"),
            &format!("{real}="),
            &format!("sha256:{}", &real[SHA256_PREFIX.len()..]),
            &format!("MD5:{}", &real[SHA256_PREFIX.len()..]),
            &format!("{} ", real),
        ];
        for text in cases {
            assert_eq!(parse_fingerprint(text), None, "{text:?}");
        }
    }

    #[test]
    fn first_use_pins_then_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let pins = Pins::at(&dir.path().join("sub/known_hosts"));
        let (ours, other) = (
            key("test-only-server-key.pem"),
            key("test-only-other-key.pem"),
        );
        assert_eq!(pins.check("h:1", &ours).unwrap(), Check::New);
        pins.pin("h:1", &ours).unwrap();
        pins.pin("h:11", &other).unwrap();
        assert_eq!(pins.check("h:1", &ours).unwrap(), Check::Same);
        assert_eq!(pins.check("h:11", &other).unwrap(), Check::Same);
        assert_eq!(
            pins.check("h:1", &other).unwrap(),
            Check::Changed {
                pinned: ours.fingerprint()
            }
        );
        pins.pin("h:1", &other).unwrap();
        assert_eq!(pins.check("h:1", &other).unwrap(), Check::Same);
        let text = fs::read_to_string(pins.path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_file_in_the_way_is_no_pin_and_cannot_be_pinned() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("file"), "").unwrap();
        let pins = Pins::at(&dir.path().join("file/colorsort/known_hosts"));
        let ours = key("test-only-server-key.pem");
        assert_eq!(pins.check("h:1", &ours).unwrap(), Check::New);
        assert!(pins.pin("h:1", &ours).is_err());
    }
}
