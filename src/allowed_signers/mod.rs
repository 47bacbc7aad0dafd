//! The allowed_signers file (ssh-keygen(1), ALLOWED SIGNERS): who may sign
//! uploads, with which key, for which namespaces and when. A signature is
//! trusted when its key is listed by an entry that permits the namespace at
//! the time of checking.
//!
//! The format is ssh-keygen's, read more strictly: where ssh-keygen skips a
//! line it cannot use (with a warning) and goes on, any such line is an
//! error here naming the line and the reason, and so is an option or key
//! type not supported (`cert-authority`, ECDSA). `line.rs` lists each rule
//! and `time.rs` says why times must end in `Z`.
//!
//! Lookups follow `ssh-keygen -Y verify`: entries are tried in file order,
//! and the first that lists the key (and, for [`AllowedSigners::find_principal`],
//! the principal) and permits the namespace and time wins; valid-after and
//! valid-before are inclusive.

mod line;
mod pattern;
mod time;

pub use pattern::{ListError, MAX_PATTERN};
pub use time::TimeError;

use crate::sshsig::{self, PublicKey};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest allowed_signers file read, in bytes.
pub const MAX_FILE_SIZE: usize = 4 * 1024 * 1024;
/// Most entries (non-blank, non-comment lines) in a file.
pub const MAX_ENTRIES: usize = 4096;
/// Longest line, in bytes: an 8192-bit RSA key is about 1.4 KB of base64.
pub const MAX_LINE: usize = 16 * 1024;

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
}

/// One entry: a key and the principals, namespaces and time window it is
/// listed for.
#[derive(Debug, Clone)]
pub struct Signer {
    line: usize,
    principals: String,
    namespaces: Option<String>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
    key: PublicKey,
}

/// Why a file was not loaded.
#[derive(Debug)]
pub enum Error {
    /// The file could not be opened or read.
    Read { path: PathBuf, source: io::Error },
    /// The file is longer than [`MAX_FILE_SIZE`] bytes.
    TooLarge,
    /// The file has more than [`MAX_ENTRIES`] entries.
    TooManyEntries,
    /// A line is not an entry accepted here (numbered from 1).
    Line { line: usize, reason: Reason },
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The file is not UTF-8 at this line.
    NotUtf8,
    /// The line is longer than [`MAX_LINE`] bytes.
    TooLong,
    /// The line holds a control character other than tab (a NUL, a carriage
    /// return before the end).
    Control,
    /// No key type and base64 key follow the principals and options.
    MissingKey,
    /// The principals field is malformed.
    Principals(&'static str),
    /// The options field is malformed: unquoted or unterminated values,
    /// empty options, stray text.
    Options(&'static str),
    /// An option name ssh-keygen does not know; holds it, escaped.
    UnknownOption(String),
    /// An option ssh-keygen knows that is not supported here.
    UnsupportedOption(&'static str),
    /// An option given twice.
    DuplicateOption(&'static str),
    /// The `namespaces=` list holds an empty or overlong pattern.
    Namespaces(ListError),
    /// A `valid-after=` or `valid-before=` time is refused.
    Time {
        option: &'static str,
        error: TimeError,
    },
    /// valid-before is not after valid-after.
    TimeOrder,
    /// A key type not supported here (ECDSA, DSA, certificates, unknown);
    /// holds it, escaped.
    UnsupportedKey(String),
    /// The key is malformed or invalid.
    Key(sshsig::Error),
}

/// Why a key is not trusted. For the log, not for the client: the entry it
/// names is the first that lists the key for the principal (if one was
/// asked about), else the first that lists the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// No entry lists the key.
    NotListed,
    /// The key is listed, but not for the principal asked about.
    Principal { line: usize },
    /// The key is listed, but its `namespaces=` excludes the namespace.
    Namespace { line: usize },
    /// The key is listed from `valid_after` (seconds since the epoch) on.
    NotYetValid { line: usize, valid_after: u64 },
    /// The key was listed until `valid_before` (seconds since the epoch).
    Expired { line: usize, valid_before: u64 },
}

impl AllowedSigners {
    /// Parses the text of an allowed_signers file.
    pub fn parse(text: &str) -> Result<AllowedSigners, Error> {
        if text.len() > MAX_FILE_SIZE {
            return Err(Error::TooLarge);
        }
        let mut signers = Vec::new();
        for (i, text) in text.split('\n').enumerate() {
            let number = i + 1;
            let Some(signer) = line::parse(text, number).map_err(|reason| Error::Line {
                line: number,
                reason,
            })?
            else {
                continue;
            };
            if signers.len() == MAX_ENTRIES {
                return Err(Error::TooManyEntries);
            }
            signers.push(signer);
        }
        Ok(AllowedSigners { signers })
    }

    /// Reads and parses the file at `path`, reading no more than
    /// [`MAX_FILE_SIZE`] + 1 bytes.
    pub fn load(path: &Path) -> Result<AllowedSigners, Error> {
        let read_error = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_SIZE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() > MAX_FILE_SIZE {
            return Err(Error::TooLarge);
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| Error::Line {
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            reason: Reason::NotUtf8,
        })?;
        AllowedSigners::parse(text)
    }

    /// The first entry that lists `key` and permits `namespace` at `now`,
    /// whatever its principals (what the server asks of a signed upload).
    pub fn find(
        &self,
        key: &PublicKey,
        namespace: &str,
        now: SystemTime,
    ) -> Result<&Signer, Unknown> {
        self.search(None, key, namespace, now)
    }

    /// The first entry that lists `key` for a principal pattern `principal`
    /// matches and permits `namespace` at `now`: the check of
    /// `ssh-keygen -Y verify -I principal -n namespace`.
    pub fn find_principal(
        &self,
        principal: &str,
        key: &PublicKey,
        namespace: &str,
        now: SystemTime,
    ) -> Result<&Signer, Unknown> {
        self.search(Some(principal), key, namespace, now)
    }

    fn search(
        &self,
        principal: Option<&str>,
        key: &PublicKey,
        namespace: &str,
        now: SystemTime,
    ) -> Result<&Signer, Unknown> {
        // Whole seconds, as ssh-keygen compares time(NULL); a clock before
        // the epoch counts as the epoch.
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        // An entry for another principal explains less than one for this
        // principal that excludes the namespace or time.
        let (mut first, mut other_principal) = (None, None);
        for signer in self.signers.iter().filter(|s| s.key == *key) {
            match signer.check(principal, namespace, now) {
                Ok(()) => return Ok(signer),
                Err(why @ Unknown::Principal { .. }) => {
                    other_principal.get_or_insert(why);
                }
                Err(why) => {
                    first.get_or_insert(why);
                }
            }
        }
        Err(first.or(other_principal).unwrap_or(Unknown::NotListed))
    }

    /// The entries, in file order.
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.signers.len()
    }

    /// Whether the file lists no one.
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }
}

impl Signer {
    /// Line number in the file, from 1.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The principals field as written, without surrounding quotes: a
    /// comma-separated pattern list.
    pub fn principals(&self) -> &str {
        &self.principals
    }

    /// The key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The `namespaces=` pattern list, if the entry restricts them.
    pub fn namespaces(&self) -> Option<&str> {
        self.namespaces.as_deref()
    }

    /// The `valid-after=` time, if any.
    pub fn valid_after(&self) -> Option<SystemTime> {
        self.valid_after.map(seconds)
    }

    /// The `valid-before=` time, if any.
    pub fn valid_before(&self) -> Option<SystemTime> {
        self.valid_before.map(seconds)
    }

    /// Whether `principal` matches the principals pattern list.
    pub fn matches_principal(&self, principal: &str) -> bool {
        pattern::matches_list(principal, &self.principals)
    }

    fn check(&self, principal: Option<&str>, namespace: &str, now: u64) -> Result<(), Unknown> {
        let line = self.line;
        if principal.is_some_and(|p| !self.matches_principal(p)) {
            return Err(Unknown::Principal { line });
        }
        if let Some(namespaces) = &self.namespaces
            && !pattern::matches_list(namespace, namespaces)
        {
            return Err(Unknown::Namespace { line });
        }
        if let Some(valid_after) = self.valid_after.filter(|&t| now < t) {
            return Err(Unknown::NotYetValid { line, valid_after });
        }
        if let Some(valid_before) = self.valid_before.filter(|&t| now > t) {
            return Err(Unknown::Expired { line, valid_before });
        }
        Ok(())
    }
}

fn seconds(t: u64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(t)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Error::TooLarge => write!(f, "allowed signers file over {MAX_FILE_SIZE} bytes"),
            Error::TooManyEntries => {
                write!(f, "allowed signers file has over {MAX_ENTRIES} entries")
            }
            Error::Line { line, reason } => write!(f, "allowed signers line {line}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotUtf8 => f.write_str("not utf-8"),
            Reason::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
            Reason::Control => f.write_str("control character"),
            Reason::MissingKey => f.write_str("missing key"),
            Reason::Principals(what) => write!(f, "principals: {what}"),
            Reason::Options(what) => write!(f, "options: {what}"),
            Reason::UnknownOption(name) => write!(f, "unknown option \"{name}\""),
            Reason::UnsupportedOption(name) => write!(f, "unsupported option \"{name}\""),
            Reason::DuplicateOption(name) => write!(f, "option \"{name}\" given twice"),
            Reason::Namespaces(ListError::Empty) => f.write_str("namespaces: empty pattern"),
            Reason::Namespaces(ListError::TooLong) => {
                write!(f, "namespaces: pattern over {MAX_PATTERN} bytes")
            }
            Reason::Time { option, error } => write!(f, "{option}: {error}"),
            Reason::TimeOrder => f.write_str("valid-before is not after valid-after"),
            Reason::UnsupportedKey(kind) => write!(f, "unsupported key type \"{kind}\""),
            Reason::Key(e) => write!(f, "key: {e}"),
        }
    }
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unknown::NotListed => f.write_str("key is not an allowed signer"),
            Unknown::Principal { line } => {
                write!(f, "key is allowed on line {line} for other principals")
            }
            Unknown::Namespace { line } => {
                write!(f, "key is allowed on line {line} for other namespaces")
            }
            Unknown::NotYetValid { line, valid_after } => write!(
                f,
                "key is allowed on line {line} from {} on",
                time::format(*valid_after)
            ),
            Unknown::Expired { line, valid_before } => write!(
                f,
                "key was allowed on line {line} until {}",
                time::format(*valid_before)
            ),
        }
    }
}

impl std::error::Error for Unknown {}

#[cfg(test)]
mod tests;
