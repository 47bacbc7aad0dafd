//! The real server under test: `colorsort serve` started on 127.0.0.1:0
//! in a data directory, its log collected, killed on drop.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use super::conn::Conn;
use super::fixtures::{bin, install_test_key};
use super::wait::{after, wait_until};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's address, as `--host` takes it.
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

    /// Everything the server has logged so far.
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
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
