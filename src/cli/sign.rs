//! Signing uploads for `colorsort send --sign`: each image is signed with
//! `ssh-keygen -Y sign`, as git signs commits, so the user's key works
//! however they keep it: a key file with or without a passphrase, a key in
//! ssh-agent (`--sign key.pub`), a security key. The image goes to
//! ssh-keygen on stdin and the armored signature comes back on stdout.
//!
//! Each signature is checked before it is sent, with the verifier the
//! server uses, so a key the server cannot take (ECDSA, short RSA) fails
//! here, per file, with the reason.

use crate::sshsig::{self, PublicKey, Signature};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;

/// The program run when neither `--ssh-keygen` nor [`PROGRAM_ENV`] names one.
pub(super) const DEFAULT_PROGRAM: &str = "ssh-keygen";
/// The environment variable naming the program, like `--ssh-keygen`.
pub(super) const PROGRAM_ENV: &str = "COLORSORT_SSH_KEYGEN";
/// What ssh-keygen prints on stderr on every run that reads stdin.
const STDIN_NOTE: &str = "Signing data on standard input";
/// How ssh-keygen asks for a security key's touch. It is passed on to the
/// user as it comes, or they would not know the key is waiting.
const TOUCH_PROMPT: &str = "Confirm user presence";
/// Most bytes of ssh-keygen's stderr kept for an error message.
const MAX_STDERR: usize = 4096;

/// Why an image could not be signed.
#[derive(Debug)]
pub(super) enum Error {
    /// The program could not be started.
    Start { program: PathBuf, source: io::Error },
    /// Reading the program's output failed.
    Io(io::Error),
    /// The program exited with a failure; `stderr` is what it said.
    Failed { status: ExitStatus, stderr: String },
    /// The program succeeded, but its output is not a signature of the
    /// image that the server takes.
    Output(sshsig::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Start { program, source } => {
                write!(f, "cannot run {}: {source}", program.display())
            }
            Error::Io(e) => write!(f, "cannot read the signature from ssh-keygen: {e}"),
            Error::Failed { status, stderr } if stderr.is_empty() => {
                write!(f, "ssh-keygen failed ({status}) and said nothing")
            }
            Error::Failed { status, stderr } => write!(f, "ssh-keygen failed ({status}): {stderr}"),
            Error::Output(e) => write!(f, "ssh-keygen's signature is not usable: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The program to run for `name`: `name` itself if it holds a slash, else
/// the first executable file of that name in `PATH`. `None` if there is no
/// such executable file.
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        return executable(&path).then_some(path);
    }
    if name.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Signs with one key for one namespace.
pub(super) struct Signer {
    program: PathBuf,
    key: PathBuf,
    namespace: String,
    /// One signature at a time: a passphrase prompt or a security key's
    /// request for a touch must not run into another's.
    one_at_a_time: Mutex<()>,
    /// The key of the last signature made.
    signed_with: Mutex<Option<PublicKey>>,
}

impl Signer {
    /// A signer running `program` (as found by [`find_program`]) with the
    /// key file `key` (a private key, or a public key whose private half is
    /// in ssh-agent).
    pub(super) fn new(program: PathBuf, key: PathBuf, namespace: String) -> Signer {
        Signer {
            program,
            key,
            namespace,
            one_at_a_time: Mutex::new(()),
            signed_with: Mutex::new(None),
        }
    }

    /// The namespace signatures are made for.
    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The key of the last signature made, if one was.
    pub(super) fn signed_with(&self) -> Option<PublicKey> {
        self.signed_with
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The armored signature of `data`, checked to verify over it.
    pub(super) fn sign(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let armored = {
            let _turn = self
                .one_at_a_time
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.run(data)?
        };
        let signature = Signature::parse(&armored).map_err(Error::Output)?;
        signature
            .verify(data, &self.namespace)
            .map_err(Error::Output)?;
        *self
            .signed_with
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(signature.public_key().clone());
        Ok(armored)
    }

    /// Runs `ssh-keygen -Y sign -n NAMESPACE -f KEY` with `data` on stdin;
    /// returns its stdout, cut after [`sshsig::MAX_SIGNATURE`] + 1 bytes
    /// (too long to parse, whatever follows).
    fn run(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let mut child = Command::new(&self.program)
            .args(["-Y", "sign", "-n", &self.namespace, "-f"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Start {
                program: self.program.clone(),
                source,
            })?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (out, said) = std::thread::scope(|scope| {
            scope.spawn(move || {
                // A program that stops reading (a key it cannot load) has
                // failed, and its exit status and stderr say why.
                if let Some(mut stdin) = stdin {
                    let _ = stdin.write_all(data);
                }
            });
            let said = scope.spawn(move || stderr.map(read_stderr).unwrap_or_default());
            let out = stdout.map_or(Ok(Vec::new()), |s| {
                read_capped(s, sshsig::MAX_SIGNATURE + 1)
            });
            (out, said.join().unwrap_or_default())
        });
        let status = child.wait().map_err(Error::Io)?;
        if !status.success() {
            return Err(Error::Failed {
                status,
                stderr: said,
            });
        }
        out.map_err(Error::Io)
    }
}

/// Reads `from` to its end, keeping the first `max` bytes: the writer must
/// not block on a full pipe.
fn read_capped(mut from: impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    (&mut from).take(max as u64).read_to_end(&mut kept)?;
    io::copy(&mut from, &mut io::sink())?;
    Ok(kept)
}

/// Reads ssh-keygen's stderr to its end: passes a security key's prompt on
/// at once, drops the note it prints on every run, and returns the rest as
/// one printable line of at most [`MAX_STDERR`] bytes.
fn read_stderr(from: impl Read) -> String {
    let (mut kept, mut size) = (Vec::new(), 0);
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.starts_with(TOUCH_PROMPT) {
            let _ = writeln!(io::stderr(), "{text}");
        } else if text != STDIN_NOTE && !text.is_empty() && size <= MAX_STDERR {
            size += text.len();
            kept.push(text.to_string());
        }
    }
    let joined = kept.join("; ");
    let printable: String = joined
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    match printable.char_indices().nth(MAX_STDERR) {
        Some((cut, _)) => format!("{}...", &printable[..cut]),
        None => printable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake ssh-keygen: a shell script with `body`.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn programs_are_found_on_path_or_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let tool = script(dir.path(), "tool", "true");
        fs::write(dir.path().join("plain"), "").unwrap();
        assert_eq!(find_program(tool.to_str().unwrap()), Some(tool.clone()));
        assert_eq!(
            find_program(dir.path().join("plain").to_str().unwrap()),
            None
        );
        assert_eq!(
            find_program(dir.path().join("none").to_str().unwrap()),
            None
        );
        assert_eq!(find_program(dir.path().to_str().unwrap()), None, "a folder");
        assert_eq!(find_program(""), None);
        assert!(find_program("sh").is_some(), "sh is on PATH");
        assert_eq!(find_program("colorsort-no-such-program"), None);
    }

    #[test]
    fn failures_say_what_ssh_keygen_said() {
        let dir = tempfile::tempdir().unwrap();
        // The argument list, checked, then the outcome: these stand in for
        // ssh-keygen's own failures and for a program that is not it.
        let check = r#"[ "$1 $2 $3 $4 $5 $6" = "-Y sign -n ns -f key" ] || { echo "bad args: $*" >&2; exit 9; }"#;
        type Check = fn(&Error) -> bool;
        let cases: [(&str, Check); 6] = [
            (
                "echo 'Signing data on standard input' >&2; echo \"Couldn't load public key key: No such file or directory\" >&2; exit 255",
                |e| {
                    matches!(e, Error::Failed { stderr, .. }
                        if stderr == "Couldn't load public key key: No such file or directory")
                        && e.to_string().contains("status: 255")
                },
            ),
            ("exit 1", |e| {
                matches!(e, Error::Failed { stderr, .. } if stderr.is_empty())
                    && e.to_string().contains("said nothing")
            }),
            ("cat >/dev/null; echo not a signature", |e| {
                matches!(e, Error::Output(_))
            }),
            ("cat >/dev/null; head -c 100000 /dev/zero", |e| {
                matches!(e, Error::Output(sshsig::Error::TooLong))
            }),
            (
                "echo 'Confirm user presence for key ED25519-SK SHA256:x' >&2; echo 'device not found' >&2; exit 255",
                |e| matches!(e, Error::Failed { stderr, .. } if stderr == "device not found"),
            ),
            (
                "printf 'a\\033b\\n' >&2; exit 2",
                |e| matches!(e, Error::Failed { stderr, .. } if stderr == "a?b"),
            ),
        ];
        for (i, (body, want)) in cases.into_iter().enumerate() {
            let program = script(dir.path(), &format!("fake{i}"), &format!("{check}\n{body}"));
            let signer = Signer::new(program, "key".into(), "ns".into());
            let e = signer.sign(&vec![7u8; 300_000]).unwrap_err();
            assert!(want(&e), "{body}: {e:?}");
        }
        let missing = Signer::new(dir.path().join("gone"), "key".into(), "ns".into());
        assert!(matches!(missing.sign(b"x"), Err(Error::Start { .. })));
    }
}
