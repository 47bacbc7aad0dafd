//! Section 9a: what a worker's start costs, and a decode of the 1x1 PNG
//! each way of getting a worker, against the same decode in the bench's
//! own process.

use super::{Config, SETTLE, in_process, in_worker, measure, medians, one_pixel_png, workers};
use crate::util::{Report, Sample, Table, median, note, thread_cpu};
use colorsort::budget::Guards;
use colorsort::sandbox::{self, IDLE_WORKERS, Workers};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Decodes of the 1x1 PNG per batch in the start-cost rounds.
const BATCH: usize = 20;
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
/// Section 9a's table and what it says.
pub(super) fn section(report: &mut Report, cfg: &Config, pool: &Workers, memory: &Guards) {
    note("start cost: a 1x1 PNG");
    let (ways, waited) = start_cost(pool, memory, cfg.server, if cfg.quick { 3 } else { 9 });
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
}
