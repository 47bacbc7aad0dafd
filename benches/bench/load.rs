//! The load runs that sections 3 to 5 and 8 share: the end-to-end
//! sections' configuration, the image set sent to the server, uploads
//! sealed before the clock starts, each distinct, and one run of N clients
//! against a fresh server, with its memory and CPU.

use crate::images::SET;
use crate::server::{Build, Job, Outcome, Server, data_dir, run_clients, unique};
use crate::util::{machine_busy_secs, tree_cpu_secs};
use colorsort::age;
use colorsort::classify::{self, Limits};
use colorsort::client::Client;
use colorsort::identity::PublicKey;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

/// What sections 3 to 5 run and where.
pub struct Config<'a> {
    pub server: &'a Path,
    pub musl: Option<&'a Path>,
    /// The static musl binary built with musl's own memcpy, memmove and
    /// memset (feature `libc-mem`).
    pub musl_libc_mem: Option<&'a Path>,
    pub static_glibc: Option<&'a Path>,
    /// The container image's tag, when Docker is up.
    pub image: Option<&'a str>,
    pub assets: &'a Path,
    pub work: &'a Path,
    pub quick: bool,
}

/// One image of the end-to-end set, with what the server holds for it.
pub struct Item {
    pub file: &'static str,
    pub bytes: Vec<u8>,
    /// Bytes of its decoded pixels.
    pub decoded: u64,
}

/// The end-to-end set ([`SET`]) read from `assets`.
pub fn load_set(assets: &Path) -> Vec<Item> {
    SET.iter()
        .map(|asset| {
            let bytes = fs::read(assets.join(asset.file)).expect("asset");
            let decoded = classify::open(&bytes, &Limits::default())
                .expect("asset opens")
                .decoded_len();
            Item {
                file: asset.file,
                bytes,
                decoded,
            }
        })
        .collect()
}

/// A tag no earlier run used, so that reruns on a kept data folder are
/// never deduplicated either.
pub fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

/// Seals `count` distinct uploads of `pick(i)`'s bytes, spread round-robin
/// over `clients` lists, sealing on two threads.
pub fn seal_jobs<'a>(
    key: &PublicKey,
    clients: usize,
    count: usize,
    tag: &str,
    pick: impl Fn(usize) -> (&'a str, &'a [u8]) + Sync,
) -> Vec<Vec<Job>> {
    let sealed: Vec<Job> = thread::scope(|s| {
        let halves: Vec<_> = (0..2)
            .map(|half| {
                let pick = &pick;
                s.spawn(move || {
                    (0..count)
                        .filter(|i| i % 2 == half)
                        .map(|i| {
                            let (file, bytes) = pick(i);
                            let plaintext = unique(bytes, &format!("colorsort-bench {tag} {i}"));
                            let extension = file.rsplit('.').next().unwrap_or("img");
                            Job {
                                name: format!("u{i}-{tag}.{extension}"),
                                sealed: age::encrypt(&plaintext, key).expect("seal"),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut halves: Vec<Vec<Job>> = halves
            .into_iter()
            .map(|h| h.join().expect("seal"))
            .collect();
        let (odd, even) = (
            halves.pop().unwrap_or_default(),
            halves.pop().unwrap_or_default(),
        );
        let mut all = Vec::with_capacity(count);
        let (mut even, mut odd) = (even.into_iter(), odd.into_iter());
        for i in 0..count {
            let job = if i % 2 == 0 { even.next() } else { odd.next() };
            all.extend(job);
        }
        all
    });
    let mut lists: Vec<Vec<Job>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, job) in sealed.into_iter().enumerate() {
        lists[i % clients].push(job);
    }
    lists
}

/// The public key `server` serves.
pub fn server_key(server: &Server) -> PublicKey {
    Client::connect(&server.addr)
        .and_then(|mut c| c.key())
        .expect("server key")
}

/// What a load run measured.
pub struct Level {
    pub clients: usize,
    pub outcome: Outcome,
    /// VmRSS in KiB once started.
    pub start_rss: u64,
    /// VmHWM in KiB after the run.
    pub peak: u64,
    /// The memory bound in bytes (see [`run_level`]).
    pub bound: u64,
    /// Server CPU seconds per wall second during the run.
    pub cores: f64,
    /// The whole machine's busy CPU seconds per wall second.
    pub machine: f64,
}

/// `clients` clients sharing `uploads` uploads of `set`, against a server
/// run from `build` with a copy of the key in `key_from`; `largest` is the
/// largest single-upload footprint, for the memory bound.
pub fn run_level(
    cfg: &Config,
    build: Build,
    key_from: &Path,
    set: &[Item],
    (clients, uploads): (usize, usize),
    largest: u64,
) -> Level {
    let data = data_dir(&cfg.work.join(format!("data-{clients}")), Some(key_from));
    let server = Server::launch(build, &data, &cfg.work.join("server.log"), None);
    let (start_rss, _) = server.rss();
    let key = server_key(&server);
    let tag = run_tag();
    let jobs = seal_jobs(&key, clients, uploads, &tag, |i| {
        let item = &set[i % set.len()];
        (item.file, &item.bytes)
    });
    let cpu_before = tree_cpu_secs(server.pid());
    let machine_before = machine_busy_secs();
    let outcome = run_clients(&server.addr, jobs, None);
    let cores = (tree_cpu_secs(server.pid()) - cpu_before) / outcome.wall;
    let machine = (machine_busy_secs() - machine_before) / outcome.wall;
    let (_, peak) = server.rss();
    server.stop();
    let _ = fs::remove_dir_all(&data);
    let bound = start_rss * 1024 + clients as u64 * largest;
    Level {
        clients,
        outcome,
        start_rss,
        peak,
        bound,
        cores,
        machine,
    }
}
