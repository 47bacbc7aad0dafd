//! The key-pinning dialogue of `colorsort send`: the server's key held
//! against `--pin`, or else against the pin file, where a first key is
//! pinned and a changed one stops the sending unless `--accept-new-key`
//! (see [`crate::pins`]). What the user is told goes to the writer given,
//! stderr in `send`.

use super::super::exit::{EXIT_KEY_CHANGED, Error};
use super::options::Options;
use crate::identity::PublicKey;
use crate::pins::{self, Check, Pins};
use std::io::{self, Write};
use std::path::PathBuf;

/// Checks the server's key against `--pin`, or else against the pin file
/// (`--known-hosts`, or `default` where there is one). Returns an exit
/// code if sending must not go on.
pub(super) fn check_key(
    opts: &Options,
    key: &PublicKey,
    default: Option<PathBuf>,
    notes: &mut dyn Write,
) -> Result<Option<u8>, Error> {
    let Some((source, pin)) = &opts.pin else {
        return check_pin(opts, key, default, notes);
    };
    if key.fingerprint() == *pin {
        return Ok(None);
    }
    let _ = writeln!(
        notes,
        "colorsort: the key of {} is NOT the pinned key\n  pinned:    {pin} ({source})\n  \
         presented: {}\nNothing was sent.",
        opts.host,
        key.fingerprint()
    );
    Ok(Some(EXIT_KEY_CHANGED))
}

/// Compares the server's key with the one in the pin file; pins it if new
/// or if the user accepts a change. Returns an exit code if sending must
/// not go on. Without a pin file to write (no home, a read-only one), a new
/// key is reported once and sending goes on; a file named with
/// `--known-hosts` must work.
fn check_pin(
    opts: &Options,
    key: &PublicKey,
    default: Option<PathBuf>,
    notes: &mut dyn Write,
) -> Result<Option<u8>, Error> {
    let explicit = opts.known_hosts.is_some();
    let Some(path) = opts.known_hosts.clone().or(default) else {
        return unpinned(
            opts,
            key,
            "no HOME or XDG_CONFIG_HOME to keep a pin file in",
            notes,
        );
    };
    let pins = Pins::at(&path);
    let fail = |e: io::Error| Error::Failed(format!("{}: {e}", pins.path().display()));
    match pins.check(&opts.host, key).map_err(fail)? {
        Check::Same => Ok(None),
        Check::New => match pins.pin(&opts.host, key) {
            Ok(()) => {
                let _ = writeln!(
                    notes,
                    "pinned the key of {}: {}",
                    opts.host,
                    key.fingerprint()
                );
                Ok(None)
            }
            Err(e) if !explicit => unpinned(
                opts,
                key,
                &format!("cannot write {}: {e}", pins.path().display()),
                notes,
            ),
            Err(e) => Err(fail(e)),
        },
        Check::Changed { pinned } if opts.accept_new_key => {
            pins.pin(&opts.host, key).map_err(fail)?;
            let _ = writeln!(
                notes,
                "replaced the pinned key of {}: was {pinned}, now {}",
                opts.host,
                key.fingerprint()
            );
            Ok(None)
        }
        Check::Changed { pinned } => {
            let _ = writeln!(
                notes,
                "colorsort: the key of {} has CHANGED\n  pinned:    {pinned}\n  presented: {}\n\
                 Nothing was sent. If the server's key was replaced on purpose, check the new\n\
                 fingerprint out of band and run again with --accept-new-key.",
                opts.host,
                key.fingerprint()
            );
            Ok(Some(EXIT_KEY_CHANGED))
        }
    }
}

/// Says why the key cannot be pinned, and how to check it instead; the
/// sending goes on.
fn unpinned(
    opts: &Options,
    key: &PublicKey,
    why: &str,
    notes: &mut dyn Write,
) -> Result<Option<u8>, Error> {
    let _ = writeln!(
        notes,
        "colorsort: cannot pin the key of {} ({}): {why}. Its key is not checked; to check \
         it, compare the fingerprint with `colorsort key --fingerprint` on the server and \
         pass --pin {} (or {}), or keep pins in a writable file with --known-hosts FILE \
         (or {}).",
        opts.host,
        key.fingerprint(),
        key.fingerprint(),
        pins::PIN_ENV,
        pins::KNOWN_HOSTS_ENV
    );
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::options::testing::options;
    use super::*;
    use std::fs;
    use std::path::Path;

    const SERVER: &str = include_str!("../../../test-data/keys/test-only-server-key.pub");
    const OTHER: &str = include_str!("../../../test-data/keys/test-only-other-key.pub");

    fn key(line: &str) -> PublicKey {
        PublicKey::from_ssh_line(line.trim()).unwrap()
    }

    /// An outcome and the notes written, with the two keys' fingerprints
    /// and `dir` written as words so the cases read.
    fn outcome(result: Result<Option<u8>, Error>, notes: Vec<u8>, dir: &Path) -> String {
        let result = match result {
            Ok(None) => "go on".to_string(),
            Ok(Some(code)) => format!("exit {code}"),
            Err(Error::Failed(m)) => format!("failed: {m}"),
            Err(e) => format!("other: {e}"),
        };
        format!("{result}\n{}", String::from_utf8(notes).unwrap())
            .replace(&key(SERVER).fingerprint(), "SERVER")
            .replace(&key(OTHER).fingerprint(), "OTHER")
            .replace(&dir.display().to_string(), "DIR")
    }

    #[test]
    fn the_key_against_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let (server, other) = (key(SERVER).fingerprint(), key(OTHER).fingerprint());
        let cases = [
            (&server, "go on\n"),
            (
                &other,
                "exit 3\ncolorsort: the key of h:1 is NOT the pinned key\n  pinned:    OTHER \
                 (--pin)\n  presented: SERVER\nNothing was sent.\n",
            ),
        ];
        // The pin file is not used with a pin: this one could not be
        // written, and saying so would show in the notes.
        fs::write(dir.path().join("known_hosts"), "").unwrap();
        for (pin, want) in cases {
            let line = ["--host", "h:1", "--pin", pin, "f"];
            let mut notes = Vec::new();
            let default = Some(dir.path().join("known_hosts/x"));
            let result = check_key(&options(&line), &key(SERVER), default, &mut notes);
            assert_eq!(outcome(result, notes, dir.path()), want, "{pin}");
        }
    }

    #[test]
    fn the_pin_file_dialogue() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pins/known_hosts");
        let file = file.to_str().unwrap();
        let unwritable = dir.path().join("a-file/known_hosts");
        fs::write(dir.path().join("a-file"), "").unwrap();
        let unwritable = unwritable.to_str().unwrap();
        let (server, other) = (SERVER, OTHER);
        let cannot_pin = |why: &str| {
            format!(
                "go on\ncolorsort: cannot pin the key of h:1 (SERVER): {why}. Its key is not \
                 checked; to check it, compare the fingerprint with `colorsort key \
                 --fingerprint` on the server and pass --pin SERVER (or COLORSORT_PIN), or keep \
                 pins in a writable file with --known-hosts FILE (or COLORSORT_KNOWN_HOSTS).\n"
            )
        };
        // In turn, on one pin file: the flags, the default pin file, the
        // key presented, and the outcome with what was said.
        let cases: Vec<(Vec<&str>, Option<&str>, &str, String)> = vec![
            (
                vec!["--known-hosts", file],
                None,
                server,
                "go on\npinned the key of h:1: SERVER\n".into(),
            ),
            (vec!["--known-hosts", file], None, server, "go on\n".into()),
            (vec![], Some(file), server, "go on\n".into()),
            (
                vec![],
                Some(file),
                other,
                "exit 3\ncolorsort: the key of h:1 has CHANGED\n  pinned:    SERVER\n  \
                 presented: OTHER\nNothing was sent. If the server's key was replaced on \
                 purpose, check the new\nfingerprint out of band and run again with \
                 --accept-new-key.\n"
                    .into(),
            ),
            (
                vec!["--accept-new-key"],
                Some(file),
                other,
                "go on\nreplaced the pinned key of h:1: was SERVER, now OTHER\n".into(),
            ),
            (vec![], Some(file), other, "go on\n".into()),
            (
                vec![],
                None,
                server,
                cannot_pin("no HOME or XDG_CONFIG_HOME to keep a pin file in"),
            ),
            (
                vec![],
                Some(unwritable),
                server,
                cannot_pin("cannot write DIR/a-file/known_hosts: File exists (os error 17)"),
            ),
            (
                vec!["--known-hosts", unwritable],
                None,
                server,
                "failed: DIR/a-file/known_hosts: File exists (os error 17)\n".into(),
            ),
        ];
        for (flags, default, presented, want) in cases {
            let line = [&["--host", "h:1"], &flags[..], &["f"]].concat();
            let mut notes = Vec::new();
            let result = check_key(
                &options(&line),
                &key(presented),
                default.map(PathBuf::from),
                &mut notes,
            );
            assert_eq!(
                outcome(result, notes, dir.path()),
                want,
                "{flags:?} {default:?}"
            );
        }
    }
}
