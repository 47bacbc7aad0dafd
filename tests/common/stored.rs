//! What a data directory holds: the files in its folders, what staging
//! left, and the check that nothing was stored.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use super::server::TestServer;
use std::path::Path;

/// The names in `dir`, sorted; none if it does not exist.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

impl TestServer {
    /// Files in a folder of the data directory, sorted.
    pub fn files(&self, folder: &str) -> Vec<String> {
        files_in(&self.data.join(folder))
    }
}

/// The folders uploads are filed in.
pub const CLASS_FOLDERS: [&str; 4] = ["red", "green", "blue", "not_trusted"];

/// Files left in the data directory's staging folders, as `instance/name`,
/// other than each running server's `lock` file.
pub fn staged_files(data: &Path) -> Vec<String> {
    let root = data.join(".staging");
    let mut left = Vec::new();
    for instance in files_in(&root) {
        let path = root.join(&instance);
        if path.is_dir() {
            for f in files_in(&path) {
                if f != "lock" {
                    left.push(format!("{instance}/{f}"));
                }
            }
        }
    }
    left
}

/// Panics unless no upload is stored anywhere in `data`: the class folders
/// and the content index are empty, and staging holds only lock files.
pub fn assert_nothing_stored(data: &Path) {
    for folder in CLASS_FOLDERS {
        assert_eq!(
            files_in(&data.join(folder)),
            Vec::<String>::new(),
            "{folder}/"
        );
    }
    for index in ["sealed", "plain"] {
        let entries = files_in(&data.join(".index").join(index));
        assert!(entries.is_empty(), ".index/{index}: {entries:?}");
    }
    for folder in CLASS_FOLDERS {
        let kept = files_in(&data.join("signatures").join(folder));
        assert!(kept.is_empty(), "signatures/{folder}: {kept:?}");
    }
    assert_eq!(staged_files(data), Vec::<String>::new(), "staging");
}
