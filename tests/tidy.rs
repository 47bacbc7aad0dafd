//! The tree's own rules, kept by a test rather than by prose: every source
//! file opens with a `//!` paragraph on what it owns; none is over
//! [`MAX_LINES`] lines before its tests; the library's top-level modules
//! import only what [`LAYERS`] allows them, which leaves no circle; the
//! client side never imports the server or the store; the benchmark's
//! files import one another without a circle; and every helper in
//! tests/common/ has a user. `vendor/` is third-party code and is not held
//! to them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Lines a file may have before its `#[cfg(test)]` module.
const MAX_LINES: usize = 600;

/// Each top-level module of the library and the modules it may import.
/// docs/ARCHITECTURE.md explains the layers; a new module needs a row.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves that import nothing of the crate.
    ("calendar", &[]),
    ("memcpy", &[]),
    ("name", &[]),
    ("parallel", &[]),
    ("process", &[]),
    ("random", &[]),
    ("ssh", &[]),
    // Leaves that import other leaves.
    ("log", &["calendar"]),
    ("identity", &["ssh"]),
    ("sshsig", &["ssh"]),
    ("protocol", &["sshsig"]),
    ("config", &["identity", "log", "sshsig"]),
    ("budget", &["config"]),
    // Formats and the decode.
    ("allowed_signers", &["calendar", "sshsig"]),
    ("age", &["identity"]),
    ("classify", &["config"]),
    ("sandbox", &["budget", "classify", "config", "log"]),
    // The client's side.
    ("client", &["identity", "protocol"]),
    ("pins", &["identity", "random"]),
    // The server's side.
    (
        "store",
        &[
            "classify", "identity", "name", "process", "protocol", "random",
        ],
    ),
    (
        "metrics",
        &["calendar", "config", "protocol", "sandbox", "store"],
    ),
    (
        "gallery",
        &[
            "allowed_signers",
            "budget",
            "config",
            "log",
            "parallel",
            "random",
            "sandbox",
            "sshsig",
            "store",
        ],
    ),
    (
        "server",
        &[
            "age",
            "allowed_signers",
            "budget",
            "classify",
            "config",
            "identity",
            "log",
            "metrics",
            "name",
            "protocol",
            "sandbox",
            "sshsig",
            "store",
        ],
    ),
    // The command line: anything.
    ("cli", &["*"]),
];

/// Files of the client side, which never import `server` or `store`.
const CLIENT_SIDE: &[&str] = &[
    "src/client.rs",
    "src/pins.rs",
    "src/cli/send",
    "src/cli/key.rs",
    "src/cli/ping.rs",
    "src/cli/sign.rs",
    "src/cli/stats.rs",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The file's text before its `#[cfg(test)]` module, if it has one.
fn before_tests(text: &str) -> &str {
    text.find("\n#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// The names that follow `prefix` (`crate::`, `super::`) in code outside
/// comments, with those of a `use prefix{a, b::c}` group.
fn imports(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in before_tests(text).lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices(prefix) {
            let rest = &line[at + prefix.len()..];
            let group = rest
                .strip_prefix('{')
                .map(|g| g.split('}').next().unwrap_or(""));
            let heads: Vec<&str> = match group {
                Some(group) => group.split(',').map(str::trim).collect(),
                None => vec![rest],
            };
            for head in heads {
                let name: String = head
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// The module under `dir` that a file in it belongs to: the file, or the
/// folder it is in.
fn top_module(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The first circle in `graph`, if any.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_source_file_opens_with_a_paragraph_on_what_it_owns() {
    let mut missing = Vec::new();
    for dir in ["src", "benches", "tests"] {
        for file in rust_files(&root().join(dir)) {
            let text = fs::read_to_string(&file).unwrap();
            if !text.starts_with("//!") {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "no `//!` header: {missing:#?}");
}

#[test]
fn no_file_is_over_the_line_limit_before_its_tests() {
    let mut long = Vec::new();
    for dir in ["src", "benches"] {
        for file in rust_files(&root().join(dir)) {
            let lines = before_tests(&fs::read_to_string(&file).unwrap())
                .lines()
                .count();
            if lines > MAX_LINES {
                long.push(format!("{}: {lines}", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn modules_import_only_what_their_layer_allows() {
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    for file in rust_files(&root().join("src")) {
        let name = file.file_name().unwrap();
        if file.parent() == Some(&root().join("src")) && (name == "lib.rs" || name == "main.rs") {
            continue;
        }
        let top = top_module(&root().join("src"), &file);
        let Some(allowed) = layers.get(top.as_str()) else {
            broken.push(format!("{top}: no row in LAYERS"));
            continue;
        };
        let text = fs::read_to_string(&file).unwrap();
        for used in imports(&text, "crate::") {
            if used == top {
                continue;
            }
            if !allowed.contains(&"*") && !allowed.contains(&used.as_str()) {
                broken.push(format!("{} imports {used}", file.display()));
            }
            graph.entry(top.clone()).or_default().insert(used);
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
    assert_eq!(circle(&graph), None, "a circle of imports");
}

#[test]
fn the_client_side_never_imports_the_server_or_the_store() {
    let mut broken = Vec::new();
    for entry in CLIENT_SIDE {
        let path = root().join(entry);
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path]
        };
        for file in files {
            let used = imports(&fs::read_to_string(&file).unwrap(), "crate::");
            for forbidden in ["server", "store"] {
                if used.contains(forbidden) {
                    broken.push(format!("{} imports {forbidden}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn the_benchmark_files_import_one_another_without_a_circle() {
    let bench = root().join("benches/bench");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&bench) {
        let rel = file.strip_prefix(&bench).unwrap();
        let top = top_module(&bench, &file);
        if top == "main" {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        // A file inside a folder reaches its siblings' parent through
        // `super::`; at the top, `super::` is the crate root.
        let mut used = imports(&text, "crate::");
        if rel.components().count() == 1 {
            used.extend(imports(&text, "super::"));
        }
        used.remove(&top);
        graph.entry(top).or_default().extend(used);
    }
    assert!(graph.len() > 5, "found {} benchmark modules", graph.len());
    assert_eq!(circle(&graph), None, "a circle of imports");
}

#[test]
fn the_import_reader_reads_paths_and_groups() {
    let text = "use crate::a::B;\nuse crate::{c, d::E, self};\n// crate::f\nlet x = crate::g::h();\n#[cfg(test)]\nuse crate::t;";
    let expected: BTreeSet<String> = ["a", "c", "d", "g"].map(String::from).into();
    assert_eq!(imports(text, "crate::"), expected);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
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

/// Each test crate declares the helper files it needs in its `mod common`
/// and uses only some of what each holds, so those files allow dead code;
/// this is what shows a helper that no test uses any more: each function,
/// type and constant defined there must be named somewhere in tests/ other
/// than where it is defined.
#[test]
fn every_common_helper_is_used() {
    let tests = root().join("tests");
    let common = rust_files(&tests.join("common"));
    assert!(!common.is_empty(), "no helper files in tests/common");
    // This file's own words do not count.
    let texts: Vec<String> = rust_files(&tests)
        .iter()
        .filter(|p| !p.ends_with("tidy.rs"))
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
