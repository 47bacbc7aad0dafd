//! Reporting a test that cannot run here.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

/// Reports why a test did not run, in the form the test logs are searched
/// for. Where `COLORSORT_REQUIRE_TOOLS` is set, as CI sets it after
/// installing every tool the tests use, a test that cannot run fails: a
/// missing install step must not pass for a green run.
pub fn skipped(test: &str, why: &str) {
    if std::env::var_os("COLORSORT_REQUIRE_TOOLS").is_some_and(|v| !v.is_empty()) {
        panic!("{test} cannot run: {why} (COLORSORT_REQUIRE_TOOLS is set)");
    }
    eprintln!("SKIPPED: {test} ({why})");
    // libtest hides a passing test's stderr, so the line above is seen only
    // with --nocapture; `make test` names this file and lists it in its
    // final summary.
    if let Some(path) = std::env::var_os("COLORSORT_SKIP_LOG") {
        use std::io::Write as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "SKIPPED: {test} ({why})");
        }
    }
}
