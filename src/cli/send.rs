//! `colorsort send`: finds the images under the given paths, seals each to
//! the server's key and sends them over parallel connections, retrying what
//! may succeed later, and reports each file and a summary.
//!
//! Files are picked by their magic bytes, not their names; anything else is
//! skipped with a note. The server's key is pinned on first use (see
//! [`crate::pins`]). Transient failures (connection refused or reset,
//! `ERR busy`, `ERR timeout`, `ERR storage-failed`) are retried with a
//! bounded, doubling backoff; permanent ones (`not-an-image`, `too-large`,
//! `bad-name`, ...) are reported at once.

use super::args::{Args, Flags, Item, unknown};
use super::exit::{EXIT_KEY_CHANGED, EXIT_OK, Error, print};
use super::report::{Failure, FileResult, Report};
use super::walk::walk;
use crate::age;
use crate::classify;
use crate::client::{self, Client};
use crate::key::PublicKey;
use crate::name;
use crate::pins::{self, Check, Pins};
use crate::protocol::Upload;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Most parallel connections.
const MAX_JOBS: usize = 16;
/// Attempts per file, the first included.
const ATTEMPTS: u32 = 5;
/// Wait before the first retry; it doubles after each.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
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
  --plain            send unsealed with PUT; the server files it in not_trusted/
  -j, --jobs N       parallel connections, 1 to 16 [number of CPUs]
  --json             print one JSON object per file on stdout
  --accept-new-key   accept and pin the server's key even if it changed

The first key seen for a host is pinned in ~/.config/colorsort/known_hosts;
if the server later presents another, send refuses and exits 3.
Exit codes: 0 every image stored (or already stored), 1 some image failed,
2 usage error, 3 server key changed.
";

struct Options {
    host: String,
    plain: bool,
    jobs: usize,
    json: bool,
    accept_new_key: bool,
    paths: Vec<PathBuf>,
}

/// Runs `colorsort send`.
pub(super) fn run(args: Args) -> Result<u8, Error> {
    let Some(opts) = parse(args)? else {
        return Ok(EXIT_OK);
    };
    let started = Instant::now();
    let mut stderr = io::stderr();
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

    // The first connection fetches the key, with the same retries as an
    // upload, and then serves the first worker.
    let (mut first, key) = if files.is_empty() {
        (None, None)
    } else {
        let (connected, _) = retrying(|| {
            let mut client = Client::connect(&opts.host)?;
            let key = if opts.plain {
                None
            } else {
                Some(client.key()?)
            };
            Ok((client, key))
        });
        let (client, key) = connected?;
        (Some(client), key)
    };
    if let Some(key) = &key
        && let Some(code) = check_pin(&opts, key)?
    {
        return Ok(code);
    }

    let mut report = Report::new(opts.json, files.len() + unreadable.len(), skipped);
    for r in unreadable {
        report.add(r)?;
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    thread::scope(|scope| -> Result<(), Error> {
        for worker in 0..opts.jobs.min(files.len()) {
            let (tx, next, files, key, host) =
                (tx.clone(), &next, &files, key.as_ref(), opts.host.as_str());
            let mut client = if worker == 0 { first.take() } else { None };
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    if tx.send(send_one(&mut client, host, path, key)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for result in rx {
            report.add(result)?;
        }
        Ok(())
    })?;
    report.finish(started.elapsed())
}

const FLAGS: Flags = Flags {
    values: &["--host", "-j", "--jobs"],
    switches: &["--plain", "--json", "--accept-new-key"],
};

fn parse(mut args: Args) -> Result<Option<Options>, Error> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        host: client::default_host(),
        plain: false,
        jobs: cpus.clamp(1, MAX_JOBS),
        json: false,
        accept_new_key: false,
        paths: Vec::new(),
    };
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
            Item::Switch("--plain") => o.plain = true,
            Item::Switch("--json") => o.json = true,
            Item::Switch("--accept-new-key") => o.accept_new_key = true,
            Item::Value(f, _) | Item::Switch(f) => return Err(unknown(f)),
        }
    }
    if o.paths.is_empty() {
        return Err(Error::Usage("send needs at least one FILE or DIR".into()));
    }
    Ok(Some(o))
}

/// Compares the server's key with the pinned one; pins it if new or if the
/// user accepts a change. Returns an exit code if sending must not go on.
fn check_pin(opts: &Options, key: &PublicKey) -> Result<Option<u8>, Error> {
    let mut stderr = io::stderr();
    let Some(path) = pins::default_path() else {
        let _ = writeln!(
            stderr,
            "colorsort: no HOME or XDG_CONFIG_HOME; the server key {} is not pinned",
            key.fingerprint()
        );
        return Ok(None);
    };
    let pins = Pins::at(&path);
    let fail = |e: io::Error| Error::Failed(format!("{}: {e}", pins.path().display()));
    match pins.check(&opts.host, key).map_err(fail)? {
        Check::Same => Ok(None),
        Check::New => {
            pins.pin(&opts.host, key).map_err(fail)?;
            let _ = writeln!(
                stderr,
                "pinned the key of {}: {}",
                opts.host,
                key.fingerprint()
            );
            Ok(None)
        }
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

/// Reads, seals and sends one file, reconnecting and retrying transient
/// failures. `client` is this worker's connection, kept across files.
fn send_one(
    client: &mut Option<Client>,
    host: &str,
    path: &Path,
    key: Option<&PublicKey>,
) -> FileResult {
    let content = match fs::read(path) {
        Ok(c) => c,
        Err(e) => return failed_read(path, &e),
    };
    let bytes = content.len() as u64;
    // A worker holds one copy of a file while sending it: the plaintext
    // itself for PUT, the sealed file alone for SEAL.
    let (kind, payload) = match key {
        None => (Upload::Put, content),
        Some(key) => {
            let sealed = age::encrypt(&content, key);
            drop(content);
            match sealed {
                Ok(sealed) => (Upload::Seal, sealed),
                Err(e) => {
                    let failure = Failure {
                        code: "seal-failed".into(),
                        message: e.to_string(),
                    };
                    return FileResult {
                        path: path.to_path_buf(),
                        bytes,
                        attempts: 0,
                        outcome: Err(failure),
                    };
                }
            }
        }
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let wire_name = name::sanitize(&file_name).unwrap_or_else(|| "upload".into());
    let (result, attempts) = retrying(|| {
        let c = match client {
            Some(c) => c,
            None => client.insert(Client::connect(host)?),
        };
        let result = c.upload(kind, &wire_name, &payload);
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

/// Runs `attempt` until it succeeds, fails permanently, or [`ATTEMPTS`] are
/// spent, sleeping a doubling backoff between tries. Returns the last
/// result and the number of attempts made.
fn retrying<T>(
    mut attempt: impl FnMut() -> Result<T, client::Error>,
) -> (Result<T, client::Error>, u32) {
    let mut backoff = BACKOFF_START;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt() {
            Err(e) if e.is_transient() && attempts < ATTEMPTS => {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            result => return (result, attempts),
        }
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
