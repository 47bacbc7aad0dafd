//! The metrics endpoint (`serve --metrics`) and the log formats: what the
//! page counts, that promtool and a real Prometheus server take it, that
//! the HTTP responder is as strict as the line protocol, and that the log
//! summarises PINGs and writes JSON when asked.

mod common {
    pub mod conn;
    pub mod fixtures;
    pub mod http;
    pub mod procfs;
    pub mod server;
    pub mod skip;
    pub mod ssh;
    pub mod wait;
}

use common::conn::{Conn, code};
use common::fixtures::{png, seal};
use common::http::{HttpResponse, http_get, http_raw, read_http};
use common::server::TestServer;
use common::skip::skipped;
use common::ssh::SshKey;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The value of the sample `series` (name and labels as the page writes
/// them), if the page has it.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// The value of an upload counter.
fn uploads(page: &str, command: &str, result: &str, folder: &str) -> Option<f64> {
    let series = format!(
        "colorsort_uploads_total{{command=\"{command}\",result=\"{result}\",folder=\"{folder}\"}}"
    );
    value(page, &series)
}

/// Scrapes the page and checks that it is one.
fn scrape(addr: SocketAddr) -> String {
    let r = http_get(addr, "/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let length: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, r.body.len());
    r.body
}

/// Scrapes until `series` has the value `want`, for up to ten seconds;
/// returns the last page.
fn scrape_until(addr: SocketAddr, series: &str, want: f64) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let page = scrape(addr);
        if value(&page, series) == Some(want) || Instant::now() >= until {
            assert_eq!(value(&page, series), Some(want), "{series}\n{page}");
            return page;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The key fingerprint from the server's start line.
fn fingerprint(s: &TestServer) -> String {
    let log = s.log_text();
    let listening = log.lines().find(|l| l.contains(" listening on ")).unwrap();
    let rest = listening.split("; key ").nth(1).unwrap();
    rest.split(' ').next().unwrap().to_string()
}

#[test]
fn uploads_bytes_connections_and_memory_are_counted() {
    let s = TestServer::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--max-memory",
        "64M",
        "--min-rate",
        "1",
    ]);
    let addr = s.metrics_addr();
    let page = scrape(addr);
    assert_eq!(uploads(&page, "SEAL", "stored", "red"), Some(0.0));
    assert_eq!(value(&page, "colorsort_connections_open"), Some(0.0));

    let red = seal(&png([220, 10, 10], 4, 4));
    let blue = png([10, 10, 220], 4, 4);
    let garbage = b"not sealed at all".to_vec();
    let mut c = s.connect();
    assert!(c.upload("SEAL", "r.png", &red).starts_with("OK red/r.png"));
    assert!(c.upload("SEAL", "r2.png", &red).ends_with(" dup"));
    assert!(
        c.upload("PUT", "b.png", &blue)
            .starts_with("OK not_trusted/b.png")
    );
    assert_eq!(code(&c.upload("PUT", ".hidden.png", &blue)), "bad-name");
    assert_eq!(code(&c.upload("SEAL", "g.png", &garbage)), "decrypt-failed");
    let sent = 2 * red.len() + 2 * blue.len() + garbage.len();

    let page = scrape(addr);
    let want = [
        ("SEAL", "stored", "red", 1.0),
        ("SEAL", "dup", "red", 1.0),
        ("SEAL", "stored", "blue", 0.0),
        ("PUT", "stored", "not_trusted", 1.0),
        ("PUT", "bad-name", "none", 1.0),
        ("SEAL", "decrypt-failed", "none", 1.0),
        ("PUT", "busy", "none", 0.0),
    ];
    for (command, result, folder, n) in want {
        assert_eq!(
            uploads(&page, command, result, folder),
            Some(n),
            "{command} {result} {folder}\n{page}"
        );
    }
    assert_eq!(
        value(&page, "colorsort_received_bytes_total"),
        Some(sent as f64)
    );
    let timed = [("SEAL", 2.0), ("PUT", 1.0)];
    for (command, n) in timed {
        let count = format!("colorsort_upload_duration_seconds_count{{command=\"{command}\"}}");
        let inf = format!(
            "colorsort_upload_duration_seconds_bucket{{command=\"{command}\",le=\"+Inf\"}}"
        );
        assert_eq!(value(&page, &count), Some(n), "{count}");
        assert_eq!(value(&page, &inf), Some(n), "{inf}");
    }
    assert_eq!(value(&page, "colorsort_connections_open"), Some(1.0));
    assert_eq!(value(&page, "colorsort_connections_total"), Some(1.0));
    assert_eq!(value(&page, "colorsort_connections_limit"), Some(1024.0));
    assert_eq!(
        value(&page, "colorsort_memory_limit_bytes"),
        Some(64.0 * 1024.0 * 1024.0)
    );
    assert_eq!(value(&page, "colorsort_memory_used_bytes"), Some(0.0));
    let build = format!(
        "colorsort_build_info{{version=\"{}\",key=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        fingerprint(&s)
    );
    assert_eq!(value(&page, &build), Some(1.0), "{build}\n{page}");

    // A payload under way holds the first chunk of its buffer (memory is
    // reserved as bytes arrive), its bytes are counted as they come, and
    // one left unfinished counts as aborted.
    let mut holder = s.connect();
    holder.send(b"PUT held.png 1000000\r\n0123456789");
    scrape_until(addr, "colorsort_memory_used_bytes", 64.0 * 1024.0);
    scrape_until(addr, "colorsort_received_bytes_total", (sent + 10) as f64);
    drop(holder);
    let page = scrape_until(
        addr,
        r#"colorsort_uploads_total{command="PUT",result="aborted",folder="none"}"#,
        1.0,
    );
    assert_eq!(value(&page, "colorsort_memory_used_bytes"), Some(0.0));
    assert_eq!(
        value(&page, "colorsort_received_bytes_total"),
        Some((sent + 10) as f64)
    );
    // A SIZE over the limit is refused unread: no bytes.
    let mut big = s.connect();
    assert_eq!(code(&big.ask("PUT big.png 999999999")), "too-large");
    let page = scrape_until(
        addr,
        r#"colorsort_uploads_total{command="PUT",result="too-large",folder="none"}"#,
        1.0,
    );
    assert_eq!(
        value(&page, "colorsort_received_bytes_total"),
        Some((sent + 10) as f64)
    );
    assert_eq!(value(&page, "colorsort_connections_total"), Some(3.0));
}

#[test]
fn evictions_refusals_and_decode_waits_are_counted() {
    let s = TestServer::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--max-connections",
        "1",
        "--min-rate",
        "1",
    ]);
    let addr = s.metrics_addr();
    // An idle connection is evicted for a newcomer.
    let mut idle = s.connect();
    thread::sleep(Duration::from_millis(100));
    let mut newcomer = s.connect();
    assert_eq!(newcomer.ask("PING"), "OK PONG");
    assert_eq!(code(&idle.line()), "busy");
    scrape_until(addr, r#"colorsort_evictions_total{reason="idle"}"#, 1.0);
    // With the only slot in an upload that keeps up with the minimum rate,
    // a newcomer is turned away.
    newcomer.send(b"PUT slow.png 100\r\npartial");
    thread::sleep(Duration::from_millis(200));
    let mut refused = s.connect();
    assert_eq!(code(&refused.line()), "busy");
    let page = scrape_until(addr, "colorsort_connections_refused_total", 1.0);
    assert_eq!(
        value(&page, r#"colorsort_evictions_total{reason="slow_upload"}"#),
        Some(0.0)
    );
    newcomer.send(&[0u8; 93]);
    assert_eq!(code(&newcomer.line()), "not-an-image");
    // The log line of the refusal is as before.
    let log = s
        .wait_log(
            " - - -> ERR busy (connection limit 1)",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| s.log_text());
    assert!(
        log.lines()
            .any(|l| l.ends_with(" - - -> ERR busy (connection limit 1)")
                && l.contains(" 127.0.0.1:")),
        "{log}"
    );
    // A decode over 16 MiB takes a turn at the decode gate.
    let large = png([200, 10, 10], 2400, 2400);
    let reply = newcomer.upload("PUT", "large.png", &large);
    assert!(reply.starts_with("OK not_trusted/large.png"), "{reply}");
    let page = scrape_until(addr, "colorsort_decode_wait_seconds_count", 1.0);
    assert_eq!(
        value(&page, r#"colorsort_decode_wait_seconds_bucket{le="+Inf"}"#),
        Some(1.0)
    );
}

/// Waits until the log has a line with `needle`; then the page counts as
/// many `series` as the log has such lines (each is counted before it is
/// logged).
fn counted_as_logged(s: &TestServer, series: &str, needle: &str) -> f64 {
    s.wait_log(needle, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no {needle:?} in the log: {}", s.log_text()));
    let logged = s.log_text().matches(needle).count() as f64;
    let page = scrape_until(s.metrics_addr(), series, logged);
    value(&page, series).unwrap()
}

#[test]
fn evictions_of_unread_replies_are_counted() {
    // Both slots held by clients that read none of their replies: the one
    // unread longest is evicted for a newcomer.
    let s = TestServer::start(&["--metrics", "127.0.0.1:0", "--max-connections", "2"]);
    let _readers = s.stuck_non_readers(2, Duration::from_secs(10));
    let admitted = common::wait::wait_until(common::wait::after(Duration::from_secs(10)), || {
        s.connect().ask("STATS").starts_with("OK ")
    });
    assert!(admitted, "no newcomer got in: {}", s.log_text());
    let n = counted_as_logged(
        &s,
        r#"colorsort_evictions_total{reason="unread_reply"}"#,
        "(evicted: reply unread longest while full)",
    );
    assert!(n >= 1.0);
    let page = scrape(s.metrics_addr());
    for reason in ["idle", "slow_upload", "memory"] {
        let series = format!("colorsort_evictions_total{{reason=\"{reason}\"}}");
        assert_eq!(value(&page, &series), Some(0.0), "{series}");
    }
}

#[test]
fn evictions_for_memory_are_counted() {
    // Eight uploads announce 16 MiB each and send 1.1 MB, which holds
    // 2 MiB each and spends the 16 MiB budget; past the grace, the upload
    // furthest behind the minimum rate is evicted for a newcomer that needs
    // memory, one at a time, until its decode fits.
    let s = TestServer::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--max-memory",
        "16M",
        "--min-rate",
        "256K",
    ]);
    let holders: Vec<Conn> = (0..8)
        .map(|_| {
            let mut c = s.connect();
            c.send(format!("PUT held.png {}\r\n", 16 << 20).as_bytes());
            c.send(&vec![0x55; 1_100_000]);
            c
        })
        .collect();
    for c in &holders {
        assert!(s.wait_read(c, Duration::from_secs(10)));
    }
    let sealed = seal(&png([10, 20, 200], 4, 4));
    let mut c = s.connect();
    let stored = common::wait::wait_until(common::wait::after(Duration::from_secs(15)), || {
        c.upload("SEAL", "room.png", &sealed)
            .starts_with("OK blue/room.png ")
    });
    assert!(stored, "{}", s.log_text());
    let n = counted_as_logged(
        &s,
        r#"colorsort_evictions_total{reason="memory"}"#,
        "(evicted: slowest upload while memory was short)",
    );
    assert!(n >= 1.0 && n < holders.len() as f64, "{n}");
    let page = scrape(s.metrics_addr());
    assert_eq!(
        uploads(&page, "PUT", "busy", "none"),
        Some(n),
        "each evicted upload is answered ERR busy\n{page}"
    );
}

#[test]
fn signed_uploads_are_counted_by_result() {
    if !common::ssh::ssh_keygen_installed("signed_uploads_are_counted_by_result") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let alice = SshKey::generate(keys.path(), "alice", "ed25519", None);
    let bob = SshKey::generate(keys.path(), "bob", "ed25519", None);
    let data = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(data.path());
    let allowed = alice.allowed("alice@example.com", "");
    std::fs::write(data.path().join("allowed_signers"), allowed).unwrap();
    let s = TestServer::start_in(data.path(), &["--metrics", "127.0.0.1:0"]);
    let mut c = s.connect();
    let red = png([220, 10, 10], 4, 4);
    let green = png([10, 220, 10], 4, 4);
    let (sealed_red, sealed_green) = (seal(&red), seal(&green));
    let cases = [
        (alice.sign(&red, "colorsort"), &sealed_red, "OK red/a.png "),
        (
            bob.sign(&red, "colorsort"),
            &sealed_red,
            "ERR unknown-signer ",
        ),
        (
            alice.sign(&green, "colorsort"),
            &sealed_red,
            "ERR bad-signature ",
        ),
    ];
    let mut sent = 0;
    for (sig, sealed, want) in &cases {
        let reply = c.seal_signed("a.png", sig, sealed);
        assert!(reply.starts_with(want), "{reply}");
        sent += sig.len() + sealed.len();
    }
    // Unsigned: counted with the SEALs, not with the signed ones.
    let reply = c.upload("SEAL", "u.png", &sealed_green);
    assert!(reply.starts_with("OK not_trusted/u.png"), "{reply}");
    sent += sealed_green.len();
    let page = scrape(s.metrics_addr());
    let signed = |result: &str, folder: &str| {
        let series =
            format!("colorsort_signed_uploads_total{{result=\"{result}\",folder=\"{folder}\"}}");
        value(&page, &series)
    };
    let want = [
        ("stored", "red", 1.0, 1.0),
        ("unknown-signer", "none", 1.0, 1.0),
        ("bad-signature", "none", 1.0, 1.0),
        ("stored", "not_trusted", 0.0, 1.0),
    ];
    for (result, folder, n_signed, n_seal) in want {
        assert_eq!(signed(result, folder), Some(n_signed), "{result} {folder}");
        assert_eq!(
            uploads(&page, "SEAL", result, folder),
            Some(n_seal),
            "{result} {folder}"
        );
    }
    // Signatures are payload bytes too.
    assert_eq!(
        value(&page, "colorsort_received_bytes_total"),
        Some(sent as f64)
    );
}

#[test]
fn metrics_are_off_unless_asked_for() {
    let s = TestServer::start(&[]);
    assert_eq!(
        s.connect().ask("STATS"),
        "OK red=0 green=0 blue=0 not_trusted=0"
    );
    let log = s
        .wait_log(" STATS -> ", Duration::from_secs(5))
        .unwrap_or_else(|| s.log_text());
    assert!(!log.contains("metrics at"), "{log}");
    // The variable turns them on as the flag does.
    let s = TestServer::start_wrapped(&["env", "COLORSORT_METRICS=127.0.0.1:0"], &[]);
    scrape(s.metrics_addr());
}

#[test]
fn a_metrics_address_in_use_stops_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    let Err((status, log)) = TestServer::try_start_in(dir.path(), &["--metrics", &addr]) else {
        panic!("the server started on a metrics address in use");
    };
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot serve metrics on {addr}: ")),
        "{log}"
    );
    // Refused before the data directory was touched.
    assert!(!dir.path().join(".staging").exists());
}

/// A page with every family holding something.
fn busy_page() -> (TestServer, String) {
    let s = TestServer::start(&["--metrics", "127.0.0.1:0"]);
    let mut c = s.connect();
    assert!(
        c.upload("SEAL", "r.png", &seal(&png([220, 10, 10], 4, 4)))
            .starts_with("OK")
    );
    assert!(
        c.upload("PUT", "b.png", &png([1, 1, 200], 4, 4))
            .starts_with("OK")
    );
    assert_eq!(code(&c.upload("PUT", "/x", b"x")), "bad-name");
    let page = scrape(s.metrics_addr());
    (s, page)
}

/// Runs `promtool check metrics` on `page`: its success and its output.
fn promtool_check(page: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn promtool_accepts_the_page() {
    if !have("promtool") {
        return skipped(
            "promtool_accepts_the_page",
            "promtool is not installed (Debian package prometheus)",
        );
    }
    let (_s, page) = busy_page();
    let (ok, out) = promtool_check(&page);
    assert!(ok && out.trim().is_empty(), "promtool: {out}\n{page}");
    // The check is one that can fail: promtool refuses a page missing a help
    // line, and one with a bad escape in a label value.
    let no_help: String = page
        .lines()
        .filter(|l| !l.starts_with("# HELP colorsort_memory_used_bytes "))
        .map(|l| format!("{l}\n"))
        .collect();
    let bad_escape = page.replacen("key=\"SHA256:", "key=\"\\qSHA256:", 1);
    for (what, broken) in [("no help", no_help), ("bad escape", bad_escape)] {
        assert_ne!(broken, page, "{what}: nothing was broken");
        let (ok, out) = promtool_check(&broken);
        assert!(!ok, "promtool accepts a page with {what}: {out}");
    }
    eprintln!(
        "promtool check metrics: {} lines accepted",
        page.lines().count()
    );
}

/// A port nobody listens on now (Prometheus wants a fixed one).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    web: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, and waits until it
    /// is ready.
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: colorsort\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Prometheus {
            child,
            web,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("prometheus exited with {status}: {}", p.log());
            }
            let ready = TcpStream::connect(web).is_ok() && http_get(web, "/-/ready").status == 200;
            if ready {
                return p;
            }
            assert!(Instant::now() < until, "prometheus not ready: {}", p.log());
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The value of an instant query's single result, if it has one.
    fn query(&self, query: &str) -> Option<f64> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let r = http_get(self.web, &format!("/api/v1/query?query={encoded}"));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.contains(r#""status":"success""#), "{}", r.body);
        // {"status":"success","data":{"resultType":"vector","result":[
        //   {"metric":{...},"value":[1700000000.123,"2"]}]}}
        let value = r.body.split(r#""value":["#).nth(1)?;
        let number = value.split(",\"").nth(1)?.split('"').next()?;
        Some(number.parse().unwrap())
    }
}

#[test]
fn prometheus_scrapes_the_server() {
    if !have("prometheus") {
        return skipped(
            "prometheus_scrapes_the_server",
            "prometheus is not installed (Debian package prometheus)",
        );
    }
    let (s, _) = busy_page();
    let prometheus = Prometheus::start(s.metrics_addr());
    let until = Instant::now() + Duration::from_secs(60);
    let query = r#"sum(colorsort_uploads_total{result="stored"})"#;
    loop {
        match prometheus.query(query) {
            Some(n) => {
                assert_eq!(n, 2.0, "{query}");
                break;
            }
            None => assert!(
                Instant::now() < until,
                "prometheus never had {query}: {}",
                prometheus.log()
            ),
        }
        thread::sleep(Duration::from_millis(200));
    }
    let bad_name = r#"colorsort_uploads_total{command="PUT",result="bad-name",folder="none"}"#;
    assert_eq!(prometheus.query(bad_name), Some(1.0));
    assert_eq!(prometheus.query(r#"up{job="colorsort"}"#), Some(1.0));
    let key = format!(r#"colorsort_build_info{{key="{}"}}"#, fingerprint(&s));
    assert_eq!(prometheus.query(&key), Some(1.0), "{key}");
    // A histogram Prometheus can take quantiles of: cumulative buckets up
    // to le="+Inf" (without it the answer is NaN).
    let quantile =
        r#"histogram_quantile(1, colorsort_upload_duration_seconds_bucket{command="SEAL"})"#;
    let q = prometheus.query(quantile).unwrap();
    assert!(q.is_finite() && q > 0.0, "{quantile} = {q}");
    let targets = http_get(prometheus.web, "/api/v1/targets").body;
    assert!(
        targets.contains(r#""health":"up""#) && targets.contains(r#""lastError":"""#),
        "{targets}"
    );
    eprintln!("prometheus scraped {query} = 2 from {}", s.metrics_addr());
}

/// The server's response to `request`, which must be one.
fn respond(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    http_raw(addr, request)
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(request)))
}

#[test]
fn the_responder_answers_only_well_formed_gets_of_metrics() {
    let s = TestServer::start(&["--metrics", "127.0.0.1:0"]);
    let addr = s.metrics_addr();
    let long = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(9000)
    );
    // (request, status)
    let cases: &[(&[u8], u16)] = &[
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /metrics HTTP/1.0\r\n\r\n", 200),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
            405,
        ),
        (b"PUT /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET /metrics/../key.pem HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"hello\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\n\n", 400),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            400,
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (long.as_bytes(), 431),
    ];
    for (request, status) in cases {
        // The last cases' threads may still be closing, which the responder
        // counts until they end: past its cap it answers 503 at once.
        let mut r = respond(addr, request);
        let deadline = common::wait::after(Duration::from_secs(10));
        while r.status == 503 && Instant::now() < deadline {
            r = respond(addr, request);
        }
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).to_string();
        assert_eq!(r.status, *status, "{shown:?}: {r:?}");
        assert_eq!(r.header("connection"), Some("close"), "{shown:?}");
        let length: usize = r.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, r.body.len(), "{shown:?}");
        if *status == 405 {
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
        }
    }
    // HEAD says how long the page is, and sends none of it; nor of an
    // error's.
    let heads = [("/metrics", 200, 1000), ("/other", 404, 0)];
    for (path, status, longer_than) in heads {
        let request = format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = respond(addr, request.as_bytes());
        assert_eq!(r.status, status, "{path}");
        let length: usize = r.header("content-length").unwrap().parse().unwrap();
        assert!(length > longer_than, "{path}: {length}");
        assert_eq!(r.body, "", "{path}");
    }
    // One request per connection: a second one sent with the first is not
    // answered.
    let twice = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let r = respond(addr, twice);
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("HTTP/1.1"), "a second response followed");
    // A connection that sends nothing and closes gets nothing.
    let mut quiet = TcpStream::connect(addr).unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    quiet.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    quiet.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"");
    // The protocol port still works.
    assert_eq!(s.connect().ask("PING"), "OK PONG");
}

#[test]
fn a_slow_request_is_cut_at_the_timeout() {
    let s = TestServer::start(&["--metrics", "127.0.0.1:0", "--timeout", "1"]);
    let addr = s.metrics_addr();
    // A header every 200 ms: each read makes progress, the head never ends.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let trickle = thread::spawn(move || {
        let _ = writer.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
        for i in 0..25 {
            thread::sleep(Duration::from_millis(200));
            if writer
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .is_err()
            {
                break;
            }
        }
    });
    let r = read_http(&mut stream).expect("a response");
    let took = started.elapsed();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "cut after {took:?}"
    );
    trickle.join().unwrap();
    // Silence is cut at the same deadline.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = read_http(&mut silent).expect("a response");
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn metrics_connections_are_capped() {
    let s = TestServer::start(&["--metrics", "127.0.0.1:0", "--timeout", "10"]);
    let addr = s.metrics_addr();
    // Four connections that say nothing take every slot.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut fifth = TcpStream::connect(addr).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = read_http(&mut fifth).expect("a response");
    assert_eq!(r.status, 503, "{r:?}");
    // Once they leave, their slots are free again.
    drop(held);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_get(addr, "/metrics");
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < until, "the slots were never freed");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pings_are_summarised_in_the_log() {
    let s = TestServer::start(&[]);
    // One connection per PING, as health checks make them. Each is closed
    // by the server once the client has closed its side, which is after
    // the PING's log line: the next connection's line comes after it.
    for _ in 0..3 {
        let mut c = s.connect();
        assert_eq!(c.ask("PING"), "OK PONG");
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(c.closed());
    }
    assert_eq!(
        s.connect().ask("STATS"),
        "OK red=0 green=0 blue=0 not_trusted=0"
    );
    let log = s
        .wait_log(" STATS -> ", Duration::from_secs(5))
        .unwrap_or_else(|| s.log_text());
    let lines: Vec<&str> = log.lines().collect();
    let summary = lines
        .iter()
        .position(|l| {
            l.contains(" PING x3 -> OK PONG over ") && l.contains(" from 127.0.0.1 (3); longest ")
        })
        .unwrap_or_else(|| panic!("no summary of 3 PINGs: {log}"));
    let stats = lines.iter().position(|l| l.contains(" STATS -> ")).unwrap();
    assert_eq!(summary + 1, stats, "{log}");
    assert!(
        !log.contains(" PING -> OK PONG"),
        "a PING was logged on its own line: {log}"
    );
    // A single PING keeps its own line, as it was. (On one connection, each
    // request is logged before the next is read.)
    let mut c = s.connect();
    assert_eq!(c.ask("PING"), "OK PONG");
    assert_eq!(c.ask("QUIT"), "OK BYE");
    let log = s
        .wait_log(" QUIT -> ", Duration::from_secs(5))
        .unwrap_or_else(|| s.log_text());
    let ping = log
        .lines()
        .find(|l| l.contains(" PING -> OK PONG "))
        .unwrap_or_else(|| panic!("no PING line: {log}"));
    assert!(
        ping.contains(" 127.0.0.1:") && ping.ends_with("ms"),
        "{ping}"
    );
}

#[test]
fn json_log_has_one_object_per_line() {
    if !have("python3") {
        return skipped(
            "json_log_has_one_object_per_line",
            "python3 is not installed",
        );
    }
    let s = TestServer::start_wrapped(
        &["env", "COLORSORT_LOG_FORMAT=json"],
        &["--metrics", "127.0.0.1:0"],
    );
    let mut c = s.connect();
    assert_eq!(c.ask("PING"), "OK PONG");
    assert_eq!(c.ask("PING"), "OK PONG");
    assert!(
        c.upload("PUT", "b.png", &png([1, 1, 200], 4, 4))
            .starts_with("OK")
    );
    assert!(
        c.upload("SEAL", "r.png", &seal(&png([220, 10, 10], 4, 4)))
            .starts_with("OK red/r.png")
    );
    assert_eq!(code(&c.ask("BOGUS \\ \"x\"")), "unknown-command");
    assert_eq!(c.ask("QUIT"), "OK BYE");
    s.wait_log(r#""request":"QUIT""#, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no QUIT line: {}", s.log_text()));
    let log = s.log_text();
    // Each line through a real JSON parser, printed back with sorted keys.
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             for line in sys.stdin:\n\
             \x20   o = json.loads(line)\n\
             \x20   assert isinstance(o, dict) and isinstance(o['time'], str), line\n\
             \x20   print(json.dumps(o, sort_keys=True))\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    python
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{log}\n").as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    let parsed = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "not JSON: {}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parsed.lines().count(), log.lines().count());
    let find = |needle: &str| {
        parsed
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}: {parsed}"))
            .to_string()
    };
    assert!(find("listening on ").starts_with(r#"{"message": "colorsort "#));
    assert!(find("metrics at http://127.0.0.1:").contains(r#""message": "#));
    let pings = find(r#""request": "PING""#);
    assert!(
        pings.contains(r#""count": 2"#) && pings.contains(r#""peers": {"127.0.0.1": 2}"#),
        "{pings}"
    );
    assert!(find("known senders: off").starts_with(r#"{"message": "known senders: off (no "#));
    // A trusted upload's audit line, after its request's.
    let audit = find(r#""audit": "#);
    assert!(
        audit.starts_with(r#"{"audit": "filed red/r.png sha256:"#)
            && audit.contains(r#" unsigned (no allowed_signers file)", "peer": "127.0.0.1:"#),
        "{audit}"
    );
    let put = find(r#""detail": "class blue""#);
    assert!(put.contains(r#""request": "PUT b.png "#), "{put}");
    assert!(
        put.contains(r#""reply": "OK not_trusted/b.png r="#),
        "{put}"
    );
    assert!(
        put.contains(r#""ms": "#) && put.contains(r#""peer": "127.0.0.1:"#),
        "{put}"
    );
    // The request as the text log shows it, escaped once more by JSON, and
    // printed back by Python the same way.
    let shown = r#"BOGUS \\ \"x\""#;
    let json = shown.replace('\\', "\\\\").replace('"', "\\\"");
    let bogus = find("unknown-command");
    assert!(
        bogus.contains(&format!(r#""request": "{json}""#)),
        "{bogus}\n{json}"
    );
}
