//! Section 8: what the server spends on one sealed upload (the request,
//! the decryption, the checks, the decode, the sums, storing it durably)
//! against what `colorsort classify` spends on one image, on the same
//! files: on small images, and on 12 MP ones.

use crate::load::{run_tag, seal_jobs, server_key};
use crate::server::{Server, data_dir, run_clients};
use crate::util::{Report, Table, file_len, mb, median, note, tree_cpu_secs};
use crate::whole::run_process;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// Files of at most this size make the small set.
const SMALL: u64 = 1 << 20;

/// One set's measurements, a value per round.
struct Cost {
    name: &'static str,
    files: Vec<PathBuf>,
    server: Vec<f64>,
    classify: Vec<f64>,
}

/// Server CPU seconds per upload of `files`, each sealed once, sent one
/// after another on one connection to a fresh server with the key in
/// `key_dir`: the server's own CPU, its workers' and its waited children's.
fn server_secs(binary: &Path, work: &Path, key_dir: &Path, files: &[PathBuf]) -> f64 {
    let data = data_dir(&work.join("data-cost"), Some(key_dir));
    let server = Server::start(binary, &data, &work.join("server.log"));
    let key = server_key(&server);
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .map(|f| fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect();
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let jobs = seal_jobs(&key, 1, files.len(), &run_tag(), |i| (&names[i], &bytes[i]));
    let before = tree_cpu_secs(server.pid());
    run_clients(&server.addr, jobs, None);
    let secs = tree_cpu_secs(server.pid()) - before;
    server.stop();
    let _ = fs::remove_dir_all(&data);
    secs / files.len() as f64
}

/// `colorsort classify -j 1` CPU seconds per file over `files`, as one
/// whole process (and whatever it waited for).
fn classify_secs(binary: &Path, files: &[PathBuf]) -> f64 {
    let mut args: Vec<OsString> = ["classify", "-j", "1"].iter().map(OsString::from).collect();
    args.extend(files.iter().map(|f| f.clone().into_os_string()));
    let run = run_process(binary, &args);
    let lines = run.stdout.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines, files.len(), "classify: one line per file");
    run.cpu / files.len() as f64
}

pub fn section(report: &mut Report, binary: &Path, assets: &Path, work: &Path, quick: bool) {
    report.heading("8. Server CPU per sealed upload against classify CPU per image");
    let key_dir = data_dir(&work.join("key-cost"), None);
    Server::start(binary, &key_dir, &work.join("server.log")).stop();

    let mut all: Vec<PathBuf> = ["", "near"]
        .iter()
        .flat_map(|sub| {
            fs::read_dir(assets.join(sub))
                .map(|d| {
                    d.filter_map(|e| e.ok().map(|e| e.path()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e != "done"))
        .collect();
    all.sort();
    let small: Vec<PathBuf> = all
        .iter()
        .filter(|f| file_len(f) <= SMALL)
        .cloned()
        .collect();
    let large: Vec<PathBuf> = (0..3)
        .flat_map(|_| {
            [
                "jpeg-12mp-baseline.jpg",
                "jpeg-12mp-progressive.jpg",
                "webp-12mp-lossy.webp",
            ]
            .map(|f| assets.join(f))
        })
        .collect();
    let mut sets = [
        Cost {
            name: "small (at most 1 MB)",
            files: small,
            server: Vec::new(),
            classify: Vec::new(),
        },
        Cost {
            name: "12 MP",
            files: large,
            server: Vec::new(),
            classify: Vec::new(),
        },
    ];
    let rounds = if quick { 1 } else { 5 };
    for round in 0..rounds {
        for set in &mut sets {
            // Alternate which goes first.
            if round % 2 == 0 {
                set.server
                    .push(server_secs(binary, work, &key_dir, &set.files));
                set.classify.push(classify_secs(binary, &set.files));
            } else {
                set.classify.push(classify_secs(binary, &set.files));
                set.server
                    .push(server_secs(binary, work, &key_dir, &set.files));
            }
            note(format!(
                "round {}, {}: server {:.2} ms per upload, classify {:.2} ms per image",
                round + 1,
                set.name,
                set.server[round] * 1e3,
                set.classify[round] * 1e3
            ));
        }
    }

    let mut table = Table::new(&[
        "set",
        "files",
        "MB",
        "server CPU per sealed upload (ms)",
        "`classify -j 1` CPU per image (ms)",
        "server / classify",
    ]);
    let mut small_ratio = f64::NAN;
    for set in &mut sets {
        let (server, classify) = (median(&mut set.server), median(&mut set.classify));
        if set.name.starts_with("small") {
            small_ratio = server / classify;
        }
        table.row(vec![
            set.name.to_string(),
            set.files.len().to_string(),
            mb(set.files.iter().map(|f| file_len(f)).sum()),
            format!("{:.2}", server * 1e3),
            format!("{:.2}", classify * 1e3),
            format!("{:.2}", server / classify),
        ]);
    }
    report.table(&table);
    let verdict = report.goal(
        "server CPU per sealed small upload at most 1.3x classify CPU per image",
        small_ratio <= 1.3,
        format!("{small_ratio:.2}x"),
    );
    report.para(&format!(
        "The same files both ways: sealed with age to the server's 3072-bit key (each \
         upload distinct, sealed before the clock starts) and sent one after another on \
         one connection to a fresh release server, against one `colorsort classify -j 1` \
         process over them. *server CPU* is the server process's CPU over the uploads, with \
         that of any process under it (workers, live or waited for), per upload: the \
         request, the RSA unwrap and STREAM, the checks, the decode, the sums and the \
         durable store (three fsyncs). *classify CPU* is the whole process's, start-up \
         included, per file. Medians of {rounds} rounds, the order alternated. The small \
         set is every asset file of at most 1 MB (JPEGs: the photos of `near/`, the \
         480x320 photo, the 2 and 3 MP mosaics); the 12 MP set is the baseline and \
         progressive JPEGs and the lossy WebP, three times. **Goal: on small images the \
         server spends at most 1.3x classify's CPU: {verdict}** ({small_ratio:.2}x).",
    ));
}
