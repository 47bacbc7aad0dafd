//! Every helper in tests/common/ has a user. Each test crate declares the
//! helper files it needs in its `mod common` and uses only some of what
//! each holds, so those files allow dead code; this check is what shows a
//! helper that no test uses any more: each function, type and constant
//! defined there must be named somewhere in tests/ other than where it is
//! defined.

use std::fs;
use std::path::{Path, PathBuf};

/// The `.rs` files directly in `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    files
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers of `text`, each with the word before it (`fn`, `struct`,
/// ...), if any.
fn words(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut previous = "";
    for word in text.split(|c: char| !is_ident(c)).filter(|w| !w.is_empty()) {
        out.push((previous, word));
        previous = word;
    }
    out
}

/// The keywords that introduce a definition.
const DEFINES: [&str; 5] = ["fn", "struct", "enum", "const", "static"];

/// The names `text` defines.
fn defined(text: &str) -> Vec<&str> {
    words(text)
        .into_iter()
        .filter(|(before, _)| DEFINES.contains(before))
        .map(|(_, name)| name)
        .collect()
}

/// How many times `texts` name `name` other than to define it.
fn uses(texts: &[String], name: &str) -> usize {
    texts
        .iter()
        .flat_map(|t| words(t))
        .filter(|&(before, word)| word == name && !DEFINES.contains(&before))
        .count()
}

#[test]
fn every_common_helper_is_used() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let common = sources(&root.join("common"));
    assert!(!common.is_empty(), "no helper files in tests/common");
    // This file's own words do not count.
    let texts: Vec<String> = sources(&root)
        .iter()
        .filter(|p| !p.ends_with("helpers.rs"))
        .chain(&common)
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    let mut unused = Vec::new();
    let mut checked = 0;
    for path in &common {
        let text = fs::read_to_string(path).unwrap();
        for name in defined(&text) {
            checked += 1;
            if uses(&texts, name) == 0 {
                unused.push(format!("{}: {name}", path.display()));
            }
        }
    }
    assert!(checked > 0, "no definitions found in tests/common");
    assert!(unused.is_empty(), "helpers nothing uses: {unused:#?}");
}

#[test]
fn definitions_and_uses_are_told_apart() {
    let text = "pub fn helper() {}\nstruct Thing;\nfn caller() { helper(); }".to_string();
    assert_eq!(defined(&text), ["helper", "Thing", "caller"]);
    let cases = [("helper", 1), ("Thing", 0), ("caller", 0), ("help", 0)];
    for (name, count) in cases {
        assert_eq!(uses(std::slice::from_ref(&text), name), count, "{name}");
    }
}
