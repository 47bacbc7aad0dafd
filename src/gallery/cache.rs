//! The thumbnail cache's manifest (`DATA/.thumbs/manifest.tsv`): what each
//! thumbnail was made from and the image's means, read, written and used
//! to prune thumbnails of images that are gone; and the atomic write that
//! every file of the gallery goes through.

use crate::store::Folder;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

/// The cache's record of what each thumbnail was made from.
pub(super) const MANIFEST: &str = "manifest.tsv";

/// What the cache knew of an image.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cached {
    pub(super) size: u64,
    pub(super) mtime: u128,
    pub(super) mean: Option<[f64; 3]>,
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename, so a
/// reader never sees half a file.
pub(super) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    // Random, not the process id: in a container every process is PID 1.
    let temp = dir.join(format!(".{name}.{}.tmp", crate::random::hex(8)));
    fs::write(&temp, bytes)?;
    fs::rename(&temp, dir.join(name)).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

pub(super) fn read_manifest(path: &Path) -> HashMap<String, Cached> {
    let Ok(text) = fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [key, size, mtime, mean] = f[..] else {
                return None;
            };
            let mean = match mean {
                "-" => None,
                m => {
                    let v: Vec<f64> = m.split(',').filter_map(|x| x.parse().ok()).collect();
                    Some(<[f64; 3]>::try_from(v).ok()?)
                }
            };
            Some((
                key.to_string(),
                Cached {
                    size: size.parse().ok()?,
                    mtime: mtime.parse().ok()?,
                    mean,
                },
            ))
        })
        .collect()
}

pub(super) fn write_manifest(thumbs: &Path, entries: &HashMap<String, Cached>) -> io::Result<()> {
    let mut keys: Vec<&String> = entries.keys().collect();
    keys.sort();
    let mut text = String::new();
    for key in keys {
        let c = &entries[key];
        let mean = c
            .mean
            .map_or("-".to_string(), |[r, g, b]| format!("{r},{g},{b}"));
        let _ = writeln!(text, "{key}\t{}\t{}\t{mean}", c.size, c.mtime);
    }
    write_atomically(thumbs, MANIFEST, text.as_bytes())
}

/// Removes thumbnails of images that are no longer there.
pub(super) fn prune(thumbs: &Path, live: &HashMap<String, Cached>) {
    for folder in Folder::ALL {
        let Ok(entries) = fs::read_dir(thumbs.join(folder.as_str())) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file) = entry.file_name().into_string() else {
                continue;
            };
            let image = file.strip_suffix(".jpg").unwrap_or(&file);
            if !file.starts_with('.') && !live.contains_key(&format!("{folder}/{image}")) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}
