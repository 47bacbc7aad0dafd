//! The command line: subcommands matched by hand, their help, and exit codes.
//!
//! Exit codes (documented in `colorsort --help` and the README):
//! - 0: success;
//! - 1: the operation failed (server unreachable or replying `ERR`, a file
//!   not stored);
//! - 2: usage error;
//! - 3: `send` refused: the server's key differs from the pinned one.
//!
//! A closed stdout (`colorsort key | head -c 10`) is not an error: the
//! command stops quietly with the status it had.

use crate::classify;
use crate::client::{self, Client};
use crate::config::{self, ServeConfig};
use crate::gallery;
use crate::send;
use crate::server::Server;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The operation failed.
pub const EXIT_FAILED: u8 = 1;
/// The command line was wrong.
pub const EXIT_USAGE: u8 = 2;
/// The server's key does not match the pinned key.
pub const EXIT_KEY_CHANGED: u8 = 3;

const USAGE: &str = "\
colorsort: sorts images by average colour into red/, green/ and blue/

Usage:
  colorsort serve [OPTIONS]            run the server
  colorsort key [--fingerprint]        print the server's public key (an age recipient)
  colorsort send [OPTIONS] FILE|DIR... seal images to the server's key and send them
  colorsort classify FILE|DIR...       classify local images, without a server
  colorsort stats                      files stored per folder
  colorsort gallery [--data DIR]       write an HTML page of the sorted images
  colorsort ping                       exit 0 if the server answers
  colorsort help [COMMAND]             help on a command

Client commands talk to --host HOST:PORT, default $COLORSORT_HOST or 127.0.0.1:6666.

Exit codes: 0 success, 1 failure, 2 usage error, 3 server key changed (send).
";

const KEY_USAGE: &str = "\
Usage: colorsort key [--host HOST:PORT] [--fingerprint]

Prints the server's public key as an OpenSSH line, usable as a recipient
file for age: `colorsort key > server.pub; age -R server.pub ...`.
  --fingerprint   print its SHA256 fingerprint instead, as ssh-keygen -l does
";

const STATS_USAGE: &str = "\
Usage: colorsort stats [--host HOST:PORT]

Prints the number of files in each folder: red=N green=N blue=N not_trusted=N.
";

const PING_USAGE: &str = "\
Usage: colorsort ping [--host HOST:PORT]

Exits 0 if the server answers PING, 1 otherwise. Used as the container's
health check.
";

const GALLERY_USAGE: &str = "\
Usage: colorsort gallery [--data DIR] [--out FILE|-] [-j N]

Writes a static HTML page of the data directory: one section per folder with
its count, and for each image a thumbnail, a swatch of its mean colour, its
name and its means. Thumbnails are cached in DIR/.thumbs/ and made only for
new or changed images.
  --data DIR     data directory [$COLORSORT_DATA or /data]
  --out FILE     the page [DIR/gallery.html]; `-` writes it to stdout. A page
                 outside DIR, or on stdout, embeds its thumbnails, so it
                 stands alone; one inside DIR links them and the images.
  -j, --jobs N   threads for new thumbnails [number of CPUs]

From the container's volume:
  docker run --rm -v colorsort-data:/data colorsort gallery --out - > gallery.html
";

const CLASSIFY_USAGE: &str = "\
Usage: colorsort classify [--max-pixels N] FILE|DIR...

Classifies local images exactly as the server does and prints one line per
file: FILE CLASS r=R g=G b=B. Folders are walked; files that are not images
are reported as errors.
";

/// A failure that ends a command.
#[derive(Debug)]
pub enum Error {
    /// The command line is wrong.
    Usage(String),
    /// The command ran and failed; the message says why.
    Failed(String),
    /// Writing to stdout or stderr failed.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Failed(m) => f.write_str(m),
            Error::Io(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<client::Error> for Error {
    fn from(e: client::Error) -> Error {
        Error::Failed(e.to_string())
    }
}

/// Runs the command line `args` (program name first) and returns its exit
/// code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let mut args: Vec<OsString> = args.into_iter().skip(1).collect();
    let command = if args.is_empty() {
        None
    } else {
        Some(args.remove(0))
    };
    let result = match command.as_ref().and_then(|c| c.to_str()) {
        None => Err(Error::Usage(USAGE.trim_end().into())),
        Some("serve") => serve(args),
        Some("key") => key(args),
        Some("send") => send::run(args),
        Some("classify") => classify(args),
        Some("stats") => stats(args),
        Some("gallery") => gallery(args),
        Some("ping") => ping(args),
        Some("help" | "--help" | "-h") => help(args),
        Some("version" | "--version" | "-V") => {
            print(&format!("colorsort {}\n", env!("CARGO_PKG_VERSION"))).map(|()| EXIT_OK)
        }
        Some(other) => Err(Error::Usage(format!(
            "unknown command {other:?}; see colorsort --help"
        ))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(EXIT_OK),
        Err(e) => {
            let code = if matches!(e, Error::Usage(_)) {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
            let _ = writeln!(io::stderr(), "colorsort: {e}");
            ExitCode::from(code)
        }
    }
}

/// Writes to stdout; a broken pipe surfaces as [`Error::Io`].
pub fn print(text: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A hand-rolled argument cursor: flags as `--flag VALUE` or `--flag=VALUE`,
/// `--` ending flags, everything else positional.
pub struct Args {
    items: std::vec::IntoIter<OsString>,
    /// Set after `--`: everything left is positional.
    positional_only: bool,
}

/// One command-line item.
pub enum Arg {
    /// `--name` or `-n`, with the value attached by `=` if there was one.
    Flag(String, Option<String>),
    /// Anything else.
    Positional(OsString),
}

impl Args {
    /// Wraps the arguments after the subcommand.
    pub fn new(args: Vec<OsString>) -> Args {
        Args {
            items: args.into_iter(),
            positional_only: false,
        }
    }

    /// The next item, or `None` at the end.
    pub fn next_arg(&mut self) -> Result<Option<Arg>, Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        if self.positional_only {
            return Ok(Some(Arg::Positional(item)));
        }
        let Some(text) = item.to_str() else {
            return Ok(Some(Arg::Positional(item)));
        };
        if text == "--" {
            self.positional_only = true;
            return self.next_arg();
        }
        if !text.starts_with('-') || text == "-" {
            return Ok(Some(Arg::Positional(item)));
        }
        Ok(Some(match text.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                Arg::Flag(flag.to_string(), Some(value.to_string()))
            }
            _ => Arg::Flag(text.to_string(), None),
        }))
    }

    /// The value of a flag: the part after `=`, or the next item.
    pub fn value(&mut self, flag: &str, attached: Option<String>) -> Result<String, Error> {
        if let Some(v) = attached {
            return Ok(v);
        }
        match self.items.next().map(OsString::into_string) {
            Some(Ok(v)) => Ok(v),
            Some(Err(_)) => Err(Error::Usage(format!("{flag}: value is not valid UTF-8"))),
            None => Err(Error::Usage(format!("{flag} needs a value"))),
        }
    }
}

/// Refuses an unexpected flag, or a value given to a flag that takes none.
pub fn unknown(flag: &str) -> Error {
    Error::Usage(format!("unknown option {flag}; see --help"))
}

fn no_value(flag: &str, attached: &Option<String>) -> Result<(), Error> {
    match attached {
        Some(_) => Err(Error::Usage(format!("{flag} takes no value"))),
        None => Ok(()),
    }
}

fn help(args: Vec<OsString>) -> Result<u8, Error> {
    let text = match args.first().and_then(|a| a.to_str()) {
        None => USAGE.to_string(),
        Some("serve") => serve_usage(),
        Some("key") => KEY_USAGE.into(),
        Some("send") => send::USAGE.into(),
        Some("classify") => CLASSIFY_USAGE.into(),
        Some("stats") => STATS_USAGE.into(),
        Some("gallery") => GALLERY_USAGE.into(),
        Some("ping") => PING_USAGE.into(),
        Some(other) => {
            return Err(Error::Usage(format!(
                "no help for {other:?}; see colorsort --help"
            )));
        }
    };
    print(&text).map(|()| EXIT_OK)
}

fn serve_usage() -> String {
    let defaults = ServeConfig::default();
    let mut s = String::from(
        "Usage: colorsort serve [OPTIONS]\n\n\
         Runs the server. Every option can also be set by its environment variable;\n\
         an option on the command line wins.\n\n",
    );
    for setting in config::SETTINGS {
        let flag = format!("{} {}", setting.flag, setting.value);
        s.push_str(&format!(
            "  {flag:<24} {} [{}]\n",
            setting.help,
            setting.show(&defaults)
        ));
        s.push_str(&format!("  {:<24} env {}\n", "", setting.env));
    }
    s.push_str("\nStops cleanly on SIGTERM or SIGINT: in-flight requests finish, then exit 0.\n");
    s
}

fn serve(args: Vec<OsString>) -> Result<u8, Error> {
    let mut config = ServeConfig::default();
    config::apply_env(&mut config, |name| std::env::var(name).ok())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let mut args = Args::new(args);
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Flag(f, _) if f == "--help" || f == "-h" => {
                return print(&serve_usage()).map(|()| EXIT_OK);
            }
            Arg::Flag(f, attached) => {
                let setting = config::setting(&f).ok_or_else(|| unknown(&f))?;
                let value = args.value(&f, attached)?;
                setting
                    .apply(&mut config, &value, &f)
                    .map_err(|e| Error::Usage(e.to_string()))?;
            }
            Arg::Positional(p) => {
                return Err(Error::Usage(format!("serve takes no argument {p:?}")));
            }
        }
    }
    // A panic ends only the connection it happened on; log it as one line
    // like everything else rather than as the default multi-line report.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let message = info
            .payload_as_str()
            .unwrap_or("(no message)")
            .replace('\n', " ");
        let place = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        log!(
            "panic in thread {}{place}: {message}",
            thread.name().unwrap_or("?")
        );
    }));
    let server = Server::bind(&config).map_err(|e| Error::Failed(e.to_string()))?;
    let addr = server.local_addr()?;
    let l = &config.limits;
    log!(
        "colorsort {} listening on {addr}; data {}; key {} ({}-bit RSA); limits: upload {} bytes, {} pixels, timeout {:.1}s, {} connections",
        env!("CARGO_PKG_VERSION"),
        config.data.display(),
        server.fingerprint(),
        server.key_bits(),
        l.max_upload,
        l.max_pixels,
        l.timeout.as_secs_f64(),
        l.max_connections
    );
    let stopper = server.stopper()?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if let Some(signal) = received.next() {
                log!("received {}; stopping", signal_name(signal));
                stopper.stop();
            }
            if let Some(signal) = received.next() {
                log!("received {} again; exiting now", signal_name(signal));
                std::process::exit(i32::from(EXIT_FAILED));
            }
        })?;
    server.run().map_err(|e| Error::Failed(e.to_string()))?;
    Ok(EXIT_OK)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// Parses the `--host` and `--help` options common to the small client
/// commands, plus any boolean flags in `switches`, which are returned set or
/// not in order.
fn client_args<const N: usize>(
    args: Vec<OsString>,
    usage: &str,
    switches: [&str; N],
) -> Result<Option<(String, [bool; N])>, Error> {
    let mut host = client::default_host();
    let mut set = [false; N];
    let mut args = Args::new(args);
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Flag(f, _) if f == "--help" || f == "-h" => {
                print(usage)?;
                return Ok(None);
            }
            Arg::Flag(f, attached) if f == "--host" => host = args.value(&f, attached)?,
            Arg::Flag(f, attached) => {
                let i = switches
                    .iter()
                    .position(|s| *s == f)
                    .ok_or_else(|| unknown(&f))?;
                no_value(&f, &attached)?;
                set[i] = true;
            }
            Arg::Positional(p) => return Err(Error::Usage(format!("unexpected argument {p:?}"))),
        }
    }
    Ok(Some((host, set)))
}

fn key(args: Vec<OsString>) -> Result<u8, Error> {
    let Some((host, [fingerprint])) = client_args(args, KEY_USAGE, ["--fingerprint"])? else {
        return Ok(EXIT_OK);
    };
    let key = Client::connect(&host)?.key()?;
    let text = if fingerprint {
        key.fingerprint()
    } else {
        key.to_ssh_line(crate::key::COMMENT)
    };
    print(&format!("{text}\n")).map(|()| EXIT_OK)
}

fn stats(args: Vec<OsString>) -> Result<u8, Error> {
    let Some((host, [])) = client_args(args, STATS_USAGE, [])? else {
        return Ok(EXIT_OK);
    };
    let text = Client::connect(&host)?.request("STATS")?;
    print(&format!("{text}\n")).map(|()| EXIT_OK)
}

fn ping(args: Vec<OsString>) -> Result<u8, Error> {
    let Some((host, [])) = client_args(args, PING_USAGE, [])? else {
        return Ok(EXIT_OK);
    };
    let text = Client::connect(&host)?.request("PING")?;
    if text != "PONG" {
        return Err(Error::Failed(format!(
            "unexpected reply to PING: OK {text}"
        )));
    }
    print("PONG\n").map(|()| EXIT_OK)
}

fn gallery(args: Vec<OsString>) -> Result<u8, Error> {
    let mut data = std::env::var_os("COLORSORT_DATA")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR), PathBuf::from);
    let mut out = None;
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = Args::new(args);
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Flag(f, _) if f == "--help" || f == "-h" => {
                return print(GALLERY_USAGE).map(|()| EXIT_OK);
            }
            Arg::Flag(f, attached) if f == "--data" => {
                data = PathBuf::from(args.value(&f, attached)?)
            }
            Arg::Flag(f, attached) if f == "--out" => out = Some(args.value(&f, attached)?),
            Arg::Flag(f, attached) if f == "-j" || f == "--jobs" => {
                let v = args.value(&f, attached)?;
                jobs =
                    v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        Error::Usage(format!("{f}: {v:?} is not a positive number"))
                    })?;
            }
            Arg::Flag(f, _) => return Err(unknown(&f)),
            Arg::Positional(p) => {
                return Err(Error::Usage(format!("gallery takes no argument {p:?}")));
            }
        }
    }
    let out = match out.as_deref() {
        Some("-") => gallery::Output::Stdout,
        Some(path) => gallery::Output::File(PathBuf::from(path)),
        None => gallery::Output::File(data.join("gallery.html")),
    };
    let (page, summary) =
        gallery::run(&data, &out, jobs).map_err(|e| Error::Failed(e.to_string()))?;
    let _ = writeln!(io::stderr(), "{summary}");
    match &out {
        gallery::Output::Stdout => print(&page)?,
        gallery::Output::File(path) => {
            let _ = writeln!(io::stderr(), "wrote {}", path.display());
        }
    }
    Ok(EXIT_OK)
}

fn classify(args: Vec<OsString>) -> Result<u8, Error> {
    let mut limits = classify::Limits::new(config::DEFAULT_MAX_PIXELS);
    let mut paths = Vec::new();
    let mut args = Args::new(args);
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Flag(f, _) if f == "--help" || f == "-h" => {
                return print(CLASSIFY_USAGE).map(|()| EXIT_OK);
            }
            Arg::Flag(f, attached) if f == "--max-pixels" => {
                let v = args.value(&f, attached)?;
                let n = v.parse().ok().filter(|&n| n > 0);
                limits =
                    classify::Limits::new(n.ok_or_else(|| {
                        Error::Usage(format!("{f}: {v:?} is not a positive number"))
                    })?);
            }
            Arg::Flag(f, _) => return Err(unknown(&f)),
            Arg::Positional(p) => paths.push(PathBuf::from(p)),
        }
    }
    if paths.is_empty() {
        return Err(Error::Usage(
            "classify needs at least one FILE or DIR".into(),
        ));
    }
    let mut failed = 0;
    for path in send::walk(&paths, &mut |path, e| {
        failed += 1;
        let _ = writeln!(io::stderr(), "colorsort: {}: {e}", path.display());
    }) {
        let result = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                crate::classify::classify(&bytes, &limits).map_err(|e| e.to_string())
            });
        match result {
            Ok(v) => {
                let [r, g, b] = v.mean;
                print(&format!(
                    "{} {} r={r:.1} g={g:.1} b={b:.1}\n",
                    path.display(),
                    v.class.as_str()
                ))?;
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(io::stderr(), "colorsort: {}: {e}", path.display());
            }
        }
    }
    Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    #[test]
    fn args_split_flags_values_and_positionals() {
        let mut a = Args::new(os(&["--host=h:1", "-j", "4", "file", "--", "--not-a-flag"]));
        let mut seen = Vec::new();
        while let Some(arg) = a.next_arg().unwrap() {
            seen.push(match arg {
                Arg::Flag(f, attached) => {
                    let v = a.value(&f, attached).unwrap();
                    format!("{f}={v}")
                }
                Arg::Positional(p) => p.into_string().unwrap(),
            });
        }
        assert_eq!(seen, ["--host=h:1", "-j=4", "file", "--not-a-flag"]);
    }

    #[test]
    fn missing_values_and_unknown_flags_are_usage_errors() {
        let mut a = Args::new(os(&["--host"]));
        let Some(Arg::Flag(f, attached)) = a.next_arg().unwrap() else {
            panic!()
        };
        assert!(matches!(a.value(&f, attached), Err(Error::Usage(_))));
        assert!(matches!(
            client_args(os(&["--frob"]), "", []),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            client_args(os(&["--fingerprint=yes"]), "", ["--fingerprint"]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            client_args(os(&["extra"]), "", []),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn serve_help_lists_every_setting() {
        let text = serve_usage();
        for s in config::SETTINGS {
            assert!(text.contains(s.flag) && text.contains(s.env), "{}", s.flag);
        }
    }
}
