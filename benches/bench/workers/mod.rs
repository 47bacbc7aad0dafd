//! Section 9: what decoding in a worker process costs. A worker's start
//! (with and without the pool that starts workers ahead of need), each
//! image's decode in a worker against the same decode in the bench's own
//! process, the server CPU per upload against an earlier server's (or, with
//! none given, against an estimate from the decodes), and the slowest
//! decode of the set against the decode deadline.
//!
//! `start` times a worker's start and the ways of getting one (9a),
//! `per_decode` each image's decode in and out of a worker and the slowest
//! against the deadline (9b), `per_upload` the server's CPU per upload
//! (9c); this file holds what they share.

mod per_decode;
mod per_upload;
mod start;

use crate::util::{Report, Sample, children_cpu_secs, median};
use colorsort::budget::Guards;
use colorsort::classify::{self, Limits, Verdict};
use colorsort::config::{
    DEFAULT_DECODE_TIMEOUT, DEFAULT_LARGE_DECODE, DEFAULT_MAX_MEMORY, DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_WORKERS,
};
use colorsort::sandbox::{self, Kind, Workers};
use image::ImageEncoder;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

pub struct Config<'a> {
    /// The release binary, run as the workers and as the server.
    pub server: &'a Path,
    /// An earlier server binary, run beside `server` for the per-upload
    /// CPU; it takes the same `serve` flags.
    pub baseline: Option<&'a Path>,
    pub assets: &'a Path,
    pub work: &'a Path,
    pub quick: bool,
}

/// How long the bench waits after a decode in a worker, so that the pool
/// has started its replacement before anything else is timed: many times
/// a worker's start (section 9's first table).
const SETTLE: Duration = Duration::from_millis(50);

/// The images of the per-decode table besides the classification set.
const SMALL: &str = "small-photo.jpg";

/// Workers of the release binary `program`, at most `max` alive, with the
/// server's deadline and default budget.
fn workers(program: &Path, max: usize) -> Workers {
    Workers::new(sandbox::Config {
        program: program.to_path_buf(),
        ..sandbox::Config::new(max, DEFAULT_DECODE_TIMEOUT, DEFAULT_MAX_MEMORY)
    })
    .expect("decode workers")
}

/// Classifies `bytes` in this process.
fn in_process(bytes: &[u8]) -> Verdict {
    classify::classify(bytes, &Limits::default()).expect("benchmark image classifies")
}

/// Classifies `bytes` in a worker, charging it as the server does (the
/// payload counted as held by the caller).
fn in_worker(workers: &Workers, memory: &Guards, bytes: &[u8]) -> Verdict {
    workers
        .decode(
            memory,
            Kind::Classify,
            bytes,
            bytes.len() as u64,
            DEFAULT_MAX_PIXELS,
        )
        .unwrap_or_else(|e| panic!("decode in a worker: {e}"))
        .verdict
}

/// CPU seconds of this process (all its threads) so far.
fn self_cpu_secs() -> f64 {
    // SAFETY: `usage` is a valid, writable rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF has no other precondition.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds of this process and of its children waited for: a decode
/// in a worker is the parent's share (the pipes, the limits, starting the
/// worker) and the worker's whole life, reaped when the decode returns.
fn cpu_with_children() -> f64 {
    self_cpu_secs() + children_cpu_secs()
}

/// Runs `f` and takes its wall-clock time; the CPU time runs on until
/// `settle` after it, so that what `f` leaves to the pool's starting
/// thread (a replacement worker) is counted too.
fn measure(settle: Duration, f: impl FnOnce()) -> Sample {
    let (cpu, wall) = (cpu_with_children(), Instant::now());
    f();
    let wall = wall.elapsed().as_secs_f64();
    thread::sleep(settle);
    Sample {
        wall,
        cpu: cpu_with_children() - cpu,
    }
}

/// Medians of per-decode samples.
fn medians(samples: &[Sample]) -> Sample {
    let pick = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
    Sample {
        wall: pick(|s| s.wall),
        cpu: pick(|s| s.cpu),
    }
}

/// `more` over `base` in per cent, or "n/a" where `base` is too short a
/// time (under 0.1 ms) for a ratio to mean anything.
fn percent(more: f64, base: f64) -> String {
    if base < 1e-4 {
        return "n/a".into();
    }
    format!("{:+.1}", (more / base - 1.0) * 100.0)
}

/// A 1x1 RGB PNG.
fn one_pixel_png() -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&[200, 30, 30], 1, 1, image::ExtendedColorType::Rgb8)
        .expect("encode a 1x1 PNG");
    out
}

pub fn section(report: &mut Report, cfg: &Config) {
    report.heading("9. Decode workers: start, overhead per decode and per upload, deadline");
    // The server's default budget, large decodes taking turns, one per
    // core, as in the server.
    let memory = Guards::per_cpu(DEFAULT_MAX_MEMORY, DEFAULT_LARGE_DECODE);
    let pool = workers(cfg.server, DEFAULT_MAX_WORKERS);
    start::section(report, cfg, &pool, &memory);
    let decodes = per_decode::section(report, cfg, pool, &memory);
    per_upload::section(report, cfg, &decodes);
    per_decode::deadline(report, &decodes);
}
