//! Section 9: what decoding in a worker process costs. A worker's start
//! (with and without the pool that starts workers ahead of need), each
//! image's decode in a worker against the same decode in the bench's own
//! process, the server CPU per upload against an earlier server's (or, with
//! none given, against an estimate from the decodes), and the slowest
//! decode of the set against the decode deadline.

use crate::images::SET;
use crate::server::{Job, Server, data_dir, unique, upload};
use crate::util::{
    Report, Sample, Table, children_cpu_secs, mb, median, note, thread_cpu, tick_secs,
    waited_cpu_secs,
};
use colorsort::age;
use colorsort::budget::Guards;
use colorsort::classify::{self, Limits, Verdict};
use colorsort::client::Client;
use colorsort::config::{
    DEFAULT_DECODE_TIMEOUT, DEFAULT_LARGE_DECODE, DEFAULT_MAX_MEMORY, DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_WORKERS,
};
use colorsort::key::PublicKey;
use colorsort::sandbox::{self, IDLE_WORKERS, Kind, Workers};
use image::ImageEncoder;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Decodes of the 1x1 PNG per batch in the start-cost rounds.
const BATCH: usize = 20;

/// The goal on the deadline: the slowest decode at most this share of it.
const MARGIN_GOAL: f64 = 10.0;

/// The goal on the server: at most this much more CPU per upload.
const UPLOAD_GOAL: f64 = 0.05;

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

/// The rows of the start-cost table, in its order: a worker's start
/// alone, then the ways of decoding the 1x1 PNG.
const WAYS: [&str; 5] = [
    "a worker started, until it waits for its job",
    "1x1 PNG in the bench's process",
    "1x1 PNG in a ready worker, after a pause",
    "1x1 PNG back to back from the pool",
    "1x1 PNG in a worker started for it (pool of 1)",
];

/// Starts `program` as a worker as the pool does (`colorsort
/// decode-worker PID`, no environment, piped input and output) and waits
/// until it is blocked reading its job; returns the wall-clock time from
/// the spawn, the CPU time of the spawn (this thread's) and of the worker
/// by then, and the seconds the worker spent waiting for a core. The
/// worker is then sent end of input, and reaped.
fn start_once(program: &Path) -> (Sample, f64) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let mut child = Command::new(program)
        .arg(sandbox::COMMAND)
        .arg(std::process::id().to_string())
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker");
    let spawn_cpu = (thread_cpu() - cpu).as_secs_f64();
    // Blocked in read(2) on its standard input: its sandbox is in place.
    let reading = format!("{} 0x0 ", libc::SYS_read);
    let syscall = format!("/proc/{}/syscall", child.id());
    while !fs::read_to_string(&syscall).is_ok_and(|s| s.starts_with(&reading)) {
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "a worker exited at start"
        );
        assert!(wall.elapsed() < Duration::from_secs(10), "a worker's start");
        // Polling less often would round the start up more; more often
        // would take a core from it.
        thread::sleep(Duration::from_micros(50));
    }
    let ready = wall.elapsed().as_secs_f64();
    // Its time on a core and waiting for one so far, in nanoseconds (one
    // thread: the process's).
    let schedstat =
        fs::read_to_string(format!("/proc/{}/schedstat", child.id())).expect("schedstat");
    let ns: Vec<f64> = schedstat
        .split_whitespace()
        .take(2)
        .map(|v| v.parse::<f64>().expect("schedstat field") * 1e-9)
        .collect();
    drop(child.stdin.take());
    let _ = child.wait();
    let sample = Sample {
        wall: ready,
        cpu: spawn_cpu + ns[0],
    };
    (sample, ns[1])
}

/// Section 9a: per-decode wall and CPU of the 1x1 PNG, each way of
/// [`WAYS`], medians over rounds of [`BATCH`] decodes.
/// Also returns the median seconds a starting worker waited for a core.
fn start_cost(
    pool: &Workers,
    memory: &Guards,
    program: &Path,
    rounds: usize,
) -> (Vec<Sample>, f64) {
    let single = workers(program, 1);
    let tiny = one_pixel_png();
    let expected = in_process(&tiny);
    let decode = |w: &Workers| assert_eq!(in_worker(w, memory, &tiny), expected);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); WAYS.len()];
    let mut waits = Vec::new();
    for round in 0..rounds {
        for step in 0..WAYS.len() {
            // A different way first in each round.
            let way = (round + step) % WAYS.len();
            let per_decode = |s: Sample| Sample {
                wall: s.wall / BATCH as f64,
                cpu: s.cpu / BATCH as f64,
            };
            let sample = match way {
                0 => {
                    let (each, waited): (Vec<Sample>, Vec<f64>) =
                        (0..BATCH).map(|_| start_once(program)).unzip();
                    waits.push(waited.iter().sum::<f64>() / BATCH as f64);
                    Sample {
                        wall: each.iter().map(|s| s.wall).sum::<f64>() / BATCH as f64,
                        cpu: each.iter().map(|s| s.cpu).sum::<f64>() / BATCH as f64,
                    }
                }
                1 => per_decode(measure(Duration::ZERO, || {
                    for _ in 0..BATCH {
                        assert_eq!(in_process(&tiny), expected);
                    }
                })),
                2 => {
                    let each: Vec<Sample> = (0..BATCH)
                        .map(|_| measure(SETTLE, || decode(pool)))
                        .collect();
                    Sample {
                        wall: each.iter().map(|s| s.wall).sum::<f64>() / BATCH as f64,
                        cpu: each.iter().map(|s| s.cpu).sum::<f64>() / BATCH as f64,
                    }
                }
                3 => {
                    thread::sleep(SETTLE);
                    per_decode(measure(SETTLE, || {
                        for _ in 0..BATCH {
                            decode(pool);
                        }
                    }))
                }
                _ => {
                    // Takes the worker left ready by the last round.
                    decode(&single);
                    per_decode(measure(SETTLE, || {
                        for _ in 0..BATCH {
                            decode(&single);
                        }
                    }))
                }
            };
            samples[way].push(sample);
        }
    }
    let medians = samples.iter().map(|s| medians(s)).collect();
    (medians, median(&mut waits))
}

/// One image's decodes, in the bench's process and in workers.
struct Decodes {
    file: String,
    len: u64,
    pixels: u64,
    local: Sample,
    worker: Sample,
    /// The slowest decode in a worker, wall-clock seconds.
    slowest: f64,
    rounds: usize,
}

/// Section 9b: `bytes` decoded in this process and in a worker, in
/// alternating order, for at least `min` rounds and at most `max`, or
/// until `budget` seconds have gone.
fn per_decode(
    pool: &Workers,
    memory: &Guards,
    file: &str,
    bytes: &[u8],
    (min, max, budget): (usize, usize, f64),
) -> Decodes {
    let expected = in_process(bytes);
    let (mut local, mut worker) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for round in 0..max {
        if round >= min && started.elapsed().as_secs_f64() > budget {
            break;
        }
        let mut run_local = || {
            local.push(measure(Duration::ZERO, || {
                assert_eq!(in_process(bytes), expected);
            }))
        };
        let mut run_worker = || {
            worker.push(measure(SETTLE, || {
                assert_eq!(in_worker(pool, memory, bytes), expected, "{file}");
            }))
        };
        if round % 2 == 0 {
            run_local();
            run_worker();
        } else {
            run_worker();
            run_local();
        }
    }
    Decodes {
        file: file.to_string(),
        len: bytes.len() as u64,
        pixels: u64::from(expected.width) * u64::from(expected.height),
        slowest: worker.iter().map(|s| s.wall).fold(0.0, f64::max),
        rounds: local.len(),
        local: medians(&local),
        worker: medians(&worker),
    }
}

/// One kind of upload in the server rows: its files, sent in turn.
struct Uploads {
    what: &'static str,
    files: Vec<&'static str>,
    /// Uploads per round.
    per_round: usize,
}

/// A server of section 9c, with its client and its data.
struct Running {
    server: Server,
    client: Client,
    key: PublicKey,
    data: PathBuf,
}

/// Section 9c: the CPU (the server process's own and its reaped workers')
/// per sealed upload of each kind, for each of `binaries` run as a server
/// side by side: medians of `rounds` rounds, per binary, per kind. In a
/// round the kinds take turns to go first, and within a kind the servers
/// take turns to go first from one round to the next.
fn server_cpu(cfg: &Config, binaries: &[&Path], kinds: &[Uploads], rounds: usize) -> Vec<Vec<f64>> {
    let mut read = HashMap::new();
    for kind in kinds {
        for file in &kind.files {
            read.entry(*file)
                .or_insert_with(|| fs::read(cfg.assets.join(file)).expect("asset"));
        }
    }
    let mut servers: Vec<Running> = binaries
        .iter()
        .enumerate()
        .map(|(s, binary)| {
            let data = data_dir(&cfg.work.join(format!("data-workers-{s}")), None);
            let log = cfg.work.join(format!("server-workers-{s}.log"));
            let server = Server::start(binary, &data, &log);
            let mut client = Client::connect(&server.addr).expect("connect");
            let key = client.key().expect("server key");
            Running {
                server,
                client,
                key,
                data,
            }
        })
        .collect();
    let tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut samples = vec![vec![Vec::new(); kinds.len()]; servers.len()];
    for round in 0..rounds {
        for step in 0..kinds.len() {
            let k = (round + step) % kinds.len();
            let kind = &kinds[k];
            for turn in 0..servers.len() {
                let s = (round + turn) % servers.len();
                let running = &mut servers[s];
                // Sealed before the clock starts, each with distinct content.
                let jobs: Vec<Job> = (0..kind.per_round)
                    .map(|i| {
                        let file = kind.files[i % kind.files.len()];
                        let line = format!("colorsort-bench workers {tag} {round} {k} {s} {i}");
                        let extension = file.rsplit('.').next().unwrap_or("img");
                        let plaintext = unique(&read[file], &line);
                        Job {
                            name: format!("w{round}-{k}-{s}-{i}-{tag}.{extension}"),
                            sealed: age::encrypt(&plaintext, &running.key).expect("seal"),
                        }
                    })
                    .collect();
                thread::sleep(SETTLE);
                let before = waited_cpu_secs(running.server.pid());
                for job in &jobs {
                    upload(&mut running.client, job);
                }
                // Lets a pool start its replacements before the reading.
                thread::sleep(SETTLE);
                let used = waited_cpu_secs(running.server.pid()) - before;
                samples[s][k].push(used / kind.per_round as f64);
            }
        }
    }
    for running in servers {
        drop(running.client);
        running.server.stop();
        let _ = fs::remove_dir_all(&running.data);
    }
    samples
        .iter_mut()
        .map(|by_kind| by_kind.iter_mut().map(|s| median(s)).collect())
        .collect()
}

pub fn section(report: &mut Report, cfg: &Config) {
    report.heading("9. Decode workers: start, overhead per decode and per upload, deadline");
    // The server's default budget, large decodes taking turns, one per
    // core, as in the server.
    let memory = Guards::per_cpu(DEFAULT_MAX_MEMORY, DEFAULT_LARGE_DECODE);
    let pool = workers(cfg.server, DEFAULT_MAX_WORKERS);

    note("start cost: a 1x1 PNG");
    let (ways, waited) = start_cost(&pool, &memory, cfg.server, if cfg.quick { 3 } else { 9 });
    let mut table = Table::new(&["what", "wall ms", "CPU ms", "per second (wall)"]);
    for (what, s) in WAYS.iter().zip(&ways) {
        table.row(vec![
            what.to_string(),
            format!("{:.3}", s.wall * 1e3),
            format!("{:.3}", s.cpu * 1e3),
            format!("{:.0}", 1.0 / s.wall),
        ]);
    }
    report.table(&table);
    let (start, local, back_to_back) = (ways[0], ways[1], ways[3]);
    report.para(&format!(
        "Each row is the median over {rounds} rounds of the mean of {BATCH} runs, the rows \
         taking turns to go first. The first row starts `{program}` (the release build) as \
         the pool does, `colorsort decode-worker PID` with no environment and piped input \
         and output, and times it until it is blocked reading its job \
         (`/proc/PID/syscall`), its sandbox in place; its CPU is the spawn's, in the \
         bench's thread, and the worker's own run time by then (`/proc/PID/schedstat`). \
         The others decode a 1x1 PNG: `classify::classify` in the bench's process, or \
         `sandbox::Workers::decode` (the server's two charged steps, the limits, the \
         pipes, the worker's exit and reaping), with the pool's own limits and deadline. \
         Their *CPU* is the bench process's user + system time (all its threads, with \
         the pool's starting thread) plus that of its children waited for (`getrusage` \
         `RUSAGE_SELF` + `RUSAGE_CHILDREN`): a worker is reaped when its decode returns, \
         and counted in full, from its start to its exit. After a decode in a worker the \
         bench waits {settle} ms, inside the CPU reading (so that the pool's replacement \
         is started, and counted) and outside the wall-clock one. *After a pause* is an \
         upload that finds the pool ({IDLE_WORKERS} workers kept ready) full; *back to \
         back* is one thread taking workers as fast as the pool starts them; *started \
         for it* waits for a whole start each time. \
         **A worker's start takes {start_wall:.2} ms of wall-clock time and {start_cpu:.2} \
         ms of CPU**, of which the worker spent {waited:.2} ms ready to run but waiting \
         for a core (`schedstat`; the machine is shared). With the pool, a decode does not wait for it as long as uploads come \
         slower than the pool starts workers (one thread took them at {rate:.0} a second \
         here, back to back); the CPU is spent on every upload all the same: a decode in \
         a worker takes {worker_cpu:.2} ms of CPU more than in process for the 1x1 PNG \
         (start, limits, pipes, exit together).{idle}",
        rounds = if cfg.quick { 3 } else { 9 },
        settle = SETTLE.as_millis(),
        program = cfg.server.display(),
        start_wall = start.wall * 1e3,
        start_cpu = start.cpu * 1e3,
        waited = waited * 1e3,
        rate = 1.0 / back_to_back.wall,
        worker_cpu = (back_to_back.cpu - local.cpu) * 1e3,
        idle = if ways[2].wall > back_to_back.wall {
            " In this run a decode in a worker that had sat idle (*after a pause*) took \
             longer than back to back, start included: both processes are woken from \
             sleep at each step, which a hot loop avoids. The tables below pay that too, \
             as an upload arriving at an idle server does."
        } else {
            ""
        },
    ));

    let (min, max, budget) = if cfg.quick { (3, 3, 0.0) } else { (7, 21, 5.0) };
    let mut decodes = Vec::new();
    let tiny = one_pixel_png();
    note("per decode: 1x1 PNG");
    decodes.push(per_decode(
        &pool,
        &memory,
        "1x1 PNG",
        &tiny,
        (min, max, budget),
    ));
    for file in std::iter::once(SMALL).chain(SET.iter().map(|a| a.file)) {
        note(format!("per decode: {file}"));
        let bytes = fs::read(cfg.assets.join(file)).expect("asset");
        decodes.push(per_decode(&pool, &memory, file, &bytes, (min, max, budget)));
    }
    drop(pool);
    let mut table = Table::new(&[
        "image",
        "file MB",
        "MP",
        "in process ms",
        "in a worker ms",
        "wall +ms",
        "wall +%",
        "in process CPU ms",
        "in a worker CPU ms",
        "CPU +ms",
        "CPU +%",
        "rounds",
    ]);
    for d in &decodes {
        let (l, w) = (d.local, d.worker);
        table.row(vec![
            format!("`{}`", d.file),
            mb(d.len),
            format!("{:.1}", d.pixels as f64 / 1e6),
            format!("{:.2}", l.wall * 1e3),
            format!("{:.2}", w.wall * 1e3),
            format!("{:+.2}", (w.wall - l.wall) * 1e3),
            percent(w.wall, l.wall),
            format!("{:.2}", l.cpu * 1e3),
            format!("{:.2}", w.cpu * 1e3),
            format!("{:+.2}", (w.cpu - l.cpu) * 1e3),
            percent(w.cpu, l.cpu),
            d.rounds.to_string(),
        ]);
    }
    report.table(&table);
    report.para(&format!(
        "The same bytes decoded and classified in the bench's process and in a worker \
         from the pool, in alternating order, {min} to {max} rounds per image (medians), \
         each decode's result checked against the in-process one. Wall and CPU are read as \
         in the table above. The difference is what a worker adds to one decode: its \
         start and exit, the copy of the input through a pipe, the two round trips and \
         limits, and a fresh process faulting in its memory where the bench's process \
         reuses its own.",
    ));

    note("server CPU per upload");
    let by_file: HashMap<&str, &Decodes> = decodes.iter().map(|d| (d.file.as_str(), d)).collect();
    let overhead = |file: &str| {
        let d = by_file[file];
        d.worker.cpu - d.local.cpu
    };
    let kinds = [
        Uploads {
            what: "small photo, 29 KB",
            files: vec![SMALL],
            per_round: if cfg.quick { 10 } else { 60 },
        },
        Uploads {
            what: "3 MP JPEG, under 1 MB",
            files: vec!["jpeg-3mp-typical.jpg"],
            per_round: if cfg.quick { 2 } else { 12 },
        },
        Uploads {
            what: "12 MP JPEG",
            files: vec!["jpeg-12mp-baseline.jpg"],
            per_round: if cfg.quick { 2 } else { 6 },
        },
        Uploads {
            what: "the classification set, one pass",
            files: SET.iter().map(|a| a.file).collect(),
            per_round: SET.len(),
        },
    ];
    let server_rounds = if cfg.quick { 2 } else { 7 };
    let binaries: Vec<&Path> = cfg.baseline.into_iter().chain([cfg.server]).collect();
    let measured = server_cpu(cfg, &binaries, &kinds, server_rounds);
    let per_upload = &measured[measured.len() - 1];
    let baseline = cfg.baseline.map(|_| &measured[0]);
    let mut table = Table::new(match baseline {
        Some(_) => &[
            "uploads",
            "files",
            "uploads per round",
            "baseline server CPU ms per upload",
            "server CPU ms per upload",
            "more server CPU",
            "estimated from the decodes",
        ],
        None => &[
            "uploads",
            "files",
            "uploads per round",
            "server CPU ms per upload",
            "worker overhead CPU ms",
            "without it ms",
            "more server CPU",
        ],
    });
    let mut set_ratio = f64::NAN;
    let mut ratios = Vec::new();
    for (k, (kind, &cpu)) in kinds.iter().zip(per_upload).enumerate() {
        let extra = kind.files.iter().map(|f| overhead(f)).sum::<f64>() / kind.files.len() as f64;
        let estimated = extra / (cpu - extra);
        let ratio = baseline.map_or(estimated, |b| cpu / b[k] - 1.0);
        if kind.files.len() > 1 {
            set_ratio = ratio;
        }
        ratios.push(format!("{}: {:+.1} %", kind.what, ratio * 100.0));
        let mut row = vec![
            kind.what.to_string(),
            match &kind.files[..] {
                [one] => format!("`{one}`"),
                all => format!("the {} of section 1", all.len()),
            },
            kind.per_round.to_string(),
        ];
        row.extend(match baseline {
            Some(b) => [
                format!("{:.1}", b[k] * 1e3),
                format!("{:.1}", cpu * 1e3),
                format!("{:+.1} %", ratio * 100.0),
                format!("{:+.1} %", estimated * 100.0),
            ],
            None => [
                format!("{:.1}", cpu * 1e3),
                format!("{:+.2}", extra * 1e3),
                format!("{:.1}", (cpu - extra) * 1e3),
                format!("{:+.1} %", ratio * 100.0),
            ],
        });
        table.row(row);
    }
    report.table(&table);
    let verdict = report.goal(
        "a decode in a worker: at most 5 % more server CPU per upload",
        set_ratio <= UPLOAD_GOAL,
        ratios.join("; "),
    );
    let how = match cfg.baseline {
        Some(b) => format!(
            "Two release servers run side by side, each fresh with its own data: \
             `{new}` and, as the baseline, the build given by `--baseline` (`{old}`), \
             an earlier build that decodes in its own process; in each round every kind goes to both, the two servers taking \
             turns to go first from one round to the next. *More server CPU* is the \
             server's figure over the baseline's. *Estimated from the decodes* is what \
             the bench reports without a baseline: the worker overhead of the same files \
             (the table above, mean over the files of a kind) over the server's figure \
             less that overhead. It leans on the bench's process, which reuses memory \
             it has already faulted in, where a server that gives large blocks back to \
             the kernel after each decode faults them in again for the next, with or \
             without workers; the measured figure is the one the goal is judged on.",
            new = cfg.server.display(),
            old = b
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        ),
        None => "The server cannot decode in its own process any more, so the CPU an \
                 upload would take without a worker is estimated: the server's figure \
                 less the worker overhead of the same file, from the table above (mean \
                 over the files of a kind). *More server CPU* is that overhead over the \
                 estimate; `--baseline BIN` measures an earlier server instead."
            .to_string(),
    };
    report.para(&format!(
        "A fresh release server (`colorsort serve`, default limits, 3072-bit key) on \
         loopback takes sealed uploads one after another on one connection, {server_rounds} \
         rounds, the kinds taking turns to go first; each round's uploads are sealed, each \
         with distinct content, before its clock starts. *Server CPU* is the server \
         process's `utime + stime + cutime + cstime` (`/proc/PID/stat`) over a round, its \
         workers reaped, divided by its uploads (medians): decryption, the decode (in its \
         worker), filing and fsync. The kernel counts that time in clock ticks \
         ({tick:.0} ms here), so a round holds enough uploads for one tick to be a few \
         per cent of it at most. {how} **Goal: at most 5 % more server CPU per upload \
         on the end-to-end set: {verdict}** ({set:+.1} %). Small uploads are where a \
         worker's fixed cost shows most.",
        set = set_ratio * 100.0,
        tick = tick_secs() * 1e3,
    ));

    let slowest = decodes
        .iter()
        .max_by(|a, b| a.slowest.total_cmp(&b.slowest))
        .expect("decodes");
    let margin = DEFAULT_DECODE_TIMEOUT.as_secs_f64() / slowest.slowest;
    // The highest CPU time per pixel, carried to the largest image
    // allowed: the decode's own cost, where wall-clock time also has the
    // machine's load in it.
    let per_pixel = decodes
        .iter()
        .filter(|d| d.pixels >= 1_000_000)
        .map(|d| (d.worker.cpu / d.pixels as f64, d.file.as_str()))
        .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
    let largest = per_pixel.0 * DEFAULT_MAX_PIXELS as f64;
    let verdict = report.goal(
        "slowest decode of the set at most 1/10 of the decode deadline",
        margin >= MARGIN_GOAL,
        format!(
            "`{}`: {:.0} ms, {margin:.0}x under {} s",
            slowest.file,
            slowest.slowest * 1e3,
            DEFAULT_DECODE_TIMEOUT.as_secs()
        ),
    );
    report.para(&format!(
        "**The deadline.** Each of a decode's two steps has {deadline} s \
         (`config::DEFAULT_DECODE_TIMEOUT`), and a worker {cpu} s of CPU time in all. The \
         slowest decode in a worker of all the runs above was `{file}` at {ms:.0} ms, \
         both steps together (median {median:.0} ms): **{margin:.0}x under one step's \
         deadline; goal at least {MARGIN_GOAL:.0}x: {verdict}**. The largest image the \
         default limits let through has {mp} MP; at the highest CPU time per pixel \
         measured here (`{rate_file}`, {ns:.1} ns a pixel in a worker) it would take \
         about {largest:.1} s of CPU, {largest_margin:.1}x under the deadline: an \
         estimate carried from the set, not a measurement, for an idle core. The deadline is wall-clock time: on a machine \
         whose cores are taken, a decode takes longer, which is what the margin is for; \
         large decodes also take turns, one per core.",
        deadline = DEFAULT_DECODE_TIMEOUT.as_secs(),
        cpu = DEFAULT_DECODE_TIMEOUT.as_secs() * 2 + 1,
        file = slowest.file,
        ms = slowest.slowest * 1e3,
        median = slowest.worker.wall * 1e3,
        mp = DEFAULT_MAX_PIXELS / 1_000_000,
        rate_file = per_pixel.1,
        ns = per_pixel.0 * 1e9,
        largest_margin = DEFAULT_DECODE_TIMEOUT.as_secs_f64() / largest,
    ));
}
