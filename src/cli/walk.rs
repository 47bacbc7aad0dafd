//! Finding the files a command was given: files as named, folders walked
//! recursively in name order, without following links to folders.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The files under `paths`: files as given, folders walked recursively in
/// name order. Symbolic links to folders are not followed, so a link cycle
/// cannot loop. Entries that cannot be read are passed to `on_error`.
pub(super) fn walk(paths: &[PathBuf], on_error: &mut dyn FnMut(&Path, io::Error)) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => walk_dir(path, &mut out, on_error),
            Ok(_) => out.push(path.clone()),
            Err(e) => on_error(path, e),
        }
    }
    out
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>, on_error: &mut dyn FnMut(&Path, io::Error)) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return on_error(dir, e),
    };
    let mut entries: Vec<_> = entries
        .filter_map(|e| e.map_err(|e| on_error(dir, e)).ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_dir(&path, out, on_error),
            Ok(t) if t.is_file() => out.push(path),
            Ok(t) if t.is_symlink() => {
                if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                    out.push(path);
                }
            }
            Ok(_) => {}
            Err(e) => on_error(&path, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_recurses_in_order_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for f in ["a.png", "b/z.jpg", "b/c/y.gif", "b/a.txt"] {
            fs::write(dir.path().join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink(dir.path(), dir.path().join("b/loop")).unwrap();
        let mut errors = Vec::new();
        let found = walk(
            &[dir.path().to_path_buf(), dir.path().join("missing")],
            &mut |p, _| errors.push(p.to_path_buf()),
        );
        let rel: Vec<_> = found
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(rel, ["a.png", "b/a.txt", "b/c/y.gif", "b/z.jpg"]);
        assert_eq!(errors, [dir.path().join("missing")]);
    }
}
