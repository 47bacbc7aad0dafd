//! Section 6: `colorsort classify` as a whole process on one thread
//! against two, over the classification set, and against one Pillow + numpy
//! process over the photographic JPEGs.

use crate::images::SET;
use crate::util::{Report, Table, median, note};
use crate::whole::{Run, floor_mib, peak_mib, run_process};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// Passes over the classification set in one command line: one pass is
/// eight files of very different cost, and the slowest alone is a third of
/// a pass, so two threads would spend much of one pass waiting for it.
const PASSES: usize = 4;

/// The anchor: what `benches/anchors.py` times per file as `pillow_numpy`,
/// in one process over every file named on its command line.
pub const PILLOW_NUMPY: &str = "\
import sys
import numpy as np
from PIL import Image
for path in sys.argv[1:]:
    with Image.open(path) as im:
        mean = np.asarray(im.convert('RGB')).reshape(-1, 3).mean(axis=0)
    print(path, *(f'{m:.1f}' for m in mean))
";

/// One command measured over a set of files.
struct Contender {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    runs: Vec<Run>,
}

impl Contender {
    fn new(name: &str, program: &Path, args: &[&str], files: &[PathBuf]) -> Contender {
        let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
        all.extend(files.iter().map(|f| f.clone().into_os_string()));
        Contender {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: all,
            runs: Vec::new(),
        }
    }

    fn run(&mut self) {
        let run = run_process(&self.program, &self.args);
        self.runs.push(run);
    }

    fn median(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(&mut self.runs.iter().map(f).collect::<Vec<_>>())
    }

    fn wall(&self) -> f64 {
        self.median(|r| r.wall)
    }
}

/// A set of files and the contenders run over it.
struct Bench {
    set: &'static str,
    files: Vec<PathBuf>,
    pixels: u64,
    contenders: Vec<Contender>,
}

impl Bench {
    fn new(set: &'static str, files: Vec<PathBuf>) -> Bench {
        let pixels = crate::util::total_pixels(&files);
        Bench {
            set,
            files,
            pixels,
            contenders: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, program: &Path, args: &[&str]) {
        let contender = Contender::new(name, program, args, &self.files);
        self.contenders.push(contender);
    }

    /// Median wall seconds of the contender named `name`.
    fn wall(&self, name: &str) -> f64 {
        self.contenders
            .iter()
            .find(|c| c.name == name)
            .map_or(f64::NAN, Contender::wall)
    }
}

/// The classification set, [`PASSES`] times over.
fn benchmark_set(assets: &Path) -> Vec<PathBuf> {
    (0..PASSES)
        .flat_map(|_| SET.iter().map(|a| assets.join(a.file)))
        .collect()
}

/// Every JPEG of the asset folder, in name order: the camera-like ones at
/// the top (2 to 18 MP mosaics of photos with a sensor's grain, a 480x320
/// photo) and the photos of `near/` (each sample photo at twice its size).
pub fn photo_set(assets: &Path) -> Vec<PathBuf> {
    let jpegs = |dir: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        found.retain(|p| p.extension().is_some_and(|e| e == "jpg"));
        found.sort();
        found
    };
    let mut files = jpegs(assets);
    files.extend(jpegs(&assets.join("near")));
    files
}

pub fn section(report: &mut Report, binary: &Path, assets: &Path, quick: bool) {
    report.heading("6. Parallel classify: whole processes on one core and two");
    let python = python(assets);
    let have_python = python.is_file();
    if !have_python {
        note(format!(
            "{} not found: no Pillow + numpy anchor",
            python.display()
        ));
    }
    let mut benches = vec![
        Bench::new("classification set", benchmark_set(assets)),
        Bench::new("photo set", photo_set(assets)),
    ];
    for bench in &mut benches {
        bench.add(
            "`colorsort classify -j 1`",
            binary,
            &["classify", "-j", "1"],
        );
        bench.add(
            "`colorsort classify -j 2`",
            binary,
            &["classify", "-j", "2"],
        );
    }
    if have_python {
        benches[1].add(
            "Pillow + numpy, one process",
            &python,
            &["-c", PILLOW_NUMPY],
        );
    }
    // Warm the page cache and the binaries first, then run every contender
    // of both sets in turn in each round, so that a change in the
    // machine's load falls on all of them alike.
    let rounds = if quick { 1 } else { 7 };
    if !quick {
        for c in benches.iter_mut().flat_map(|b| &mut b.contenders) {
            c.run();
            c.runs.clear();
        }
    }
    for round in 0..rounds {
        for bench in &mut benches {
            for c in &mut bench.contenders {
                c.run();
            }
            let walls: Vec<String> = bench
                .contenders
                .iter()
                .map(|c| format!("{:.2} s", c.runs[round].wall))
                .collect();
            note(format!(
                "round {}, {}: {}",
                round + 1,
                bench.set,
                walls.join(", ")
            ));
        }
    }
    for bench in &benches {
        for c in &bench.contenders {
            for run in &c.runs {
                let lines = run.stdout.iter().filter(|&&b| b == b'\n').count();
                assert_eq!(lines, bench.files.len(), "{}: one line per file", c.name);
            }
        }
        let (one, two) = (&bench.contenders[0], &bench.contenders[1]);
        assert!(
            one.runs
                .iter()
                .chain(&two.runs)
                .all(|r| r.stdout == one.runs[0].stdout),
            "{}: -j 1 and -j 2 print the same",
            bench.set
        );
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut table = Table::new(&[
        "set",
        "files",
        "MP",
        "process",
        "wall s",
        "MP/s",
        "files/s",
        "x `-j 1`",
        "x Pillow+numpy",
        "process CPU (cores)",
        "machine busy (cores)",
        "peak RSS MiB",
    ]);
    for bench in &benches {
        let mp = bench.pixels as f64 / 1e6;
        let (one, pillow) = (
            bench.wall("`colorsort classify -j 1`"),
            bench.wall("Pillow + numpy, one process"),
        );
        for c in &bench.contenders {
            let wall = c.wall();
            table.row(vec![
                bench.set.to_string(),
                bench.files.len().to_string(),
                format!("{mp:.0}"),
                c.name.clone(),
                format!("{wall:.2}"),
                format!("{:.0}", mp / wall),
                format!("{:.1}", bench.files.len() as f64 / wall),
                format!("{:.2}", one / wall),
                if pillow.is_nan() {
                    "n/a".into()
                } else {
                    format!("{:.2}", pillow / wall)
                },
                format!("{:.2}", c.median(|r| r.cpu / r.wall)),
                format!("{:.2}", c.median(|r| r.machine / r.wall)),
                peak_mib(&c.runs),
            ]);
        }
    }
    report.table(&table);

    let classification = &benches[0];
    let (one, two) = (&classification.contenders[0], &classification.contenders[1]);
    let speedup = one.wall() / two.wall();
    // Whether two threads cost more CPU for the same files: what separates
    // a busy machine's shortfall from the program's own.
    let cpu_ratio = two.median(|r| r.cpu) / one.median(|r| r.cpu);
    let verdict0 = report.goal(
        "`classify -j 2`: at least 1.8x `-j 1` over the classification set",
        speedup >= 1.8,
        format!(
            "{speedup:.2}x, the process getting {:.2} of 2 cores (machine busy: {:.2} of \
             {cores}); CPU seconds of `-j 2` / `-j 1`: {cpu_ratio:.2}",
            two.median(|r| r.cpu / r.wall),
            two.median(|r| r.machine / r.wall),
        ),
    );
    let photos = &benches[1];
    let photo_two = &photos.contenders[1];
    let pillow = photos.wall("Pillow + numpy, one process");
    let anchor = pillow / photo_two.wall();
    let verdict1 = report.goal(
        "`classify -j 2`: at least 4.5x one Pillow + numpy process over the photo set",
        anchor >= 4.5,
        if have_python {
            format!(
                "{anchor:.2}x ({:.2}x for `-j 1`)",
                pillow / photos.wall("`colorsort classify -j 1`")
            )
        } else {
            "not measured: no Pillow + numpy virtualenv".into()
        },
    );
    report.para(&format!(
        "Each row is a whole process timed from start to exit: it reads its files, decodes \
         and classifies them and prints one line each, as a user would run it, with the \
         default memory budget. *wall s* is the median of {rounds} rounds, after a warm-up \
         round, with every contender of both sets run in turn in each round so that \
         changes in the machine's load fall on all of them alike; *process CPU* is the process's \
         CPU time per wall second and *machine busy* the whole machine's, this process \
         included (medians): on a shared machine `-j 2` gets two cores only when nothing \
         else wants them. The CPU seconds that `-j 2` and `-j 1` spend on the same files \
         (their ratio is in the goal) tell the two apart: near 1.00, two threads do no \
         more work than one, and a speed-up short of 2 is other load on the machine or \
         the wait for the last file. *peak RSS* is the largest `ru_maxrss` of the rounds, \
         each command started by a small go-between process (the benchmark's own peak \
         would otherwise be every child's starting point), so it reads at least the \
         go-between's own: {floor} MiB for a command that does nothing. The \
         classification set is section 1's eight images {PASSES} times over on one command \
         line, in order; the photo set is every JPEG of the asset folder: the camera-like \
         ones (2 to 18 MP mosaics of the sample photos with a sensor's grain, baseline and \
         progressive, and a 480x320 photo) and the {} photos of `near/` (each sample photo \
         at twice its size, colours shifted). Pillow + numpy is one Python process running \
         `benches/anchors.py`'s `pillow_numpy` on every file in turn. Every round's \
         output was checked: one line per file, the same lines from `-j 1` and `-j 2`. \
         **Goals: `-j 2` at least 1.8x `-j 1` over the classification set: {verdict0} \
         ({speedup:.2}x); at least 4.5x one Pillow + numpy process over the photo set: \
         {verdict1} ({anchor:.2}x).**",
        photos.files.len() - photo_set_top(&photos.files, assets),
        floor = floor_mib(),
    ));
}

/// The Python of the virtualenv that `make bench` keeps beside the assets.
pub fn python(assets: &Path) -> PathBuf {
    assets
        .parent()
        .unwrap_or(Path::new("."))
        .join("venv/bin/python")
}

/// How many of `files` are directly in `assets`, not in a subfolder.
fn photo_set_top(files: &[PathBuf], assets: &Path) -> usize {
    files.iter().filter(|f| f.parent() == Some(assets)).count()
}
