//! Shared harness for the integration tests: starts the real `colorsort`
//! binary on 127.0.0.1:0 in a temporary data directory and talks raw TCP.

#![allow(dead_code)]

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

/// Opens a connection that reserves `reserve` bytes of the server's memory
/// budget (an upload announced but not sent) and returns it once the
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
        std::thread::sleep(Duration::from_millis(100 << round.min(4)));
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

    /// Starts a server, through `wrapper` if it is not empty; on failure
    /// returns its exit status and log.
    pub fn try_start_wrapped(
        wrapper: &[&str],
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
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
                std::thread::sleep(Duration::from_millis(100));
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
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits up to `limit` for a log line containing `needle`; returns the
    /// whole log once it appears, or `None`. The server writes a request's
    /// log line after its reply, and the log reaches the test through a
    /// pipe and a thread, so a reply can arrive before its log line.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> Option<String> {
        let until = Instant::now() + limit;
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return Some(text);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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
