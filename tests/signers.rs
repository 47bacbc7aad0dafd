//! Known senders over raw TCP, against the real server, with keys made and
//! signatures written by the real `ssh-keygen` at test time: signed uploads
//! filed by colour and naming their signer, their signatures kept where
//! `ssh-keygen -Y verify` accepts them, every refusal with the connection
//! kept in step and nothing stored, dedupe within a trust class, v1 mode,
//! and the allowed_signers file read at start and on SIGHUP. Skipped, with
//! a note on stderr, where ssh-keygen is not installed.

mod common {
    pub mod conn;
    pub mod fixtures;
    pub mod procfs;
    pub mod server;
    pub mod skip;
    pub mod ssh;
    pub mod stored;
    pub mod wait;
}

use common::conn::{Conn, code, signed_seal};
use common::fixtures::{png, seal};
use common::server::TestServer;
use common::ssh::SshKey;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NS: &str = "colorsort";
const WAIT: Duration = Duration::from_secs(10);

/// Keys made for one test, in a directory of their own.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn ed25519(&self, name: &str) -> SshKey {
        SshKey::generate(self.dir.path(), name, "ed25519", None)
    }

    fn rsa3072(&self, name: &str) -> SshKey {
        SshKey::generate(self.dir.path(), name, "rsa", Some(3072))
    }

    /// Writes an allowed_signers file of `lines` into the key directory.
    fn allowed(&self, lines: &[String]) -> PathBuf {
        let path = self.dir.path().join("allowed_signers");
        fs::write(&path, lines.concat()).unwrap();
        path
    }
}

/// A server whose data directory holds `allowed_signers` (or none).
fn server_with(allowed: Option<&str>, args: &[&str]) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    if let Some(text) = allowed {
        fs::write(dir.path().join("allowed_signers"), text).unwrap();
    }
    let s = TestServer::start_in(dir.path(), args);
    (dir, s)
}

fn sighup(s: &TestServer) {
    let pid = libc::pid_t::try_from(s.pid()).unwrap();
    // SAFETY: kill(2) with a child's pid and a signal number has no memory
    // effects in this process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

/// Counts of `needle` in the server's log.
fn log_count(s: &TestServer, needle: &str) -> usize {
    s.log_text().matches(needle).count()
}

/// Waits until the log holds `n` lines containing `needle`.
fn wait_log_count(s: &TestServer, needle: &str, n: usize) {
    let until = std::time::Instant::now() + WAIT;
    while log_count(s, needle) < n {
        assert!(
            std::time::Instant::now() < until,
            "no {n}x {needle:?} in the log:\n{}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn signed_uploads_are_filed_by_colour_and_name_their_signer() {
    if !common::ssh::ssh_keygen_installed("signed uploads") {
        return;
    }
    let keys = Keys::new();
    let (alice, bob) = (keys.ed25519("alice"), keys.rsa3072("bob"));
    let allowed = [
        alice.allowed("alice@example.com", ""),
        bob.allowed("\"bob \u{e9}quipe@example.com,robert\"", ""),
    ];
    let allowed_path = keys.allowed(&allowed);
    // In the data directory, the file turns known senders on by itself.
    let (_dir, s) = server_with(Some(&allowed.concat()), &[]);
    s.wait_log("known senders: on; 2 signer(s) listed in", WAIT)
        .expect("start-up line");
    let mut c = s.connect();
    assert_eq!(c.ask("POLICY"), "OK signers=on namespace=colorsort");

    let red = png([220, 20, 30], 6, 4);
    let green = png([10, 200, 40], 5, 5);
    let red_sig = alice.sign(&red, NS);
    let green_sig = bob.sign(&green, NS);
    assert_eq!(
        c.seal_signed("x.png", &red_sig, &seal(&red)),
        "OK red/x.png r=220.0 g=20.0 b=30.0 signer=alice@example.com"
    );
    // The principals as written, escaped into one token.
    let reply = c.seal_signed("g.png", &green_sig, &seal(&green));
    assert_eq!(
        reply,
        "OK green/g.png r=10.0 g=200.0 b=40.0 signer=bob\\x20\\xc3\\xa9quipe@example.com,robert"
    );
    let stored = colorsort::protocol::Stored::parse(reply.strip_prefix("OK ").unwrap()).unwrap();
    assert_eq!(
        stored.signer.as_deref(),
        Some("bob \u{e9}quipe@example.com,robert")
    );

    // The plaintext and, exactly as sent, its signature; ssh-keygen accepts
    // the pair for the principal the reply named.
    let data = &s.data;
    assert_eq!(fs::read(data.join("red/x.png")).unwrap(), red);
    assert_eq!(
        fs::read(data.join("signatures/red/x.png.sig")).unwrap(),
        red_sig
    );
    assert_eq!(
        fs::read(data.join("signatures/green/g.png.sig")).unwrap(),
        green_sig
    );
    let verifies = |principal: &str, sig: &str, image: &str| {
        common::ssh::ssh_keygen_verifies(
            &allowed_path,
            principal,
            NS,
            &data.join(sig),
            &data.join(image),
        )
    };
    assert!(verifies(
        "alice@example.com",
        "signatures/red/x.png.sig",
        "red/x.png"
    ));
    assert!(verifies(
        "robert",
        "signatures/green/g.png.sig",
        "green/g.png"
    ));
    assert!(!verifies("robert", "signatures/red/x.png.sig", "red/x.png"));
    // Signatures are not uploads.
    assert_eq!(c.ask("STATS"), "OK red=1 green=1 blue=0 not_trusted=0");

    // One audit line per upload: who, with which key, for what content,
    // stored where.
    let red_hash = colorsort::store::Digest::of(&red).hex();
    let audit = format!(
        "audit: filed red/x.png sha256:{red_hash} signer=alice@example.com key={} algorithm=ssh-ed25519 hash=sha512 namespace=colorsort",
        alice.fingerprint()
    );
    s.wait_log(&audit, WAIT).expect("audit line for alice");
    let audit = format!(
        "audit: filed green/g.png sha256:{} signer=bob\\x20\\xc3\\xa9quipe@example.com,robert key={} algorithm=ssh-rsa",
        colorsort::store::Digest::of(&green).hex(),
        bob.fingerprint()
    );
    s.wait_log(&audit, WAIT).expect("audit line for bob");
}

/// One refused upload: what is sent, the code, and whether the connection
/// must close.
struct Refusal {
    label: &'static str,
    bytes: Vec<u8>,
    code: &'static str,
    closes: bool,
    /// What the log must say (the reply may not).
    logged: Option<&'static str>,
}

#[test]
fn every_refusal_keeps_the_connection_in_step_and_stores_nothing() {
    if !common::ssh::ssh_keygen_installed("signed upload refusals") {
        return;
    }
    let keys = Keys::new();
    let alice = keys.ed25519("alice");
    let expired = keys.ed25519("expired");
    let later = keys.ed25519("later");
    let git_only = keys.ed25519("git-only");
    let mallory = keys.ed25519("mallory");
    let allowed = [
        alice.allowed("alice", ""),
        expired.allowed("old", "valid-before=\"20200101Z\""),
        later.allowed("future", "valid-after=\"99990101Z\""),
        git_only.allowed("gitter", "namespaces=\"git\""),
    ]
    .concat();
    let (_dir, s) = server_with(Some(&allowed), &["--max-upload", "1M"]);

    let image = png([30, 40, 220], 4, 4);
    let sealed = seal(&image);
    let other = png([1, 2, 3], 3, 3);
    let mut truncated = alice.sign(&image, NS);
    truncated.truncate(truncated.len() / 2);
    let signed = |label, sig: Vec<u8>, code, logged| Refusal {
        label,
        bytes: signed_seal("x.png", &sig, &sealed),
        code,
        closes: false,
        logged,
    };
    let line = |label, text: &str, code| Refusal {
        label,
        bytes: format!("{text}\r\n").into_bytes(),
        code,
        closes: true,
        logged: None,
    };
    let cases = [
        signed(
            "malformed",
            b"-----BEGIN SSH SIGNATURE-----\nnot base64!\n-----END SSH SIGNATURE-----\n".to_vec(),
            "bad-signature",
            None,
        ),
        signed("truncated", truncated, "bad-signature", None),
        signed(
            "wrong namespace",
            alice.sign(&image, "git"),
            "bad-signature",
            None,
        ),
        signed(
            "another file's signature",
            alice.sign(&other, NS),
            "bad-signature",
            None,
        ),
        signed(
            "signed over the sealed bytes, not the image",
            alice.sign(&sealed, NS),
            "bad-signature",
            None,
        ),
        signed(
            "unlisted",
            mallory.sign(&image, NS),
            "unknown-signer",
            Some("key is not an allowed signer"),
        ),
        signed(
            "expired",
            expired.sign(&image, NS),
            "unknown-signer",
            Some("key was allowed on line 2 until 2020-01-01T00:00:00Z"),
        ),
        signed(
            "not yet valid",
            later.sign(&image, NS),
            "unknown-signer",
            Some("key is allowed on line 3 from 9999-01-01T00:00:00Z on"),
        ),
        signed(
            "namespaces=\"git\"",
            git_only.sign(&image, NS),
            "unknown-signer",
            Some("key is allowed on line 4 for other namespaces"),
        ),
        Refusal {
            label: "bad name: signature and payload are both consumed",
            bytes: signed_seal("../x.png", &alice.sign(&image, NS), &sealed),
            code: "bad-name",
            closes: false,
            logged: None,
        },
        Refusal {
            label: "PUT with a signature",
            bytes: signed_seal("x.png", b"sig", &image)
                .strip_prefix(b"SEAL")
                .map(|rest| [b"PUT".as_slice(), rest].concat())
                .unwrap(),
            code: "bad-request",
            closes: true,
            logged: None,
        },
        line("SIGSIZE over the limit", "SEAL x.png 10 8193", "too-large"),
        line("SIGSIZE zero", "SEAL x.png 10 0", "bad-request"),
        line("SIGSIZE not a number", "SEAL x.png 10 1k", "bad-request"),
        line("SIZE over the limit", "SEAL x.png 2000000 10", "too-large"),
    ];
    let mut unknown_messages = Vec::new();
    for case in &cases {
        let mut c = s.connect();
        // The next request is sent at once: if the server read a byte too
        // many or too few, it would not be a PING.
        let mut bytes = case.bytes.clone();
        bytes.extend_from_slice(b"PING\r\n");
        c.send(&bytes);
        let reply = c.line();
        assert_eq!(code(&reply), case.code, "{}: {reply}", case.label);
        if case.closes {
            assert!(c.closed(), "{}: the connection must close", case.label);
        } else {
            assert_eq!(c.line(), "OK PONG", "{}: out of step", case.label);
        }
        if case.code == "unknown-signer" {
            unknown_messages.push(reply.clone());
        }
        if let Some(why) = case.logged {
            s.wait_log(why, WAIT)
                .unwrap_or_else(|| panic!("{}: no {why:?} in the log", case.label));
        }
        common::stored::assert_nothing_stored(&s.data);
    }
    // The client is not told why its key is not allowed; only which key.
    let shapes: Vec<String> = unknown_messages
        .iter()
        .map(|m| m.split(' ').filter(|w| !w.starts_with("SHA256:")).collect())
        .collect();
    assert!(
        shapes.windows(2).all(|w| w[0] == w[1]),
        "{unknown_messages:?}"
    );
    assert_eq!(
        unknown_messages[0],
        format!(
            "ERR unknown-signer key {} is not an allowed signer here",
            mallory.fingerprint()
        )
    );
}

#[test]
fn the_signature_counts_against_the_memory_budget() {
    let (_dir, s) = server_with(None, &["--max-memory", "1000"]);
    let mut c = s.connect();
    // 900 bytes would fit, 900 and a 200-byte signature would not, ever.
    assert_eq!(code(&c.ask("SEAL x.png 900 200")), "too-large");
    assert!(c.closed());
    let mut c = s.connect();
    let sealed = seal(&png([1, 2, 3], 1, 1));
    assert!(sealed.len() < 900, "{}", sealed.len());
    assert_eq!(
        code(&c.seal_signed("x.png", &[b'x'; 100], &sealed)),
        "bad-signature"
    );
    assert_eq!(c.ask("PING"), "OK PONG");
}

#[test]
fn a_stalled_signed_seal_holds_no_memory() {
    if !common::ssh::ssh_keygen_installed("stalled signed seals") {
        return;
    }
    let keys = Keys::new();
    let alice = keys.ed25519("alice");
    let (_dir, s) = server_with(
        Some(&alice.allowed("alice@example.com", "")),
        &["--max-memory", "16M"],
    );
    // Each announces a signature and payload that together fill the whole
    // budget, then stalls: after the line, or a few bytes into the
    // signature. Memory follows the bytes that arrive, so all of them
    // together hold at most one signature's worth.
    let (sigsize, size) = (8192u64, (16u64 << 20) - 8192);
    let mut stalled: Vec<Conn> = (0..4)
        .map(|i| {
            let mut c = s.connect();
            c.send(format!("SEAL big{i}.png {size} {sigsize}\r\n").as_bytes());
            if i == 0 {
                c.send(b"-----BEGIN SSH SIGNATURE-----\n");
            }
            c
        })
        .collect();
    for c in &stalled {
        assert!(s.wait_read(c, WAIT), "the server never read the line");
    }
    let image = png([20, 30, 220], 4, 4);
    let mut c = s.connect();
    assert_eq!(
        c.seal_signed("room.png", &alice.sign(&image, NS), &seal(&image)),
        "OK blue/room.png r=20.0 g=30.0 b=220.0 signer=alice@example.com"
    );
    // The stalled uploads are still under way, in step: finishing one with
    // a signature that is not one gets its refusal, after its payload.
    let first = &mut stalled[0];
    first.send(&vec![b'x'; usize::try_from(sigsize).unwrap() - 30]);
    first.send(&vec![0u8; usize::try_from(size).unwrap()]);
    assert_eq!(code(&first.line()), "bad-signature");
    assert_eq!(first.ask("PING"), "OK PONG");
}

#[test]
fn unsigned_seals_and_puts_are_not_trusted_with_known_senders() {
    if !common::ssh::ssh_keygen_installed("unsigned uploads with known senders") {
        return;
    }
    let keys = Keys::new();
    let alice = keys.ed25519("alice");
    let (_dir, s) = server_with(Some(&alice.allowed("alice", "")), &[]);
    let mut c = s.connect();
    let red = png([250, 0, 0], 3, 3);
    assert_eq!(
        c.upload("SEAL", "u.png", &seal(&red)),
        "OK not_trusted/u.png r=250.0 g=0.0 b=0.0"
    );
    assert!(
        s.wait_log("(unsigned SEAL, class red)", WAIT).is_some(),
        "{}",
        s.log_text()
    );
    let blue = png([0, 0, 250], 3, 3);
    assert_eq!(
        c.upload("PUT", "p.png", &blue),
        "OK not_trusted/p.png r=0.0 g=0.0 b=250.0"
    );
    assert_eq!(c.ask("STATS"), "OK red=0 green=0 blue=0 not_trusted=2");
    assert!(s.files("signatures/not_trusted").is_empty());
    assert!(!s.log_text().contains("audit:"), "{}", s.log_text());
}

#[test]
fn dedupe_stays_within_a_trust_class() {
    if !common::ssh::ssh_keygen_installed("dedupe across trust classes") {
        return;
    }
    let keys = Keys::new();
    let (alice, bob) = (keys.ed25519("alice"), keys.ed25519("bob"));
    let allowed = alice.allowed("alice", "") + &bob.allowed("bob", "");
    let (_dir, s) = server_with(Some(&allowed), &[]);
    let mut c = s.connect();
    let secret = png([200, 10, 10], 7, 7);
    let first = c.seal_signed(
        "alice-private-scan.png",
        &alice.sign(&secret, NS),
        &seal(&secret),
    );
    assert_eq!(
        first,
        "OK red/alice-private-scan.png r=200.0 g=10.0 b=10.0 signer=alice"
    );
    // Someone who guesses the bytes learns nothing of the trusted copy.
    assert_eq!(
        c.upload("PUT", "guess.png", &secret),
        "OK not_trusted/guess.png r=200.0 g=10.0 b=10.0"
    );
    assert_eq!(
        c.upload("SEAL", "unsigned.png", &seal(&secret)),
        "OK not_trusted/guess.png r=200.0 g=10.0 b=10.0 dup"
    );
    // Another known sender's copy is a duplicate of the trusted one, and
    // the log says who sent it.
    let again = c.seal_signed("bobs.png", &bob.sign(&secret, NS), &seal(&secret));
    assert_eq!(
        again,
        "OK red/alice-private-scan.png r=200.0 g=10.0 b=10.0 signer=bob dup"
    );
    let audit = format!(
        "audit: dup of red/alice-private-scan.png sha256:{} signer=bob key={}",
        colorsort::store::Digest::of(&secret).hex(),
        bob.fingerprint()
    );
    s.wait_log(&audit, WAIT).expect("dup audit line");
    // The stored copy keeps the signature it was filed with.
    assert_eq!(s.files("signatures/red"), ["alice-private-scan.png.sig"]);
    assert_eq!(c.ask("STATS"), "OK red=1 green=0 blue=0 not_trusted=1");
}

#[test]
fn without_allowed_signers_every_seal_is_trusted_and_signatures_still_checked() {
    if !common::ssh::ssh_keygen_installed("signatures in v1 mode") {
        return;
    }
    let keys = Keys::new();
    let anyone = keys.ed25519("anyone");
    let allowed_path = keys.allowed(&[anyone.allowed("anyone", "")]);
    let (_dir, s) = server_with(None, &[]);
    let warning = s
        .wait_log("known senders: off", WAIT)
        .expect("start-up warning");
    assert!(
        warning.contains("WARNING: anyone who fetches the key can file into red/ green/ blue/"),
        "{warning}"
    );
    let mut c = s.connect();
    assert_eq!(c.ask("POLICY"), "OK signers=off namespace=colorsort");
    let green = png([0, 250, 0], 2, 2);
    assert_eq!(
        c.upload("SEAL", "u.png", &seal(&green)),
        "OK green/u.png r=0.0 g=250.0 b=0.0"
    );
    // A signed SEAL is checked and kept, but no one is named: no one is listed.
    let blue = png([0, 0, 250], 2, 2);
    assert_eq!(
        c.seal_signed("s.png", &anyone.sign(&blue, NS), &seal(&blue)),
        "OK blue/s.png r=0.0 g=0.0 b=250.0"
    );
    assert!(common::ssh::ssh_keygen_verifies(
        &allowed_path,
        "anyone",
        NS,
        &s.data.join("signatures/blue/s.png.sig"),
        &s.data.join("blue/s.png"),
    ));
    s.wait_log("audit: filed blue/s.png", WAIT)
        .and_then(|log| {
            log.lines()
                .find(|l| l.contains("audit: filed blue/s.png"))
                .map(str::to_owned)
        })
        .filter(|l| l.contains("signer=- key=SHA256:"))
        .expect("audit line without a principal");
    s.wait_log("audit: filed green/u.png", WAIT)
        .filter(|log| log.contains("unsigned (no allowed_signers file)"))
        .expect("audit line of the unsigned upload");
    assert_eq!(
        code(&c.seal_signed("w.png", &anyone.sign(&blue, "git"), &seal(&blue))),
        "bad-signature"
    );
    assert_eq!(c.ask("PING"), "OK PONG");
    assert_eq!(s.files("blue"), ["s.png"]);
}

#[test]
fn the_namespace_is_a_setting() {
    if !common::ssh::ssh_keygen_installed("signature namespace setting") {
        return;
    }
    let keys = Keys::new();
    let alice = keys.ed25519("alice");
    let allowed = alice.allowed("alice", "namespaces=\"photos@example.com\"");
    let (_dir, s) = server_with(
        Some(&allowed),
        &["--signature-namespace", "photos@example.com"],
    );
    let mut c = s.connect();
    assert_eq!(
        c.ask("POLICY"),
        "OK signers=on namespace=photos@example.com"
    );
    let red = png([255, 0, 0], 2, 2);
    assert_eq!(
        code(&c.seal_signed("a.png", &alice.sign(&red, NS), &seal(&red))),
        "bad-signature"
    );
    assert_eq!(
        c.seal_signed(
            "a.png",
            &alice.sign(&red, "photos@example.com"),
            &seal(&red)
        ),
        "OK red/a.png r=255.0 g=0.0 b=0.0 signer=alice"
    );
}

#[test]
fn sighup_rereads_the_file_and_a_bad_one_changes_nothing() {
    if !common::ssh::ssh_keygen_installed("allowed_signers reload") {
        return;
    }
    let keys = Keys::new();
    let (alice, bob) = (keys.ed25519("alice"), keys.ed25519("bob"));
    let path = keys.allowed(&[alice.allowed("alice", "")]);
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    let s = TestServer::start_in(dir.path(), &["--allowed-signers", path.to_str().unwrap()]);
    let mut c = s.connect();
    let image = png([5, 5, 200], 3, 3);
    let by_bob =
        |c: &mut Conn, name: &str| c.seal_signed(name, &bob.sign(&image, NS), &seal(&image));
    assert_eq!(code(&by_bob(&mut c, "b.png")), "unknown-signer");

    keys.allowed(&[alice.allowed("alice", ""), bob.allowed("bob", "")]);
    sighup(&s);
    wait_log_count(&s, "received SIGHUP; reloaded", 1);
    assert!(s.log_text().contains("2 signer(s) listed, in force now"));
    assert_eq!(
        by_bob(&mut c, "b.png"),
        "OK blue/b.png r=5.0 g=5.0 b=200.0 signer=bob"
    );

    // A file that cannot be used leaves the list in force: bob stays.
    fs::write(&path, alice.allowed("alice", "") + "bob ssh-ed25519\n").unwrap();
    sighup(&s);
    wait_log_count(&s, "received SIGHUP; reload refused", 1);
    let log = s.log_text();
    assert!(
        log.contains(&format!(
            "{}: allowed signers line 2: missing key; the previous list of 2 signer(s) stays in force",
            path.display()
        )),
        "{log}"
    );
    let other = png([5, 5, 201], 3, 3);
    assert_eq!(
        c.seal_signed("b2.png", &bob.sign(&other, NS), &seal(&other)),
        "OK blue/b2.png r=5.0 g=5.0 b=201.0 signer=bob"
    );
    // Nor does a file that is gone.
    fs::remove_file(&path).unwrap();
    sighup(&s);
    wait_log_count(&s, "received SIGHUP; reload refused", 2);
    assert_eq!(c.ask("POLICY"), "OK signers=on namespace=colorsort");
    let third = png([5, 5, 202], 3, 3);
    assert_eq!(
        c.upload("SEAL", "unsigned.png", &seal(&third)),
        "OK not_trusted/unsigned.png r=5.0 g=5.0 b=202.0"
    );
    assert_eq!(
        by_bob(&mut c, "b3.png"),
        "OK blue/b.png r=5.0 g=5.0 b=200.0 signer=bob dup"
    );
}

#[test]
fn sighup_turns_known_senders_on_when_the_file_appears() {
    if !common::ssh::ssh_keygen_installed("known senders turned on by SIGHUP") {
        return;
    }
    let keys = Keys::new();
    let alice = keys.ed25519("alice");
    let (_dir, s) = server_with(None, &[]);
    let mut c = s.connect();
    sighup(&s);
    wait_log_count(&s, "received SIGHUP; no ", 1);
    assert_eq!(c.ask("POLICY"), "OK signers=off namespace=colorsort");
    fs::write(s.data.join("allowed_signers"), alice.allowed("alice", "")).unwrap();
    sighup(&s);
    wait_log_count(&s, "received SIGHUP; reloaded", 1);
    assert_eq!(c.ask("POLICY"), "OK signers=on namespace=colorsort");
    let red = png([255, 0, 0], 2, 2);
    assert_eq!(
        c.upload("SEAL", "u.png", &seal(&red)),
        "OK not_trusted/u.png r=255.0 g=0.0 b=0.0"
    );
}

#[test]
fn a_file_that_cannot_be_used_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    let bad = dir.path().join("allowed_signers");
    fs::write(
        &bad,
        "# team\nalice ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=\n",
    )
    .unwrap();
    let refused = |data: &Path, args: &[&str], why: &str| {
        let Err((status, log)) = TestServer::try_start_in(data, args) else {
            panic!("started with {args:?}");
        };
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(log.contains(why), "{why:?} not in {log}");
    };
    refused(
        dir.path(),
        &[],
        &format!(
            "{}: allowed signers line 2: unsupported key type \"ecdsa-sha2-nistp256\"",
            bad.display()
        ),
    );
    fs::remove_file(&bad).unwrap();
    let missing = dir.path().join("missing");
    refused(
        dir.path(),
        &["--allowed-signers", missing.to_str().unwrap()],
        &format!("cannot read {}", missing.display()),
    );
    // Without the file, and without the flag, it starts in v1 mode.
    let s = TestServer::start_in(dir.path(), &[]);
    assert_eq!(
        s.connect().ask("POLICY"),
        "OK signers=off namespace=colorsort"
    );
}
