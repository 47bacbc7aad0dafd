//! A whole process run to its end and measured as the operating system
//! accounts it: wall time, CPU time and peak RSS. The peak needs a small
//! go-between: a spawned process's `ru_maxrss` starts at the peak of the
//! process it was spawned from (the kernel records the memory it leaves at
//! its exec, and a vfork-style spawn leaves its parent's), and this
//! benchmark's own peak is hundreds of MiB. So each measured command is
//! started by a fresh process of this binary (`bench --whole FILE PROGRAM
//! ARGS...`, a few MiB), which waits for it with `wait4` and writes its
//! rusage to FILE; the command's output passes straight through.

use crate::util::{machine_busy_secs, mib_from_kib};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The hidden mode that starts a measured command.
pub const MODE: &str = "--whole";

/// One whole process's run.
pub struct Run {
    pub wall: f64,
    /// CPU seconds, user and system.
    pub cpu: f64,
    /// CPU seconds the whole machine was busy meanwhile, all cores.
    pub machine: f64,
    /// Peak RSS (`ru_maxrss`), in KiB: at least the go-between's own (see
    /// [`floor_mib`]).
    pub peak_kib: u64,
    pub stdout: Vec<u8>,
}

/// Runs `program args` to the end through a go-between and measures it;
/// panics if it fails. Its wall time includes the go-between's start,
/// about a millisecond.
pub fn run_process(program: &Path, args: &[OsString]) -> Run {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let report: PathBuf = std::env::temp_dir().join(format!(
        "colorsort-bench-{}-{}.rusage",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let me = std::env::current_exe().expect("the benchmark's own path");
    let machine_before = machine_busy_secs();
    let started = Instant::now();
    let mut child = Command::new(me)
        .arg(MODE)
        .arg(&report)
        .arg(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut stdout)
        .expect("child's stdout");
    let status = child.wait().expect("wait for the go-between");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "{} failed: {status}", program.display());
    let text = fs::read_to_string(&report).expect("the go-between's report");
    let _ = fs::remove_file(&report);
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(|f| f.parse().expect("a number"))
        .collect();
    let [user_us, system_us, peak_kib] = fields[..] else {
        panic!("a malformed report: {text:?}");
    };
    Run {
        wall,
        cpu: (user_us + system_us) as f64 * 1e-6,
        machine: machine_busy_secs() - machine_before,
        peak_kib,
        stdout,
    }
}

/// The largest peak RSS of `runs`, in MiB.
pub fn peak_mib(runs: &[Run]) -> String {
    mib_from_kib(runs.iter().map(|r| r.peak_kib).max().unwrap_or(0))
}

/// The peak RSS, in MiB, that any measured command shows at least: that
/// of the go-between itself, running a command that does nothing.
pub fn floor_mib() -> String {
    mib_from_kib(run_process(Path::new("/bin/true"), &[]).peak_kib)
}

/// The go-between: runs `PROGRAM ARGS...` with this process's standard
/// streams, waits for it, writes `USER_US SYSTEM_US PEAK_KIB` to FILE and
/// exits with its exit code (1 if it died of a signal).
pub fn go_between(mut argv: impl Iterator<Item = String>) -> ! {
    let report = argv.next().expect("FILE");
    let program = argv.next().expect("PROGRAM");
    // Reaped by the wait4 below, which gives its rusage, not by `wait`.
    let child = Command::new(&program)
        .args(argv)
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `usage` is a valid, writable rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; `status` and `usage`
    // are valid and writable. `child` is not waited for again.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let line = format!(
        "{} {} {}\n",
        micros(usage.ru_utime),
        micros(usage.ru_stime),
        usage.ru_maxrss
    );
    fs::write(&report, line).expect("write the report");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    };
    std::process::exit(code)
}
