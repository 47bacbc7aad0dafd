//! `colorsort send`: finds the images under the given paths, signs each if
//! asked, seals it to the server's key and sends them over parallel
//! connections, retrying what may succeed later, and reports each file and
//! a summary.
//!
//! Files are picked by their magic bytes, not their names; anything else is
//! skipped with a note. Before anything is sent, the server's `POLICY` says
//! whether it files only signed uploads by colour and for which namespace
//! to sign (see [`super::sign`]), and its key is checked: against `--pin`,
//! or against the pin file, where it is pinned on first use (see
//! [`crate::pins`]). Transient failures (connection refused or reset,
//! `ERR busy`, `ERR timeout`, `ERR storage-failed`) are retried with a
//! bounded, doubling backoff ([`client::RETRY`]); permanent ones
//! (`not-an-image`, `too-large`, `bad-name`, `unknown-signer`, ...) are
//! reported at once.

use super::args::{Args, Flags, Item, unknown};
use super::exit::{EXIT_KEY_CHANGED, EXIT_OK, Error, print};
use super::report::{Failure, FileResult, Report};
use super::sign::{self, Signer};
use super::walk::walk;
use crate::age;
use crate::classify;
use crate::client::{self, Client};
use crate::config;
use crate::key::PublicKey;
use crate::name;
use crate::parallel::{self, Order};
use crate::pins::{self, Check, Pins};
use crate::protocol::{Policy, Upload};
use std::convert::Infallible;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

/// Most parallel connections.
const MAX_JOBS: usize = 16;
/// Bytes read from a file to recognise its format.
const SNIFF_BYTES: usize = 32;

/// Help for `colorsort send`.
pub(super) const USAGE: &str = "\
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

struct Options {
    host: String,
    plain: bool,
    jobs: usize,
    json: bool,
    accept_new_key: bool,
    sign: Option<PathBuf>,
    namespace: Option<String>,
    unsigned: bool,
    ssh_keygen: String,
    /// The fingerprint the key must have, and where it was given.
    pin: Option<(&'static str, String)>,
    known_hosts: Option<PathBuf>,
    paths: Vec<PathBuf>,
}

/// Runs `colorsort send`.
pub(super) fn run(args: Args) -> Result<u8, Error> {
    let Some(opts) = parse(args)? else {
        return Ok(EXIT_OK);
    };
    let started = Instant::now();
    let mut stderr = io::stderr();
    let program = match &opts.sign {
        Some(key) => Some(signing_tools(&opts.ssh_keygen, key)?),
        None => None,
    };
    let mut skipped = 0;
    let mut unreadable = Vec::new();
    let mut files = Vec::new();
    for path in walk(&opts.paths, &mut |path, e| {
        unreadable.push(failed_read(path, &e))
    }) {
        match sniff(&path) {
            Ok(Some(_)) => files.push(path),
            Ok(None) => {
                skipped += 1;
                let _ = writeln!(stderr, "skipped {}: not an image", path.display());
            }
            Err(e) => unreadable.push(failed_read(&path, &e)),
        }
    }
    if files.is_empty() && unreadable.is_empty() {
        let _ = writeln!(stderr, "colorsort: no images found");
    }

    // The first connection asks for the policy and the key, with the same
    // retries as an upload, and then serves the first worker.
    let (mut first, policy, key) = if files.is_empty() || opts.plain {
        (None, None, None)
    } else {
        let (connected, _) = client::RETRY.run(|| {
            let mut client = Client::connect(&opts.host)?;
            let policy = client.policy()?;
            let key = client.key()?;
            Ok((client, policy, key))
        });
        let (client, policy, key) = connected?;
        (Some(client), policy, Some(key))
    };
    if let Some(key) = &key
        && let Some(code) = check_key(&opts, key)?
    {
        return Ok(code);
    }
    let signer = match (program, &opts.sign) {
        (Some(program), Some(keyfile)) if !files.is_empty() => Some(Signer::new(
            program,
            keyfile.clone(),
            namespace(&opts, policy.as_ref())?,
        )),
        _ => None,
    };
    if !files.is_empty() && !opts.plain {
        check_policy(&opts, policy.as_ref())?;
    }

    let mut report = Report::new(opts.json, files.len() + unreadable.len(), skipped);
    for r in unreadable {
        report.add(r);
    }
    let (host, key, signer_ref) = (opts.host.as_str(), key.as_ref(), signer.as_ref());
    let sent: Result<(), Infallible> = parallel::run(
        &files,
        opts.jobs,
        Order::Done,
        |worker| if worker == 0 { first.take() } else { None },
        |client, path| send_one(client, host, path, key, signer_ref),
        |_, result| {
            report.add(result);
            Ok(())
        },
    );
    let Ok(()) = sent;
    let unknown_signer = report.failed_with("unknown-signer") > 0;
    let code = report.finish(started.elapsed());
    if let Some(signer) = &signer
        && unknown_signer
        && let Some(key) = signer.signed_with()
    {
        let _ = writeln!(
            stderr,
            "colorsort: {} does not take your key {} as a signer for namespace {}: it is not \
             listed, or listed for other namespaces or times. To be listed, ask its operator \
             to add this line, with your name for PRINCIPAL, to its allowed_signers file:\n  \
             PRINCIPAL {}",
            opts.host,
            key.fingerprint(),
            signer.namespace(),
            key.to_openssh()
        );
    }
    Ok(code)
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

/// A variable's value, if it is set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse(mut args: Args) -> Result<Option<Options>, Error> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        host: client::default_host(),
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
                config::check_namespace(&v)
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

/// Checks, before anything is read or sent, that signing can run: the
/// program is there and the key file exists. Returns the program's path.
fn signing_tools(program: &str, key: &Path) -> Result<PathBuf, Error> {
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
/// namespace a server announces that no server could be set to.
fn namespace(opts: &Options, policy: Option<&Policy>) -> Result<String, Error> {
    let announced = match policy {
        Some(p) => {
            config::check_namespace(&p.namespace).map_err(|why| {
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
                io::stderr(),
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
/// before signatures takes none.
fn check_policy(opts: &Options, policy: Option<&Policy>) -> Result<(), Error> {
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
                io::stderr(),
                "colorsort: sending unsigned to {}: it files these in not_trusted/",
                opts.host
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks the server's key against `--pin`, or else against the pin file.
/// Returns an exit code if sending must not go on.
fn check_key(opts: &Options, key: &PublicKey) -> Result<Option<u8>, Error> {
    let Some((source, pin)) = &opts.pin else {
        return check_pin(opts, key);
    };
    if key.fingerprint() == *pin {
        return Ok(None);
    }
    let _ = writeln!(
        io::stderr(),
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
fn check_pin(opts: &Options, key: &PublicKey) -> Result<Option<u8>, Error> {
    let mut stderr = io::stderr();
    let explicit = opts.known_hosts.is_some();
    let unpinned = |why: &str| {
        let _ = writeln!(
            io::stderr(),
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
    };
    let Some(path) = opts.known_hosts.clone().or_else(pins::default_path) else {
        return unpinned("no HOME or XDG_CONFIG_HOME to keep a pin file in");
    };
    let pins = Pins::at(&path);
    let fail = |e: io::Error| Error::Failed(format!("{}: {e}", pins.path().display()));
    match pins.check(&opts.host, key).map_err(fail)? {
        Check::Same => Ok(None),
        Check::New => match pins.pin(&opts.host, key) {
            Ok(()) => {
                let _ = writeln!(
                    stderr,
                    "pinned the key of {}: {}",
                    opts.host,
                    key.fingerprint()
                );
                Ok(None)
            }
            Err(e) if !explicit => {
                unpinned(&format!("cannot write {}: {e}", pins.path().display()))
            }
            Err(e) => Err(fail(e)),
        },
        Check::Changed { pinned } if opts.accept_new_key => {
            pins.pin(&opts.host, key).map_err(fail)?;
            let _ = writeln!(
                stderr,
                "replaced the pinned key of {}: was {pinned}, now {}",
                opts.host,
                key.fingerprint()
            );
            Ok(None)
        }
        Check::Changed { pinned } => {
            let _ = writeln!(
                stderr,
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

/// The image format of a file, from its first bytes; `None` if it is not
/// an image colorsort reads.
fn sniff(path: &Path) -> io::Result<Option<&'static str>> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    fs::File::open(path)?
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(classify::sniff(&head))
}

fn failed_read(path: &Path, e: &io::Error) -> FileResult {
    let failure = Failure {
        code: "read-failed".into(),
        message: e.to_string(),
    };
    FileResult {
        path: path.to_path_buf(),
        bytes: 0,
        attempts: 0,
        outcome: Err(failure),
    }
}

/// Reads, signs if asked, seals and sends one file, reconnecting and
/// retrying transient failures. `client` is this worker's connection, kept
/// across files.
fn send_one(
    client: &mut Option<Client>,
    host: &str,
    path: &Path,
    key: Option<&PublicKey>,
    signer: Option<&Signer>,
) -> FileResult {
    let content = match fs::read(path) {
        Ok(c) => c,
        Err(e) => return failed_read(path, &e),
    };
    let bytes = content.len() as u64;
    let failed = |code: &str, message: String| FileResult {
        path: path.to_path_buf(),
        bytes,
        attempts: 0,
        outcome: Err(Failure {
            code: code.into(),
            message,
        }),
    };
    let signature = match signer.map(|s| s.sign(&content)) {
        None => None,
        Some(Ok(signature)) => Some(signature),
        Some(Err(e)) => return failed("sign-failed", e.to_string()),
    };
    // A worker holds one copy of a file while sending it: the plaintext
    // itself for PUT, the sealed file alone for SEAL.
    let (kind, payload) = match key {
        None => (Upload::Put, content),
        Some(key) => {
            let sealed = age::encrypt(&content, key);
            drop(content);
            match sealed {
                Ok(sealed) => (Upload::Seal, sealed),
                Err(e) => return failed("seal-failed", e.to_string()),
            }
        }
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let wire_name = name::sanitize(&file_name).unwrap_or_else(|| "upload".into());
    let (result, attempts) = client::RETRY.run(|| {
        let c = match client {
            Some(c) => c,
            None => client.insert(Client::connect(host)?),
        };
        let result = match &signature {
            Some(signature) => c.upload_signed(&wire_name, signature, &payload),
            None => c.upload(kind, &wire_name, &payload),
        };
        if result.is_err() {
            // After any error the connection may be out of step or closed
            // by the server; a fresh one is cheap.
            *client = None;
        }
        result
    });
    let outcome = result.map_err(|e| Failure {
        code: failure_code(&e),
        message: match e {
            client::Error::Server { message, .. } => message,
            e => e.to_string(),
        },
    });
    FileResult {
        path: path.to_path_buf(),
        bytes,
        attempts,
        outcome,
    }
}

fn failure_code(e: &client::Error) -> String {
    match e {
        client::Error::Server { code, .. } => code.clone(),
        client::Error::Resolve { .. } | client::Error::Connect { .. } => "connect-failed".into(),
        client::Error::Io(_) | client::Error::Closed => "connection-failed".into(),
        client::Error::BadReply(_) | client::Error::Key(_) => "bad-reply".into(),
    }
}
