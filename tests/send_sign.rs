//! `colorsort send --sign`: signatures made with the real ssh-keygen, the
//! server's POLICY followed, and what a user sees when signing cannot work.
//!
//! The real server, with an allowed_signers file, files signed uploads and
//! keeps their signatures for `ssh-keygen -Y verify`. A stand-in server
//! records exactly what the client sends, and plays a server from before
//! POLICY, which the real one cannot be.

mod common {
    pub mod conn;
    pub mod fixtures;
    pub mod server;
    pub mod skip;
    pub mod ssh;
    pub mod stored;
    pub mod wait;
}

use colorsort::identity::Identity;
use colorsort::protocol::{self, Request};
use common::fixtures::{TEST_KEY, bin, install_test_key, png};
use common::server::TestServer;
use common::skip::skipped;
use common::ssh::{SshKey, ssh_keygen_installed, ssh_keygen_verifies};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A fresh ed25519 key in `dir`, `NAME` and `NAME.pub`; protected by
/// `passphrase` unless it is empty.
fn keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    if passphrase.is_empty() {
        return SshKey::generate(dir, name, "ed25519", None).path;
    }
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    key
}

/// An allowed_signers file in `dir` listing `principal` for `key`'s public
/// half.
fn allowed_signers(dir: &Path, principal: &str, key: &Path) -> PathBuf {
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let path = dir.join("allowed_signers");
    fs::write(&path, format!("{principal} {public}")).unwrap();
    path
}

/// `ssh-keygen -Y verify` of `signature` over `data`.
fn verify(signers: &Path, principal: &str, namespace: &str, signature: &[u8], data: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (sig, message) = (dir.path().join("data.sig"), dir.path().join("data"));
    fs::write(&sig, signature).unwrap();
    fs::write(&message, data).unwrap();
    ssh_keygen_verifies(signers, principal, namespace, &sig, &message)
}

/// One upload as the stand-in server received it.
#[derive(Debug, Clone)]
struct Seen {
    /// The request line, without its ending.
    line: String,
    signature: Option<Vec<u8>>,
    /// The payload, opened with the test key if it was sealed.
    plaintext: Vec<u8>,
}

/// A stand-in server on 127.0.0.1 that answers `POLICY` with `policy` (or,
/// with `None`, as a server from before POLICY does), `KEY` with the test
/// key, and every upload with `OK`, recording what it received.
struct Fake {
    host: String,
    connections: Arc<AtomicUsize>,
    uploads: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn start(policy: Option<&'static str>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (Arc::clone(&connections), Arc::clone(&uploads));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                count.fetch_add(1, Ordering::SeqCst);
                let seen = Arc::clone(&seen);
                thread::spawn(move || serve(stream, policy, &seen));
            }
        });
        Fake {
            host,
            connections,
            uploads,
        }
    }

    fn uploads(&self) -> Vec<Seen> {
        self.uploads.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, policy: Option<&str>, seen: &Mutex<Vec<Seen>>) {
    let identity = Identity::from_pem(&fs::read_to_string(TEST_KEY).unwrap()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec();
        let reply = match (protocol::parse_request(&line), policy) {
            (Ok(Request::Policy), Some(policy)) => format!("OK {policy}"),
            (Ok(Request::Policy), None) => "ERR unknown-command unknown command POLICY".into(),
            (Ok(Request::Key), _) => format!("OK {}", identity.public().to_ssh_line("fake")),
            (
                Ok(Request::Upload {
                    sigsize: Some(_), ..
                }),
                None,
            ) => {
                let _ = writer.write_all(b"ERR bad-request usage: SEAL NAME SIZE\r\n");
                return;
            }
            (
                Ok(Request::Upload {
                    kind,
                    name,
                    size,
                    sigsize,
                }),
                _,
            ) => {
                let mut signature = vec![0; sigsize.unwrap_or(0)];
                let mut payload = vec![0; usize::try_from(size).unwrap()];
                reader.read_exact(&mut signature).unwrap();
                reader.read_exact(&mut payload).unwrap();
                if kind == protocol::Upload::Seal {
                    colorsort::age::decrypt_in_place(&mut payload, &identity).unwrap();
                }
                seen.lock().unwrap().push(Seen {
                    line: String::from_utf8(line.clone()).unwrap(),
                    signature: sigsize.map(|_| signature),
                    plaintext: payload,
                });
                let folder = if kind == protocol::Upload::Seal {
                    "red"
                } else {
                    "not_trusted"
                };
                format!(
                    "OK {folder}/{} r=200.0 g=0.0 b=0.0",
                    String::from_utf8_lossy(name)
                )
            }
            _ => "ERR bad-request not in this stand-in".into(),
        };
        if writer.write_all(format!("{reply}\r\n").as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs `colorsort send ARGS` with `config` as its config folder, none of
/// the caller's COLORSORT_* settings, and `vars` set.
fn send(args: &[&str], config: &Path, vars: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("send")
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("COLORSORT_HOST")
        .env_remove("COLORSORT_PIN")
        .env_remove("COLORSORT_KNOWN_HOSTS")
        .env_remove("COLORSORT_SSH_KEYGEN")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Three images in a fresh folder.
fn images() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, rgb) in [[200, 10, 10], [10, 200, 10], [10, 10, 200]]
        .into_iter()
        .enumerate()
    {
        fs::write(
            dir.path().join(format!("{i}.png")),
            png(rgb, 4 + i as u32, 4),
        )
        .unwrap();
    }
    dir
}

/// Checks that each upload is a signed SEAL whose signature
/// `ssh-keygen -Y verify` accepts for `principal` in `namespace` (and in no
/// other) over exactly the bytes of one of the files in `images`.
fn assert_signed(
    uploads: &[Seen],
    signers: &Path,
    principal: &str,
    namespace: &str,
    images: &Path,
) {
    let mut originals: Vec<Vec<u8>> = fs::read_dir(images)
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(uploads.len(), originals.len(), "{uploads:?}");
    for upload in uploads {
        let signature = upload.signature.as_deref().expect("a signed SEAL");
        let words: Vec<&str> = upload.line.split(' ').collect();
        assert_eq!(words[0], "SEAL");
        assert_eq!(words[3], signature.len().to_string(), "{}", upload.line);
        assert!(signature.starts_with(b"-----BEGIN SSH SIGNATURE-----\n"));
        let i = originals
            .iter()
            .position(|o| *o == upload.plaintext)
            .expect("the plaintext is one of the files");
        let original = originals.swap_remove(i);
        assert!(
            verify(signers, principal, namespace, signature, &original),
            "ssh-keygen -Y verify accepts {}",
            upload.line
        );
        assert!(
            !verify(signers, principal, "colorsort-other", signature, &original),
            "not for another namespace"
        );
        let mut other = original.clone();
        other.push(0);
        assert!(
            !verify(signers, principal, namespace, signature, &other),
            "not over other bytes"
        );
    }
}

/// The images of `dir` as (name, bytes), sorted by name.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_server_with_known_senders_files_what_they_sign() {
    let test = "a_server_with_known_senders_files_what_they_sign";
    if !ssh_keygen_installed(test) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let alice = keygen(keys.path(), "alice", "");
    let mallory = keygen(keys.path(), "mallory", "");
    let data = tempfile::tempdir().unwrap();
    install_test_key(data.path());
    let signers = allowed_signers(data.path(), "alice@example.com", &alice);
    let s = TestServer::start_in(data.path(), &[]);
    let photos = images();
    let dir = photos.path().to_str().unwrap();
    let cfg = tempfile::tempdir().unwrap();

    // Unsigned, the client refuses before anything is sent.
    let out = send(&["--host", &s.host(), dir], cfg.path(), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("signers=on") && stderr.contains("--sign"),
        "{stderr}"
    );
    common::stored::assert_nothing_stored(&s.data);

    // Signed by a listed key: filed by colour, the principal named, and the
    // signature kept where ssh-keygen verifies it against the stored file.
    let sign = ["--sign", alice.to_str().unwrap(), "--host", &s.host()];
    let out = send(&[&sign[..], &["--json", dir]].concat(), cfg.path(), &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.matches("\"result\":\"stored\"").count(),
        3,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("\"signer\":\"alice@example.com\"").count(),
        3,
        "{stdout}"
    );
    let mut verified = 0;
    for folder in ["red", "green", "blue"] {
        for (name, bytes) in contents(&s.data.join(folder)) {
            let sig = s
                .data
                .join("signatures")
                .join(folder)
                .join(format!("{name}.sig"));
            let sig = fs::read(&sig).unwrap();
            assert!(
                verify(&signers, "alice@example.com", "colorsort", &sig, &bytes),
                "{folder}/{name}"
            );
            verified += 1;
        }
    }
    assert_eq!(verified, 3);
    let originals: Vec<Vec<u8>> = contents(photos.path())
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    for folder in ["red", "green", "blue"] {
        for (name, bytes) in contents(&s.data.join(folder)) {
            assert!(originals.contains(&bytes), "{folder}/{name} is a sent file");
        }
    }

    // Human lines name the signer too.
    let again = send(&[&sign[..], &[dir]].concat(), cfg.path(), &[]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert_eq!(
        stdout.matches(" signer=alice@example.com").count(),
        3,
        "{stdout}"
    );

    // Signed by a key the server does not list: refused file by file, and
    // the client says which line would list it.
    let out = send(
        &[
            "--sign",
            mallory.to_str().unwrap(),
            "--host",
            &s.host(),
            dir,
        ],
        cfg.path(),
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("failures: unknown-signer 3"), "{stdout}");
    let mallory_public = fs::read_to_string(mallory.with_extension("pub")).unwrap();
    let mallory_key: Vec<&str> = mallory_public.split_whitespace().take(2).collect();
    assert_eq!(
        stderr.matches("does not take your key").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("PRINCIPAL {}", mallory_key.join(" "))),
        "{stderr}"
    );

    // --unsigned sends anyway, into not_trusted/.
    let out = send(&["--unsigned", "--host", &s.host(), dir], cfg.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.files("not_trusted").len(), 3);
    assert!(common::stored::files_in(&s.data.join("signatures/not_trusted")).is_empty());
}

#[test]
fn signatures_verify_with_ssh_keygen_in_the_servers_namespace() {
    if !ssh_keygen_installed("signatures_verify_with_ssh_keygen_in_the_servers_namespace") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "alice", "");
    let signers = allowed_signers(keys.path(), "alice@example.com", &key);
    let photos = images();
    let cfg = tempfile::tempdir().unwrap();
    let fake = Fake::start(Some("signers=on namespace=photos@example.com future=1"));
    let out = send(
        &[
            "--sign",
            key.to_str().unwrap(),
            "-j",
            "2",
            "--host",
            &fake.host,
            photos.path().to_str().unwrap(),
        ],
        cfg.path(),
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("stored 3 (red 3"), "{stdout}");
    assert_signed(
        &fake.uploads(),
        &signers,
        "alice@example.com",
        "photos@example.com",
        photos.path(),
    );

    // --namespace overrides the server's, with a warning that the server
    // checks another.
    let fake = Fake::start(Some("signers=off namespace=colorsort"));
    let out = send(
        &[
            "--sign",
            key.to_str().unwrap(),
            "--namespace",
            "mine",
            "--host",
            &fake.host,
            photos.path().to_str().unwrap(),
        ],
        cfg.path(),
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("signing for namespace \"mine\", but") && stderr.contains("\"colorsort\""),
        "{stderr}"
    );
    assert_signed(
        &fake.uploads(),
        &signers,
        "alice@example.com",
        "mine",
        photos.path(),
    );
}

#[test]
fn keys_with_a_passphrase_or_in_an_agent_sign_as_in_ssh() {
    let test = "keys_with_a_passphrase_or_in_an_agent_sign_as_in_ssh";
    if !ssh_keygen_installed(test) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let photos = images();
    let cfg = tempfile::tempdir().unwrap();

    // A passphrase, given the way ssh asks for one without a terminal.
    let key = keygen(keys.path(), "locked", "correct horse");
    let signers = allowed_signers(keys.path(), "locked@example.com", &key);
    let askpass = keys.path().join("askpass");
    fs::write(&askpass, "#!/bin/sh\necho 'correct horse'\n").unwrap();
    fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let fake = Fake::start(Some("signers=on namespace=colorsort"));
    let askpass_vars = [
        ("SSH_ASKPASS", askpass.to_str().unwrap()),
        ("SSH_ASKPASS_REQUIRE", "force"),
        ("DISPLAY", ":0"),
    ];
    let args = [
        "--sign",
        key.to_str().unwrap(),
        "--host",
        &fake.host,
        photos.path().to_str().unwrap(),
    ];
    let out = send(&args, cfg.path(), &askpass_vars);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_signed(
        &fake.uploads(),
        &signers,
        "locked@example.com",
        "colorsort",
        photos.path(),
    );

    // A wrong passphrase fails each file, saying why.
    fs::write(&askpass, "#!/bin/sh\necho wrong\n").unwrap();
    let fake = Fake::start(Some("signers=on namespace=colorsort"));
    let args = [
        "--sign",
        key.to_str().unwrap(),
        "--json",
        "--host",
        &fake.host,
        photos.path().to_str().unwrap(),
    ];
    let out = send(&args, cfg.path(), &askpass_vars);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.matches("\"error\":\"sign-failed\"").count(),
        3,
        "{stdout}"
    );
    assert!(fake.uploads().is_empty());

    // A key in ssh-agent, named by its public half.
    let agent_key = keygen(keys.path(), "agent", "");
    let Ok(agent) = Command::new("ssh-agent").arg("-s").output() else {
        skipped(test, "ssh-agent is not installed");
        return;
    };
    let agent_env = text(&agent.stdout);
    let var = |name: &str| {
        agent_env
            .split(';')
            .find_map(|part| part.trim().strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    let (socket, pid) = (var("SSH_AUTH_SOCK"), var("SSH_AGENT_PID"));
    let agent_signers = keys.path().join("agent_signers");
    fs::write(
        &agent_signers,
        format!(
            "agent@example.com {}",
            fs::read_to_string(agent_key.with_extension("pub")).unwrap()
        ),
    )
    .unwrap();
    let added = Command::new("ssh-add")
        .arg("-q")
        .arg(&agent_key)
        .env("SSH_AUTH_SOCK", &socket)
        .status();
    // Only the agent holds the private key now.
    fs::remove_file(&agent_key).unwrap();
    let fake = Fake::start(Some("signers=on namespace=colorsort"));
    let public = agent_key.with_extension("pub");
    let out = send(
        &[
            "--sign",
            public.to_str().unwrap(),
            "--host",
            &fake.host,
            photos.path().to_str().unwrap(),
        ],
        cfg.path(),
        &[("SSH_AUTH_SOCK", &socket)],
    );
    let _ = Command::new("kill").arg(&pid).status();
    assert!(added.unwrap().success());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_signed(
        &fake.uploads(),
        &agent_signers,
        "agent@example.com",
        "colorsort",
        photos.path(),
    );
}

#[test]
fn a_server_that_wants_signatures_gets_them_or_an_explicit_unsigned() {
    let photos = images();
    let cfg = tempfile::tempdir().unwrap();
    let fake = Fake::start(Some("signers=on namespace=colorsort"));
    let dir = photos.path().to_str().unwrap();
    let out = send(&["--host", &fake.host, dir], cfg.path(), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("signers=on") && stderr.contains("--sign") && stderr.contains("--unsigned"),
        "{stderr}"
    );
    assert!(fake.uploads().is_empty(), "nothing was sent");

    let out = send(&["--unsigned", "--host", &fake.host, dir], cfg.path(), &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("not_trusted/"), "{stderr}");
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 3);
    assert!(
        uploads
            .iter()
            .all(|u| u.signature.is_none() && u.line.split(' ').count() == 3),
        "{uploads:?}"
    );
}

#[test]
fn a_server_from_before_policy_gets_unsigned_seals_only() {
    let photos = images();
    let cfg = tempfile::tempdir().unwrap();
    let dir = photos.path().to_str().unwrap();
    let fake = Fake::start(None);
    let out = send(&["--host", &fake.host, dir], cfg.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fake.uploads().len(), 3);
    assert!(fake.uploads().iter().all(|u| u.signature.is_none()));

    // Signing is refused before anything is sent. The key file need not be
    // a key: the server is asked first.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key");
    fs::write(&key, "not used").unwrap();
    let fake = Fake::start(None);
    let out = send(
        &["--sign", key.to_str().unwrap(), "--host", &fake.host, dir],
        cfg.path(),
        &[("COLORSORT_SSH_KEYGEN", "/bin/false")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not take signed uploads"), "{stderr}");
    assert!(fake.uploads().is_empty());
}

#[test]
fn a_missing_ssh_keygen_is_one_message_before_anything_is_sent() {
    let photos = images();
    let cfg = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key");
    fs::write(&key, "a key").unwrap();
    let fake = Fake::start(Some("signers=on namespace=colorsort"));
    let dir = photos.path().to_str().unwrap();
    let key = key.to_str().unwrap();
    let missing = keys.path().join("no-ssh-keygen");
    let missing = missing.to_str().unwrap();
    let empty_path = keys.path().to_str().unwrap();
    // The flag, the variable, an ssh-keygen that PATH does not have, and a
    // folder: the flags, the variables, and what the message says.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (&["--ssh-keygen", missing], &[], missing),
        (&[], &[("COLORSORT_SSH_KEYGEN", missing)], missing),
        (
            &[],
            &[("PATH", empty_path)],
            "ssh-keygen is not found in PATH",
        ),
        (
            &["--ssh-keygen", empty_path],
            &[],
            "is not an executable file",
        ),
    ];
    for (flags, vars, says) in cases {
        let mut args = vec!["--sign", key, "--host", &fake.host, dir];
        args.extend_from_slice(flags);
        let out = send(&args, cfg.path(), vars);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?} {vars:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
        assert!(
            stderr.contains(says) && stderr.contains("--ssh-keygen"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    // Nor a key file that is not there.
    let gone = keys.path().join("gone");
    let out = send(
        &["--sign", gone.to_str().unwrap(), "--host", &fake.host, dir],
        cfg.path(),
        &[("COLORSORT_SSH_KEYGEN", "/bin/true")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("gone"), "{}", text(&out.stderr));
    assert_eq!(
        fake.connections.load(Ordering::SeqCst),
        0,
        "not even a connection"
    );
}

#[test]
fn ssh_keygen_errors_are_reported_per_file() {
    if !ssh_keygen_installed("ssh_keygen_errors_are_reported_per_file") {
        return;
    }
    let photos = images();
    let cfg = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("not-a-key");
    fs::write(&key, "this is not a key\n").unwrap();
    let fake = Fake::start(Some("signers=on namespace=colorsort"));
    let out = send(
        &[
            "--sign",
            key.to_str().unwrap(),
            "--host",
            &fake.host,
            photos.path().to_str().unwrap(),
        ],
        cfg.path(),
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(": failed: sign-failed ssh-keygen failed"))
        .collect();
    assert_eq!(failed.len(), 3, "{stdout}");
    for line in failed {
        assert!(
            line.contains("not-a-key") && !line.contains("Signing data on standard input"),
            "ssh-keygen's own words, without its chatter: {line}"
        );
    }
    assert!(stdout.contains("failures: sign-failed 3"), "{stdout}");
    assert!(fake.uploads().is_empty());
}

#[test]
fn sign_flags_that_contradict_are_usage_errors() {
    let cfg = tempfile::tempdir().unwrap();
    let cases: &[&[&str]] = &[
        &["--sign", "k", "--plain", "x"],
        &["--sign", "k", "--unsigned", "x"],
        &["--namespace", "ns", "x"],
        &["--sign", "k", "--namespace", "two words", "x"],
        &["--sign", "k", "--namespace", "", "x"],
        &["--sign"],
    ];
    for args in cases {
        let out = send(args, cfg.path(), &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
