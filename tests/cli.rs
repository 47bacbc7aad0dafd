//! The `colorsort` binary's client commands, run as a user would run them.

mod common {
    pub mod budget;
    pub mod conn;
    pub mod fixtures;
    pub mod procfs;
    pub mod server;
    pub mod stored;
    pub mod wait;
}

use common::fixtures::{bin, png, test_data};
use common::server::TestServer;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// Runs `colorsort ARGS` with a private config folder and no inherited host.
fn run(args: &[&str], config: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("COLORSORT_HOST")
        .env_remove("COLORSORT_PIN")
        .env_remove("COLORSORT_KNOWN_HOSTS")
        .output()
        .unwrap()
}

/// The fingerprint of test-data/keys/test-only-other-key, which no test
/// server has.
const OTHER_KEY: &str = "SHA256:DSaBl3/98cJISqN0XBCrdPSMzrSmYgFpx1dll2kQpEc";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_help_and_usage_errors() {
    let cfg = tempfile::tempdir().unwrap();
    let out = run(&["--version"], cfg.path());
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("colorsort {}\n", env!("CARGO_PKG_VERSION"))
    );
    for sub in ["serve", "key", "send", "classify", "stats", "ping"] {
        let out = run(&[sub, "--help"], cfg.path());
        assert!(out.status.success(), "{sub} --help");
        assert!(text(&out.stdout).starts_with("Usage: colorsort"), "{sub}");
        assert_eq!(run(&["help", sub], cfg.path()).stdout, out.stdout);
    }
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["serve", "--max-upload", "lots"],
        &["send"],
        &["key", "--nope"],
    ];
    for args in cases {
        let out = run(args, cfg.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("colorsort") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn classify_prints_class_and_means() {
    let cfg = tempfile::tempdir().unwrap();
    let expected = fs::read_to_string(test_data("images/expected.txt")).unwrap();
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(6)
    {
        let mut words = line.split_whitespace();
        let (file, class) = (words.next().unwrap(), words.next().unwrap());
        let path = test_data(&format!("images/{file}"));
        let out = run(&["classify", path.to_str().unwrap()], cfg.path());
        assert!(out.status.success(), "{file}: {}", text(&out.stderr));
        let printed = text(&out.stdout);
        assert!(
            printed.starts_with(&format!("{} {class} r=", path.display())),
            "{printed}"
        );
    }
    let out = run(
        &[
            "classify",
            test_data("images/fail_not_an_image.txt").to_str().unwrap(),
        ],
        cfg.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("fail_not_an_image.txt"));
}

#[test]
fn key_ping_and_stats_against_a_server() {
    let s = TestServer::start(&[]);
    let cfg = tempfile::tempdir().unwrap();
    let host = s.host();
    let out = run(&["key", "--host", &host], cfg.path());
    assert!(out.status.success());
    let public = fs::read_to_string(test_data("keys/test-only-server-key.pub")).unwrap();
    let blob = public.split_whitespace().nth(1).unwrap();
    assert_eq!(text(&out.stdout), format!("ssh-rsa {blob} colorsort\n"));
    let out = run(&["key", "--fingerprint", "--host", &host], cfg.path());
    assert_eq!(
        text(&out.stdout),
        "SHA256:V8rHUK4UazrNWiUR4b2NW6B/za3Kna/aJakJ9+G/Qcc\n"
    );
    assert!(
        s.log_text()
            .contains("SHA256:V8rHUK4UazrNWiUR4b2NW6B/za3Kna/aJakJ9+G/Qcc"),
        "the server logs its fingerprint"
    );
    let out = Command::new(bin())
        .arg("ping")
        .env("COLORSORT_HOST", &host)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "PONG\n");
    let out = run(&["stats", "--host", &host], cfg.path());
    assert_eq!(text(&out.stdout), "red=0 green=0 blue=0 not_trusted=0\n");

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = run(&["ping", "--host", &dead], cfg.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn send_a_folder_then_resend_it() {
    let s = TestServer::start(&[]);
    let cfg = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    fs::create_dir(photos.path().join("sub")).unwrap();
    fs::write(photos.path().join("red.png"), png([200, 10, 10], 4, 4)).unwrap();
    fs::write(
        photos.path().join("sub/green photo.png"),
        png([10, 200, 10], 4, 4),
    )
    .unwrap();
    fs::write(photos.path().join("sub/blue.bin"), png([10, 10, 200], 4, 4)).unwrap();
    fs::write(photos.path().join("notes.txt"), b"not an image").unwrap();
    let dir = photos.path().to_str().unwrap();

    let out = run(&["send", "--host", &s.host(), dir], cfg.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("red.png: stored red/red.png r=200.0 g=10.0 b=10.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("green photo.png: stored green/green_photo.png "),
        "{stdout}"
    );
    assert!(
        stdout.contains("blue.bin: stored blue/blue.bin "),
        "picked by content, not name: {stdout}"
    );
    assert!(stdout.contains("stored 3 (red 1, green 1, blue 1, not_trusted 0), duplicates 0, failed 0, skipped 1 non-image(s)"), "{stdout}");
    assert!(
        stderr.contains("skipped ") && stderr.contains("notes.txt: not an image"),
        "{stderr}"
    );
    assert!(stderr.contains("pinned the key of"), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stdout.contains('\x1b'),
        "no control characters when not on a terminal"
    );

    // Again: everything is a duplicate, and still a success.
    let out = run(&["send", "--host", &s.host(), "--json", dir], cfg.path());
    assert!(out.status.success());
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        assert!(
            line.starts_with("{\"path\":") && line.contains("\"result\":\"duplicate\""),
            "{line}"
        );
    }
    assert!(text(&out.stderr).contains("duplicates 3, failed 0"));
    assert_eq!(
        s.files("red").len() + s.files("green").len() + s.files("blue").len(),
        3
    );

    // --plain sends unsealed content to not_trusted/.
    fs::write(photos.path().join("plain.png"), png([1, 2, 3], 3, 3)).unwrap();
    let plain = photos.path().join("plain.png");
    let out = run(
        &[
            "send",
            "--plain",
            "--host",
            &s.host(),
            plain.to_str().unwrap(),
        ],
        cfg.path(),
    );
    assert!(
        text(&out.stdout).contains("stored not_trusted/plain.png"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn send_reports_failures_and_exits_1() {
    let s = TestServer::start(&["--max-pixels", "100"]);
    let cfg = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let big = files.path().join("big.png");
    fs::write(&big, png([9, 9, 9], 20, 20)).unwrap();
    let ok = files.path().join("ok.png");
    fs::write(&ok, png([9, 9, 9], 5, 5)).unwrap();
    let out = run(
        &[
            "send",
            "--json",
            "--host",
            &s.host(),
            big.to_str().unwrap(),
            ok.to_str().unwrap(),
        ],
        cfg.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("\"result\":\"failed\"")
            && stdout.contains("\"error\":\"too-many-pixels\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"attempts\":1"),
        "permanent failures are not retried: {stdout}"
    );
    assert!(stdout.contains("\"stored\":\"red/ok.png\""), "{stdout}");
    assert!(
        text(&out.stderr).contains("failures: too-many-pixels 1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn send_refuses_a_changed_key_unless_accepted() {
    let s = TestServer::start(&[]);
    let cfg = tempfile::tempdir().unwrap();
    // Pin another key for this host, as if the server had been replaced.
    let other = fs::read_to_string(test_data("keys/test-only-other-key.pub")).unwrap();
    let pinned: Vec<&str> = other.split_whitespace().take(2).collect();
    fs::create_dir_all(cfg.path().join("colorsort")).unwrap();
    fs::write(
        cfg.path().join("colorsort/known_hosts"),
        format!("{} {}\n", s.host(), pinned.join(" ")),
    )
    .unwrap();
    let file = cfg.path().join("x.png");
    fs::write(&file, png([200, 0, 0], 2, 2)).unwrap();

    let out = run(
        &["send", "--host", &s.host(), file.to_str().unwrap()],
        cfg.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("CHANGED") && err.contains(OTHER_KEY), "{err}");
    assert!(s.files("red").is_empty(), "nothing was sent");

    let out = run(
        &[
            "send",
            "--accept-new-key",
            "--host",
            &s.host(),
            file.to_str().unwrap(),
        ],
        cfg.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        &["send", "--host", &s.host(), file.to_str().unwrap()],
        cfg.path(),
    );
    assert!(out.status.success(), "the accepted key is now pinned");
}

#[test]
fn send_checks_the_key_against_a_pin() {
    let s = TestServer::start(&[]);
    let cfg = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, rgb| {
        let path = files.path().join(name);
        fs::write(&path, png(rgb, 2, 2)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (red, green, blue) = (
        file("r.png", [200, 0, 0]),
        file("g.png", [0, 200, 0]),
        file("b.png", [0, 0, 200]),
    );
    let ours = common::fixtures::test_public_key().fingerprint();

    let out = run(
        &["send", "--pin", &ours, "--host", &s.host(), &red],
        cfg.path(),
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("pin"),
        "nothing to say about a matching pin: {err}"
    );
    assert!(
        !cfg.path().join("colorsort/known_hosts").exists(),
        "--pin replaces the pin file"
    );
    assert_eq!(s.files("red"), ["r.png"]);

    // Another fingerprint, from the flag or the variable: nothing is sent.
    let flag = run(
        &["send", "--pin", OTHER_KEY, "--host", &s.host(), &green],
        cfg.path(),
    );
    let variable = Command::new(bin())
        .args(["send", "--host", &s.host(), &blue])
        .env("XDG_CONFIG_HOME", cfg.path())
        .env("COLORSORT_PIN", OTHER_KEY)
        .output()
        .unwrap();
    for (out, source) in [(flag, "(--pin)"), (variable, "(COLORSORT_PIN)")] {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(
            err.contains("NOT the pinned key")
                && err.contains(&format!("{OTHER_KEY} {source}"))
                && err.contains(&ours),
            "{err}"
        );
    }
    assert!(s.files("green").is_empty() && s.files("blue").is_empty());

    // A pin that is not a fingerprint, or one with --accept-new-key, is a
    // usage error.
    let bad: &[&[&str]] = &[
        &["--pin", "SHA256:short"],
        &["--pin", &ours[7..]],
        &["--pin", &ours, "--accept-new-key"],
    ];
    for args in bad {
        let host = s.host();
        let mut all = vec!["send", "--host", &host];
        all.extend_from_slice(args);
        all.push(&green);
        let out = run(&all, cfg.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(s.files("green").is_empty());
}

#[test]
fn send_without_a_pin_file_warns_once_and_sends() {
    let s = TestServer::start(&[]);
    let files = tempfile::tempdir().unwrap();
    for (i, rgb) in [[200, 0, 0], [0, 200, 0], [0, 0, 200]]
        .into_iter()
        .enumerate()
    {
        fs::write(files.path().join(format!("{i}.png")), png(rgb, 3, 3)).unwrap();
    }
    let dir = files.path().to_str().unwrap();
    let fingerprint = common::fixtures::test_public_key().fingerprint();
    // No home at all, as in a FROM scratch image; and a config folder that
    // cannot be created (a path under a file fails even for root).
    let cases: [(&str, &[(&str, &str)]); 2] = [
        ("no home", &[]),
        ("unwritable", &[("XDG_CONFIG_HOME", "/dev/null/config")]),
    ];
    for (what, vars) in cases {
        let out = Command::new(bin())
            .args(["send", "-j", "3", "--host", &s.host(), dir])
            .env_remove("HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("COLORSORT_PIN")
            .env_remove("COLORSORT_KNOWN_HOSTS")
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(out.status.success(), "{what}: {err}");
        assert_eq!(err.matches("cannot pin").count(), 1, "{what}: {err}");
        assert!(
            err.contains(&format!("--pin {fingerprint}")) && err.contains("--known-hosts"),
            "{what}: says how to pin: {err}"
        );
        assert!(
            text(&out.stdout).contains("failed 0"),
            "{what}: {}",
            text(&out.stdout)
        );
    }
    assert_eq!(
        s.files("red").len() + s.files("green").len() + s.files("blue").len(),
        3
    );

    // A pin file named with --known-hosts or the variable is used, and
    // must be writable.
    let cfg = tempfile::tempdir().unwrap();
    let pins = cfg.path().join("pins");
    let out = run(
        &[
            "send",
            "--known-hosts",
            pins.to_str().unwrap(),
            "--host",
            &s.host(),
            dir,
        ],
        cfg.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pinned = fs::read_to_string(&pins).unwrap();
    assert!(
        pinned.starts_with(&format!("{} ssh-rsa ", s.host())),
        "{pinned}"
    );
    assert!(
        !cfg.path().join("colorsort").exists(),
        "not the default file"
    );
    let out = Command::new(bin())
        .args(["send", "--host", &s.host(), dir])
        .env("XDG_CONFIG_HOME", cfg.path())
        .env("COLORSORT_KNOWN_HOSTS", "/dev/null/pins")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/dev/null/pins"), "{err}");
}

#[test]
fn send_retries_while_the_server_is_busy() {
    // A minimum rate of 1 byte/s keeps the blocker's slow upload from being
    // evicted for the newcomer, however long the machine takes.
    let s = TestServer::start(&["--max-connections", "1", "--min-rate", "1"]);
    let cfg = tempfile::tempdir().unwrap();
    // Hold the only slot with a request in progress, then release it.
    let mut blocker = s.connect();
    blocker.send(b"PUT hold.png 10\r\n12345");
    std::thread::sleep(Duration::from_millis(100));
    let file = cfg.path().join("r.png");
    fs::write(&file, png([255, 0, 0], 2, 2)).unwrap();
    let host = s.host();
    let child = Command::new(bin())
        .args([
            "send",
            "--json",
            "-j",
            "1",
            "--host",
            &host,
            file.to_str().unwrap(),
        ])
        .env("XDG_CONFIG_HOME", cfg.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The client was turned away at least once before the slot frees up.
    let turned_away = s.wait_log("ERR busy (connection limit 1)", Duration::from_secs(10));
    assert!(turned_away.is_some(), "{}", s.log_text());
    blocker.send(b"67890");
    assert_eq!(common::conn::code(&blocker.line()), "not-an-image");
    drop(blocker);
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("\"result\":\"stored\""), "{stdout}");
}

#[test]
fn send_gives_up_after_bounded_retries() {
    // Another upload holds 900 of the 1000 bytes of memory budget, at a
    // minimum rate low enough that it is never cut or evicted meanwhile: every
    // attempt of the client's upload gets the transient ERR busy.
    let s = TestServer::start(&["--max-memory", "1000", "--min-rate", "1"]);
    let holder = common::budget::hold_memory(&s, 900);
    let cfg = tempfile::tempdir().unwrap();
    let file = cfg.path().join("n.png");
    let image = common::fixtures::noise_png(8, 8, 3);
    assert!((100..=1000).contains(&image.len()), "{}", image.len());
    fs::write(&file, image).unwrap();
    let started = std::time::Instant::now();
    let out = run(
        &[
            "send",
            "--json",
            "--host",
            &s.host(),
            file.to_str().unwrap(),
        ],
        cfg.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("\"error\":\"busy\"") && stdout.contains("\"attempts\":5"),
        "{stdout}"
    );
    // 0.2 + 0.4 + 0.8 + 1.6 s of backoff between the five attempts.
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "{:?}",
        started.elapsed()
    );
    drop(holder);
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let images = tempfile::tempdir().unwrap();
    for i in 0..200 {
        fs::write(
            images.path().join(format!("{i:03}.png")),
            png([i as u8, 0, 0], 1, 1),
        )
        .unwrap();
    }
    let mut child = Command::new(bin())
        .args(["classify", images.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Runs `colorsort ARGS` like `run`, with stdout into a pipe shrunk to
/// [`shrink_pipe`]'s size, read up to its first line and then closed, as
/// `| head -1` does. Returns the exit status, that line and stderr.
fn run_into_head(args: &[&str], config: &Path) -> (ExitStatus, String, String) {
    let (mut reader, writer) = std::io::pipe().unwrap();
    shrink_pipe(&writer);
    let mut child = Command::new(bin())
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("COLORSORT_HOST")
        .env_remove("COLORSORT_PIN")
        .env_remove("COLORSORT_KNOWN_HOSTS")
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while reader.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    drop(reader);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (child.wait().unwrap(), text(&first), stderr)
}

/// Shrinks the pipe that `writer` writes into to its least, one page, and
/// returns the bytes it now holds.
fn shrink_pipe(writer: &std::io::PipeWriter) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl(2) with F_SETPIPE_SZ takes the descriptor, which
    // `writer` keeps open, and an integer; it touches no memory of ours.
    let size = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, 1) };
    assert!(
        size > 0,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    size as usize
}

#[test]
fn send_into_a_closed_stdout_sends_everything_and_exits_by_its_uploads() {
    // `send DIR | head -1`: the report outgrows the pipe, so send writes
    // into it after head is gone, whatever the timing (it cannot write more
    // than the pipe holds, plus the line read, before then). It must go on
    // sending, and exit by what it stored.
    let s = TestServer::start(&[]);
    let cfg = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let probe = std::io::pipe().unwrap().1;
    let capacity = shrink_pipe(&probe);
    drop(probe);
    // Each report line names the local path and the stored one, over 200
    // bytes with these names: the report is more than twice the pipe.
    let stem = "x".repeat(100);
    let files = 2 * capacity / 200 + 10;
    for i in 0..files {
        let name = format!("{i:04}-{stem}.png");
        fs::write(
            photos.path().join(name),
            png([200, 10, (i % 200) as u8], 2, 2),
        )
        .unwrap();
    }
    let dir = photos.path().to_str().unwrap();
    let host = s.host();
    let args = ["send", "-j", "2", "--host", &host, dir];

    let (status, first, stderr) = run_into_head(&args, cfg.path());
    assert!(first.contains(": stored red/"), "{first}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(s.files("red").len(), files, "every file was sent: {stderr}");
    assert!(!stderr.contains("cannot write"), "{stderr}");

    // Again, with one image the server refuses: the others are duplicates,
    // and the exit code is that of the failure, report or no report.
    fs::write(
        photos.path().join("broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let (status, first, stderr) = run_into_head(&args, cfg.path());
    assert!(!first.is_empty(), "{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(s.files("red").len(), files);
}

#[test]
fn send_with_an_unwritable_stdout_sends_everything_and_fails() {
    // Not a closed pipe but a failing one (a full disk under `> FILE`): the
    // report asked for is lost, which send says once and exits 1 for, after
    // sending every file all the same.
    let s = TestServer::start(&[]);
    let cfg = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    for i in 0..4u8 {
        fs::write(
            photos.path().join(format!("{i}.png")),
            png([220, 5, i], 2, 2),
        )
        .unwrap();
    }
    let out = Command::new(bin())
        .args(["send", "--host", &s.host(), photos.path().to_str().unwrap()])
        .env("XDG_CONFIG_HOME", cfg.path())
        .env_remove("COLORSORT_HOST")
        .env_remove("COLORSORT_PIN")
        .env_remove("COLORSORT_KNOWN_HOSTS")
        .stdout(fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("colorsort: cannot write output: ").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("sending goes on"), "{stderr}");
    assert_eq!(s.files("red").len(), 4);
}

/// Runs `colorsort ARGS`, killing it if it has not finished within
/// `limit`: a hang fails the test instead of stalling it.
fn run_within(args: &[&str], config: &Path, limit: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("COLORSORT_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes on their own threads, so that a full pipe cannot
    // stall the child while the deadline is watched here.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("colorsort {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

#[test]
fn classify_on_many_threads_prints_in_input_order() {
    let cfg = tempfile::tempdir().unwrap();
    let images = tempfile::tempdir().unwrap();
    // Sizes that vary from file to file, so that later files often finish
    // before earlier ones.
    let mut names = Vec::new();
    for i in 0..120u32 {
        let side = [1, 300, 4, 120, 2, 40][i as usize % 6];
        let name = format!("{i:03}.png");
        fs::write(
            images.path().join(&name),
            common::fixtures::noise_png(side, side, i),
        )
        .unwrap();
        names.push(name);
    }
    let dir = images.path().to_str().unwrap();
    let one = run_within(
        &["classify", "-j", "1", dir],
        cfg.path(),
        Duration::from_secs(120),
    );
    assert!(one.status.success(), "{}", text(&one.stderr));
    let lines: Vec<String> = text(&one.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), names.len());
    for (line, name) in lines.iter().zip(&names) {
        let want = format!("{}", images.path().join(name).display());
        assert_eq!(line.split(' ').next(), Some(want.as_str()), "{line}");
    }
    for jobs in ["4", "16"] {
        let many = run_within(
            &["classify", "-j", jobs, dir],
            cfg.path(),
            Duration::from_secs(120),
        );
        assert!(many.status.success(), "-j {jobs}: {}", text(&many.stderr));
        assert_eq!(text(&many.stdout), text(&one.stdout), "-j {jobs}");
        assert!(many.stderr.is_empty(), "{}", text(&many.stderr));
    }
    let default = run_within(&["classify", dir], cfg.path(), Duration::from_secs(120));
    assert_eq!(text(&default.stdout), text(&one.stdout), "default -j");
}

#[test]
fn classify_exit_codes_do_not_depend_on_the_jobs() {
    let cfg = tempfile::tempdir().unwrap();
    let images = tempfile::tempdir().unwrap();
    let good = [
        ("a.png", [255, 0, 0]),
        ("b.png", [0, 255, 0]),
        ("d.png", [0, 0, 255]),
        ("e.png", [9, 9, 9]),
    ];
    for (name, rgb) in good {
        fs::write(images.path().join(name), png(rgb, 50, 50)).unwrap();
    }
    fs::copy(
        test_data("images/fail_truncated.png"),
        images.path().join("c.png"),
    )
    .unwrap();
    let path = |name: &str| images.path().join(name).to_str().unwrap().to_string();
    let missing = path("missing.png");
    let dir = path("");
    // Arguments after the jobs, exit code, files printed, files reported.
    type Case<'a> = (Vec<&'a str>, i32, &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            vec![&dir],
            1,
            &["a.png", "b.png", "d.png", "e.png"],
            &["c.png"],
        ),
        (
            vec![&missing, &dir],
            1,
            &["a.png", "b.png", "d.png", "e.png"],
            &["missing.png", "c.png"],
        ),
    ];
    let all_good: Vec<String> = good.iter().map(|(n, _)| path(n)).collect();
    for jobs in ["1", "2", "4"] {
        for (rest, code, printed, reported) in cases {
            let mut args = vec!["classify", "-j", jobs];
            args.extend(rest);
            let out = run_within(&args, cfg.path(), Duration::from_secs(60));
            assert_eq!(out.status.code(), Some(*code), "-j {jobs} {rest:?}");
            let stdout = text(&out.stdout);
            let files: Vec<&str> = stdout
                .lines()
                .map(|l| l.split(' ').next().unwrap().rsplit('/').next().unwrap())
                .collect();
            assert_eq!(files, *printed, "-j {jobs} {rest:?}");
            let stderr = text(&out.stderr);
            let named: Vec<&str> = stderr
                .lines()
                .map(|l| l.split(": ").nth(1).unwrap().rsplit('/').next().unwrap())
                .collect();
            assert_eq!(named, *reported, "-j {jobs} {rest:?}: {stderr}");
            assert!(
                stderr.lines().all(|l| l.starts_with("colorsort: ")),
                "{stderr}"
            );
        }
        let mut args = vec!["classify", "-j", jobs];
        args.extend(all_good.iter().map(String::as_str));
        let out = run_within(&args, cfg.path(), Duration::from_secs(60));
        assert_eq!(
            out.status.code(),
            Some(0),
            "-j {jobs}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).lines().count(), all_good.len());
    }
}

#[test]
fn classify_refuses_bad_jobs_and_memory_flags() {
    let cfg = tempfile::tempdir().unwrap();
    let image = test_data("images/red_solid.png");
    let image = image.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["-j", "0"],
        &["-j", "abc"],
        &["-j", "-1"],
        &["--jobs", "0"],
        &["-j"],
        &["--max-memory", "0"],
        &["--max-memory", "lots"],
        &["--max-pixels", "0"],
    ];
    for flags in cases {
        let mut args = vec!["classify"];
        args.extend(*flags);
        args.push(image);
        let out = run(&args, cfg.path());
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(out.stdout.is_empty(), "{flags:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("colorsort: ") && !err.contains("panicked"),
            "{flags:?}: {err}"
        );
    }
    let out = run(
        &["classify", "-j", "3", "--max-memory", "64M", image],
        cfg.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn classify_fails_images_too_large_for_the_memory_limit() {
    let cfg = tempfile::tempdir().unwrap();
    let images = tempfile::tempdir().unwrap();
    // A decode is charged its worker's address space (8 MiB), what opening
    // the image may take (4 MiB), the decoder's fixed state (1 MiB) and the
    // pixels: 1000 x 1000 RGB, 3 MB of pixels, is over the 14M limit; the
    // small ones fit it, one at a time.
    for i in 0..12u32 {
        let (name, side) = if i % 3 == 1 {
            (format!("{i:02}-large.png"), 1000)
        } else {
            (format!("{i:02}-small.png"), 16)
        };
        fs::write(images.path().join(name), png([200, 10, 10], side, side)).unwrap();
    }
    let dir = images.path().to_str().unwrap();
    for jobs in ["1", "4"] {
        let args = ["classify", "-j", jobs, "--max-memory", "14M", dir];
        let out = run_within(&args, cfg.path(), Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1), "-j {jobs}");
        let stdout = text(&out.stdout);
        assert_eq!(stdout.lines().count(), 8, "-j {jobs}: {stdout}");
        assert!(
            stdout.lines().all(|l| l.contains("-small.png red ")),
            "{stdout}"
        );
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 4, "-j {jobs}: {stderr}");
        for line in stderr.lines() {
            assert!(
                line.contains("-large.png: a 1000x1000 image needs")
                    && line.ends_with("over the memory limit of 14680064 bytes (--max-memory)"),
                "{line}"
            );
        }
    }
    // 20 MiB holds one large decode at a time but not two: they take turns
    // instead of failing or waiting on each other for ever.
    let out = run_within(
        &["classify", "-j", "4", "--max-memory", "20M", dir],
        cfg.path(),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 12);
    // A file larger than the whole limit is refused before it is read.
    let big = images.path().join("01-large.png");
    let size = fs::metadata(&big).unwrap().len();
    let limit = (size / 2).to_string();
    let out = run_within(
        &["classify", "--max-memory", &limit, big.to_str().unwrap()],
        cfg.path(),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "the file's {size} bytes are over the memory limit"
        )),
        "{}",
        text(&out.stderr)
    );
}
