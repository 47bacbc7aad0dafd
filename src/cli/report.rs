//! What `colorsort send` prints: a line per file (human or JSON), a
//! progress line on a terminal, and the summary with its exit code; and the
//! per-file results it is built from.
//!
//! The report never stops the uploads. Once stdout is closed
//! (`colorsort send DIR | head -1`), lines are no longer written, and the
//! exit code still says whether every file was stored. Any other failure to
//! write stdout (a full disk under a redirect) is said once on stderr and
//! makes the exit code 1, since the report asked for is incomplete.

use super::exit::{EXIT_FAILED, EXIT_OK, is_broken_pipe, print};
use crate::protocol::Stored;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Shortest interval between redraws of the progress line.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What happened to one file.
pub(super) struct FileResult {
    pub path: PathBuf,
    pub bytes: u64,
    pub attempts: u32,
    pub outcome: Result<Stored, Failure>,
}

/// Why a file was not stored.
pub(super) struct Failure {
    /// The server's error code, or a client-side one: `read-failed`,
    /// `sign-failed`, `seal-failed`, `connect-failed`, `connection-failed`,
    /// `bad-reply`.
    pub code: String,
    pub message: String,
}

/// Prints per-file lines, the progress line and the summary, and keeps the
/// counts.
pub(super) struct Report {
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
    stdout: Stdout,
}

/// Whether the report can still be written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdout {
    /// Lines are written.
    Open,
    /// The reader went away: nothing more is written, and that is no error.
    Closed,
    /// A write failed otherwise; said on stderr, and the command fails.
    Failed,
}

impl Report {
    /// A report on `total` files, `skipped` others having been left out;
    /// `json` selects the line format.
    pub(super) fn new(json: bool, total: usize, skipped: usize) -> Report {
        Report {
            json,
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
            stdout: Stdout::Open,
        }
    }

    /// Counts one file and prints its line, if stdout still takes it.
    pub(super) fn add(&mut self, r: FileResult) {
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
        self.print(&line);
        self.draw_progress(false);
    }

    /// Writes report text to stdout while it is open; see the module
    /// documentation for what a failure does.
    fn print(&mut self, text: &str) {
        if self.stdout != Stdout::Open {
            return;
        }
        match print(text) {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => self.stdout = Stdout::Closed,
            Err(e) => {
                self.stdout = Stdout::Failed;
                let _ = writeln!(io::stderr(), "colorsort: {e}; sending goes on");
            }
        }
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

    /// How many files failed with `code`.
    pub(super) fn failed_with(&self, code: &str) -> usize {
        self.failures.get(code).copied().unwrap_or(0)
    }

    /// Prints the summary; the exit code says whether every file was
    /// stored, and the report written, bar a closed stdout.
    pub(super) fn finish(mut self, elapsed: Duration) -> u8 {
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
            self.print(&s);
        }
        if failed == 0 && self.stdout != Stdout::Failed {
            EXIT_OK
        } else {
            EXIT_FAILED
        }
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
            let signer = s.signer.as_deref().map_or("null".into(), json_string);
            format!(
                "{{\"path\":{path},\"result\":\"{result}\",\"stored\":{},\"r\":{red:.1},\"g\":{green:.1},\"b\":{blue:.1},\"signer\":{signer},\"error\":null,\"message\":null,\"bytes\":{bytes},\"attempts\":{attempts}}}\n",
                json_string(&s.path)
            )
        }
        Err(f) => format!(
            "{{\"path\":{path},\"result\":\"failed\",\"stored\":null,\"r\":null,\"g\":null,\"b\":null,\"signer\":null,\"error\":{},\"message\":{},\"bytes\":{bytes},\"attempts\":{attempts}}}\n",
            json_string(&f.code),
            json_string(&f.message)
        ),
    }
}

/// A JSON string literal, escaped as the log's JSON lines are.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::log::json_string(&mut out, s);
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
            signer: None,
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
        assert!(json_line(&ok).contains(",\"signer\":null,"));
        let dup = FileResult {
            outcome: Ok(Stored {
                dup: true,
                ..stored.clone()
            }),
            ..ok
        };
        assert_eq!(
            human_line(&dup),
            "x/a.png: duplicate of red/a.png r=200.0 g=1.0 b=2.0\n"
        );
        assert!(json_line(&dup).contains("\"result\":\"duplicate\""));
        let signed = FileResult {
            outcome: Ok(Stored {
                signer: Some("alice@example.com,\"q\" x".into()),
                ..stored
            }),
            ..dup
        };
        assert_eq!(
            human_line(&signed),
            "x/a.png: stored red/a.png r=200.0 g=1.0 b=2.0 signer=alice@example.com,\"q\"\\x20x\n"
        );
        assert!(
            json_line(&signed).contains(",\"signer\":\"alice@example.com,\\\"q\\\" x\","),
            "{}",
            json_line(&signed)
        );
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
            "{\"path\":\"b.txt\",\"result\":\"failed\",\"stored\":null,\"r\":null,\"g\":null,\"b\":null,\"signer\":null,\"error\":\"not-an-image\",\"message\":\"unrecognised format\",\"bytes\":3,\"attempts\":1}\n"
        );
    }
}
