//! Section 5: the static builds, and the container image itself, against
//! the ordinary glibc binary: `colorsort classify` on each image, and
//! uploads from 2 and 8 clients end to end.

use crate::load::{Config, Item, run_level};
use crate::server::{Build, Server, data_dir};
use crate::util::{
    Report, Table, cgroup_cpu_secs, children_cpu_secs, command_output, median, note,
};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// The builds of the comparison, in column order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Glibc,
    Musl,
    /// The musl build with musl's own memory routines: a diagnostic.
    MuslLibcMem,
    StaticGlibc,
    Container,
}

/// One build in the comparison.
struct Entry<'a> {
    kind: Kind,
    name: String,
    runner: Runner<'a>,
}

/// How to run `classify` and a server on one build.
enum Runner<'a> {
    Binary(&'a Path),
    /// A running container of the image, whose server's process is in the
    /// control group that `docker exec` adds each command to.
    Container {
        server: Server,
        image: &'a str,
    },
}

impl Runner<'_> {
    fn build(&self) -> Build<'_> {
        match self {
            Runner::Binary(path) => Build::Binary(path),
            Runner::Container { image, .. } => Build::Image(image),
        }
    }

    /// CPU seconds of one `colorsort classify FILE` (FILE under the asset
    /// folder). In the container: the control group's CPU over a `docker
    /// exec` of it, less that over a `docker exec` of `colorsort version`
    /// just before (runc's own start-up, charged to the container too).
    fn classify_secs(&self, assets: &Path, file: &str) -> f64 {
        match self {
            Runner::Binary(binary) => {
                let before = children_cpu_secs();
                let status = Command::new(binary)
                    .arg("classify")
                    .arg(assets.join(file))
                    .stdout(Stdio::null())
                    .status()
                    .expect("colorsort classify");
                assert!(status.success(), "colorsort classify failed");
                children_cpu_secs() - before
            }
            Runner::Container { server, .. } => {
                let name = server.container().unwrap_or_default();
                let exec = |args: &[&str]| {
                    let before = cgroup_cpu_secs(server.pid()).expect("container CPU");
                    let status = Command::new("docker")
                        .args(["exec", name, "/colorsort"])
                        .args(args)
                        .stdout(Stdio::null())
                        .status()
                        .expect("docker exec");
                    assert!(status.success(), "docker exec {args:?} failed");
                    cgroup_cpu_secs(server.pid()).expect("container CPU") - before
                };
                let empty = exec(&["version"]);
                exec(&["classify", &format!("/assets/{file}")]) - empty
            }
        }
    }

    /// CPU seconds of a `docker exec` of `colorsort version`: what the
    /// container rows have taken off.
    fn exec_overhead(&self) -> Option<f64> {
        let Runner::Container { server, .. } = self else {
            return None;
        };
        let name = server.container().unwrap_or_default();
        let mut samples: Vec<f64> = (0..5)
            .filter_map(|_| {
                let before = cgroup_cpu_secs(server.pid())?;
                Command::new("docker")
                    .args(["exec", name, "/colorsort", "version"])
                    .stdout(Stdio::null())
                    .status()
                    .ok()?;
                Some(cgroup_cpu_secs(server.pid())? - before)
            })
            .collect();
        Some(median(&mut samples))
    }
}

/// Why there is no container column, or `None` if `image` can be run and
/// its CPU time read.
fn container_missing(image: Option<&str>) -> Option<String> {
    let Some(image) = image else {
        return Some(
            "no container image given (`make bench` builds and passes one when a Docker \
             engine is reachable)"
                .into(),
        );
    };
    if command_output("docker", &["image", "inspect", image]).is_none() {
        return Some(format!(
            "no image `{image}` or no Docker engine (`make docker-build` makes it)"
        ));
    }
    None
}

pub fn section(report: &mut Report, cfg: &Config, musl: &Path, key_from: &Path, set: &[Item]) {
    report.heading("5. Static musl binary and the container against glibc");
    let entry = |kind, name: &str, runner| Entry {
        kind,
        name: name.to_string(),
        runner,
    };
    let mut builds = vec![
        entry(Kind::Glibc, "glibc", Runner::Binary(cfg.server)),
        entry(Kind::Musl, "static musl", Runner::Binary(musl)),
    ];
    if let Some(libc_mem) = cfg.musl_libc_mem {
        builds.push(entry(
            Kind::MuslLibcMem,
            "static musl, musl's memcpy",
            Runner::Binary(libc_mem),
        ));
    }
    if let Some(static_glibc) = cfg.static_glibc {
        builds.push(entry(
            Kind::StaticGlibc,
            "static glibc",
            Runner::Binary(static_glibc),
        ));
    }
    let container_data = cfg.work.join("data-container");
    let mut missing = container_missing(cfg.image);
    if let (None, Some(image)) = (&missing, cfg.image) {
        note(format!("starting a container of {image}"));
        let data = data_dir(&container_data, Some(key_from));
        let server = Server::start_image(
            image,
            &data,
            &cfg.work.join("container.log"),
            Some(cfg.assets),
        );
        if cgroup_cpu_secs(server.pid()).is_some() {
            builds.push(entry(
                Kind::Container,
                &format!("container (`{image}`)"),
                Runner::Container { server, image },
            ));
        } else {
            server.stop();
            missing = Some("the container's control group has no readable CPU time".into());
        }
    }

    let runs = if cfg.quick { 1 } else { 7 };
    let mut head = vec!["run".to_string()];
    head.extend(builds.iter().map(|b| b.name.clone()));
    head.extend(builds[1..].iter().map(|b| format!("{} / glibc", b.name)));
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut table = Table::new(&head);
    // Speed relative to glibc (above 1 is faster), worst over the
    // classify rows, by build.
    let mut worst = vec![f64::INFINITY; builds.len()];
    let mut worst_row = vec![String::new(); builds.len()];
    let mut row =
        |table: &mut Table, what: String, values: &[f64], judged: bool, higher_better: bool| {
            let mut cells = vec![what.clone()];
            cells.extend(values.iter().map(|v| {
                if v.is_nan() {
                    "n/a".to_string()
                } else {
                    format!("{v:.1}")
                }
            }));
            for (i, v) in values.iter().enumerate().skip(1) {
                let speed = if higher_better {
                    v / values[0]
                } else {
                    values[0] / v
                };
                if judged && speed < worst[i] {
                    worst[i] = speed;
                    worst_row[i] = what.clone();
                }
                cells.push(if speed.is_nan() {
                    "n/a".into()
                } else {
                    format!("{speed:.2}")
                });
            }
            table.row(cells);
        };
    for item in set {
        note(format!("classify {}, each build", item.file));
        // Round-robin, so that a busy spell on the machine hits every
        // build alike.
        let mut samples = vec![Vec::new(); builds.len()];
        for _ in 0..runs {
            for (b, build) in builds.iter().enumerate() {
                samples[b].push(build.runner.classify_secs(cfg.assets, item.file) * 1e3);
            }
        }
        let values: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
        row(
            &mut table,
            format!("`colorsort classify {}`, CPU ms", item.file),
            &values,
            true,
            false,
        );
    }
    let overhead = builds.iter().find_map(|b| b.runner.exec_overhead());
    let uploads = if cfg.quick { 16 } else { 48 };
    for clients in [2, 8] {
        note(format!("{clients} clients, each build"));
        // Uploads per second of wall time, and per CPU-second of the server.
        let (rates, per_cpu): (Vec<f64>, Vec<f64>) = builds
            .iter()
            .map(|b| {
                if b.kind == Kind::MuslLibcMem {
                    // A diagnostic build: its classify rows say enough.
                    return (f64::NAN, f64::NAN);
                }
                // A fresh server, or container, for each run.
                let level = run_level(cfg, b.runner.build(), key_from, set, (clients, uploads), 0);
                let done = level.outcome.latencies.len() as f64;
                (
                    done / level.outcome.wall,
                    done / (level.cores * level.outcome.wall),
                )
            })
            .unzip();
        row(
            &mut table,
            format!("end to end, {clients} clients, uploads/s"),
            &rates,
            false,
            true,
        );
        row(
            &mut table,
            format!("end to end, {clients} clients, uploads per server CPU-second"),
            &per_cpu,
            false,
            true,
        );
    }
    let kinds: Vec<Kind> = builds.iter().map(|b| b.kind).collect();
    for build in builds {
        if let Runner::Container { server, .. } = build.runner {
            server.stop();
        }
    }
    let _ = fs::remove_dir_all(&container_data);
    report.table(&table);

    let index_of = |kind| kinds.iter().position(|&k| k == kind);
    let worst_of = |kind| index_of(kind).map(|i| worst[i]);
    let worst_musl = worst_of(Kind::Musl).unwrap_or(f64::NAN);
    let worst_container = worst_of(Kind::Container);
    let worst_libc_mem = worst_of(Kind::MuslLibcMem);
    let worst_static = worst_of(Kind::StaticGlibc);
    let fmt = |w: Option<f64>, what: &str| w.map_or(String::new(), |w| format!("; {what} {w:.2}"));
    let verdict = report.goal(
        "static musl binary within 5 % of glibc on every classify row",
        worst_musl >= 0.95,
        format!(
            "slowest musl/glibc speed {worst_musl:.2}{}{}{}",
            fmt(worst_container, "container"),
            fmt(worst_libc_mem, "with musl's memcpy"),
            fmt(worst_static, "static glibc"),
        ),
    );
    let container_text = match (&missing, overhead) {
        (None, Some(overhead)) => format!(
            "*container* is the image itself, `{}`, run as `make docker-run` runs it \
             (read-only, no capabilities, its own user, the port published on loopback; \
             the health check off so that nothing else runs in it): each `classify` is a \
             `docker exec` into a running container, timed as the CPU its control group \
             used, less that of a `docker exec` of `colorsort version` just before it \
             ({:.1} ms, median: runc's own start-up, charged to the container too); each \
             end-to-end run starts a fresh container on a copy of the same key. ",
            cfg.image.unwrap_or_default(),
            overhead * 1e3,
        ),
        (Some(why), _) => format!("No container column: {why}. "),
        (None, None) => String::new(),
    };
    report.para(&format!(
        "All builds are release builds of the same commit: *glibc* is the ordinary \
         `cargo build --release`; *static musl* is the container image's binary \
         (`--target x86_64-unknown-linux-musl`), with its own `memcpy`, `memmove` and \
         `memset` (section 5b); *static musl, musl's memcpy* is the same build with \
         `--features libc-mem`, which leaves those three to musl as before they existed; \
         *static glibc* is `--target x86_64-unknown-linux-gnu` with `-C \
         target-feature=+crt-static`. {container_text}The ratios are speeds relative to \
         glibc (below 1 is slower). The verdict uses the `classify` rows, the CPU time of \
         one process each, median of {runs} runs taken round-robin over the builds; the \
         end-to-end rows are rates of short runs ({uploads} uploads): per second of wall \
         time, which moves by 10 % and more from run to run on a busy machine, and per \
         CPU-second the server process used (user + system, from `/proc/PID/stat`; in the \
         container, its server's process, so without Docker's port proxy), which depends \
         less on what else runs. **Goal: the static musl binary \
         within 5 % of glibc on every classify row: {verdict}** (slowest \
         {worst_musl:.2}).{}",
        match (worst_libc_mem, index_of(Kind::MuslLibcMem)) {
            (Some(w), Some(i)) => format!(
                " With musl's own memory routines the same build is {w:.2} at worst \
                 ({}): a JPEG decode makes hundreds of thousands of short copies and \
                 clears, and musl's routines pay a string instruction's start-up on every \
                 one.",
                worst_row[i].trim_end_matches(", CPU ms"),
            ),
            _ => String::new(),
        },
    ));
}
