//! Shared harness for the integration tests: starts the real `colorsort`
//! binary on 127.0.0.1:0 in a temporary data directory and talks raw TCP.

#![allow(dead_code)]

pub mod bombs;

use colorsort::key::{Identity, PublicKey};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The committed test-only server key.
pub const TEST_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/test-data/keys/test-only-server-key.pem"
);

pub fn test_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-data")
        .join(rel)
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_colorsort")
}

/// The test key's public half.
pub fn test_public_key() -> PublicKey {
    let pem = std::fs::read_to_string(TEST_KEY).unwrap();
    Identity::from_pem(&pem).unwrap().public().clone()
}

/// Seals `plaintext` to the test key with colorsort's own encoder.
pub fn seal(plaintext: &[u8]) -> Vec<u8> {
    colorsort::age::encrypt(plaintext, &test_public_key()).unwrap()
}

/// A solid-colour PNG of `w`×`h` pixels.
pub fn png(rgb: [u8; 3], w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Waits until `cond` holds, checking every few milliseconds, or until
/// `deadline`; returns whether it held.
pub fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `limit` from now.
pub fn after(limit: Duration) -> Instant {
    Instant::now() + limit
}

/// Opens a connection that reserves `reserve` bytes of the server's memory
/// budget (an upload announced, with its first bytes sent; memory is
/// reserved as payload bytes arrive, and `reserve` must be at most the
/// first chunk the server reserves, 64 KiB) and returns it once the
/// reservation is seen: once a small probe upload gets `ERR busy`. The
/// server must run with a low `--min-rate`, so the holder is neither cut
/// nor evicted while the test runs.
///
/// The holder's reservation can itself fail if a probe holds memory at that
/// instant; then the holder is being refused, and is finished and replaced.
pub fn hold_memory(s: &TestServer, reserve: u64) -> Conn {
    let mut probe = s.connect();
    for round in 0..10 {
        let mut holder = s.connect();
        holder.send(format!("PUT hold.png {reserve}\r\n12345").as_bytes());
        assert!(
            s.wait_read(&holder, Duration::from_secs(10)),
            "the server never read the holder's bytes"
        );
        for attempt in 0..3 {
            let seed = 1000 + round * 10 + attempt;
            let reply = probe.upload("PUT", "probe.png", &noise_png(8, 8, seed));
            if reply.starts_with("ERR busy") {
                return holder;
            }
        }
        // The probes got through: the holder holds nothing. Finish its
        // upload so its connection ends cleanly, and try again.
        holder.send(&vec![0u8; usize::try_from(reserve).unwrap() - 5]);
        let _ = holder.line();
    }
    panic!("the server never reported the held memory as busy");
}

/// One TCP socket's queues from `/proc/net/tcp`: bytes sent and not yet
/// acknowledged by the peer, and bytes received and not yet read by the
/// socket's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    pub unacked: u64,
    pub unread: u64,
}

/// The queues of the IPv4 socket bound to `local` and connected to
/// `remote`, as the kernel reports them; `None` if there is none.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<Queues> {
    let fields = tcp_row(local, remote)?;
    let (tx, rx) = fields.get(4)?.split_once(':')?;
    Some(Queues {
        unacked: u64::from_str_radix(tx, 16).ok()?,
        unread: u64::from_str_radix(rx, 16).ok()?,
    })
}

/// The inode of the IPv4 socket bound to `local` and connected to
/// `remote` (what its descriptors link to, `socket:[INODE]`); `None` if
/// there is none.
pub fn tcp_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    tcp_row(local, remote)?.get(9)?.parse().ok()
}

/// The fields of `/proc/net/tcp`'s line for the IPv4 socket bound to
/// `local` and connected to `remote`.
fn tcp_row(local: SocketAddr, remote: SocketAddr) -> Option<Vec<String>> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        )),
        SocketAddr::V6(_) => None,
    };
    let (local, remote) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| fields.iter().map(|f| f.to_string()).collect())
    })
}

/// A PNG of pseudo-random pixels, which barely compresses: about 3·w·h bytes.
pub fn noise_png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let [a, b, c, _] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Puts the test key into a data directory, as the server expects it.
pub fn install_test_key(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let dest = data.join("key.pem");
    std::fs::copy(TEST_KEY, &dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Threads a server runs besides one per connection: main (accepting), the
/// lingering closer, the signal handler and the decode workers' starter.
pub const SERVER_THREADS: u64 = 4;

/// A running server process. Killed on drop.
pub struct TestServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// Keeps the temporary directory alive when the server owns it.
    _dir: Option<tempfile::TempDir>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// A server with the test key in a fresh temporary data directory.
    pub fn start(args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        install_test_key(dir.path());
        let mut s = TestServer::start_in(dir.path(), args);
        s._dir = Some(dir);
        s
    }

    /// A server on an existing data directory.
    pub fn start_in(data: &Path, args: &[&str]) -> TestServer {
        TestServer::try_start_in(data, args)
            .unwrap_or_else(|(status, log)| panic!("server exited with {status}: {log}"))
    }

    /// Starts a server; on failure returns its exit status and log.
    pub fn try_start_in(data: &Path, args: &[&str]) -> Result<TestServer, (ExitStatus, String)> {
        TestServer::try_start_wrapped(&[], data, args)
    }

    /// A server in a fresh temporary data directory with the test key,
    /// started through `wrapper` (a command that ends by running its
    /// arguments, e.g. `sh -c 'ulimit -n 256 && exec "$0" "$@"'`).
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        install_test_key(dir.path());
        let mut s = TestServer::try_start_wrapped(wrapper, dir.path(), args)
            .unwrap_or_else(|(status, log)| panic!("server exited with {status}: {log}"));
        s._dir = Some(dir);
        s
    }

    /// A server in a fresh temporary data directory with the test key, with
    /// the variables `env` set.
    pub fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        install_test_key(dir.path());
        let mut s = TestServer::try_start_full(&[], env, dir.path(), args)
            .unwrap_or_else(|(status, log)| panic!("server exited with {status}: {log}"));
        s._dir = Some(dir);
        s
    }

    /// Starts a server, through `wrapper` if it is not empty; on failure
    /// returns its exit status and log.
    pub fn try_start_wrapped(
        wrapper: &[&str],
        data: &Path,
        args: &[&str],
    ) -> Result<TestServer, (ExitStatus, String)> {
        TestServer::try_start_full(wrapper, &[], data, args)
    }

    /// Starts a server, through `wrapper` if it is not empty, with the
    /// variables `env` set; on failure returns its exit status and log.
    pub fn try_start_full(
        wrapper: &[&str],
        env: &[(&str, &str)],
        data: &Path,
        args: &[&str],
    ) -> Result<TestServer, (ExitStatus, String)> {
        let mut command = match wrapper {
            [] => Command::new(bin()),
            [program, rest @ ..] => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args)
            .env_remove("COLORSORT_HOST")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split(';').next().unwrap().to_string();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(TestServer {
                child,
                addr: addr.parse().unwrap(),
                data: data.to_path_buf(),
                _dir: None,
                log,
            }),
            Err(_) => {
                let status = child.wait().unwrap();
                // The log is whole once the reader has reached its end.
                let _ = reader.join();
                let text = log.lock().unwrap().join("\n");
                Err((status, text))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// A raw connection with 10 s timeouts.
    pub fn connect(&self) -> Conn {
        Conn::new(TcpStream::connect(self.addr).unwrap())
    }

    /// Sends a signal with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(after(limit), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }

    /// Waits up to `limit` until the server has read everything `conn` has
    /// sent: the client's bytes are all acknowledged (so they reached the
    /// server's socket) and none is left unread in it.
    pub fn wait_read(&self, conn: &Conn, limit: Duration) -> bool {
        let client = conn.stream.local_addr().unwrap();
        wait_until(after(limit), || {
            let sent = tcp_queues(client, self.addr);
            let received = tcp_queues(self.addr, client);
            matches!(
                (sent, received),
                (
                    Some(Queues { unacked: 0, .. }),
                    Some(Queues { unread: 0, .. })
                )
            )
        })
    }

    /// Waits up to `limit` until the server runs `n` threads.
    pub fn wait_threads(&self, n: u64, limit: Duration) -> bool {
        wait_until(after(limit), || {
            proc_status_of(self.pid(), "Threads").is_some_and(|t| t == n)
        })
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits up to `limit` for a log line containing `needle`; returns the
    /// whole log once it appears, or `None`. The server writes a request's
    /// log line after its reply, and the log reaches the test through a
    /// pipe and a thread, so a reply can arrive before its log line.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> Option<String> {
        let mut text = String::new();
        wait_until(after(limit), || {
            text = self.log_text();
            text.contains(needle)
        })
        .then_some(text)
    }

    /// Files in a folder of the data directory, sorted.
    pub fn files(&self, folder: &str) -> Vec<String> {
        files_in(&self.data.join(folder))
    }

    /// A line from /proc/PID/status, e.g. `Threads` or `VmHWM`, as a number.
    pub fn proc_status(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// A raw client connection.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply line, without CRLF; empty at end of input.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(
            line.is_empty() || line.ends_with("\r\n"),
            "reply not CRLF-terminated: {line:?}"
        );
        line.trim_end_matches("\r\n").to_string()
    }

    /// Sends one line and returns the reply.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// Sends an upload command and its payload, returns the reply.
    pub fn upload(&mut self, verb: &str, name: &str, payload: &[u8]) -> String {
        let mut msg = format!("{verb} {name} {}\r\n", payload.len()).into_bytes();
        msg.extend_from_slice(payload);
        self.send(&msg);
        self.line()
    }

    /// Sends a signed `SEAL`: the line, the armored signature `sig`, then
    /// the age file `sealed`; returns the reply.
    pub fn seal_signed(&mut self, name: &str, sig: &[u8], sealed: &[u8]) -> String {
        self.send(&signed_seal(name, sig, sealed));
        self.line()
    }

    /// True if the server closed the connection: reads reach end of input.
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

/// The error code of an `ERR` reply, or panics.
pub fn code(reply: &str) -> &str {
    reply
        .strip_prefix("ERR ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("not an ERR reply: {reply}"))
}

/// The folders uploads are filed in.
pub const CLASS_FOLDERS: [&str; 4] = ["red", "green", "blue", "not_trusted"];

/// Files left in the data directory's staging folders, as `instance/name`,
/// other than each running server's `lock` file.
pub fn staged_files(data: &Path) -> Vec<String> {
    let root = data.join(".staging");
    let mut left = Vec::new();
    for instance in files_in(&root) {
        let path = root.join(&instance);
        if path.is_dir() {
            for f in files_in(&path) {
                if f != "lock" {
                    left.push(format!("{instance}/{f}"));
                }
            }
        }
    }
    left
}

/// Panics unless no upload is stored anywhere in `data`: the class folders
/// and the content index are empty, and staging holds only lock files.
pub fn assert_nothing_stored(data: &Path) {
    for folder in CLASS_FOLDERS {
        assert_eq!(
            files_in(&data.join(folder)),
            Vec::<String>::new(),
            "{folder}/"
        );
    }
    for index in ["sealed", "plain"] {
        let entries = files_in(&data.join(".index").join(index));
        assert!(entries.is_empty(), ".index/{index}: {entries:?}");
    }
    for folder in CLASS_FOLDERS {
        let kept = files_in(&data.join("signatures").join(folder));
        assert!(kept.is_empty(), "signatures/{folder}: {kept:?}");
    }
    assert_eq!(staged_files(data), Vec::<String>::new(), "staging");
}

/// A field of /proc/PID/status (e.g. `Threads`, `VmHWM` in kB), or `None`
/// once the process is gone.
pub fn proc_status_of(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let prefix = format!("{field}:");
    let line = text.lines().find(|l| l.starts_with(&prefix))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Like [`Conn::line`], but `None` on end of input or a read error (reset,
/// timeout) instead of panicking.
pub fn try_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches("\r\n").to_string()),
    }
}

/// Reports why a test did not run, in the form the test logs are searched
/// for. Where `COLORSORT_REQUIRE_TOOLS` is set, as CI sets it after
/// installing every tool the tests use, a test that cannot run fails: a
/// missing install step must not pass for a green run.
pub fn skipped(test: &str, why: &str) {
    if std::env::var_os("COLORSORT_REQUIRE_TOOLS").is_some_and(|v| !v.is_empty()) {
        panic!("{test} cannot run: {why} (COLORSORT_REQUIRE_TOOLS is set)");
    }
    eprintln!("SKIPPED: {test} ({why})");
    // libtest hides a passing test's stderr, so the line above is seen only
    // with --nocapture; `make test` names this file and lists it in its
    // final summary.
    if let Some(path) = std::env::var_os("COLORSORT_SKIP_LOG") {
        use std::io::Write as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "SKIPPED: {test} ({why})");
        }
    }
}

/// The bytes of a signed `SEAL`: its line, the armored signature `sig`,
/// then the age file `sealed`.
pub fn signed_seal(name: &str, sig: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut msg = format!("SEAL {name} {} {}\r\n", sealed.len(), sig.len()).into_bytes();
    msg.extend_from_slice(sig);
    msg.extend_from_slice(sealed);
    msg
}

/// True if `ssh-keygen` runs; otherwise reports `test` as skipped (see
/// [`skipped`]).
pub fn ssh_keygen_installed(test: &str) -> bool {
    // ssh-keygen has no version flag; `-?` prints usage, so only whether
    // it starts counts.
    let found = Command::new("ssh-keygen")
        .arg("-?")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        skipped(test, "ssh-keygen is not installed");
    }
    found
}

/// A key pair made by the real `ssh-keygen`, without a passphrase.
pub struct SshKey {
    /// The private key file; the public one is beside it, as `.pub`.
    pub path: PathBuf,
    /// `type base64`, as the public key line begins.
    pub public: String,
}

/// Runs a command to completion and panics with its stderr if it fails.
fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl SshKey {
    /// Makes a key with `ssh-keygen -t kind` (`ed25519`, `rsa`), of `bits`
    /// if given, as `dir/name`.
    pub fn generate(dir: &Path, name: &str, kind: &str, bits: Option<u32>) -> SshKey {
        let path = dir.join(name);
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
            .arg(&path);
        if let Some(bits) = bits {
            cmd.args(["-b", &bits.to_string()]);
        }
        run(cmd.stdin(Stdio::null()));
        let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let public: Vec<&str> = line.split_whitespace().take(2).collect();
        SshKey {
            public: public.join(" "),
            path,
        }
    }

    /// Signs `message` with `ssh-keygen -Y sign -n namespace -f key file`
    /// and returns the armored signature it writes to `file.sig`.
    pub fn sign(&self, message: &[u8], namespace: &str) -> Vec<u8> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self.path.with_extension(format!("msg{n}"));
        std::fs::write(&file, message).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(&self.path)
            .arg(&file)
            .stdin(Stdio::null()));
        let sig_path = PathBuf::from(format!("{}.sig", file.display()));
        let sig = std::fs::read(&sig_path).unwrap();
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&sig_path);
        sig
    }

    /// An allowed_signers line for this key: `principals [options] key`.
    pub fn allowed(&self, principals: &str, options: &str) -> String {
        match options {
            "" => format!("{principals} {}\n", self.public),
            options => format!("{principals} {options} {}\n", self.public),
        }
    }

    /// The key's fingerprint as `ssh-keygen -l` prints it, `SHA256:...`.
    pub fn fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.path.with_extension("pub")));
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_string()
    }
}

/// Whether `ssh-keygen -Y verify -f allowed -I principal -n namespace -s sig
/// < message` accepts.
pub fn ssh_keygen_verifies(
    allowed: &Path,
    principal: &str,
    namespace: &str,
    sig: &Path,
    message: &Path,
) -> bool {
    Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", principal, "-n", namespace, "-s"])
        .arg(sig)
        .stdin(std::fs::File::open(message).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

impl TestServer {
    /// The address of the server's metrics responder, from its log line
    /// `metrics at http://ADDR/metrics`; the server must run with
    /// `--metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        let log = self
            .wait_log("metrics at http://", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no metrics line in the log: {}", self.log_text()));
        let rest = log.split("metrics at http://").nth(1).unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }
}

/// A whole HTTP response, as read until the server closed the connection.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, without the status line, as sent.
    pub headers: Vec<String>,
    /// Everything after the empty line.
    pub body: String,
}

impl HttpResponse {
    /// The value of the first header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` as it is to `addr`, reads until the server closes, and
/// parses the response; `None` if the connection ended with no response.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> Option<HttpResponse> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    read_http(&mut stream)
}

/// Reads one HTTP response until end of input; `None` if there was none.
pub fn read_http(stream: &mut TcpStream) -> Option<HttpResponse> {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    Some(HttpResponse {
        status,
        headers: lines.map(str::to_string).collect(),
        body: body.to_string(),
    })
}

/// `GET path` from `addr` over HTTP/1.1.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_raw(addr, request.as_bytes()).unwrap_or_else(|| panic!("no response to GET {path}"))
}
