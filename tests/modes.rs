//! The server's file modes are its own: it sets its umask at start, so
//! whatever umask it is started with, nothing it creates in the data
//! directory is writable by others or readable outside its group; and it
//! refuses a key file that another user owns.

mod common {
    pub mod conn;
    pub mod fixtures;
    pub mod server;
    pub mod skip;
    pub mod wait;
}

use common::fixtures::png;
use common::server::TestServer;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs its arguments with umask 000, the most permissive there is.
const UMASK_000: [&str; 3] = ["sh", "-c", "umask 000 && exec \"$0\" \"$@\""];

/// Every entry under `dir` (not following symbolic links), with `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if fs::symlink_metadata(&all[i]).unwrap().is_dir() {
            for entry in fs::read_dir(&all[i]).unwrap() {
                all.push(entry.unwrap().path());
            }
        }
        i += 1;
    }
    all
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn modes_do_not_depend_on_the_umask_the_server_starts_with() {
    // The wrapper does hand over umask 000.
    let out = Command::new(UMASK_000[0])
        .args(&UMASK_000[1..])
        .args(["sh", "-c", "umask"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0000");

    // The server creates the data directory and generates its key.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = TestServer::try_start_wrapped(&UMASK_000, &data, &["--key-bits", "2048"])
        .unwrap_or_else(|(status, log)| panic!("server exited with {status}: {log}"));

    // Something in every folder: a plaintext upload, a sealed one (with
    // their index entries), and the staging folder's locks.
    let mut c = s.connect();
    let key = c.ask("KEY");
    let public =
        colorsort::identity::PublicKey::from_ssh_line(key.strip_prefix("OK ").unwrap()).unwrap();
    let red = png([230, 20, 20], 6, 6);
    let sealed = colorsort::age::encrypt(&red, &public).unwrap();
    assert!(
        c.upload("SEAL", "red.png", &sealed)
            .starts_with("OK red/red.png ")
    );
    let blue = png([20, 20, 230], 6, 6);
    assert!(
        c.upload("PUT", "blue.png", &blue)
            .starts_with("OK not_trusted/blue.png ")
    );

    let all = walk(&data);
    let rel = |p: &Path| match p.strip_prefix(&data).unwrap().to_str().unwrap() {
        "" => "the data directory".to_string(),
        name => name.to_string(),
    };
    let names: Vec<String> = all.iter().map(|p| rel(p)).collect();
    for want in [
        "red/red.png",
        "not_trusted/blue.png",
        "key.pem",
        "key.pub",
        ".staging/.lock",
        ".index/sealed",
        ".index/plain",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let locks: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(".staging/") && n.ends_with("/lock"))
        .collect();
    assert_eq!(locks.len(), 1, "{names:?}");

    let mut wrong = Vec::new();
    for path in &all {
        let meta = fs::symlink_metadata(path).unwrap();
        let name = rel(path);
        let m = mode(path);
        let want = if meta.file_type().is_symlink() {
            // Index entries: a link's own mode means nothing on Linux.
            continue;
        } else if meta.is_dir() {
            0o750
        } else if name == "key.pem" {
            0o600
        } else {
            // Uploads, key.pub and the lock files ask for 0644 or 0666.
            0o640
        };
        if m != want {
            wrong.push(format!("{name}: {m:04o}, want {want:04o}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The mask the process runs with.
    let status = fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    assert!(
        status.lines().any(|l| l == "Umask:\t0027"),
        "{}",
        status
            .lines()
            .find(|l| l.starts_with("Umask"))
            .unwrap_or("")
    );
}

/// Starts a server on `data` expecting it to refuse within a minute;
/// returns its stderr.
fn refused_start(data: &Path) -> String {
    let mut child = Command::new(common::fixtures::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn key_owned_by_another_user_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(dir.path());
    let key = dir.path().join("key.pem");
    let ours = fs::metadata(&key).unwrap().uid();
    const NOBODY: u32 = 65534;
    match std::os::unix::fs::chown(&key, Some(NOBODY), Some(NOBODY)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            common::skip::skipped(
                "key owned by another user",
                "changing a file's owner needs root",
            );
            return;
        }
        Err(e) => panic!("chown: {e}"),
    }
    assert_ne!(ours, NOBODY);
    let before = fs::read(&key).unwrap();

    let stderr = refused_start(dir.path());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one clear line, got {stderr:?}");
    for words in [
        "colorsort: ",
        "key.pem",
        &format!("owned by uid {NOBODY}"),
        &format!("runs as uid {ours}"),
        "chown",
    ] {
        assert!(lines[0].contains(words), "{stderr:?} lacks {words:?}");
    }
    let meta = fs::metadata(&key).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (NOBODY, 0o600));
    assert_eq!(fs::read(&key).unwrap(), before, "key.pem was changed");
    assert!(!dir.path().join("key.pub").exists(), "key.pub written");

    // Given back to the server's user, the same file is loaded.
    std::os::unix::fs::chown(&key, Some(ours), None).unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    assert!(s.connect().ask("KEY").starts_with("OK ssh-rsa "));
}
