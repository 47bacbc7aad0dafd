//! `colorsort send`'s command line: its help, its flags and variables,
//! and the checks that refuse a contradictory line before anything is
//! read or sent.

use super::super::args::{Args, Flags, Item, unknown};
use super::super::exit::{Error, print};
use super::super::sign;
use crate::client;
use crate::pins;
use crate::sshsig;
use std::path::PathBuf;
use std::thread;

/// Most parallel connections.
pub(super) const MAX_JOBS: usize = 16;

/// Help for `colorsort send`.
pub(in crate::cli) const USAGE: &str = "\
Usage: colorsort send [OPTIONS] FILE|DIR...

Seals each image to the server's key with age and sends it with SEAL; the
server files it in red/, green/ or blue/. Folders are walked recursively and
images are picked by their content; other files are skipped with a note.

Options:
  --host HOST:PORT   server [$COLORSORT_HOST or 127.0.0.1:6666]
  --sign KEYFILE     sign each image with `ssh-keygen -Y sign -f KEYFILE`:
                     a private key, or a public key whose private half is in
                     ssh-agent; passphrases and security keys work as in ssh
  --namespace NS     namespace to sign for [the server's, from POLICY, or
                     colorsort]
  --unsigned         send unsigned to a server that files only signed uploads
                     by colour; it keeps them in not_trusted/
  --ssh-keygen PATH  the ssh-keygen to run [$COLORSORT_SSH_KEYGEN or
                     ssh-keygen from PATH]
  --plain            send unsealed with PUT; the server files it in not_trusted/
  -j, --jobs N       parallel connections, 1 to 16 [number of CPUs]
  --json             print one JSON object per file on stdout
  --pin SHA256:...   require the server's key to have this fingerprint
                     (`colorsort key --fingerprint` on the server)
                     [$COLORSORT_PIN]; the pin file is then not used
  --known-hosts FILE the pin file [$COLORSORT_KNOWN_HOSTS or
                     ~/.config/colorsort/known_hosts]
  --accept-new-key   accept and pin the server's key even if it changed

The first key seen for a host is pinned in the pin file; if the server later
presents another, send refuses and exits 3. Where no pin file can be written
(a container without a home), send says so once and goes on unpinned.
Exit codes: 0 every image stored (or already stored), 1 some image failed
or the report could not be written, 2 usage error, or the server files only
signed uploads by colour and neither --sign nor --unsigned was given, 3 server
key changed or not the --pin key. A closed stdout (`send DIR | head -1`) does
not stop the sending; the exit code still says whether every image was stored.
";

/// What the command line asks for.
#[derive(Debug)]
pub(super) struct Options {
    pub(super) host: String,
    pub(super) plain: bool,
    pub(super) jobs: usize,
    pub(super) json: bool,
    pub(super) accept_new_key: bool,
    pub(super) sign: Option<PathBuf>,
    pub(super) namespace: Option<String>,
    pub(super) unsigned: bool,
    pub(super) ssh_keygen: String,
    /// The fingerprint the key must have, and where it was given.
    pub(super) pin: Option<(&'static str, String)>,
    pub(super) known_hosts: Option<PathBuf>,
    pub(super) paths: Vec<PathBuf>,
}

const FLAGS: Flags = Flags {
    values: &[
        "--host",
        "-j",
        "--jobs",
        "--sign",
        "--namespace",
        "--ssh-keygen",
        "--pin",
        "--known-hosts",
    ],
    switches: &["--plain", "--json", "--accept-new-key", "--unsigned"],
};

/// A variable's value from the environment, if it is set and not empty.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The options of `args`, defaults taken from `env` (a variable's value,
/// if set and not empty); `None` if help was asked for and printed.
pub(super) fn parse(
    mut args: Args,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Options>, Error> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        host: env(client::HOST_ENV).unwrap_or_else(|| client::DEFAULT_HOST.into()),
        plain: false,
        jobs: cpus.clamp(1, MAX_JOBS),
        json: false,
        accept_new_key: false,
        sign: None,
        namespace: None,
        unsigned: false,
        ssh_keygen: env(sign::PROGRAM_ENV).unwrap_or_else(|| sign::DEFAULT_PROGRAM.into()),
        pin: None,
        known_hosts: env(pins::KNOWN_HOSTS_ENV).map(PathBuf::from),
        paths: Vec::new(),
    };
    let mut pin = env(pins::PIN_ENV).map(|v| (pins::PIN_ENV, v));
    while let Some(item) = args.next_item(&FLAGS)? {
        match item {
            Item::Help => {
                print(USAGE)?;
                return Ok(None);
            }
            Item::Positional(p) => o.paths.push(PathBuf::from(p)),
            Item::Value("--host", v) => o.host = v,
            Item::Value(f @ ("-j" | "--jobs"), v) => {
                o.jobs = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_JOBS).contains(n))
                    .ok_or_else(|| {
                        Error::Usage(format!("{f}: {v:?} is not a number from 1 to {MAX_JOBS}"))
                    })?;
            }
            Item::Value("--sign", v) => o.sign = Some(PathBuf::from(v)),
            Item::Value("--namespace", v) => {
                sshsig::check_namespace(&v)
                    .map_err(|why| Error::Usage(format!("--namespace: {why}")))?;
                o.namespace = Some(v);
            }
            Item::Value("--ssh-keygen", v) => o.ssh_keygen = v,
            Item::Value(f @ "--pin", v) => pin = Some((f, v)),
            Item::Value("--known-hosts", v) => o.known_hosts = Some(PathBuf::from(v)),
            Item::Switch("--plain") => o.plain = true,
            Item::Switch("--json") => o.json = true,
            Item::Switch("--accept-new-key") => o.accept_new_key = true,
            Item::Switch("--unsigned") => o.unsigned = true,
            Item::Value(f, _) | Item::Switch(f) => return Err(unknown(f)),
        }
    }
    if let Some((source, v)) = pin {
        let fingerprint = pins::parse_fingerprint(v.trim()).ok_or_else(|| {
            Error::Usage(format!(
                "{source}: {v:?} is not a key fingerprint like SHA256:{}",
                "A".repeat(43)
            ))
        })?;
        o.pin = Some((source, fingerprint));
    }
    if o.paths.is_empty() {
        return Err(Error::Usage("send needs at least one FILE or DIR".into()));
    }
    let conflicts = [
        (
            o.sign.is_some() && o.plain,
            "--sign and --plain: PUT takes no signature",
        ),
        (
            o.sign.is_some() && o.unsigned,
            "--sign and --unsigned contradict each other",
        ),
        (
            o.namespace.is_some() && o.sign.is_none(),
            "--namespace needs --sign",
        ),
        (
            o.pin.is_some() && o.accept_new_key,
            "--accept-new-key has no effect with --pin: the pin is the key to accept",
        ),
    ];
    if let Some((_, why)) = conflicts.iter().find(|(bad, _)| *bad) {
        return Err(Error::Usage(why.to_string()));
    }
    Ok(Some(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    const FP: &str = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    /// `parse` of `line` with only the variables in `vars` set.
    fn parse_with(line: &[&str], vars: &[(&str, &str)]) -> Result<Option<Options>, Error> {
        let args = Args::new(line.iter().map(OsString::from).collect());
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args, |name| {
            vars.iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn refused_lines() {
        let not_fp = format!("is not a key fingerprint like SHA256:{}", "A".repeat(43));
        /// The command line, the variables set, and the usage error.
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], String);
        let cases: Vec<Case> =
            vec![
            (&[], &[], "send needs at least one FILE or DIR".into()),
            (&["--json"], &[], "send needs at least one FILE or DIR".into()),
            (&["-j", "0", "a"], &[], r#"-j: "0" is not a number from 1 to 16"#.into()),
            (
                &["--jobs", "17", "a"],
                &[],
                r#"--jobs: "17" is not a number from 1 to 16"#.into(),
            ),
            (&["-j", "x", "a"], &[], r#"-j: "x" is not a number from 1 to 16"#.into()),
            (&["a", "-j"], &[], "-j needs a value".into()),
            (&["--bogus", "a"], &[], "unknown option --bogus; see --help".into()),
            (&["--plain=yes", "a"], &[], "--plain takes no value".into()),
            (
                &["--sign", "k", "--namespace", "a b", "a"],
                &[],
                r#"--namespace: "a b" holds a space, a comma or a byte outside printable ASCII"#
                    .into(),
            ),
            (&["--pin", "nope", "a"], &[], format!(r#"--pin: "nope" {not_fp}"#)),
            (
                &["a"],
                &[(pins::PIN_ENV, "nope")],
                format!(r#"COLORSORT_PIN: "nope" {not_fp}"#),
            ),
            (
                &["--sign", "k", "--plain", "a"],
                &[],
                "--sign and --plain: PUT takes no signature".into(),
            ),
            (
                &["--unsigned", "--sign", "k", "a"],
                &[],
                "--sign and --unsigned contradict each other".into(),
            ),
            (&["--namespace", "ns", "a"], &[], "--namespace needs --sign".into()),
            (
                &["--pin", FP, "--accept-new-key", "a"],
                &[],
                "--accept-new-key has no effect with --pin: the pin is the key to accept".into(),
            ),
            (
                &["--accept-new-key", "a"],
                &[(pins::PIN_ENV, FP)],
                "--accept-new-key has no effect with --pin: the pin is the key to accept".into(),
            ),
        ];
        for (line, vars, want) in cases {
            match parse_with(line, vars) {
                Err(Error::Usage(message)) => assert_eq!(message, want, "{line:?} {vars:?}"),
                other => panic!("{line:?} {vars:?}: {other:?}, not a usage error"),
            }
        }
    }

    #[test]
    fn accepted_lines() {
        let defaults = parse_with(&["a", "b"], &[]).unwrap().unwrap();
        assert_eq!(defaults.host, client::DEFAULT_HOST);
        assert_eq!(defaults.paths, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(defaults.ssh_keygen, sign::DEFAULT_PROGRAM);
        assert!((1..=MAX_JOBS).contains(&defaults.jobs));
        assert!(defaults.pin.is_none() && defaults.known_hosts.is_none());
        assert!(!defaults.plain && !defaults.json && !defaults.unsigned);
        assert!(!defaults.accept_new_key && defaults.sign.is_none());

        let vars = [
            (client::HOST_ENV, "from-env:1"),
            (sign::PROGRAM_ENV, "/opt/ssh-keygen"),
            (pins::KNOWN_HOSTS_ENV, "/pins"),
            (pins::PIN_ENV, FP),
        ];
        let from_env = parse_with(&["a"], &vars).unwrap().unwrap();
        assert_eq!(from_env.host, "from-env:1");
        assert_eq!(from_env.ssh_keygen, "/opt/ssh-keygen");
        assert_eq!(from_env.known_hosts, Some(PathBuf::from("/pins")));
        assert_eq!(from_env.pin, Some((pins::PIN_ENV, FP.to_string())));

        // Flags win over variables; an empty variable is unset.
        let flags = parse_with(
            &[
                "--host=h:2",
                "--ssh-keygen",
                "kg",
                "--known-hosts",
                "k",
                "--pin",
                &format!(" {FP} "),
                "-j",
                "16",
                "--json",
                "--sign",
                "key",
                "--namespace",
                "ns",
                "--",
                "--plain",
            ],
            &[(client::HOST_ENV, "from-env:1"), (sign::PROGRAM_ENV, "")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(flags.host, "h:2");
        assert_eq!(flags.ssh_keygen, "kg");
        assert_eq!(flags.known_hosts, Some(PathBuf::from("k")));
        assert_eq!(flags.pin, Some(("--pin", FP.to_string())));
        assert_eq!(flags.jobs, 16);
        assert!(flags.json && !flags.plain);
        assert_eq!(flags.sign, Some(PathBuf::from("key")));
        assert_eq!(flags.namespace.as_deref(), Some("ns"));
        assert_eq!(flags.paths, [PathBuf::from("--plain")]);

        let unsealed = parse_with(&["--plain", "--unsigned", "--accept-new-key", "a"], &[])
            .unwrap()
            .unwrap();
        assert!(unsealed.plain && unsealed.unsigned && unsealed.accept_new_key);
    }
}

/// Options for the tests of the other parts of `send`.
#[cfg(test)]
pub(super) mod testing {
    use super::*;
    use std::ffi::OsString;

    /// The options of `line`, with no variable set.
    pub(in crate::cli::send) fn options(line: &[&str]) -> Options {
        let args = Args::new(line.iter().map(OsString::from).collect());
        match parse(args, |_| None) {
            Ok(Some(options)) => options,
            other => panic!("{line:?}: {other:?}"),
        }
    }
}
