//! Timing, statistics, process and markdown functions shared by the sections.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// CPU time used so far by the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall-clock and thread CPU time of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
}

/// Asks the kernel for huge pages under `buffer`, as colorsort's pixel
/// buffers do (`classify::buffer`): from 8 MiB up, the whole 2 MiB pages in it.
pub fn advise_huge_pages(buffer: &mut [u8]) {
    const HUGE_PAGE: usize = 2 << 20;
    if buffer.len() < 8 << 20 {
        return;
    }
    let (at, len) = (buffer.as_mut_ptr() as usize, buffer.len());
    let (start, end) = (
        at.next_multiple_of(HUGE_PAGE),
        (at + len) / HUGE_PAGE * HUGE_PAGE,
    );
    if end > start {
        // SAFETY: the range lies inside `buffer`; the advice changes no contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// Runs `f` and times it.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Sample) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let value = f();
    let sample = Sample {
        cpu: (thread_cpu() - cpu).as_secs_f64(),
        wall: wall.elapsed().as_secs_f64(),
    };
    (value, sample)
}

/// The median of `values` (which it sorts).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (0 to 100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The pixels of every image in `files`, from their headers.
pub fn total_pixels(files: &[std::path::PathBuf]) -> u64 {
    let limits = colorsort::classify::Limits::default();
    files
        .iter()
        .map(|f| {
            let bytes = fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let image = colorsort::classify::open(&bytes, &limits).expect("benchmark image opens");
            u64::from(image.width()) * u64::from(image.height())
        })
        .sum()
}

/// CPU seconds (user + system) a process has used so far.
pub fn process_cpu_secs(pid: u32) -> f64 {
    // utime and stime.
    stat_secs(pid, 11, 12)
}

/// The sum of two clock-tick fields of `/proc/PID/stat` (counted as in
/// [`stat_fields`]), in seconds; 0 if the process is gone.
fn stat_secs(pid: u32, first: usize, second: usize) -> f64 {
    let Some(fields) = stat_fields(pid) else {
        return 0.0;
    };
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(first) + ticks(second)) * tick_secs()
}

/// The length of a clock tick, in which /proc/PID/stat counts CPU time.
pub fn tick_secs() -> f64 {
    // SAFETY: sysconf has no preconditions.
    1.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// CPU seconds (user + system) of a process and of its children waited
/// for (`utime`, `stime`, `cutime`, `cstime`): a server's with the decode
/// workers it has reaped.
pub fn waited_cpu_secs(pid: u32) -> f64 {
    process_cpu_secs(pid) + waited_children_cpu_secs(pid)
}

/// CPU seconds (user + system) of a process, of its children waited for,
/// and of every live process descended from it: a server's with its
/// worker processes, whether they come and go or stay.
pub fn tree_cpu_secs(pid: u32) -> f64 {
    let mut total = waited_cpu_secs(pid);
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        let Ok(entries) = fs::read_dir("/proc") else {
            break;
        };
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if stat_fields(child).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(parent) {
                total += process_cpu_secs(child);
                parents.push(child);
            }
        }
    }
    total
}

/// The fields of `/proc/PID/stat` after the parenthesised command name
/// (which may hold spaces): the state first, then the parent's pid.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// CPU seconds of the children a live process has waited for.
fn waited_children_cpu_secs(pid: u32) -> f64 {
    // cutime and cstime.
    stat_secs(pid, 13, 14)
}

/// CPU seconds (user + system) of the children waited for so far.
pub fn children_cpu_secs() -> f64 {
    // SAFETY: `usage` is a valid, writable rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN has no other precondition.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds used so far by every process in the control group of
/// process `pid` (a container's, for its server's pid), with cgroup v1's
/// `cpuacct.usage` or v2's `cpu.stat`; `None` if neither can be read.
pub fn cgroup_cpu_secs(pid: u32) -> Option<f64> {
    let groups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    // hierarchy-id:controllers:path
    let entries: Vec<(&str, &str)> = groups
        .lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, ':').skip(1);
            Some((fields.next()?, fields.next()?.trim_start_matches('/')))
        })
        .collect();
    if let Some((controllers, path)) = entries
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == "cpuacct"))
    {
        return [*controllers, "cpuacct", "cpu,cpuacct"]
            .iter()
            .find_map(|mount| {
                fs::read_to_string(format!("/sys/fs/cgroup/{mount}/{path}/cpuacct.usage")).ok()
            })
            .and_then(|ns| ns.trim().parse::<f64>().ok())
            .map(|ns| ns * 1e-9);
    }
    let (_, path) = entries.iter().find(|(c, _)| c.is_empty())?;
    fs::read_to_string(format!("/sys/fs/cgroup/{path}/cpu.stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|usec| usec * 1e-6)
}

/// CPU seconds the whole machine has been busy (all but idle and iowait),
/// summed over its cores.
pub fn machine_busy_secs() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 3 && i != 4 && i < 8)
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Output of a command, trimmed; `None` if it cannot run or fails.
pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Size of a file in bytes, 0 if it does not exist.
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Megabytes (10^6 bytes) with one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// MiB with one decimal, from KiB.
pub fn mib_from_kib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A markdown table, built row by row.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.head.len(), "{cells:?}");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.head));
        let rule: Vec<String> = self.head.iter().map(|_| "---".to_string()).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// The report: markdown written to docs/BENCHMARKS.md, also printed.
#[derive(Default)]
pub struct Report {
    text: String,
    goals: Vec<[String; 3]>,
}

impl Report {
    /// Records a goal's outcome for the summary; returns "met" or "not met".
    pub fn goal(&mut self, what: &str, met: bool, measured: String) -> &'static str {
        let verdict = if met { "met" } else { "**not met**" };
        self.goals
            .push([what.to_string(), verdict.to_string(), measured]);
        if met { "met" } else { "not met" }
    }

    /// The goals recorded so far, as a table.
    pub fn goals(&self) -> Table {
        let mut table = Table::new(&["goal", "outcome", "measured"]);
        for goal in &self.goals {
            table.row(goal.to_vec());
        }
        table
    }

    pub fn heading(&mut self, text: &str) {
        let _ = write!(self.text, "\n## {text}\n\n");
        eprintln!("\n== {text}");
    }

    pub fn para(&mut self, text: &str) {
        self.text.push_str(text.trim());
        self.text.push_str("\n\n");
    }

    pub fn table(&mut self, table: &Table) {
        let rendered = table.render();
        eprint!("{rendered}");
        self.text.push_str(&rendered);
        self.text.push('\n');
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Progress on stderr.
pub fn note(text: impl AsRef<str>) {
    eprintln!("  {}", text.as_ref());
}

/// A small deterministic generator (xorshift64*), for payloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}
