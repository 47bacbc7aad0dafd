//! What the process as a whole asks of the operating system through libc:
//! its file-creation mask, and its effective user id. The server's own
//! calls (open-file limit, allocator) are in `server/resources.rs`. Every
//! `unsafe` call here is one libc call with the reason it is sound. A leaf:
//! it imports nothing of the crate.

/// Sets the process's file-creation mask (umask) to `mask`. The mask is
/// shared by every thread, so this belongs before any thread starts.
pub fn set_umask(mask: u32) {
    #[cfg(target_os = "linux")]
    // SAFETY: umask(2) takes a plain integer, cannot fail, and reads or
    // writes no memory of ours.
    unsafe {
        libc::umask(mask);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = mask;
}

/// The process's effective user id, which owns the files it creates;
/// `None` where it is not known.
pub fn effective_uid() -> Option<u32> {
    #[cfg(target_os = "linux")]
    // SAFETY: geteuid(2) takes no argument, cannot fail, and reads or writes
    // no memory of ours.
    let uid = Some(unsafe { libc::geteuid() });
    #[cfg(not(target_os = "linux"))]
    let uid = None;
    uid
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn effective_uid_owns_what_we_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"").unwrap();
        let owner = std::fs::metadata(&path).unwrap().uid();
        assert_eq!(effective_uid(), Some(owner));
    }
}
