//! Section 4: the idle server's RSS, its start time with a key and with
//! one to generate, and the sizes of the binaries and of the image.

use super::soak::Soak;
use crate::load::Config;
use crate::server::{Server, data_dir};
use crate::util::{Report, Table, command_output, file_len, mb, median, mib_from_kib, note};
use std::fs;
use std::path::Path;
use std::process::Command;

/// Runs section 4 on servers with the key in `key_from`; `soak` has the
/// long run's readings.
pub fn section(report: &mut Report, cfg: &Config, key_from: &Path, soak: &Soak) {
    report.heading("4. Idle and footprint");
    let runs = if cfg.quick { 2 } else { 5 };
    let mut ready = Vec::new();
    let mut start_rss = Vec::new();
    for _ in 0..runs {
        let data = data_dir(&cfg.work.join("data-start"), Some(key_from));
        let server = Server::start(cfg.server, &data, &cfg.work.join("server.log"));
        ready.push(server.ready_secs * 1e3);
        start_rss.push(server.rss().0 as f64);
        server.stop();
    }
    let ready_ms = median(&mut ready);
    let rss_start = median(&mut start_rss) as u64;
    let mut keygen = Vec::new();
    for i in 0..runs {
        note(format!(
            "first start with a 3072-bit key to generate ({}/{runs})",
            i + 1
        ));
        let data = data_dir(&cfg.work.join("data-keygen"), None);
        let server = Server::start(cfg.server, &data, &cfg.work.join("server.log"));
        keygen.push(server.ready_secs);
        server.stop();
    }
    let _ = fs::remove_dir_all(cfg.work.join("data-start"));
    let _ = fs::remove_dir_all(cfg.work.join("data-keygen"));
    keygen.sort_by(f64::total_cmp);
    let keygen_median = median(&mut keygen.clone());

    let stripped = |path: &Path| {
        let out = cfg.work.join("stripped");
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        let len = if ok { file_len(&out) } else { 0 };
        let _ = fs::remove_file(&out);
        len
    };
    let mut table = Table::new(&["what", "value"]);
    table.row(vec![
        "RSS after start (existing key), median".into(),
        format!("{} MiB", mib_from_kib(rss_start)),
    ]);
    table.row(vec![
        "RSS after start, then after 1,000 uploads (3b)".into(),
        format!(
            "{} MiB, then {} MiB",
            mib_from_kib(soak.after_start),
            mib_from_kib(soak.after_1000)
        ),
    ]);
    for (what, path) in [("glibc", Some(cfg.server)), ("static musl", cfg.musl)] {
        let Some(path) = path else { continue };
        table.row(vec![
            format!("binary size, {what} (`{}`)", path.display()),
            format!(
                "{} MB as built, {} MB stripped",
                mb(file_len(path)),
                mb(stripped(path))
            ),
        ]);
    }
    let image = command_output(
        "docker",
        &[
            "image",
            "inspect",
            "colorsort:latest",
            "--format",
            "{{.Size}}",
        ],
    )
    .and_then(|s| s.parse::<u64>().ok())
    .map_or(
        "no image `colorsort:latest` here (`make docker-build` makes it)".into(),
        |b| format!("{} MB (`colorsort:latest`)", mb(b)),
    );
    table.row(vec!["container image size".into(), image]);
    table.row(vec![
        format!("start to ready, existing key (spawn to first `OK PONG`), median of {runs}"),
        format!(
            "{ready_ms:.1} ms (min {:.1}, max {:.1})",
            ready[0],
            ready[ready.len() - 1]
        ),
    ]);
    table.row(vec![
        format!("first start, 3072-bit key generation included, {runs} runs"),
        format!(
            "median {keygen_median:.2} s (min {:.2}, max {:.2})",
            keygen[0],
            keygen[keygen.len() - 1]
        ),
    ]);
    report.table(&table);
    report.para(
        "Key generation looks for two random 1536-bit primes, so its time varies widely \
         from run to run; it happens once, on the first start with an empty data folder.",
    );
}
