//! The filesystem under the data directory: the server refuses to start on
//! one whose hard links or directory fsync do not work, with one line
//! saying what is missing, and starts on local filesystems and on a FUSE
//! mount that has them.
//!
//! The misbehaving filesystems are `tests/nolinkfs.py`, a FUSE passthrough
//! on mfusepy (PyPI) and libfuse 3, whose `link(2)` fails with EPERM (as
//! object-store mounts such as s3fs do), is not implemented (ENOSYS), or
//! copies; or whose directory fsync fails with EINVAL. (A link that
//! replaces an existing name cannot be made through FUSE, whose kernel
//! side refuses a name it can see: the unit tests of the probe cover it.)
//! Mounting it needs /dev/fuse and root (or fusermount3).
//! Where any of that is missing the tests print `SKIPPED: ... (why)` and
//! pass, unless `COLORSORT_REQUIRE_TOOLS` is set, as CI sets it after
//! installing them (see .ci/run).

mod common {
    pub mod conn;
    pub mod fixtures;
    pub mod server;
    pub mod skip;
    pub mod stored;
    pub mod wait;
}

use common::fixtures::{install_test_key, png};
use common::server::TestServer;
use common::skip::skipped;
use common::stored::assert_nothing_stored;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The filesystem type and source of the mount that holds `path`, from
/// /proc/self/mountinfo: the mount with the longest mount point above it.
fn mount_of(path: &Path) -> Option<(String, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String, String)> = None;
    for line in info.lines() {
        let (left, right) = line.split_once(" - ")?;
        // Spaces and the like in a mount point are escaped as octal (\040).
        let point = left.split(' ').nth(4)?.replace("\\040", " ");
        let mut right = right.split(' ');
        let (kind, source) = (right.next()?, right.next()?);
        if path.starts_with(&point) && best.as_ref().is_none_or(|(len, ..)| point.len() >= *len) {
            best = Some((point.len(), kind.to_string(), source.to_string()));
        }
    }
    best.map(|(_, kind, source)| (kind, source))
}

/// The Python that can import mfusepy: the one .ci/run installs it for,
/// or the one on PATH.
fn fuse_python() -> Result<PathBuf, String> {
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuse-tools/bin/python3");
    for python in [ours, PathBuf::from("python3")] {
        let imports = Command::new(&python)
            .args(["-c", "import mfusepy"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if imports {
            return Ok(python);
        }
    }
    Err("no python3 with mfusepy and libfuse 3 (see .ci/run)".into())
}

/// `tests/nolinkfs.py` mounted over a temporary directory, mirroring
/// another; unmounted on drop.
struct NoLinkFs {
    child: Child,
    /// Holds `mnt/`, the mount point, `backing/`, what it mirrors, and
    /// `fuse.log`, the filesystem's stderr.
    dir: tempfile::TempDir,
}

impl NoLinkFs {
    /// Mounts it with `--link link --fsyncdir fsyncdir`, or says why it
    /// cannot.
    fn mount(link: &str, fsyncdir: &str) -> Result<NoLinkFs, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse".into());
        }
        let python = fuse_python()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (mnt, backing) = (dir.path().join("mnt"), dir.path().join("backing"));
        for d in [&mnt, &backing] {
            fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        let log = fs::File::create(dir.path().join("fuse.log")).map_err(|e| e.to_string())?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nolinkfs.py");
        let child = Command::new(&python)
            .arg(script)
            .args([&backing, &mnt])
            .args(["--link", link, "--fsyncdir", fsyncdir])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let mut fs = NoLinkFs { child, dir };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if mount_of(&mnt).is_some_and(|(kind, source)| kind == "fuse" && source == "nolinkfs") {
                return Ok(fs);
            }
            if let Ok(Some(status)) = fs.child.try_wait() {
                let said = fs::read_to_string(fs.dir.path().join("fuse.log")).unwrap_or_default();
                return Err(format!("nolinkfs.py exited with {status}: {}", said.trim()));
            }
            if Instant::now() > until {
                return Err("nolinkfs.py did not mount within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn backing(&self) -> PathBuf {
        self.dir.path().join("backing")
    }
}

impl Drop for NoLinkFs {
    fn drop(&mut self) {
        let mnt = self.mnt();
        let unmounted = [
            Command::new("fusermount3").arg("-u").arg(&mnt).status(),
            Command::new("umount").arg(&mnt).status(),
            Command::new("umount").arg("-l").arg(&mnt).status(),
        ]
        .into_iter()
        .any(|s| s.is_ok_and(|s| s.success()));
        // Unmounting ends the filesystem's process; if it did not, end it.
        let until = Instant::now() + Duration::from_secs(10);
        while unmounted && Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on a data directory on nolinkfs mounted with `link`
/// and `fsyncdir`, expects it to refuse with exit status 1 and the one
/// line `colorsort: data directory DATA SAYS (see docs/OPERATIONS.md)`,
/// SAYS one of `says`, and checks that it left nothing behind.
fn refused(test: &str, link: &str, fsyncdir: &str, says: &[&str]) {
    let fs = match NoLinkFs::mount(link, fsyncdir) {
        Ok(fs) => fs,
        Err(why) => return skipped(test, &why),
    };
    let data = fs.mnt().join("data");
    install_test_key(&data);
    let (status, log) = match TestServer::try_start_in(&data, &[]) {
        Ok(s) => panic!(
            "the server started on nolinkfs --link {link} --fsyncdir {fsyncdir}: {s:?}",
            s = s.log_text()
        ),
        Err(refused) => refused,
    };
    assert_eq!(status.code(), Some(1), "{log}");
    let want: Vec<String> = says
        .iter()
        .map(|says| {
            format!(
                "colorsort: data directory {} {says} (see docs/OPERATIONS.md)",
                data.display()
            )
        })
        .collect();
    assert!(
        want.contains(&log),
        "one line, naming what is missing: got\n{log}\nwant one of\n{}",
        want.join("\n")
    );
    let backing = fs.backing().join("data");
    assert_nothing_stored(&backing);
    let staging = fs::read_dir(backing.join(".staging"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        staging,
        [".lock"],
        "the refused server's staging folder is removed"
    );
}

const NO_LINKS: &str = "does not support hard links: link(2) failed";
const USE_LINKS: &str = "colorsort publishes uploads with link(2): use a filesystem that has them";

#[test]
fn link_failing_with_eperm_is_refused_at_start() {
    refused(
        "link_failing_with_eperm_is_refused_at_start",
        "eperm",
        "ok",
        &[&format!(
            "{NO_LINKS}: Operation not permitted (os error 1); {USE_LINKS}"
        )],
    );
}

#[test]
fn link_not_implemented_is_refused_at_start() {
    // Recent Linux kernels pass a FUSE filesystem's ENOSYS from link on as
    // EPERM, since link(2) has no ENOSYS; older ones pass it on as it is.
    let enosys = format!("{NO_LINKS}: Function not implemented (os error 38); {USE_LINKS}");
    let eperm = format!("{NO_LINKS}: Operation not permitted (os error 1); {USE_LINKS}");
    refused(
        "link_not_implemented_is_refused_at_start",
        "enosys",
        "ok",
        &[enosys.as_str(), eperm.as_str()],
    );
}

#[test]
fn link_that_copies_is_refused_at_start() {
    refused(
        "link_that_copies_is_refused_at_start",
        "copy",
        "ok",
        &[
            "does not support hard links: link(2) made a new file, not a second name for the same \
          one; colorsort publishes uploads with link(2): use a filesystem that has real hard links",
        ],
    );
}

#[test]
fn directory_fsync_failing_is_refused_at_start() {
    refused(
        "directory_fsync_failing_is_refused_at_start",
        "ok",
        "einval",
        &[
            "cannot fsync a directory: fsync(2) failed: Invalid argument (os error 22); colorsort \
          fsyncs an upload's folder before it replies OK: use a filesystem that supports it",
        ],
    );
}

/// Starts the server on `data`, files one upload, and checks it is on disk
/// at `on_disk` (the same directory, or what a mount mirrors).
fn serves(data: &Path, on_disk: &Path) {
    install_test_key(data);
    let s = TestServer::start_in(data, &[]);
    let mut c = s.connect();
    let reply = c.upload("PUT", "a.png", &png([200, 10, 10], 4, 4));
    assert_eq!(
        reply,
        "OK not_trusted/a.png r=200.0 g=10.0 b=10.0",
        "{}",
        s.log_text()
    );
    // The content index works there too.
    let again = c.upload("PUT", "b.png", &png([200, 10, 10], 4, 4));
    assert_eq!(again, format!("{reply} dup"));
    assert!(on_disk.join("not_trusted/a.png").is_file());
    assert_eq!(c.ask("STATS"), "OK red=0 green=0 blue=0 not_trusted=1");
}

#[test]
fn a_fuse_mount_with_working_links_is_served() {
    // The same passthrough as above, with nothing refused: the refusals
    // come from what the filesystem lacks, not from FUSE.
    let fs = match NoLinkFs::mount("ok", "ok") {
        Ok(fs) => fs,
        Err(why) => return skipped("a_fuse_mount_with_working_links_is_served", &why),
    };
    serves(&fs.mnt().join("data"), &fs.backing().join("data"));
}

#[test]
fn local_disk_and_tmpfs_are_served() {
    let disk = tempfile::tempdir().unwrap();
    let kind = mount_of(disk.path()).map(|(kind, _)| kind);
    assert!(
        kind.as_deref().is_some_and(|k| k != "tmpfs" && k != "fuse"),
        "the temporary directory is on {kind:?}, not a local disk"
    );
    serves(disk.path(), disk.path());

    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        return skipped("local_disk_and_tmpfs_are_served", "no /dev/shm");
    };
    let kind = mount_of(shm.path()).map(|(kind, _)| kind);
    if kind.as_deref() != Some("tmpfs") {
        return skipped(
            "local_disk_and_tmpfs_are_served",
            &format!("/dev/shm is {kind:?}, not tmpfs"),
        );
    }
    serves(shm.path(), shm.path());
}
