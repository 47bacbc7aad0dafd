//! A colorsort server run as a child process on loopback, and the clients
//! that load it.

use crate::util::rss_kib;
use colorsort::client::{Client, Error as ClientError};
use colorsort::protocol::{Code, Upload};
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// What runs a server: a binary on this machine, or the container image.
#[derive(Clone, Copy)]
pub enum Build<'a> {
    Binary(&'a Path),
    /// An image tag, run with `docker run` as `make docker-run` does.
    Image(&'a str),
}

/// A running server.
pub struct Server {
    /// The server process, or the `docker run` attached to its container.
    child: Child,
    /// The server process's id on this machine (in a container too).
    pid: u32,
    /// The container's name, for a server in one.
    container: Option<String>,
    pub addr: String,
    /// Seconds from spawning the process to its first `OK PONG`.
    pub ready_secs: f64,
}

/// A port the kernel just handed out and took back: free, unless
/// something grabs it in the next milliseconds.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Server {
    /// Starts `build` with data in `data` (and, in a container, `assets`
    /// mounted read-only at /assets), and waits until it answers PING.
    pub fn launch(build: Build, data: &Path, log: &Path, assets: Option<&Path>) -> Server {
        match build {
            Build::Binary(binary) => Server::start(binary, data, log),
            Build::Image(image) => Server::start_image(image, data, log, assets),
        }
    }

    /// Starts `binary` on a free loopback port with data in `data`, and
    /// waits until it answers PING.
    pub fn start(binary: &Path, data: &Path, log: &Path) -> Server {
        let addr = format!("127.0.0.1:{}", free_port());
        fs::create_dir_all(data).expect("data folder");
        let started = Instant::now();
        let child = Command::new(binary)
            .args(["serve", "--listen", &addr, "--data"])
            .arg(data)
            .env_remove("COLORSORT_MAX_MEMORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let pid = child.id();
        let server = Server {
            child,
            pid,
            container: None,
            addr,
            ready_secs: 0.0,
        };
        server.wait_ready(started, log)
    }

    /// Runs `image` as `make docker-run` does (read-only, no capabilities,
    /// its own user), with `data` mounted at /data and published on a free
    /// loopback port (and `assets` read-only at /assets), and waits until
    /// it answers PING. The health check is off, so that only the server
    /// uses the container's CPU.
    pub fn start_image(image: &str, data: &Path, log: &Path, assets: Option<&Path>) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        fs::create_dir_all(data).expect("data folder");
        let data = fs::canonicalize(data).expect("data folder");
        give_to_image_user(image, &data);
        let name = format!("colorsort-bench-{}-{port}", std::process::id());
        let mut command = Command::new("docker");
        command
            .args(["run", "--rm", "--name", &name, "--no-healthcheck"])
            .args(["--read-only", "--cap-drop", "ALL"])
            .args(["--security-opt", "no-new-privileges"])
            .args(["-p", &format!("{addr}:6666")])
            .arg("-v")
            .arg(format!("{}:/data", data.display()));
        if let Some(assets) = assets {
            let assets = fs::canonicalize(assets).expect("asset folder");
            command
                .arg("-v")
                .arg(format!("{}:/assets:ro", assets.display()));
        }
        let started = Instant::now();
        let child = command
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).expect("log file"))
            .spawn()
            .expect("docker run");
        let mut server = Server {
            child,
            pid: 0,
            container: Some(name),
            addr,
            ready_secs: 0.0,
        }
        .wait_ready(started, log);
        let name = server.container.as_deref().unwrap_or_default();
        server.pid =
            crate::util::command_output("docker", &["inspect", "-f", "{{.State.Pid}}", name])
                .and_then(|p| p.parse().ok())
                .expect("the container's process id");
        server
    }

    /// The container's name, for a server in one.
    pub fn container(&self) -> Option<&str> {
        self.container.as_deref()
    }

    /// Waits until the server answers PING (a published container port
    /// accepts connections before the server inside listens).
    fn wait_ready(mut self, started: Instant, log: &Path) -> Server {
        loop {
            if let Ok(mut client) = Client::connect(&self.addr)
                && client.request("PING").is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited at start ({status}); see {}", log.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "server not ready after 300 s"
            );
            thread::sleep(Duration::from_millis(1));
        }
        self.ready_secs = started.elapsed().as_secs_f64();
        self
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `VmRSS` and `VmHWM` in KiB.
    pub fn rss(&self) -> (u64, u64) {
        rss_kib(self.pid()).unwrap_or((0, 0))
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(mut self) {
        match &self.container {
            Some(name) => {
                // `docker stop` sends the container's PID 1 SIGTERM.
                let _ = Command::new("docker")
                    .args(["stop", "-t", "30", name])
                    .stdout(Stdio::null())
                    .status();
            }
            // SAFETY: signalling our own child by its pid.
            None => unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            },
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(name) = &self.container {
                let _ = Command::new("docker")
                    .args(["kill", name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Hands `dir` and what it holds to the user `image` runs as, so that the
/// server in the container can write its data there.
fn give_to_image_user(image: &str, dir: &Path) {
    let user = crate::util::command_output(
        "docker",
        &["image", "inspect", "-f", "{{.Config.User}}", image],
    )
    .unwrap_or_default();
    let mut ids = user.split(':').map(|id| id.parse::<u32>().ok());
    let (Some(Some(uid)), gid) = (ids.next(), ids.next().flatten()) else {
        // Root, or a user by name: nothing to hand over.
        return;
    };
    let chown = |path: &Path| {
        std::os::unix::fs::chown(path, Some(uid), gid)
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()))
    };
    chown(dir);
    for entry in fs::read_dir(dir).expect("data folder").flatten() {
        chown(&entry.path());
    }
}

/// One upload, sealed ahead of time.
pub struct Job {
    pub name: String,
    pub sealed: Vec<u8>,
}

/// What a set of clients saw.
#[derive(Default)]
pub struct Outcome {
    /// Seconds from the first request to the last reply.
    pub wall: f64,
    /// Latency of each upload, seconds, from its request line to its reply
    /// (retries after `busy` included).
    pub latencies: Vec<f64>,
    pub bytes: u64,
    /// `ERR busy` replies, each retried after a pause.
    pub busy: u64,
}

/// Runs one client thread per job list, all starting together; each sends
/// its uploads one after another. Panics on any failure or `dup` reply.
pub fn run_clients(addr: &str, clients: Vec<Vec<Job>>, done: Option<Arc<AtomicU64>>) -> Outcome {
    let barrier = Arc::new(Barrier::new(clients.len() + 1));
    let handles: Vec<_> = clients
        .into_iter()
        .map(|jobs| {
            let (addr, barrier, done) = (addr.to_string(), barrier.clone(), done.clone());
            thread::spawn(move || {
                let mut client = Client::connect(&addr).expect("connect");
                barrier.wait();
                let mut out = Outcome::default();
                for job in jobs {
                    let (latency, busy) = upload(&mut client, &job);
                    out.latencies.push(latency);
                    out.busy += busy;
                    out.bytes += job.sealed.len() as u64;
                    if let Some(done) = &done {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                out
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut total = Outcome::default();
    for handle in handles {
        let out = handle.join().expect("client thread");
        total.latencies.extend(out.latencies);
        total.bytes += out.bytes;
        total.busy += out.busy;
    }
    total.wall = started.elapsed().as_secs_f64();
    total.latencies.sort_by(f64::total_cmp);
    total
}

/// Sends one sealed upload, retrying after `ERR busy`; returns its latency
/// and the number of busy replies.
pub fn upload(client: &mut Client, job: &Job) -> (f64, u64) {
    let started = Instant::now();
    let mut busy = 0;
    loop {
        match client.upload(Upload::Seal, &job.name, &job.sealed) {
            Ok(stored) => {
                assert!(!stored.dup, "{}: stored as a duplicate", job.name);
                return (started.elapsed().as_secs_f64(), busy);
            }
            Err(e @ ClientError::Server { .. }) if e.code() == Some(Code::Busy) => {
                busy += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{}: {e}", job.name),
        }
    }
}

/// `plaintext` with a trailer after the image's end that makes its
/// content, and so its SHA-256, unique: every decoder here stops at the
/// image's end (JPEG EOI, PNG IEND, the RIFF size) and ignores it.
pub fn unique(plaintext: &[u8], tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + tag.len() + 2);
    out.extend_from_slice(plaintext);
    out.extend_from_slice(b"\n");
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b"\n");
    out
}

/// A fresh folder for a server's data, holding a copy of the key in
/// `key_from` if there is one (so that no key is generated).
pub fn data_dir(path: &Path, key_from: Option<&Path>) -> PathBuf {
    let _ = fs::remove_dir_all(path);
    fs::create_dir_all(path).expect("data folder");
    if let Some(from) = key_from {
        let key = from.join(colorsort::store::KEY_FILE);
        fs::copy(&key, path.join(colorsort::store::KEY_FILE)).expect("copy key");
    }
    path.to_path_buf()
}
