//! `make bench`: measures colorsort's speed and memory and writes
//! docs/BENCHMARKS.md.
//!
//! Sections: (1) decoding alone against decoding and classifying, per
//! image, with the Python anchors; (1b) reduced-resolution JPEG decoding;
//! (2) decryption; (3) a release server on loopback under load, a long run,
//! and small uploads among large ones; (4) footprint and start times;
//! (5) the static musl binary, the other static builds and the container
//! image against glibc; (5b) the static binary's own memcpy; (6) parallel
//! classify; (7) format by format against Pillow + numpy, whole processes;
//! (8) the server's CPU per sealed upload against classify's per image;
//! (9) decoding in worker processes. Run through `make bench`, which
//! builds the binaries, the image and the benchmark images first; by hand,
//! as [`USAGE`] says (`cargo bench --bench bench -- --help` prints it).
//!
//! `--only e2e` includes section 5, which needs `--musl`; `--only mem` is
//! section 5b alone. `--baseline` is an earlier server binary that section 7
//! measures beside `--server` (through `make bench BENCH_FLAGS=...`).

mod crypto;
mod e2e;
mod formats;
mod images;
mod load;
mod mem;
mod musl;
mod parallel;
mod server;
mod upload_cost;
mod util;
mod whole;
mod workers;

use colorsort::cli::args::{self as cli_args, Flags, Item};
use std::fs;
use std::path::PathBuf;
use std::time::Instant;
use util::{Report, command_output};

struct Args {
    assets: PathBuf,
    anchors: PathBuf,
    server: PathBuf,
    musl: Option<PathBuf>,
    musl_libc_mem: Option<PathBuf>,
    static_glibc: Option<PathBuf>,
    image: Option<String>,
    /// An earlier server, for section 7's per-upload comparison.
    baseline: Option<PathBuf>,
    work: PathBuf,
    out: Option<PathBuf>,
    quick: bool,
    /// Runs only the sections whose names are listed (for working on one).
    only: Vec<String>,
}

/// The command line `make bench` passes; `--help` prints it.
const USAGE: &str = "\
cargo bench --bench bench -- --assets DIR --server BIN [--musl BIN]
    [--musl-libc-mem BIN] [--static-glibc BIN] [--image TAG]
    [--baseline BIN] [--anchors FILE] [--work DIR] [--out FILE]
    [--quick] [--only classify|crypto|e2e|mem|parallel|formats|upload-cost|workers]...";

/// Reads the command line with the crate's own lexer (`colorsort::cli::args`);
/// panics on a usage error, which only a person running the bench by hand
/// can make.
fn parse_args() -> Args {
    let mut args = Args {
        assets: "target/bench/assets".into(),
        anchors: "target/bench/anchors.tsv".into(),
        server: "target/release/colorsort".into(),
        musl: None,
        musl_libc_mem: None,
        static_glibc: None,
        image: None,
        baseline: None,
        work: "target/bench/work".into(),
        out: None,
        quick: false,
        only: Vec::new(),
    };
    let flags = Flags {
        values: &[
            "--assets",
            "--anchors",
            "--server",
            "--musl",
            "--musl-libc-mem",
            "--static-glibc",
            "--image",
            "--baseline",
            "--work",
            "--out",
            "--only",
        ],
        // `cargo bench` passes `--bench` to every bench target.
        switches: &["--quick", "--bench"],
    };
    let mut items = cli_args::Args::new(std::env::args_os().skip(1).collect());
    while let Some(item) = items.next_item(&flags).unwrap_or_else(|e| panic!("{e}")) {
        match item {
            Item::Help => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Item::Value(flag, value) => match flag {
                "--assets" => args.assets = value.into(),
                "--anchors" => args.anchors = value.into(),
                "--server" => args.server = value.into(),
                "--musl" => args.musl = Some(value.into()),
                "--musl-libc-mem" => args.musl_libc_mem = Some(value.into()),
                "--static-glibc" => args.static_glibc = Some(value.into()),
                "--image" => args.image = Some(value),
                "--baseline" => args.baseline = Some(value.into()),
                "--work" => args.work = value.into(),
                "--out" => args.out = Some(value.into()),
                "--only" => args.only.push(value),
                other => unreachable!("{other} is not in the flags"),
            },
            Item::Switch("--quick") => args.quick = true,
            Item::Switch(_) => {}
            Item::Positional(p) => panic!("unexpected argument {p:?}; see --help"),
        }
    }
    args
}

const INTRO: &str = "\
# colorsort benchmarks

Written by `make bench` (`benches/bench/`); do not edit by hand. Every number
below comes from the one run described here, on one machine, all sections in
the same run.

## How the images were made

There is no camera photo in the repository, so `benches/make-assets.py` builds
the set from the public-domain and CC0 photos that ship in the scikit-image
0.26.0 wheel (`skimage/data/`, see `test-data/images/README.md` for their
sources): astronaut, chelsea, coffee, rocket, retina, hubble_deep_field,
motorcycle_left/right and ihc. A large image is a mosaic of them: rows of
photos scaled with a Lanczos filter to the row's height (1.2x to 2.5x), some
mirrored, then a Gaussian grain of sigma 3 per channel, as a camera's sensor
leaves at a medium ISO, which upscaling alone would have smoothed away. The
12 MP JPEG at quality 90 comes out at about 1.9 bits per pixel, in the range of
a camera's JPEG. Everything is seeded, so every run builds the same bytes.
The images are generated into `target/bench/assets/`, not committed.
";

/// `--footprint FILE`: classifies FILE and prints the KiB of peak RSS it
/// added, for the parent to read; run by the parent in a fresh process.
fn footprint(path: &str) {
    let (_, before) = util::rss_kib(std::process::id()).expect("own RSS");
    let bytes = fs::read(path).expect("image");
    colorsort::classify::classify(&bytes, &Default::default()).expect("classify");
    drop(bytes);
    let (_, after) = util::rss_kib(std::process::id()).expect("own RSS");
    println!("{}", after - before);
}

fn main() {
    let mut argv = std::env::args().skip(1);
    match argv.next().as_deref() {
        Some("--footprint") => return footprint(&argv.next().expect("--footprint FILE")),
        Some(whole::MODE) => whole::go_between(argv),
        _ => {}
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // target too, without it, and should not start a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the benchmarks run through `cargo bench` (see `make bench`); nothing to do");
        return;
    }
    let args = parse_args();
    let started = Instant::now();
    fs::create_dir_all(&args.work).expect("work folder");
    let mut report = Report::default();

    let commit =
        command_output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or("unknown".into());
    let dirty = command_output("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or("unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = || {
        fs::read_to_string("/proc/loadavg").map_or("unknown".into(), |l| {
            l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        })
    };
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or("unknown".into());
    let rustc = command_output("rustc", &["--version"]).unwrap_or("unknown".into());
    let kernel = command_output("uname", &["-r"]).unwrap_or("unknown".into());
    let thp = fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map_or("unknown".into(), |s| s.trim().to_string());
    let load_before = load();

    let run = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut classify_secs = Default::default();
    if run("classify") {
        let measured = images::section(&mut report, &args.assets, &args.anchors, args.quick);
        images::approx_section(&mut report, &args.assets, &measured, args.quick);
        classify_secs = measured.classify_secs;
    }
    if run("crypto") {
        crypto::section(
            &mut report,
            &args.work.join("keys"),
            &args.assets,
            &classify_secs,
            args.quick,
        );
    }
    if run("e2e") {
        e2e::section(
            &mut report,
            &load::Config {
                server: &args.server,
                musl: args.musl.as_deref(),
                musl_libc_mem: args.musl_libc_mem.as_deref(),
                static_glibc: args.static_glibc.as_deref(),
                image: args.image.as_deref(),
                assets: &args.assets,
                work: &args.work,
                quick: args.quick,
            },
        );
    }
    if run("mem")
        && let Some(musl) = &args.musl
    {
        mem::section(
            &mut report,
            &mem::Config {
                glibc: &args.server,
                musl,
                musl_libc_mem: args.musl_libc_mem.as_deref(),
                assets: &args.assets,
                work: &args.work,
                quick: args.quick,
            },
        );
    }
    if run("parallel") {
        parallel::section(&mut report, &args.server, &args.assets, args.quick);
    }
    if run("formats") {
        formats::section(&mut report, &args.server, &args.assets, args.quick);
    }
    if run("upload-cost") {
        upload_cost::section(
            &mut report,
            &args.server,
            &args.assets,
            &args.work,
            args.quick,
        );
    }
    if run("workers") {
        workers::section(
            &mut report,
            &workers::Config {
                server: &args.server,
                baseline: args.baseline.as_deref(),
                assets: &args.assets,
                work: &args.work,
                quick: args.quick,
            },
        );
    }

    let mut text = String::from(INTRO);
    text.push_str(&format!(
        "\n## The run\n\n\
         | | |\n| --- | --- |\n\
         | date | {date} |\n\
         | commit | `{commit}`{} |\n\
         | CPU | {cpu}, {cores} cores, {} GiB of memory |\n\
         | system | Linux {kernel}, transparent huge pages: `{thp}` |\n\
         | compiler | {rustc}, release profile (thin LTO, 1 codegen unit) |\n\
         | load average (1, 5, 15 min) | {load_before} before, {} after |\n\
         | duration of the measurements | {:.0} s{} |\n",
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        },
        memory / (1 << 20),
        load(),
        started.elapsed().as_secs_f64(),
        if args.quick {
            ", **quick mode: few rounds, not for quoting**"
        } else {
            ""
        },
    ));
    text.push_str("\n## Goals\n\n");
    text.push_str(&report.goals().render());
    text.push_str(report.text());
    eprintln!("\n== Goals\n{}", report.goals().render());
    match &args.out {
        Some(out) => {
            fs::write(out, text).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
            eprintln!("wrote {}", out.display());
        }
        None => print!("{text}"),
    }
}
