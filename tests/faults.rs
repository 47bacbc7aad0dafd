//! Faults around the server: a full disk, failing fsyncs, a SIGKILL under
//! load, bad key files, and the order of durability steps before `OK`.
//!
//! Some cases need the system: a tmpfs mount for the full disk (root), and
//! strace for fault injection and the syscall order. Where those are not
//! available the test prints `SKIPPED: ... (why)` on stderr and passes,
//! unless `COLORSORT_REQUIRE_TOOLS` is set, as CI sets it: CI runs as root
//! with strace installed (see .ci/run).

mod common {
    pub mod conn;
    pub mod fixtures;
    pub mod server;
    pub mod skip;
    pub mod stored;
    pub mod wait;
}

use colorsort::store::Digest;
use common::conn::{Conn, code};
use common::fixtures::{install_test_key, noise_png, png, seal};
use common::server::TestServer;
use common::skip::skipped;
use common::stored::{CLASS_FOLDERS, assert_nothing_stored, files_in, staged_files};
use common::wait::{after, wait_until};
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// --- Full disk -------------------------------------------------------------

/// A size-limited tmpfs, unmounted on drop (lazily if something still holds
/// it open).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `4m`), or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Fills the filesystem holding `dir` with one file, then frees `leave`
/// bytes of it. Returns the file.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).unwrap();
    let block = vec![0x55u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    f.set_len(written.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
    path
}

/// No file in a class folder or in staging is partial: every one is a
/// complete copy of something that was sent.
fn assert_only_whole_files(data: &Path, sent: &[Vec<u8>]) {
    let whole: Vec<Digest> = sent.iter().map(|b| Digest::of(b)).collect();
    for folder in CLASS_FOLDERS {
        for name in files_in(&data.join(folder)) {
            let bytes = fs::read(data.join(folder).join(&name)).unwrap();
            assert!(!bytes.is_empty(), "{folder}/{name} is empty");
            assert!(
                whole.contains(&Digest::of(&bytes)),
                "{folder}/{name} ({} bytes) is not a whole upload",
                bytes.len()
            );
        }
    }
}

#[test]
fn full_disk_gives_storage_failed_and_recovers() {
    let fs = match Tmpfs::mount("4m") {
        Ok(fs) => fs,
        Err(why) => return skipped("full_disk_gives_storage_failed_and_recovers", &why),
    };
    let data = fs.path().join("data");
    install_test_key(&data);
    let s = TestServer::start_in(&data, &[]);
    let mut c = s.connect();
    // About 300 KB each, barely compressible: larger than the room left.
    let images: Vec<Vec<u8>> = (0..3).map(|i| noise_png(320, 320, i)).collect();
    let filler = fill(fs.path(), 128 * 1024);

    for (i, image) in images.iter().enumerate() {
        let reply = c.upload("SEAL", &format!("full{i}.png"), &seal(image));
        assert_eq!(code(&reply), "storage-failed", "{reply}");
        let reply = c.upload("PUT", &format!("plain{i}.png"), image);
        assert_eq!(code(&reply), "storage-failed", "{reply}");
    }
    assert_eq!(c.ask("PING"), "OK PONG", "the server stays up");
    assert_eq!(c.ask("STATS"), "OK red=0 green=0 blue=0 not_trusted=0");
    assert_nothing_stored(&data);

    // Space comes back: the same uploads now store.
    fs::remove_file(&filler).unwrap();
    for (i, image) in images.iter().enumerate() {
        let reply = c.upload("PUT", &format!("plain{i}.png"), image);
        assert!(
            reply.starts_with(&format!("OK not_trusted/plain{i}.png ")),
            "{reply}"
        );
        assert_eq!(
            &fs::read(data.join(format!("not_trusted/plain{i}.png"))).unwrap(),
            image
        );
    }
    assert_only_whole_files(&data, &images);
    assert_eq!(staged_files(&data), Vec::<String>::new());
    let logged = s.wait_log("No space left on device", Duration::from_secs(5));
    assert!(logged.is_some(), "{}", s.log_text());
    drop(s);
}

// --- strace: fault injection and syscall order -----------------------------

/// strace attached to a running server, detached on drop.
struct Strace {
    child: Child,
}

impl Strace {
    /// Attaches strace to every thread of `pid` (and threads it starts),
    /// with `args`; waits until it reports the attach. `Err` says why not.
    fn attach(pid: u32, args: &[&str]) -> Result<Strace, String> {
        let mut child = Command::new("strace")
            .args(["-f", "-p", &pid.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("strace is not installed: {e}"))?;
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let until = Instant::now() + Duration::from_secs(10);
        let mut said = Vec::new();
        while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            if line.contains("attached") {
                return Ok(Strace { child });
            }
            said.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("strace could not attach: {}", said.join(" / ")))
    }

    /// Detaches (strace detaches on SIGINT) and waits for it to exit.
    fn detach(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        if wait_until(after(Duration::from_secs(5)), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

#[test]
fn failed_fsync_is_a_failed_store_never_retried() {
    let test = "failed_fsync_is_a_failed_store_never_retried";
    let s = TestServer::start(&[]);
    // Each upload on a fresh connection makes three fsyncs, in order: the
    // staged file, the class folder after the link, the index folder after
    // the index entry. Fail each one in turn, once: a server that retried a
    // failed fsync would then succeed and wrongly answer OK.
    let data = s.data.display().to_string();
    let steps = [
        (1, "file", format!("cannot write {data}/.staging/")),
        (2, "class folder", format!("cannot fsync {data}/blue: ")),
    ];
    for (nth, step, detail) in steps {
        let image = png([0, 0, 200], 7, 3 + nth);
        let Some(reply) = upload_with_failed_fsync(&s, nth, &image) else {
            return skipped(test, "strace cannot attach");
        };
        assert_eq!(
            code(&reply),
            "storage-failed",
            "failing the {step} fsync: {reply}"
        );
        let logged = s.wait_log(&detail, Duration::from_secs(5));
        assert!(
            logged.is_some(),
            "{step}: no {detail:?} in {}",
            s.log_text()
        );
        assert!(
            s.files("blue").is_empty(),
            "failing the {step} fsync left {:?}",
            s.files("blue")
        );
        assert_eq!(staged_files(&s.data), Vec::<String>::new());
        // Without the fault, the same content stores, and is not taken for a
        // duplicate of the failed attempt.
        let reply = s.connect().upload("SEAL", "synced.png", &seal(&image));
        assert_eq!(reply.split(' ').nth(1), Some("blue/synced.png"), "{reply}");
        assert!(!reply.ends_with(" dup"), "{reply}");
        fs::remove_file(s.data.join("blue/synced.png")).unwrap();
    }

    // The index folder's fsync comes after the file and its folder entry are
    // durable: the upload stands, and only its index entry is in doubt. The
    // log says so, and the copy is not removed, since another upload may
    // already have been told it is stored.
    let image = png([0, 0, 200], 7, 9);
    let Some(reply) = upload_with_failed_fsync(&s, 3, &image) else {
        return skipped(test, "strace cannot attach");
    };
    assert_eq!(reply.split(' ').nth(1), Some("blue/synced.png"), "{reply}");
    let detail = format!("stored, but not indexed: cannot fsync index of {data}/.index/sealed/");
    assert!(
        s.wait_log(&detail, Duration::from_secs(5)).is_some(),
        "no {detail:?} in {}",
        s.log_text()
    );
    assert_eq!(fs::read(s.data.join("blue/synced.png")).unwrap(), image);
    assert_eq!(staged_files(&s.data), Vec::<String>::new());
    let again = s.connect().upload("SEAL", "again.png", &seal(&image));
    assert_eq!(
        again,
        format!("{reply} dup"),
        "the entry was written, only its fsync failed"
    );
}

#[test]
fn failing_to_hash_an_indexed_file_never_replaces_its_entry() {
    // The index entry for stored content names its file; the server hashes
    // that file before believing the entry, and again before replacing it.
    // Making every open of that one file fail (too many open files, an I/O
    // error) proves nothing about the entry: it must stay, and the upload
    // is stored again, unindexed, rather than take the entry over.
    let test = "failing_to_hash_an_indexed_file_never_replaces_its_entry";
    let s = TestServer::start(&[]);
    for (i, errno) in ["EIO", "EMFILE"].into_iter().enumerate() {
        let image = png([200, 0, 0], 5, 5 + i as u32);
        let first = s
            .connect()
            .upload("SEAL", &format!("first{i}.png"), &seal(&image));
        assert_eq!(
            first.split(' ').nth(1),
            Some(format!("red/first{i}.png").as_str()),
            "{first}"
        );
        let file = s.data.join(format!("red/first{i}.png"));
        let inject = format!("inject=openat:error={errno}");
        let args = [
            "-o",
            "/dev/null",
            "-P",
            file.to_str().unwrap(),
            "-e",
            "trace=openat",
            "-e",
            &inject,
        ];
        let strace = match Strace::attach(s.pid(), &args) {
            Ok(strace) => strace,
            Err(why) => return skipped(test, &why),
        };
        let second = s
            .connect()
            .upload("SEAL", &format!("second{i}.png"), &seal(&image));
        strace.detach();
        assert_eq!(
            second.split(' ').nth(1),
            Some(format!("red/second{i}.png").as_str()),
            "{errno}: {second}"
        );
        assert!(!second.ends_with(" dup"), "{errno}: {second}");
        let detail = format!(
            "stored, but not indexed: cannot check index entry {}/.index/sealed/",
            s.data.display()
        );
        let logged = s.wait_log(&detail, Duration::from_secs(5));
        assert!(
            logged
                .as_deref()
                .is_some_and(|l| l.contains(&format!("first{i}.png"))),
            "{errno}: no {detail:?} in {}",
            s.log_text()
        );
        // Without the fault, the first copy answers for the content still.
        let third = s
            .connect()
            .upload("SEAL", &format!("third{i}.png"), &seal(&image));
        assert_eq!(
            third,
            format!("{first} dup"),
            "{errno}: the entry was replaced"
        );
        assert_eq!(s.files("red").len(), 2 * (i + 1));
    }
}

/// Sends one sealed upload while strace makes the `nth` fsync of the server
/// fail with EIO; `None` if strace cannot attach.
fn upload_with_failed_fsync(s: &TestServer, nth: u32, image: &[u8]) -> Option<String> {
    let inject = format!("inject=fsync:error=EIO:when={nth}");
    let args = ["-o", "/dev/null", "-e", "trace=fsync", "-e", &inject];
    let strace = Strace::attach(s.pid(), &args).ok()?;
    let reply = s.connect().upload("SEAL", "synced.png", &seal(image));
    strace.detach();
    Some(reply)
}

/// One syscall from an strace log line: when, its name, its text and
/// whether it returned 0 or a positive count.
struct Call<'a> {
    time: &'a str,
    name: &'a str,
    text: &'a str,
    ok: bool,
}

fn parse_calls(trace: &str) -> Vec<Call<'_>> {
    trace
        .lines()
        .filter_map(|line| {
            // "HH:MM:SS.micros name(args) = result"
            let (time, rest) = line.split_once(' ')?;
            let name = rest.split('(').next()?;
            let result = rest.rsplit_once(" = ")?.1;
            let ok = result
                .split_whitespace()
                .next()?
                .parse::<i64>()
                .is_ok_and(|n| n >= 0);
            Some(Call {
                time,
                name,
                text: rest,
                ok,
            })
        })
        .collect()
}

#[test]
fn ok_comes_after_fsync_link_and_directory_fsync() {
    let test = "ok_comes_after_fsync_link_and_directory_fsync";
    let s = TestServer::start(&[]);
    let trace_dir = tempfile::tempdir().unwrap();
    let out = trace_dir.path().join("trace");
    let strace = match Strace::attach(
        s.pid(),
        &[
            "-ff",
            "-tt",
            "-y",
            "-s",
            "256",
            "-e",
            "trace=fsync,fdatasync,link,linkat,symlink,symlinkat,write,sendto,sendmsg",
            "-o",
            out.to_str().unwrap(),
        ],
    ) {
        Ok(t) => t,
        Err(why) => return skipped(test, &why),
    };
    // Three clients, two uploads each, one PUT among them.
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let addr = s.addr;
            thread::spawn(move || {
                let mut c = Conn::new(std::net::TcpStream::connect(addr).unwrap());
                (0..2)
                    .map(|i| {
                        let image = png([0, 200, 0], 4 + t, 4 + i);
                        let reply = if t == 0 && i == 1 {
                            c.upload("PUT", &format!("o{t}{i}.png"), &image)
                        } else {
                            c.upload("SEAL", &format!("o{t}{i}.png"), &seal(&image))
                        };
                        assert!(reply.starts_with("OK "), "{reply}");
                        reply.split(' ').nth(1).unwrap().to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let stored: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // strace writes each call as it returns: wait until every OK's sendto
    // is in a trace, then detach.
    let traced = |path: &String| {
        let reply = format!("\"OK {path} ");
        files_in(trace_dir.path()).iter().any(|f| {
            fs::read_to_string(trace_dir.path().join(f)).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.contains("sendto(") && l.contains(&reply) && l.contains(" = "))
            })
        })
    };
    assert!(
        wait_until(after(Duration::from_secs(10)), || stored.iter().all(traced)),
        "strace did not write every reply"
    );
    strace.detach();

    let root = fs::canonicalize(&s.data).unwrap();
    let root = root.to_str().unwrap();
    let mut traces = HashMap::new();
    for f in files_in(trace_dir.path()) {
        traces.insert(
            f.clone(),
            fs::read_to_string(trace_dir.path().join(f)).unwrap(),
        );
    }
    let mut checked = 0;
    for path in &stored {
        let (folder, name) = path.split_once('/').unwrap();
        let reply = format!("\"OK {path} ");
        // The connection thread that sent this reply.
        let (thread, trace) = traces
            .iter()
            .find(|(_, t)| {
                t.lines()
                    .any(|l| l.contains("sendto(") && l.contains(&reply))
            })
            .unwrap_or_else(|| panic!("no thread sent the OK for {path}"));
        let calls = parse_calls(trace);
        let sent = calls
            .iter()
            .position(|c| c.name == "sendto" && c.text.contains(&reply))
            .unwrap();
        let dest = format!("\"{root}/{folder}/{name}\"");
        let linked = calls[..sent]
            .iter()
            .rposition(|c| c.name == "linkat" && c.text.contains(&dest))
            .unwrap_or_else(|| panic!("{thread}: no link to {dest} before the OK"));
        assert!(calls[linked].ok, "{}", calls[linked].text);
        // The staged file the link published: linkat(AT_FDCWD, "SRC", ...).
        let source = calls[linked].text.split('"').nth(1).unwrap();
        let file_synced = calls[..linked]
            .iter()
            .rposition(|c| c.name == "fsync" && c.text.contains(&format!("<{source}>")))
            .unwrap_or_else(|| panic!("{thread}: {source} not fsynced before its link"));
        assert!(calls[file_synced].ok);
        let folder_fd = format!("<{root}/{folder}>)");
        let dir_synced = calls[linked..sent]
            .iter()
            .position(|c| c.name == "fsync" && c.text.contains(&folder_fd) && c.ok)
            .unwrap_or_else(|| panic!("{thread}: {folder}/ not fsynced between link and OK"));
        let index = if folder == "not_trusted" {
            "plain"
        } else {
            "sealed"
        };
        let index_fd = format!("<{root}/.index/{index}>)");
        let index_synced = calls[linked..sent]
            .iter()
            .position(|c| c.name == "fsync" && c.text.contains(&index_fd) && c.ok)
            .unwrap_or_else(|| panic!("{thread}: .index/{index}/ not fsynced before OK"));
        let time = |i: usize| calls[i].time;
        eprintln!(
            "{path}: fsync(file) {} < link {} < fsync({folder}/) {} , fsync(.index) {} < OK {}",
            time(file_synced),
            time(linked),
            time(linked + dir_synced),
            time(linked + index_synced),
            time(sent)
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

// --- kill -9 under load -------------------------------------------------------

/// One upload of the kill test: its name, the image and the image sealed.
type Upload = (String, Vec<u8>, Vec<u8>);

#[test]
fn sigkill_under_load_loses_no_acknowledged_upload() {
    let dir = tempfile::tempdir().unwrap();
    install_test_key(dir.path());
    let mut s = TestServer::start_in(dir.path(), &[]);
    const CLIENTS: usize = 16;
    const EACH: usize = 20;
    // Distinct content for every upload (the store deduplicates), sealed
    // ahead of time so that the clients only send.
    let uploads: Vec<Vec<Upload>> = (0..CLIENTS)
        .map(|t| {
            (0..EACH)
                .map(|i| {
                    let image = noise_png(24, 24, (t * EACH + i) as u32);
                    let sealed = seal(&image);
                    (format!("k{t}-{i}.png"), image, sealed)
                })
                .collect()
        })
        .collect();
    let all_images: Vec<Vec<u8>> = uploads
        .iter()
        .flatten()
        .map(|(_, image, _)| image.clone())
        .collect();
    let acked = Arc::new(Mutex::new(Vec::<(String, Digest)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = uploads
        .into_iter()
        .map(|list| {
            let (addr, acked, count) = (s.addr, Arc::clone(&acked), Arc::clone(&count));
            thread::spawn(move || {
                let Ok(stream) = std::net::TcpStream::connect(addr) else {
                    return;
                };
                let mut c = Conn::new(stream);
                for (name, image, sealed) in list {
                    let mut msg = format!("SEAL {name} {}\r\n", sealed.len()).into_bytes();
                    msg.extend_from_slice(&sealed);
                    if c.stream.write_all(&msg).is_err() {
                        return;
                    }
                    let Some(reply) = common::conn::try_line(&mut c.reader) else {
                        return;
                    };
                    let Some(path) = reply.strip_prefix("OK ") else {
                        panic!("{name}: {reply}");
                    };
                    let path = path.split(' ').next().unwrap().to_string();
                    acked.lock().unwrap().push((path, Digest::of(&image)));
                    count.fetch_add(1, Ordering::AcqRel);
                }
            })
        })
        .collect();
    // Kill once a third of the uploads are acknowledged.
    assert!(
        wait_until(after(Duration::from_secs(60)), || count
            .load(Ordering::Acquire)
            >= CLIENTS * EACH / 3),
        "uploads too slow"
    );
    s.signal("KILL");
    let killed_at = count.load(Ordering::Acquire);
    s.wait_exit(Duration::from_secs(5)).expect("killed");
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let staged_before = staged_files(dir.path());
    let on_disk: usize = CLASS_FOLDERS
        .iter()
        .map(|f| files_in(&dir.path().join(f)).len())
        .sum();
    eprintln!(
        "kill -9: {killed_at} acknowledged when killed, {} in all; {on_disk} files on disk; \
         staging left behind: {}",
        acked.len(),
        staged_before.len()
    );
    assert!(
        acked.len() < CLIENTS * EACH,
        "the kill came too late to test anything"
    );

    // Restart on the same directory.
    let s = TestServer::start_in(dir.path(), &[]);
    for (path, digest) in &acked {
        let bytes = fs::read(dir.path().join(path))
            .unwrap_or_else(|e| panic!("acknowledged {path} is missing: {e}"));
        assert_eq!(Digest::of(&bytes), *digest, "{path} changed");
    }
    assert_only_whole_files(dir.path(), &all_images);
    assert_eq!(
        staged_files(dir.path()),
        Vec::<String>::new(),
        "staging is swept at start"
    );
    let instances = files_in(&dir.path().join(".staging"));
    assert_eq!(
        instances.iter().filter(|f| !f.starts_with('.')).count(),
        1,
        "only the running server's staging folder is left: {instances:?}"
    );
    // Acknowledged content is known after the restart: a re-send is a dup.
    let mut c = s.connect();
    if let Some((path, _)) = acked.first() {
        let image = all_images
            .iter()
            .find(|i| Digest::of(i) == acked[0].1)
            .unwrap();
        let reply = c.upload("SEAL", "again.png", &seal(image));
        assert!(
            reply.starts_with(&format!("OK {path} ")) && reply.ends_with(" dup"),
            "{reply}"
        );
    }
}

// --- Key file -----------------------------------------------------------------

/// Starts a server on `data` expecting it to refuse; returns its stderr.
fn refused_start(data: &Path) -> String {
    let out = Command::new(common::fixtures::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--key-bits",
            "2048",
            "--data",
        ])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn bad_key_files_stop_the_server_and_are_never_replaced() {
    let good = fs::read(common::fixtures::TEST_KEY).unwrap();
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let public = fs::read(common::fixtures::test_data("keys/test-only-server-key.pub")).unwrap();
    // (what, key.pem contents, mode, words the one error line must hold)
    let cases: Vec<(&str, Vec<u8>, u32, &[&str])> = vec![
        (
            "garbage",
            b"not a key\n".to_vec(),
            0o600,
            &["not a usable key"],
        ),
        ("empty", Vec::new(), 0o600, &["not a usable key"]),
        ("truncated", truncated, 0o600, &["not a usable key"]),
        ("a public key", public, 0o600, &["not a usable key"]),
        (
            "readable by others",
            good.clone(),
            0o644,
            &["mode 0644", "chmod 600"],
        ),
        (
            "readable by group",
            good.clone(),
            0o640,
            &["mode 0640", "chmod 600"],
        ),
    ];
    for (what, contents, mode, words) in cases {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        fs::write(&key, &contents).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
        let stderr = refused_start(dir.path());
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one clear line, got {stderr:?}");
        assert!(lines[0].starts_with("colorsort: "), "{what}: {stderr}");
        assert!(
            lines[0].contains("key.pem"),
            "{what}: names the file: {stderr}"
        );
        for w in words {
            assert!(lines[0].contains(w), "{what}: {stderr:?} lacks {w:?}");
        }
        assert_eq!(
            fs::read(&key).unwrap(),
            contents,
            "{what}: key.pem was changed"
        );
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            mode,
            "{what}: mode changed"
        );
        assert!(
            !dir.path().join("key.pub").exists(),
            "{what}: key.pub written"
        );
    }

    // Unreadable: root reads any file whatever its mode, so a key.pem that
    // cannot be read as a file is a directory here.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("key.pem")).unwrap();
    let stderr = refused_start(dir.path());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("key.pem") && stderr.contains("not a regular file"),
        "{stderr}"
    );
    assert!(dir.path().join("key.pem").is_dir());

    // A good key with the right mode is loaded, not replaced.
    let dir = tempfile::tempdir().unwrap();
    install_test_key(dir.path());
    let s = TestServer::start_in(dir.path(), &[]);
    assert!(s.connect().ask("KEY").starts_with("OK ssh-rsa "));
    assert!(!s.log_text().contains("generated"), "{}", s.log_text());
    drop(s);
    assert_eq!(fs::read(dir.path().join("key.pem")).unwrap(), good);
}
