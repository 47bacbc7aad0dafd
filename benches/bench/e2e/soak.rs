//! Section 3b: 2,000 uploads from 4 clients, with the server's RSS read as
//! the count passes each mark: memory does not grow with uploads served.

use crate::load::{Config, run_tag, seal_jobs, server_key};
use crate::server::{Server, data_dir, run_clients};
use crate::util::{Report, Table, mib_from_kib, note, percentile, rss_kib};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// RSS readings of the long run, by uploads served.
pub struct Soak {
    /// VmRSS in KiB once started.
    pub after_start: u64,
    /// VmRSS in KiB after 1,000 uploads (or the last reading).
    pub after_1000: u64,
}

/// Runs section 3b on a server with the key in `key_from`.
pub fn section(report: &mut Report, cfg: &Config, key_from: &Path) -> Soak {
    report.heading("3b. 2,000 uploads: memory does not grow");
    let total = if cfg.quick { 200 } else { 2000 };
    let clients = 4;
    let files = ["soak-2mp.jpg", "small-photo.jpg", "jpeg-3mp-typical.jpg"];
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .map(|f| fs::read(cfg.assets.join(f)).expect("asset"))
        .collect();
    let data = data_dir(&cfg.work.join("data-soak"), Some(key_from));
    let server = Server::start(cfg.server, &data, &cfg.work.join("server.log"));
    let key = server_key(&server);
    let tag = run_tag();
    note(format!("sealing {total} uploads"));
    let jobs = seal_jobs(&key, clients, total, &tag, |i| {
        (files[i % 3], &bytes[i % 3])
    });
    let checkpoints: Vec<u64> = [0, 100, 250, 500, 1000, 1500, 2000]
        .into_iter()
        .filter(|&c| c <= total as u64)
        .collect();
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let pid = server.pid();
    let sampler = {
        let (done, finished, checkpoints) = (done.clone(), finished.clone(), checkpoints.clone());
        thread::spawn(move || {
            let mut readings = Vec::new();
            let mut next = 0;
            while next < checkpoints.len() {
                let served = done.load(Ordering::Relaxed);
                if served >= checkpoints[next] {
                    let (rss, hwm) = rss_kib(pid).unwrap_or((0, 0));
                    readings.push((checkpoints[next], served, rss, hwm));
                    next += 1;
                    continue;
                }
                if finished.load(Ordering::Relaxed) {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            readings
        })
    };
    note(format!("{total} uploads from {clients} clients"));
    let outcome = run_clients(&server.addr, jobs, Some(done.clone()));
    finished.store(true, Ordering::Relaxed);
    let readings = sampler.join().expect("sampler");
    thread::sleep(Duration::from_secs(1));
    let (idle_rss, idle_hwm) = server.rss();
    server.stop();
    let _ = fs::remove_dir_all(&data);

    let mut table = Table::new(&["uploads served", "VmRSS MiB", "VmHWM MiB"]);
    for &(checkpoint, _, rss, hwm) in &readings {
        table.row(vec![
            checkpoint.to_string(),
            mib_from_kib(rss),
            mib_from_kib(hwm),
        ]);
    }
    table.row(vec![
        format!("{total}, then 1 s idle"),
        mib_from_kib(idle_rss),
        mib_from_kib(idle_hwm),
    ]);
    report.table(&table);
    let at = |n: u64| readings.iter().find(|r| r.0 == n).map_or(0, |r| r.3);
    let (early, last) = (at(checkpoints[2.min(checkpoints.len() - 1)]), idle_hwm);
    let grows = last > early + early / 10 + 4096;
    let verdict2 = report.goal(
        "peak RSS does not grow with uploads served (2,000)",
        !grows,
        format!(
            "VmHWM {} MiB then {} MiB",
            mib_from_kib(early),
            mib_from_kib(last)
        ),
    );
    report.para(&format!(
        "{total} sealed uploads, from {clients} clients at once, cycling through a 1.9 MP \
         JPEG (0.5 MB), a 0.15 MP JPEG (29 kB) and a 3.1 MP JPEG (0.8 MB), each distinct; \
         {:.1} uploads/s, p50 {:.0} ms, p99 {:.0} ms. RSS is read from `/proc/PID/status` \
         as the counts pass each mark. **Goal: peak RSS never grows with the number of \
         uploads served: {}** (VmHWM {} MiB after {} uploads, {} MiB after {total}).",
        outcome.latencies.len() as f64 / outcome.wall,
        percentile(&outcome.latencies, 50.0) * 1e3,
        percentile(&outcome.latencies, 99.0) * 1e3,
        verdict2,
        mib_from_kib(early),
        checkpoints[2.min(checkpoints.len() - 1)],
        mib_from_kib(last),
    ));
    Soak {
        after_start: readings.first().map_or(0, |r| r.2),
        after_1000: readings
            .iter()
            .find(|r| r.0 == 1000)
            .or(readings.last())
            .map_or(0, |r| r.2),
    }
}
