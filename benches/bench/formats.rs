//! Section 7: format by format, `colorsort classify` as a whole process
//! against one Pillow + numpy process over the same files, in CPU seconds
//! and wall time; and the whole set with every core.

use crate::parallel::{PILLOW_NUMPY, photo_set, python};
use crate::util::{Report, Table, median, note};
use crate::whole::{Run, floor_mib, peak_mib, run_process};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One format's files, some named more than once so that each row holds
/// seconds of work: a Python process's start (numpy and Pillow imported)
/// would otherwise weigh on a row of two files.
struct FormatSet {
    name: &'static str,
    files: Vec<PathBuf>,
    pixels: u64,
    colorsort: Vec<Run>,
    /// `-j` with every core, for the whole set only.
    all_cores: Vec<Run>,
    pillow: Vec<Run>,
}

impl FormatSet {
    fn new(name: &'static str, files: Vec<PathBuf>) -> FormatSet {
        let pixels = crate::util::total_pixels(&files);
        FormatSet {
            name,
            files,
            pixels,
            colorsort: Vec::new(),
            all_cores: Vec::new(),
            pillow: Vec::new(),
        }
    }

    fn args(&self, first: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = first.iter().map(OsString::from).collect();
        args.extend(self.files.iter().map(|f| f.clone().into_os_string()));
        args
    }
}

fn repeat(files: &[PathBuf], times: usize) -> Vec<PathBuf> {
    (0..times).flat_map(|_| files.iter().cloned()).collect()
}

fn median_of(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    median(&mut runs.iter().map(f).collect::<Vec<_>>())
}

pub fn section(report: &mut Report, binary: &Path, assets: &Path, quick: bool) {
    report.heading("7. Format by format against Pillow + numpy: whole processes");
    let python = python(assets);
    if !python.is_file() {
        note(format!("{} not found: no section 7", python.display()));
        report.para("Not measured: no Pillow + numpy virtualenv beside the assets.");
        return;
    }
    let progressive = assets.join("jpeg-12mp-progressive.jpg");
    let mut baseline = photo_set(assets);
    baseline.retain(|f| *f != progressive);
    let named = |names: &[&str]| -> Vec<PathBuf> { names.iter().map(|n| assets.join(n)).collect() };
    let mut sets = vec![
        FormatSet::new("JPEG baseline", baseline),
        FormatSet::new("JPEG progressive", repeat(&[progressive], 4)),
        FormatSet::new(
            "PNG",
            repeat(&named(&["png-8mp-rgb.png", "png-8mp-rgba.png"]), 2),
        ),
        FormatSet::new(
            "WebP",
            repeat(
                &named(&["webp-12mp-lossy.webp", "webp-4mp-lossless.webp"]),
                2,
            ),
        ),
    ];
    let whole: Vec<PathBuf> = sets.iter().flat_map(|s| s.files.clone()).collect();
    sets.push(FormatSet::new("whole set", whole));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_cores = cores.to_string();

    // A warm-up round, then rounds in which every set runs both ways in
    // turn, the order flipped each round.
    let rounds = if quick { 1 } else { 5 };
    for round in 0..=rounds {
        for set in &mut sets {
            let whole = set.name == "whole set";
            let mut runs: Vec<(u8, Run)> = Vec::new();
            let order: &[u8] = if round % 2 == 0 {
                &[0, 1, 2]
            } else {
                &[2, 1, 0]
            };
            for &which in order {
                let run = match which {
                    0 => run_process(binary, &set.args(&["classify", "-j", "1"])),
                    1 if whole => run_process(binary, &set.args(&["classify", "-j", &all_cores])),
                    1 => continue,
                    _ => run_process(&python, &set.args(&["-c", PILLOW_NUMPY])),
                };
                let lines = run.stdout.iter().filter(|&&b| b == b'\n').count();
                assert_eq!(lines, set.files.len(), "{}: one line per file", set.name);
                runs.push((which, run));
            }
            if round == 0 {
                continue;
            }
            for (which, run) in runs {
                match which {
                    0 => set.colorsort.push(run),
                    1 => set.all_cores.push(run),
                    _ => set.pillow.push(run),
                }
            }
            note(format!(
                "round {round}, {}: colorsort {:.2} s CPU, Pillow + numpy {:.2} s CPU",
                set.name,
                set.colorsort[round - 1].cpu,
                set.pillow[round - 1].cpu
            ));
        }
    }
    for set in &sets {
        let first = &set.colorsort[0].stdout;
        assert!(
            set.colorsort
                .iter()
                .chain(&set.all_cores)
                .all(|r| r.stdout == *first),
            "{}: every colorsort run prints the same",
            set.name
        );
    }

    let mut table = Table::new(&[
        "set",
        "files",
        "MP",
        "process",
        "CPU s",
        "wall s",
        "x Pillow+numpy per CPU-second",
        "x Pillow+numpy wall",
        "peak RSS MiB",
    ]);
    let mut worst_jpeg: (f64, &str) = (f64::INFINITY, "");
    let mut whole_all_cores = f64::NAN;
    let mut whole_cores_used = f64::NAN;
    for set in &sets {
        let (pillow_cpu, pillow_wall) = (
            median_of(&set.pillow, |r| r.cpu),
            median_of(&set.pillow, |r| r.wall),
        );
        let distinct = {
            let mut d = set.files.clone();
            d.sort();
            d.dedup();
            d.len()
        };
        let what = format!("{} files ({} distinct)", set.files.len(), distinct);
        let mut contenders = vec![(
            "`colorsort classify -j 1`".to_string(),
            &set.colorsort,
            false,
        )];
        if !set.all_cores.is_empty() {
            contenders.push((
                format!("`colorsort classify -j {cores}`"),
                &set.all_cores,
                true,
            ));
        }
        for (name, runs, is_all_cores) in contenders {
            let (cpu, wall) = (median_of(runs, |r| r.cpu), median_of(runs, |r| r.wall));
            if set.name.starts_with("JPEG") && pillow_cpu / cpu < worst_jpeg.0 {
                worst_jpeg = (pillow_cpu / cpu, set.name);
            }
            if is_all_cores {
                whole_all_cores = pillow_wall / wall;
                whole_cores_used = median_of(runs, |r| r.cpu / r.wall);
            }
            table.row(vec![
                set.name.to_string(),
                what.clone(),
                format!("{:.0}", set.pixels as f64 / 1e6),
                name,
                format!("{cpu:.2}"),
                format!("{wall:.2}"),
                format!("{:.2}", pillow_cpu / cpu),
                format!("{:.2}", pillow_wall / wall),
                peak_mib(runs),
            ]);
        }
        table.row(vec![
            set.name.to_string(),
            what,
            format!("{:.0}", set.pixels as f64 / 1e6),
            "Pillow + numpy, one process".into(),
            format!("{pillow_cpu:.2}"),
            format!("{pillow_wall:.2}"),
            "1.00".into(),
            "1.00".into(),
            peak_mib(&set.pillow),
        ]);
    }
    report.table(&table);
    let verdict0 = report.goal(
        "JPEG: `classify -j 1` at least 2x Pillow + numpy per CPU-second",
        worst_jpeg.0 >= 2.0,
        format!("lowest {:.2}x ({})", worst_jpeg.0, worst_jpeg.1),
    );
    let verdict1 = report.goal(
        "whole set: `classify` with all cores at least 4.5x one Pillow + numpy process",
        whole_all_cores >= 4.5,
        format!(
            "{whole_all_cores:.2}x, the process getting {whole_cores_used:.2} of {cores} cores"
        ),
    );
    report.para(&format!(
        "Each row is a whole process timed from start to exit, reading its files, \
         decoding them and printing one line each: `colorsort classify` as a user runs \
         it, and one Python process running `benches/anchors.py`'s `pillow_numpy` \
         (Pillow's decode, `convert(\"RGB\")`, numpy's mean; libjpeg-turbo for JPEG) on \
         every file in turn. *CPU s* is user + system of the process and what it waited \
         for, *wall s* from start to exit: medians of {rounds} rounds after a warm-up \
         round, every set run both ways in each round, the order flipped each round. \
         *x Pillow+numpy per CPU-second* is Pillow + numpy's CPU seconds over \
         colorsort's on the same files. JPEG baseline is every baseline JPEG of the \
         asset folder (the camera-like mosaics, the 480x320 photo and the photos of \
         `near/`); JPEG progressive is the 12 MP progressive mosaic four times; PNG and \
         WebP are section 1's two files of each twice; the whole set is all of them on \
         one command line. *peak RSS* is the largest `ru_maxrss` of the rounds, as \
         section 6 measures it (at least {floor} MiB, a go-between's own). **Goals: \
         JPEG at least 2x Pillow + numpy per CPU-second: {verdict0}** (lowest {:.2}x, \
         {}); **the whole set with all cores at least 4.5x one Pillow + numpy process: \
         {verdict1}** ({whole_all_cores:.2}x).",
        worst_jpeg.0,
        worst_jpeg.1,
        floor = floor_mib(),
    ));
}
