//! Section 9c: the CPU a release server spends per sealed upload, its
//! decode workers' included, against an earlier server's or an estimate
//! from the decodes of section 9b.

use super::per_decode::Decodes;
use super::{Config, SETTLE, SMALL};
use crate::images::SET;
use crate::server::{Job, Server, data_dir, unique, upload};
use crate::util::{Report, Table, median, note, tick_secs, waited_cpu_secs};
use colorsort::age;
use colorsort::client::Client;
use colorsort::identity::PublicKey;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

/// The goal on the server: at most this much more CPU per upload.
const UPLOAD_GOAL: f64 = 0.05;
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
/// Section 9c: the server rows, their table and what they say, with the
/// worker overhead per file from `decodes`.
pub(super) fn section(report: &mut Report, cfg: &Config, decodes: &[Decodes]) {
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
}
