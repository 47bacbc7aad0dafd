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

use crate::age;
use crate::classify;
use crate::cli::{self, Arg, Args, EXIT_FAILED, EXIT_KEY_CHANGED, EXIT_OK};
use crate::client::{self, Client};
use crate::key::PublicKey;
use crate::name;
use crate::pins::{self, Check, Pins};
use crate::protocol::{Stored, Upload};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Most parallel connections.
pub const MAX_JOBS: usize = 16;
/// Attempts per file, the first included.
pub const ATTEMPTS: u32 = 5;
/// Wait before the first retry; it doubles after each.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Shortest interval between redraws of the progress line.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Bytes read from a file to recognise its format.
const SNIFF_BYTES: usize = 32;

/// Help for `colorsort send`.
pub const USAGE: &str = "\
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
pub fn run(args: Vec<OsString>) -> Result<u8, cli::Error> {
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

    let mut report = Report::new(&opts, files.len() + unreadable.len(), skipped);
    for r in unreadable {
        report.add(r)?;
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    thread::scope(|scope| -> Result<(), cli::Error> {
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

fn parse(args: Vec<OsString>) -> Result<Option<Options>, cli::Error> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        host: client::default_host(),
        plain: false,
        jobs: cpus.clamp(1, MAX_JOBS),
        json: false,
        accept_new_key: false,
        paths: Vec::new(),
    };
    let mut args = Args::new(args);
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Positional(p) => o.paths.push(PathBuf::from(p)),
            Arg::Flag(f, attached) => match f.as_str() {
                "--help" | "-h" => {
                    cli::print(USAGE)?;
                    return Ok(None);
                }
                "--host" => o.host = args.value(&f, attached)?,
                "-j" | "--jobs" => {
                    let v = args.value(&f, attached)?;
                    o.jobs = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_JOBS).contains(n))
                        .ok_or_else(|| {
                            cli::Error::Usage(format!(
                                "{f}: {v:?} is not a number from 1 to {MAX_JOBS}"
                            ))
                        })?;
                }
                "--plain" | "--json" | "--accept-new-key" if attached.is_some() => {
                    return Err(cli::Error::Usage(format!("{f} takes no value")));
                }
                "--plain" => o.plain = true,
                "--json" => o.json = true,
                "--accept-new-key" => o.accept_new_key = true,
                _ => return Err(cli::unknown(&f)),
            },
        }
    }
    if o.paths.is_empty() {
        return Err(cli::Error::Usage(
            "send needs at least one FILE or DIR".into(),
        ));
    }
    Ok(Some(o))
}

/// Compares the server's key with the pinned one; pins it if new or if the
/// user accepts a change. Returns an exit code if sending must not go on.
fn check_pin(opts: &Options, key: &PublicKey) -> Result<Option<u8>, cli::Error> {
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
    let fail = |e: io::Error| cli::Error::Failed(format!("{}: {e}", pins.path().display()));
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

/// The files under `paths`: files as given, folders walked recursively in
/// name order. Symbolic links to folders are not followed, so a link cycle
/// cannot loop. Entries that cannot be read are passed to `on_error`.
pub fn walk(paths: &[PathBuf], on_error: &mut dyn FnMut(&Path, io::Error)) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => walk_dir(path, &mut out, on_error),
            Ok(_) => out.push(path.clone()),
            Err(e) => on_error(path, e),
        }
    }
    out
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>, on_error: &mut dyn FnMut(&Path, io::Error)) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return on_error(dir, e),
    };
    let mut entries: Vec<_> = entries
        .filter_map(|e| e.map_err(|e| on_error(dir, e)).ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_dir(&path, out, on_error),
            Ok(t) if t.is_file() => out.push(path),
            Ok(t) if t.is_symlink() => {
                if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                    out.push(path);
                }
            }
            Ok(_) => {}
            Err(e) => on_error(&path, e),
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

/// What happened to one file.
struct FileResult {
    path: PathBuf,
    bytes: u64,
    attempts: u32,
    outcome: Result<Stored, Failure>,
}

/// Why a file was not stored.
struct Failure {
    /// The server's error code, or a client-side one: `read-failed`,
    /// `seal-failed`, `connect-failed`, `connection-failed`, `bad-reply`.
    code: String,
    message: String,
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

/// Prints per-file lines, the progress line and the summary, and keeps the
/// counts.
struct Report {
    json: bool,
    /// Progress goes to stderr only when it is a terminal.
    progress: bool,
    total: usize,
    skipped: usize,
    done: usize,
    bytes: u64,
    started: Instant,
    last_draw: Option<Instant>,
    per_folder: BTreeMap<String, usize>,
    duplicates: usize,
    failures: BTreeMap<String, usize>,
}

impl Report {
    fn new(opts: &Options, total: usize, skipped: usize) -> Report {
        Report {
            json: opts.json,
            progress: io::stderr().is_terminal(),
            total,
            skipped,
            done: 0,
            bytes: 0,
            started: Instant::now(),
            last_draw: None,
            per_folder: BTreeMap::new(),
            duplicates: 0,
            failures: BTreeMap::new(),
        }
    }

    fn add(&mut self, r: FileResult) -> Result<(), cli::Error> {
        self.done += 1;
        self.bytes += r.bytes;
        let line = if self.json {
            json_line(&r)
        } else {
            human_line(&r)
        };
        match &r.outcome {
            Ok(stored) if stored.dup => self.duplicates += 1,
            Ok(stored) => {
                *self
                    .per_folder
                    .entry(stored.folder().to_string())
                    .or_default() += 1
            }
            Err(f) => *self.failures.entry(f.code.clone()).or_default() += 1,
        }
        self.clear_progress();
        cli::print(&line)?;
        self.draw_progress(false);
        Ok(())
    }

    fn clear_progress(&self) {
        if self.progress && self.last_draw.is_some() {
            let _ = write!(io::stderr(), "\r\x1b[K");
        }
    }

    fn draw_progress(&mut self, force: bool) {
        if !self.progress || self.total == 0 {
            return;
        }
        let now = Instant::now();
        if !force
            && self.last_draw.is_some_and(|t| now - t < PROGRESS_EVERY)
            && self.done < self.total
        {
            return;
        }
        self.last_draw = Some(now);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.bytes as f64 / secs;
        let eta = if self.done == 0 {
            0.0
        } else {
            secs / self.done as f64 * (self.total - self.done) as f64
        };
        let _ = write!(
            io::stderr(),
            "\r\x1b[K[{}/{}] {} {}/s ETA {}",
            self.done,
            self.total,
            megabytes(self.bytes),
            megabytes(rate as u64),
            clock(eta)
        );
    }

    fn finish(self, elapsed: Duration) -> Result<u8, cli::Error> {
        self.clear_progress();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let stored: usize = self.per_folder.values().sum();
        let failed: usize = self.failures.values().sum();
        let mut s = format!(
            "sent {} file(s) in {secs:.1}s ({}, {}/s): ",
            self.done,
            megabytes(self.bytes),
            megabytes((self.bytes as f64 / secs) as u64)
        );
        let folders = ["red", "green", "blue", "not_trusted"];
        let parts: Vec<String> = folders
            .iter()
            .map(|f| format!("{f} {}", self.per_folder.get(*f).copied().unwrap_or(0)))
            .collect();
        let _ = write!(
            s,
            "stored {stored} ({}), duplicates {}, failed {failed}",
            parts.join(", "),
            self.duplicates
        );
        if self.skipped > 0 {
            let _ = write!(s, ", skipped {} non-image(s)", self.skipped);
        }
        s.push('\n');
        if failed > 0 {
            let reasons: Vec<String> = self
                .failures
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            let _ = writeln!(s, "failures: {}", reasons.join(", "));
        }
        if self.json {
            let _ = io::stderr().write_all(s.as_bytes());
        } else {
            cli::print(&s)?;
        }
        Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
    }
}

fn human_line(r: &FileResult) -> String {
    let path = r.path.display();
    match &r.outcome {
        Ok(s) if s.dup => format!(
            "{path}: duplicate of {}\n",
            Stored {
                dup: false,
                ..s.clone()
            }
        ),
        Ok(s) => format!("{path}: stored {s}\n"),
        Err(f) => format!("{path}: failed: {} {}\n", f.code, f.message),
    }
}

fn json_line(r: &FileResult) -> String {
    let path = json_string(&r.path.to_string_lossy());
    let (bytes, attempts) = (r.bytes, r.attempts);
    match &r.outcome {
        Ok(s) => {
            let result = if s.dup { "duplicate" } else { "stored" };
            let [red, green, blue] = s.mean;
            format!(
                "{{\"path\":{path},\"result\":\"{result}\",\"stored\":{},\"r\":{red:.1},\"g\":{green:.1},\"b\":{blue:.1},\"error\":null,\"message\":null,\"bytes\":{bytes},\"attempts\":{attempts}}}\n",
                json_string(&s.path)
            )
        }
        Err(f) => format!(
            "{{\"path\":{path},\"result\":\"failed\",\"stored\":null,\"r\":null,\"g\":null,\"b\":null,\"error\":{},\"message\":{},\"bytes\":{bytes},\"attempts\":{attempts}}}\n",
            json_string(&f.code),
            json_string(&f.message)
        ),
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape() {
        let cases = [
            ("plain", "\"plain\""),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("\n\u{1}", "\"\\n\\u0001\""),
            ("é", "\"é\""),
        ];
        for (input, want) in cases {
            assert_eq!(json_string(input), want);
        }
    }

    #[test]
    fn lines_for_each_outcome() {
        let stored = Stored {
            path: "red/a.png".into(),
            mean: [200.0, 1.0, 2.0],
            dup: false,
        };
        let ok = FileResult {
            path: "x/a.png".into(),
            bytes: 10,
            attempts: 1,
            outcome: Ok(stored.clone()),
        };
        assert_eq!(
            human_line(&ok),
            "x/a.png: stored red/a.png r=200.0 g=1.0 b=2.0\n"
        );
        let dup = FileResult {
            outcome: Ok(Stored {
                dup: true,
                ..stored
            }),
            ..ok
        };
        assert_eq!(
            human_line(&dup),
            "x/a.png: duplicate of red/a.png r=200.0 g=1.0 b=2.0\n"
        );
        assert!(json_line(&dup).contains("\"result\":\"duplicate\""));
        let failure = Failure {
            code: "not-an-image".into(),
            message: "unrecognised format".into(),
        };
        let bad = FileResult {
            path: "b.txt".into(),
            bytes: 3,
            attempts: 1,
            outcome: Err(failure),
        };
        assert_eq!(
            human_line(&bad),
            "b.txt: failed: not-an-image unrecognised format\n"
        );
        assert_eq!(
            json_line(&bad),
            "{\"path\":\"b.txt\",\"result\":\"failed\",\"stored\":null,\"r\":null,\"g\":null,\"b\":null,\"error\":\"not-an-image\",\"message\":\"unrecognised format\",\"bytes\":3,\"attempts\":1}\n"
        );
    }

    #[test]
    fn walk_recurses_in_order_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for f in ["a.png", "b/z.jpg", "b/c/y.gif", "b/a.txt"] {
            fs::write(dir.path().join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink(dir.path(), dir.path().join("b/loop")).unwrap();
        let mut errors = Vec::new();
        let found = walk(
            &[dir.path().to_path_buf(), dir.path().join("missing")],
            &mut |p, _| errors.push(p.to_path_buf()),
        );
        let rel: Vec<_> = found
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(rel, ["a.png", "b/a.txt", "b/c/y.gif", "b/z.jpg"]);
        assert_eq!(errors, [dir.path().join("missing")]);
    }
}
