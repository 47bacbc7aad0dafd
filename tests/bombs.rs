//! Inputs whose decoding takes memory their header does not predict
//! (`common::bombs`), through `colorsort classify` in a process of its
//! own: what each makes that process hold at its peak, measured by the
//! kernel, while its decode worker is held to its limit.

mod common {
    pub mod bombs;
    pub mod fixtures;
}

use common::bombs::{TiffType, tiff_tag_list, webp_prefix_groups};
use common::fixtures::bin;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `colorsort classify FILE` and returns its output and the most
/// memory it held (max RSS, bytes), from `wait4`.
// The child is reaped by `wait4`, which `Child::wait` cannot stand in for:
// it gives no resource usage.
#[allow(clippy::zombie_processes)]
fn classify_with_peak(file: &Path) -> (String, u64) {
    let child = Command::new(bin())
        .args(["classify", "-j", "1"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut output = child.stdout.unwrap();
    let mut errors = child.stderr.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut output, &mut text).unwrap();
    std::io::Read::read_to_string(&mut errors, &mut text).unwrap();
    let mut status = 0;
    // SAFETY: `usage` is a valid out-parameter; `pid` is our own child,
    // never waited for by anything else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    assert!(
        libc::WIFEXITED(status),
        "{}: ended by a signal, status {status}: {text}",
        file.display()
    );
    (text, usage.ru_maxrss as u64 * 1024)
}

/// The peak of `colorsort classify` on a 1x1 image it classifies like any
/// other: what the process takes without a bomb.
fn baseline(dir: &Path) -> u64 {
    let plain = dir.join("plain.png");
    std::fs::write(&plain, common::fixtures::png([200, 40, 50], 1, 1)).unwrap();
    let (text, peak) = classify_with_peak(&plain);
    assert!(text.contains(" red "), "{text}");
    peak
}

#[test]
fn a_webp_of_many_prefix_groups_is_contained_by_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(dir.path());
    // 4096 groups: about 240 KB of file, 5 × 4096 tables of 4 KiB, some
    // 85 MB when decoded in one process; its header says 1x1.
    let bytes = webp_prefix_groups(4096);
    let file = dir.path().join("groups.webp");
    std::fs::write(&file, &bytes).unwrap();
    let (text, peak) = classify_with_peak(&file);
    // Its worker, allowed what a 1x1 image and its input take, runs into
    // that limit; the decode fails, not the process that asked for it.
    assert!(
        text.contains("groups.webp: the decode worker ran into its memory limit of"),
        "{text}"
    );
    let over = peak.saturating_sub(base);
    eprintln!(
        "webp of 4096 prefix groups: {} bytes, classify's own peak RSS {peak} bytes, {over} over a 1x1 png's",
        bytes.len()
    );
    // The process that asked holds the file and its own buffers, not the
    // decoder's tables: far less than one process decoding it (85 MB).
    assert!(
        over < 16 << 20,
        "{over} bytes over the baseline for {} bytes",
        bytes.len()
    );
    // Fewer groups fit their worker: the image is valid, and its one
    // transparent black pixel is classified.
    let small = webp_prefix_groups(16);
    let small_file = dir.path().join("small.webp");
    std::fs::write(&small_file, &small).unwrap();
    let (text, _) = classify_with_peak(&small_file);
    assert!(text.contains("small.webp red r=0.0 g=0.0 b=0.0"), "{text}");
}

#[test]
fn a_tiff_of_huge_tag_lists_is_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(dir.path());
    for (count, kind) in [(1 << 20, TiffType::Byte), (1 << 18, TiffType::Long)] {
        let bytes = tiff_tag_list(count, kind);
        let file = dir.path().join("list.tiff");
        std::fs::write(&file, &bytes).unwrap();
        let (text, peak) = classify_with_peak(&file);
        assert!(
            text.contains("list.tiff: image too complex to decode"),
            "{text}"
        );
        let over = peak.saturating_sub(base);
        eprintln!(
            "tiff of {count} {kind:?} widths: {} bytes, peak RSS {peak} bytes, {over} over a 1x1 png's",
            bytes.len()
        );
        // Read as the decoder reads it, the list would take 32 bytes a
        // value; refused, it takes no more than the file and what reading
        // a header may take.
        let bound = bytes.len() as u64 + colorsort::classify::open_memory(&bytes);
        assert!(
            over <= bound,
            "{over} bytes over the baseline, bound {bound}"
        );
        assert!(
            over < 32 * u64::from(count) / 2,
            "{over} bytes over the baseline"
        );
    }
}

/// The WebP bomb kept in test-data for the container test
/// (`tests/docker-test.sh`) is what the generator makes of 4096 groups.
#[test]
fn the_webp_bomb_fixture_is_the_generators() {
    let path = common::fixtures::test_data("bombs/fail_prefix_groups.webp");
    let kept = std::fs::read(&path).unwrap();
    assert!(
        kept == webp_prefix_groups(4096),
        "{} differs",
        path.display()
    );
}
