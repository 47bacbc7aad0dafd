//! Whether and how `colorsort send` signs: the signing tools checked
//! before anything is read, the namespace to sign for, and the server's
//! `POLICY` held against the options (see [`super::super::sign`]). Notes
//! the user should see go to the writer given, stderr in `send`.

use super::super::exit::Error;
use super::super::sign;
use super::options::Options;
use crate::config;
use crate::protocol::Policy;
use crate::sshsig;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Checks, before anything is read or sent, that signing can run: the
/// program is there and the key file exists. Returns the program's path.
pub(super) fn signing_tools(program: &str, key: &Path) -> Result<PathBuf, Error> {
    let found = sign::find_program(program).ok_or_else(|| {
        let how = format!(
            "install OpenSSH's ssh-keygen, or name it with --ssh-keygen PATH or {}",
            sign::PROGRAM_ENV
        );
        Error::Failed(if program.contains('/') {
            format!("cannot sign: {program} is not an executable file; {how}")
        } else {
            format!("cannot sign: {program} is not found in PATH; {how}")
        })
    })?;
    match fs::metadata(key) {
        Ok(m) if m.is_file() => Ok(found),
        Ok(_) => Err(Error::Failed(format!(
            "--sign {}: not a file",
            key.display()
        ))),
        Err(e) => Err(Error::Failed(format!("--sign {}: {e}", key.display()))),
    }
}

/// The namespace to sign for: `--namespace`, else the server's, else
/// [`config::DEFAULT_SIGNATURE_NAMESPACE`]. Refuses to sign for a
/// namespace a server announces that no server could be set to; says on
/// `notes` when `--namespace` is not the server's.
pub(super) fn namespace(
    opts: &Options,
    policy: Option<&Policy>,
    notes: &mut dyn Write,
) -> Result<String, Error> {
    let announced = match policy {
        Some(p) => {
            sshsig::check_namespace(&p.namespace).map_err(|why| {
                Error::Failed(format!(
                    "{} announces a signature namespace that is not one: {why}",
                    opts.host
                ))
            })?;
            Some(p.namespace.as_str())
        }
        None => None,
    };
    Ok(match (&opts.namespace, announced) {
        (Some(mine), Some(theirs)) if mine != theirs => {
            let _ = writeln!(
                notes,
                "colorsort: signing for namespace {mine:?}, but {} checks signatures for {theirs:?}",
                opts.host
            );
            mine.clone()
        }
        (Some(mine), _) => mine.clone(),
        (None, Some(theirs)) => theirs.to_string(),
        (None, None) => config::DEFAULT_SIGNATURE_NAMESPACE.to_string(),
    })
}

/// Checks the server's policy against the options: a server that files
/// only signed uploads by colour needs `--sign` or `--unsigned`; one from
/// before signatures takes none. Says on `notes` when unsigned uploads
/// will not be filed by colour.
pub(super) fn check_policy(
    opts: &Options,
    policy: Option<&Policy>,
    notes: &mut dyn Write,
) -> Result<(), Error> {
    match policy {
        None if opts.sign.is_some() => Err(Error::Failed(format!(
            "{} does not take signed uploads (it predates POLICY); nothing was sent. \
             Send without --sign.",
            opts.host
        ))),
        Some(p) if p.signers && opts.sign.is_none() && !opts.unsigned => {
            Err(Error::Usage(format!(
                "{} files only uploads signed by its known senders by colour (signers=on); \
                 nothing was sent. Sign with --sign KEYFILE (namespace {}), or pass \
                 --unsigned to send anyway: unsigned uploads go to not_trusted/.",
                opts.host, p.namespace
            )))
        }
        Some(p) if p.signers && opts.unsigned => {
            let _ = writeln!(
                notes,
                "colorsort: sending unsigned to {}: it files these in not_trusted/",
                opts.host
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::options::testing::options;
    use super::*;

    fn policy(signers: bool, namespace: &str) -> Option<Policy> {
        Some(Policy {
            signers,
            namespace: namespace.into(),
        })
    }

    /// An outcome and the notes written, reduced to what the cases compare.
    fn outcome<T: std::fmt::Debug>(result: Result<T, Error>, notes: Vec<u8>) -> String {
        let result = match result {
            Ok(v) => format!("ok {v:?}"),
            Err(Error::Usage(m)) => format!("usage: {m}"),
            Err(Error::Failed(m)) => format!("failed: {m}"),
            Err(e) => format!("other: {e}"),
        };
        format!("{result}\n{}", String::from_utf8(notes).unwrap())
    }

    #[test]
    fn the_namespace_to_sign_for() {
        let cases: Vec<(&[&str], Option<Policy>, &str)> = vec![
            (&[], None, "ok \"colorsort\"\n"),
            (&[], policy(true, "theirs"), "ok \"theirs\"\n"),
            (&[], policy(false, "theirs"), "ok \"theirs\"\n"),
            (&["--namespace", "mine"], None, "ok \"mine\"\n"),
            (
                &["--namespace", "mine"],
                policy(true, "mine"),
                "ok \"mine\"\n",
            ),
            (
                &["--namespace", "mine"],
                policy(true, "theirs"),
                "ok \"mine\"\ncolorsort: signing for namespace \"mine\", but h:1 checks \
                 signatures for \"theirs\"\n",
            ),
            (
                &[],
                policy(true, "a,b"),
                "failed: h:1 announces a signature namespace that is not one: \"a,b\" holds a \
                 space, a comma or a byte outside printable ASCII\n",
            ),
        ];
        for (flags, policy, want) in cases {
            let line = [&["--host", "h:1", "--sign", "k"], flags, &["f"]].concat();
            let mut notes = Vec::new();
            let result = namespace(&options(&line), policy.as_ref(), &mut notes);
            assert_eq!(outcome(result, notes), want, "{flags:?} {policy:?}");
        }
    }

    #[test]
    fn the_policy_against_the_options() {
        let refused_unsigned = "usage: h:1 files only uploads signed by its known senders by \
             colour (signers=on); nothing was sent. Sign with --sign KEYFILE (namespace ns), or \
             pass --unsigned to send anyway: unsigned uploads go to not_trusted/.\n";
        let predates = "failed: h:1 does not take signed uploads (it predates POLICY); nothing \
             was sent. Send without --sign.\n";
        let cases: Vec<(&[&str], Option<Policy>, &str)> = vec![
            (&[], None, "ok ()\n"),
            (&["--unsigned"], None, "ok ()\n"),
            (&["--sign", "k"], None, predates),
            (&[], policy(false, "ns"), "ok ()\n"),
            (&["--sign", "k"], policy(false, "ns"), "ok ()\n"),
            (&["--unsigned"], policy(false, "ns"), "ok ()\n"),
            (&[], policy(true, "ns"), refused_unsigned),
            (&["--sign", "k"], policy(true, "ns"), "ok ()\n"),
            (
                &["--unsigned"],
                policy(true, "ns"),
                "ok ()\ncolorsort: sending unsigned to h:1: it files these in not_trusted/\n",
            ),
        ];
        for (flags, policy, want) in cases {
            let line = [&["--host", "h:1"], flags, &["f"]].concat();
            let mut notes = Vec::new();
            let result = check_policy(&options(&line), policy.as_ref(), &mut notes);
            assert_eq!(outcome(result, notes), want, "{flags:?} {policy:?}");
        }
    }

    #[test]
    fn signing_needs_the_program_and_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        fs::write(&key, "key").unwrap();
        let missing = dir.path().join("missing");
        let how = "install OpenSSH's ssh-keygen, or name it with --ssh-keygen PATH or \
                   COLORSORT_SSH_KEYGEN";
        let cases: Vec<(&str, &Path, String)> = vec![
            ("/bin/sh", &key, "ok \"/bin/sh\"\n".into()),
            (
                "/no/such/ssh-keygen",
                &key,
                format!(
                    "failed: cannot sign: /no/such/ssh-keygen is not an executable file; {how}\n"
                ),
            ),
            (
                "no-such-ssh-keygen-here",
                &key,
                format!(
                    "failed: cannot sign: no-such-ssh-keygen-here is not found in PATH; {how}\n"
                ),
            ),
            (
                "/bin/sh",
                dir.path(),
                format!("failed: --sign {}: not a file\n", dir.path().display()),
            ),
            (
                "/bin/sh",
                &missing,
                format!(
                    "failed: --sign {}: No such file or directory (os error 2)\n",
                    missing.display()
                ),
            ),
        ];
        for (program, key, want) in cases {
            let result = signing_tools(program, key);
            assert_eq!(
                outcome(result, Vec::new()),
                want,
                "{program} {}",
                key.display()
            );
        }
    }
}
