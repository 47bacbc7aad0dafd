//! The server over raw TCP: every command, every reply, every error code,
//! framing, concurrency and shared data directories.

mod common {
    pub mod budget;
    pub mod conn;
    pub mod fixtures;
    pub mod procfs;
    pub mod server;
    pub mod stored;
    pub mod wait;
}

use common::conn::{Conn, code};
use common::fixtures::{png, seal};
use common::server::TestServer;
use common::stored::files_in;
use std::fs;
use std::thread;
use std::time::Duration;

#[test]
fn simple_commands() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    assert_eq!(c.ask("PING"), "OK PONG");
    assert_eq!(c.ask("ping"), "OK PONG");
    assert!(c.ask("HELP").starts_with("OK commands: PING"));
    let key = c.ask("KEY");
    let want =
        fs::read_to_string(common::fixtures::test_data("keys/test-only-server-key.pub")).unwrap();
    let want_blob = want.split_whitespace().nth(1).unwrap();
    assert_eq!(key, format!("OK ssh-rsa {want_blob} colorsort"));
    assert_eq!(c.ask("STATS"), "OK red=0 green=0 blue=0 not_trusted=0");
    assert_eq!(c.ask("QUIT"), "OK BYE");
    assert!(c.closed());
}

#[test]
fn put_files_plaintext_in_not_trusted_byte_for_byte() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    let image = png([250, 10, 10], 8, 8);
    assert_eq!(
        c.upload("PUT", "red.png", &image),
        "OK not_trusted/red.png r=250.0 g=10.0 b=10.0"
    );
    assert_eq!(fs::read(s.data.join("not_trusted/red.png")).unwrap(), image);
    assert_eq!(c.ask("STATS"), "OK red=0 green=0 blue=0 not_trusted=1");
}

#[test]
fn seal_files_by_colour_and_stores_the_plaintext() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    let cases = [
        ([200, 30, 40], "red"),
        ([10, 220, 30], "green"),
        ([0, 1, 2], "blue"),
        ([7, 7, 7], "red"),
    ];
    for (i, (rgb, class)) in cases.into_iter().enumerate() {
        let image = png(rgb, 5, 3);
        let name = format!("img{i}.png");
        let reply = c.upload("SEAL", &name, &seal(&image));
        let [r, g, b] = rgb.map(f64::from);
        assert_eq!(
            reply,
            format!("OK {class}/{name} r={r:.1} g={g:.1} b={b:.1}")
        );
        assert_eq!(fs::read(s.data.join(class).join(&name)).unwrap(), image);
    }
    assert_eq!(c.ask("STATS"), "OK red=2 green=1 blue=1 not_trusted=0");
}

#[test]
fn fragmented_writes_are_reassembled() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    let image = png([1, 2, 200], 4, 4);
    let sealed = seal(&image);
    let mut msg = format!("SEAL frag.png {}\r\n", sealed.len()).into_bytes();
    msg.extend_from_slice(&sealed);
    // One byte at a time through the request line, each read by the server
    // before the next is sent, then odd-sized pieces.
    for (i, chunk) in msg.chunks(7).enumerate() {
        if i < 4 {
            for b in chunk {
                c.send(&[*b]);
                assert!(s.wait_read(&c, Duration::from_secs(5)));
            }
        } else {
            c.send(chunk);
        }
    }
    assert_eq!(c.line(), "OK blue/frag.png r=1.0 g=2.0 b=200.0");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    let a = png([255, 0, 0], 2, 2);
    let b = seal(&png([0, 255, 0], 2, 2));
    let mut msg = b"PING\nKEY\r\n".to_vec();
    msg.extend(format!("PUT a.png {}\n", a.len()).bytes());
    msg.extend(&a);
    msg.extend(b"NOPE\n");
    msg.extend(format!("SEAL b.png {}\n", b.len()).bytes());
    msg.extend(&b);
    msg.extend(b"PUT ../x 3\nabcSTATS\nQUIT\n");
    c.send(&msg);
    assert_eq!(c.line(), "OK PONG");
    assert!(c.line().starts_with("OK ssh-rsa "));
    assert!(c.line().starts_with("OK not_trusted/a.png "));
    assert_eq!(code(&c.line()), "unknown-command");
    assert!(c.line().starts_with("OK green/b.png "));
    assert_eq!(code(&c.line()), "bad-name");
    assert_eq!(c.line(), "OK red=0 green=1 blue=0 not_trusted=1");
    assert_eq!(c.line(), "OK BYE");
    assert!(c.closed());
}

#[test]
fn truncated_upload_stores_nothing() {
    let s = TestServer::start(&[]);
    let image = seal(&png([255, 0, 0], 64, 64));
    {
        let mut c = s.connect();
        let mut msg = format!("SEAL cut.png {}\r\n", image.len()).into_bytes();
        msg.extend_from_slice(&image[..image.len() / 2]);
        c.send(&msg);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(
            c.closed(),
            "the server closes a connection that ends mid-payload"
        );
    }
    // The server is still there, and nothing was written anywhere.
    assert_eq!(
        s.connect().ask("STATS"),
        "OK red=0 green=0 blue=0 not_trusted=0"
    );
    for folder in ["red", "green", "blue", "not_trusted"] {
        assert!(s.files(folder).is_empty(), "{folder}");
    }
    assert_no_staged_files(&s);
}

/// Each server's staging folder holds only its lock file when idle.
fn assert_no_staged_files(s: &TestServer) {
    for instance in files_in(&s.data.join(".staging")) {
        let path = s.data.join(".staging").join(&instance);
        if path.is_dir() {
            assert_eq!(files_in(&path), ["lock"], "staging folder {instance}");
        }
    }
}

#[test]
fn every_error_code() {
    let s = TestServer::start(&["--max-pixels", "1000", "--max-upload", "100000"]);
    let mut c = s.connect();
    let good = png([0, 0, 255], 4, 4);

    assert_eq!(code(&c.ask("FROB")), "unknown-command");
    assert_eq!(code(&c.ask("PING now")), "bad-request");
    assert_eq!(code(&c.ask("")), "bad-request");
    assert_eq!(
        code(&c.upload("PUT", "../../etc/passwd", &good)),
        "bad-name"
    );
    assert_eq!(
        code(&c.upload("PUT", "junk.txt", b"hello, not an image")),
        "not-an-image"
    );
    assert_eq!(
        code(&c.upload("PUT", "big.png", &png([1, 2, 3], 40, 40))),
        "too-many-pixels"
    );
    let wrong = colorsort::age::encrypt(&good, &other_key()).unwrap();
    assert_eq!(code(&c.upload("SEAL", "x.png", &wrong)), "decrypt-failed");
    assert_eq!(
        code(&c.upload("SEAL", "x.png", &good)),
        "decrypt-failed",
        "plaintext sent as SEAL"
    );
    // After all of that, the same connection still works.
    assert_eq!(c.ask("PING"), "OK PONG");
    assert!(s.files("not_trusted").is_empty() && s.files("blue").is_empty());

    // Codes that close the connection.
    let mut c = s.connect();
    assert_eq!(code(&c.ask("PUT x.png 100001")), "too-large");
    assert!(c.closed());
    let mut c = s.connect();
    assert_eq!(code(&c.ask("PUT x.png twelve")), "bad-request");
    assert!(c.closed());
    let mut c = s.connect();
    c.send(&vec![b'A'; 2000]);
    assert_eq!(code(&c.line()), "line-too-long");
    assert!(c.closed());
}

fn other_key() -> colorsort::identity::PublicKey {
    let pem =
        fs::read_to_string(common::fixtures::test_data("keys/test-only-other-key.pem")).unwrap();
    colorsort::identity::Identity::from_pem(&pem)
        .unwrap()
        .public()
        .clone()
}

#[test]
fn timeout_closes_an_idle_or_slow_connection() {
    let s = TestServer::start(&["--timeout", "1"]);
    let mut idle = s.connect();
    let mut slow = s.connect();
    slow.send(b"PUT slow.png 1000\r\nabc");
    let started = std::time::Instant::now();
    assert_eq!(code(&idle.line()), "timeout");
    assert!(idle.closed());
    assert_eq!(code(&slow.line()), "timeout");
    assert!(slow.closed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn storage_failure_is_reported_and_nothing_claimed() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    // Replace a class folder by a file: publishing into it must fail.
    fs::remove_dir(s.data.join("red")).unwrap();
    fs::write(s.data.join("red"), b"in the way").unwrap();
    assert_eq!(
        code(&c.upload("SEAL", "r.png", &seal(&png([255, 0, 0], 2, 2)))),
        "storage-failed"
    );
    assert_eq!(c.ask("PING"), "OK PONG");
    assert_no_staged_files(&s);
    assert!(
        s.wait_log("storage-failed", Duration::from_secs(5))
            .is_some(),
        "the log says why"
    );
}

#[test]
fn busy_when_every_slot_is_in_a_request() {
    // At 1 byte/s the first upload is never far enough behind the minimum
    // rate to be evicted for the second connection.
    let s = TestServer::start(&["--max-connections", "1", "--min-rate", "1"]);
    let mut first = s.connect();
    first.send(b"PUT slow.png 100\r\npartial");
    assert!(s.wait_read(&first, Duration::from_secs(5)));
    let mut second = s.connect();
    assert_eq!(code(&second.line()), "busy");
    assert!(second.closed());
    first.send(&[0u8; 93]);
    assert_eq!(code(&first.line()), "not-an-image");
}

#[test]
fn busy_when_out_of_memory_keeps_the_connection() {
    let s = TestServer::start(&["--max-memory", "1000", "--min-rate", "1"]);
    let mut c = s.connect();
    // An image whose decode the budget could never hold is refused for good:
    // even opening it in a worker takes more.
    let wide = png([5, 5, 5], 100, 100);
    assert!(wide.len() < 1000, "{}", wide.len());
    assert_eq!(code(&c.upload("PUT", "wide.png", &wide)), "too-complex");
    // Another upload holds 900 bytes of the budget while it trickles in.
    let holder = common::budget::hold_memory(&s, 900);
    let image = common::fixtures::noise_png(8, 8, 1);
    assert!((100..=1000).contains(&image.len()), "{}", image.len());
    assert_eq!(code(&c.upload("PUT", "g.png", &image)), "busy");
    assert_eq!(c.ask("PING"), "OK PONG");
    // An upload the budget could never hold is refused for good too.
    assert_eq!(code(&c.ask("PUT big.png 1001")), "too-large");
    assert!(c.closed());
    drop(holder);
}

#[test]
fn idle_connection_is_evicted_for_a_newcomer_when_full() {
    let s = TestServer::start(&["--max-connections", "2"]);
    // Each connection is waited for until its thread runs: the oldest is
    // idle first.
    let threads = common::server::SERVER_THREADS;
    assert!(s.wait_threads(threads, Duration::from_secs(5)));
    let mut oldest = s.connect();
    assert!(s.wait_threads(threads + 1, Duration::from_secs(5)));
    let mut newer = s.connect();
    assert!(s.wait_threads(threads + 2, Duration::from_secs(5)));
    let mut newcomer = s.connect();
    assert_eq!(newcomer.ask("PING"), "OK PONG");
    assert_eq!(code(&oldest.line()), "busy");
    assert!(oldest.closed());
    assert_eq!(newer.ask("PING"), "OK PONG");
}

#[test]
fn names_are_checked_and_never_overwrite() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    let image = png([9, 9, 99], 2, 2);
    for bad in [
        "../../etc/passwd",
        "/abs",
        "a/b",
        "a\\b",
        ".",
        "..",
        ".hidden",
    ] {
        assert_eq!(code(&c.upload("PUT", bad, &image)), "bad-name", "{bad}");
    }
    let long = "n".repeat(300);
    assert_eq!(code(&c.upload("PUT", &long, &image)), "bad-name");
    let mut nul = b"PUT a\x00b 4\r\n".to_vec();
    nul.extend_from_slice(b"abcd");
    c.send(&nul);
    assert_eq!(code(&c.line()), "bad-name");
    let mut latin1 = b"PUT caf\xe9.png 4\r\n".to_vec();
    latin1.extend_from_slice(b"abcd");
    c.send(&latin1);
    assert_eq!(code(&c.line()), "bad-name");

    let names: Vec<String> = (0..3)
        .map(|i| c.upload("PUT", "same.png", &png([9, 9, 99], 2, 3 + i)))
        .collect();
    assert!(names[0].starts_with("OK not_trusted/same.png "));
    assert!(names[1].starts_with("OK not_trusted/same-1.png "));
    assert!(names[2].starts_with("OK not_trusted/same-2.png "));
    assert!(
        c.upload("PUT", "my(photo).png", &image)
            .starts_with("OK not_trusted/my_photo_.png ")
    );
    let generated = c.upload("PUT", "%%%", &png([9, 9, 99], 5, 5));
    assert!(
        generated.starts_with("OK not_trusted/upload-") && generated.contains(".png "),
        "{generated}"
    );
    assert_eq!(s.files("not_trusted").len(), 5);
    // Nothing landed anywhere else in the data directory.
    let top = files_in(&s.data);
    assert_eq!(
        top,
        [
            ".index",
            ".staging",
            "blue",
            "green",
            "key.pem",
            "key.pub",
            "not_trusted",
            "red",
            "signatures"
        ]
    );
    for folder in ["red", "green", "blue"] {
        assert!(s.files(folder).is_empty(), "{folder}");
    }
    for folder in common::stored::CLASS_FOLDERS {
        assert!(
            s.files(&format!("signatures/{folder}")).is_empty(),
            "{folder}"
        );
    }
}

#[test]
fn sixteen_concurrent_clients() {
    let s = TestServer::start(&[]);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let addr = s.addr;
            thread::spawn(move || {
                let mut c = Conn::new(std::net::TcpStream::connect(addr).unwrap());
                let rgb = [[200, 0, 0], [0, 200, 0], [0, 0, 200]][t % 3];
                (0..5)
                    .map(|i| {
                        let image = png(rgb, 3 + i as u32, 3 + t as u32);
                        let reply = c.upload("SEAL", "same-name.png", &seal(&image));
                        assert!(reply.starts_with("OK "), "{reply}");
                        (reply.split(' ').nth(1).unwrap().to_string(), image)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let stored: Vec<(String, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut paths: Vec<&String> = stored.iter().map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 80, "every upload got its own name");
    for (path, image) in &stored {
        assert_eq!(&fs::read(s.data.join(path)).unwrap(), image, "{path}");
    }
    assert_eq!(
        s.connect().ask("STATS"),
        "OK red=30 green=25 blue=25 not_trusted=0"
    );
}

#[test]
fn two_servers_share_one_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    let a = TestServer::start_in(dir.path(), &[]);
    let b = TestServer::start_in(dir.path(), &[]);
    let (mut ca, mut cb) = (a.connect(), b.connect());
    assert_eq!(ca.ask("KEY"), cb.ask("KEY"));
    let image = |i: u32| png([250, 0, 0], 3, 3 + i);
    let mut replies = Vec::new();
    for i in 0..5 {
        replies.push(ca.upload("SEAL", "shared.png", &seal(&image(2 * i))));
        replies.push(cb.upload("SEAL", "shared.png", &seal(&image(2 * i + 1))));
    }
    replies.sort();
    replies.dedup();
    assert_eq!(replies.len(), 10, "{replies:?}");
    assert_eq!(a.files("red").len(), 10);
    // Each server counts the other's files too.
    assert_eq!(ca.ask("STATS"), "OK red=10 green=0 blue=0 not_trusted=0");
    assert_eq!(cb.ask("STATS"), "OK red=10 green=0 blue=0 not_trusted=0");
    // Starting a third server must not sweep the running servers' staging.
    let c = TestServer::start_in(dir.path(), &[]);
    assert!(
        c.connect()
            .upload("SEAL", "third.png", &seal(&image(20)))
            .starts_with("OK red/third.png")
    );
    assert!(
        ca.upload("SEAL", "after.png", &seal(&image(21)))
            .starts_with("OK red/after.png")
    );
    assert_eq!(
        files_in(&dir.path().join(".staging"))
            .iter()
            .filter(|f| !f.starts_with('.'))
            .count(),
        3
    );
}

#[test]
fn first_start_generates_one_key_even_when_racing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = thread::scope(|scope| {
        let a = scope.spawn(|| TestServer::start_in(dir.path(), &["--key-bits", "2048"]));
        let b = scope.spawn(|| TestServer::start_in(dir.path(), &["--key-bits", "2048"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (ka, kb) = (a.connect().ask("KEY"), b.connect().ask("KEY"));
    assert_eq!(
        ka, kb,
        "both servers must serve the one key that was published"
    );
    let pem = dir.path().join("key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let public = fs::read_to_string(dir.path().join("key.pub")).unwrap();
    assert_eq!(format!("OK {}", public.trim_end()), ka);
    drop((a, b));
    // A restart loads the same key.
    let again = TestServer::start_in(dir.path(), &[]);
    assert_eq!(again.connect().ask("KEY"), ka);
}

#[test]
fn sigterm_stops_cleanly_after_in_flight_upload() {
    let mut s = TestServer::start(&[]);
    let mut idle = s.connect();
    assert_eq!(idle.ask("PING"), "OK PONG");
    let image = png([0, 0, 255], 32, 32);
    let sealed = seal(&image);
    let mut busy = s.connect();
    let head = format!("SEAL inflight.png {}\r\n", sealed.len());
    busy.send(head.as_bytes());
    busy.send(&sealed[..10]);
    assert!(s.wait_read(&busy, Duration::from_secs(5)));
    s.signal("TERM");
    // The idle connection is told once the server is stopping; the rest of
    // the upload comes after that.
    assert_eq!(
        code(&idle.line()),
        "busy",
        "an idle connection is told why it closes"
    );
    busy.send(&sealed[10..]);
    assert_eq!(busy.line(), "OK blue/inflight.png r=0.0 g=0.0 b=255.0");
    let status = s
        .wait_exit(Duration::from_secs(6))
        .expect("server did not stop");
    assert!(status.success(), "{status}");
    assert!(s.data.join("blue/inflight.png").exists());
    assert!(
        std::net::TcpStream::connect(s.addr).is_err(),
        "no longer listening"
    );
}

#[test]
fn log_has_one_line_per_request() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    c.ask("PING");
    c.upload("PUT", "logged.png", &png([1, 1, 1], 2, 2));
    let log = s
        .wait_log(" PUT logged.png ", Duration::from_secs(5))
        .unwrap_or_else(|| s.log_text());
    assert!(
        log.lines()
            .any(|l| l.contains(" PING -> OK PONG ") && l.contains("127.0.0.1:")),
        "{log}"
    );
    let put = log
        .lines()
        .find(|l| l.contains(" PUT logged.png "))
        .unwrap();
    assert!(
        put.contains("-> OK not_trusted/logged.png") && put.contains("ms"),
        "{put}"
    );
}

#[test]
fn resending_content_is_idempotent_across_restarts_and_servers() {
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    let image = png([0, 180, 20], 6, 6);
    let first = {
        let s = TestServer::start_in(dir.path(), &[]);
        let mut c = s.connect();
        let first = c.upload("SEAL", "g.png", &seal(&image));
        assert_eq!(first, "OK green/g.png r=0.0 g=180.0 b=20.0");
        // Same content, other name, sealed afresh: the stored copy is named.
        assert_eq!(
            c.upload("SEAL", "other.png", &seal(&image)),
            format!("{first} dup")
        );
        // Dedupe follows trust: a plain upload of sealed content is filed
        // again in not_trusted/, never told of the sealed copy.
        assert_eq!(
            c.upload("PUT", "p.png", &image),
            "OK not_trusted/p.png r=0.0 g=180.0 b=20.0"
        );
        first
    };
    // After a restart, and from a second server on the same directory.
    let a = TestServer::start_in(dir.path(), &[]);
    let b = TestServer::start_in(dir.path(), &[]);
    assert_eq!(
        a.connect().upload("SEAL", "again.png", &seal(&image)),
        format!("{first} dup")
    );
    assert_eq!(
        b.connect().upload("SEAL", "again.png", &seal(&image)),
        format!("{first} dup")
    );
    // Clients racing with new content, on both servers, leave one copy.
    let fresh = png([1, 2, 250], 9, 9);
    let replies: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let server = if i % 2 == 0 { &a } else { &b };
                let (mut c, sealed) = (server.connect(), seal(&fresh));
                scope.spawn(move || c.upload("SEAL", "race.png", &sealed))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let originals = replies.iter().filter(|r| !r.ends_with(" dup")).count();
    assert_eq!(originals, 1, "{replies:?}");
    assert!(
        replies.iter().all(|r| r.starts_with("OK blue/race")),
        "{replies:?}"
    );
    assert_eq!(a.files("blue").len(), 1);
    assert_eq!(a.files("green"), ["g.png"]);
    assert_eq!(a.files("not_trusted"), ["p.png"]);
}

#[test]
fn index_entries_from_before_versions_are_read_and_unknown_ones_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    let index = dir.path().join(".index/sealed");
    fs::create_dir_all(&index).unwrap();
    fs::create_dir_all(dir.path().join("red")).unwrap();
    let digest = |bytes: &[u8]| colorsort::store::Digest::of(bytes).hex();
    // A copy filed by a server from before versioned entries: its entry is
    // the reply text of the day.
    let old = png([200, 10, 0], 4, 4);
    fs::write(dir.path().join("red/old.png"), &old).unwrap();
    std::os::unix::fs::symlink("red/old.png r=200.0 g=10.0 b=0.0", index.join(digest(&old)))
        .unwrap();
    // One in a format from the future, naming a copy that is there.
    let new = png([210, 10, 0], 4, 4);
    fs::write(dir.path().join("red/new.png"), &new).unwrap();
    let future = "v2 red/new.png 210 10 0 more";
    std::os::unix::fs::symlink(future, index.join(digest(&new))).unwrap();

    let s = TestServer::start_in(dir.path(), &[]);
    let mut c = s.connect();
    assert_eq!(
        c.upload("SEAL", "again.png", &seal(&old)),
        "OK red/old.png r=200.0 g=10.0 b=0.0 dup"
    );
    // The entry it cannot read is neither believed nor replaced: the
    // content is filed again, and the log says it is not indexed.
    assert_eq!(
        c.upload("SEAL", "again.png", &seal(&new)),
        "OK red/again.png r=210.0 g=10.0 b=0.0"
    );
    let entry = index.join(digest(&new));
    assert_eq!(fs::read_link(&entry).unwrap().to_str(), Some(future));
    let said = format!(
        "stored, but not indexed: index entry {} is not one this server reads",
        entry.display()
    );
    assert!(
        s.wait_log(&said, Duration::from_secs(5)).is_some(),
        "{}",
        s.log_text()
    );
    assert_eq!(s.files("red"), ["again.png", "new.png", "old.png"]);
}

#[test]
fn servers_racing_to_replace_a_stale_entry_leave_one_copy() {
    // The entry outlives its file; then clients of two servers on one data
    // directory send the content at once, each under its own name, so that
    // every upload must replace the stale entry or lose to one that did.
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    let (a, b) = (
        TestServer::start_in(dir.path(), &[]),
        TestServer::start_in(dir.path(), &[]),
    );
    let image = png([10, 20, 240], 7, 7);
    for round in 0..5 {
        let gone = a
            .connect()
            .upload("SEAL", &format!("gone{round}.png"), &seal(&image));
        assert!(!gone.ends_with(" dup"), "{gone}");
        fs::remove_file(a.data.join(gone.split(' ').nth(1).unwrap())).unwrap();
        let replies: Vec<String> = thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let server = if i % 2 == 0 { &a } else { &b };
                    let (mut c, sealed) = (server.connect(), seal(&image));
                    let name = format!("r{round}-{i}.png");
                    scope.spawn(move || c.upload("SEAL", &name, &sealed))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let originals: Vec<&String> = replies.iter().filter(|r| !r.ends_with(" dup")).collect();
        assert_eq!(originals.len(), 1, "{replies:?}");
        let kept = originals[0].split(' ').nth(1).unwrap();
        assert!(
            replies.iter().all(|r| r.split(' ').nth(1) == Some(kept)),
            "{replies:?}"
        );
        assert_eq!(a.files("blue").len(), 1, "{replies:?}");
        assert!(!a.log_text().contains("not indexed"), "{}", a.log_text());
        assert!(!b.log_text().contains("not indexed"), "{}", b.log_text());
        fs::remove_file(a.data.join(kept)).unwrap();
    }
}
