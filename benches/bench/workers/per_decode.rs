//! Section 9b: each image decoded in the bench's process and in a worker,
//! and the slowest decode in a worker against the decode deadline.

use super::{
    Config, SETTLE, SMALL, in_process, in_worker, measure, medians, one_pixel_png, percent,
};
use crate::images::SET;
use crate::util::{Report, Sample, Table, mb, note};
use colorsort::budget::Guards;
use colorsort::config::{DEFAULT_DECODE_TIMEOUT, DEFAULT_MAX_PIXELS};
use colorsort::sandbox::Workers;
use std::fs;
use std::time::{Duration, Instant};

/// The goal on the deadline: the slowest decode at most this share of it.
const MARGIN_GOAL: f64 = 10.0;
/// One image's decodes, in the bench's process and in workers.
pub(super) struct Decodes {
    pub(super) file: String,
    pub(super) len: u64,
    pub(super) pixels: u64,
    pub(super) local: Sample,
    pub(super) worker: Sample,
    /// The slowest decode in a worker, wall-clock seconds.
    pub(super) slowest: f64,
    pub(super) rounds: usize,
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
/// Section 9b: the decodes of every image, their table and what it says;
/// the pool is dropped once they are done.
pub(super) fn section(
    report: &mut Report,
    cfg: &Config,
    pool: Workers,
    memory: &Guards,
) -> Vec<Decodes> {
    let (min, max, budget) = if cfg.quick { (3, 3, 0.0) } else { (7, 21, 5.0) };
    let mut decodes = Vec::new();
    let tiny = one_pixel_png();
    note("per decode: 1x1 PNG");
    decodes.push(per_decode(
        &pool,
        memory,
        "1x1 PNG",
        &tiny,
        (min, max, budget),
    ));
    for file in std::iter::once(SMALL).chain(SET.iter().map(|a| a.file)) {
        note(format!("per decode: {file}"));
        let bytes = fs::read(cfg.assets.join(file)).expect("asset");
        decodes.push(per_decode(&pool, memory, file, &bytes, (min, max, budget)));
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
    decodes
}

/// The slowest decode of all against the decode deadline, and the largest
/// image allowed, estimated.
pub(super) fn deadline(report: &mut Report, decodes: &[Decodes]) {
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
