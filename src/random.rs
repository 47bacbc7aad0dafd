//! Random names: the few bytes of the OS generator that staging folders,
//! temporary files and name suffixes use, for the server and the client
//! alike. A leaf: it imports nothing of the crate.

/// `bytes` random bytes from the OS, as lowercase hex.
pub fn hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS generator does not fail on Linux once booted; if it ever did,
    // a fixed value here costs uniqueness only, which every caller checks
    // again when it creates the name (O_EXCL or link(2)).
    let _ = getrandom::fill(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
