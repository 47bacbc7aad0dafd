//! Section 3: a release server on loopback under 1 to 32 clients, against
//! single-thread `colorsort classify`, with what one upload holds; then
//! the long run (`soak`), small uploads among large ones
//! (`small_uploads`), the idle footprint and start times (`idle`), and
//! section 5 (`musl.rs`), which repeats the load runs for the other builds.

mod idle;
mod small_uploads;
mod soak;

use crate::images::SET;
use crate::load::{Config, Level, load_set, run_level};
use crate::server::{Build, Server, data_dir};
use crate::util::{Report, Table, children_cpu_secs, mb, median, mib_from_kib, note, percentile};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Client counts of the load runs.
const LEVELS: [usize; 4] = [1, 2, 8, 32];

/// Peak RSS, in bytes, that classifying `file` adds to a fresh process:
/// the file's bytes, the pixels and the decoder's own memory.
fn upload_footprint(file: &Path) -> u64 {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .arg("--footprint")
        .arg(file)
        .output()
        .expect("footprint run");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .expect("footprint output")
        * 1024
}

/// Wall and CPU seconds for `binary classify` over the set's files,
/// medians of `runs`.
fn classify_cli_secs(binary: &Path, assets: &Path, runs: usize) -> (f64, f64) {
    let files: Vec<PathBuf> = SET.iter().map(|a| assets.join(a.file)).collect();
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let cpu_before = children_cpu_secs();
        let out = Command::new(binary)
            .arg("classify")
            .args(&files)
            .output()
            .expect("colorsort classify");
        assert!(out.status.success(), "colorsort classify failed");
        times.push(started.elapsed().as_secs_f64());
        cpu.push(children_cpu_secs() - cpu_before);
    }
    (median(&mut times), median(&mut cpu))
}

/// Section 3, then 3b, 3c, 4 and, with a musl build, 5.
pub fn section(report: &mut Report, cfg: &Config) {
    report.heading("3. End to end: a release server on loopback");
    let set = load_set(cfg.assets);
    // The key all runs share: made once, by a first start on an empty folder.
    let key_dir = data_dir(&cfg.work.join("key"), None);
    Server::start(cfg.server, &key_dir, &cfg.work.join("server.log")).stop();

    let mut table = Table::new(&[
        "image",
        "payload MB",
        "decoded pixels MB",
        "payload + pixels MB",
        "measured alone MB",
    ]);
    let mut largest = 0;
    for item in &set {
        let alone = upload_footprint(&cfg.assets.join(item.file));
        largest = largest.max(alone);
        let payload = item.bytes.len() as u64;
        table.row(vec![
            format!("`{}`", item.file),
            mb(payload),
            mb(item.decoded),
            mb(payload + item.decoded),
            mb(alone),
        ]);
    }
    report.para(
        "What one upload holds: its payload (decrypted in place, so once), the decoded \
         pixels, and the decoder's own working memory. *Measured alone* is the peak RSS \
         that reading and classifying the file adds to a fresh process. A progressive \
         JPEG keeps every DCT coefficient until its last scan (as many bytes again as \
         the pixels, for 4:2:0), and lossy WebP decodes to YUV planes first.",
    );
    report.table(&table);

    let (classify_secs, classify_cpu) =
        classify_cli_secs(cfg.server, cfg.assets, if cfg.quick { 1 } else { 3 });
    let classify_rate = SET.len() as f64 / classify_secs;
    let uploads = if cfg.quick { 16 } else { 64 };
    let mut table = Table::new(&[
        "clients",
        "uploads",
        "uploads/s",
        "x classify rate",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "busy retries",
        "server CPU (cores)",
        "machine CPU (cores)",
        "uploads per server CPU-second",
        "RSS at start MiB",
        "peak RSS (VmHWM) MiB",
        "bound MiB",
    ]);
    let mut levels = Vec::new();
    for clients in LEVELS {
        note(format!("{clients} clients, {uploads} uploads"));
        let level = run_level(
            cfg,
            Build::Binary(cfg.server),
            &key_dir,
            &set,
            (clients, uploads),
            largest,
        );
        let o = &level.outcome;
        table.row(vec![
            clients.to_string(),
            o.latencies.len().to_string(),
            format!("{:.2}", o.latencies.len() as f64 / o.wall),
            format!("{:.2}", o.latencies.len() as f64 / o.wall / classify_rate),
            format!("{:.1}", o.bytes as f64 / 1e6 / o.wall),
            format!("{:.0}", percentile(&o.latencies, 50.0) * 1e3),
            format!("{:.0}", percentile(&o.latencies, 99.0) * 1e3),
            o.busy.to_string(),
            format!("{:.2}", level.cores),
            format!("{:.2}", level.machine),
            format!("{:.2}", o.latencies.len() as f64 / (level.cores * o.wall)),
            mib_from_kib(level.start_rss),
            mib_from_kib(level.peak),
            format!("{:.0}", level.bound as f64 / (1 << 20) as f64),
        ]);
        levels.push(level);
    }
    report.table(&table);
    let scaling: f64 = levels
        .iter()
        .filter(|l| l.clients >= 2)
        .map(|l| l.outcome.latencies.len() as f64 / l.outcome.wall / classify_rate)
        .fold(f64::INFINITY, f64::min);
    let within_bound = levels.iter().all(|l| l.peak * 1024 <= l.bound + (32 << 20));
    // What the server was given, and what two whole cores would give at the
    // measured work per upload.
    let parallel: Vec<&Level> = levels.iter().filter(|l| l.clients >= 2).collect();
    let server_cores = parallel
        .iter()
        .map(|l| l.cores)
        .fold(f64::INFINITY, f64::min);
    let machine_cores = parallel.iter().map(|l| l.machine).fold(0.0, f64::max);
    let per_cpu_second = parallel
        .iter()
        .map(|l| l.outcome.latencies.len() as f64 / (l.cores * l.outcome.wall))
        .fold(f64::INFINITY, f64::min);
    let classify_per_cpu_second = SET.len() as f64 / classify_cpu;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let projected = cores * per_cpu_second / classify_per_cpu_second;
    let set_mb: u64 = set.iter().map(|i| i.bytes.len() as u64).sum();
    let verdict0 = report.goal(
        "2+ clients: uploads/s at least 1.6x single-thread classify",
        scaling >= 1.6,
        format!(
            "lowest {scaling:.2}x, the server getting {server_cores:.2} of {cores} cores \
             (machine busy: {machine_cores:.2}); {projected:.2}x at the measured CPU cost \
             with all cores"
        ),
    );
    let verdict1 = report.goal(
        "peak RSS within clients x (payload + decoded) + a few MB",
        within_bound,
        levels
            .iter()
            .map(|l| format!("{}: {} MiB", l.clients, mib_from_kib(l.peak)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    report.para(&format!(
        "Each run starts a fresh `colorsort serve` (release build, default limits: 1 GiB \
         memory budget, 3072-bit key) with its data folder under `{work}`, and shares \
         {uploads} uploads of the classification set ({n} images, {set_mb} MB a pass) \
         round-robin among its clients, each client on its own connection sending one \
         upload after another. Every upload is sealed before the clock starts, and each \
         has distinct content (a unique line after the image's end), so the server never \
         answers `dup`: the bench checks every reply. Latency runs from the request line \
         to the reply, retries after `ERR busy` (the memory budget at work) included. The \
         single-thread reference is `colorsort classify` on the same {n} files: \
         {classify_rate:.2} images/s ({ms:.0} ms for the set, wall clock). \
         **Goal: with 2 or more clients, at least 1.6x that rate: {}** (lowest: \
         {scaling:.2}x). Throughput can only be judged with the cores free: in this run \
         the server got at least {server_cores:.2} cores while the machine as a whole was \
         {machine_cores:.2} cores busy. Per CPU-second the server completed \
         {per_cpu_second:.2} uploads (lowest of the parallel runs) where `colorsort \
         classify` does {classify_per_cpu_second:.2} images: with all {cores} cores its \
         own, that is {projected:.2}x the single-thread rate (a projection from this \
         run's CPU accounting, not a measurement). \
         The bound is RSS at start + clients x the largest single-upload footprint measured \
         alone ({largest_mb} MB, table above), beside which the server's 1 GiB budget caps \
         payloads and pixels; **goal: peak RSS within it, give or take a few MB: {}**. \
         *server CPU* is the server's user + system time, its decode workers' included, over the run's wall time, \
         *machine CPU* the same for every process on the machine (from `/proc/stat`): \
         the difference is the bench's clients and whatever else runs.",
        verdict0,
        verdict1,
        work = cfg.work.display(),
        n = SET.len(),
        set_mb = set_mb / 1_000_000,
        ms = classify_secs * 1e3,
        largest_mb = mb(largest),
    ));

    let soak = soak::section(report, cfg, &key_dir);
    small_uploads::section(report, cfg, &key_dir, &set);
    idle::section(report, cfg, &key_dir, &soak);
    if let Some(musl) = cfg.musl {
        crate::musl::section(report, cfg, musl, &key_dir, &set);
    }
    let _ = fs::remove_dir_all(&key_dir);
}
