//! The buffer a decoder writes pixels into: zeroed memory straight from the
//! allocator, with the kernel asked for huge pages under it.

use std::alloc::{self, Layout};

use super::Error;

/// A zeroed buffer of `bytes` bytes for a decoder to write pixels into, or
/// [`Error::OutOfMemory`] if it cannot be had.
///
/// The buffer comes from the allocator's zeroed allocation: for a large
/// buffer that is a fresh mapping, already zero, so the only writes to it are
/// the decoder's. Its pages are faulted in as the decoder first writes them;
/// with 4 KiB pages that is one fault per 4 KiB, about a fifth of the time of
/// decoding a large JPEG, so the kernel is asked for 2 MiB pages instead.
pub(super) fn pixel_buffer(bytes: u64) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(bytes).map_err(|_| Error::OutOfMemory { bytes })?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let layout = Layout::array::<u8>(len).map_err(|_| Error::OutOfMemory { bytes })?;
    // SAFETY: `layout` has a non-zero size, checked above.
    let ptr = unsafe { alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(Error::OutOfMemory { bytes });
    }
    huge_pages::advise(ptr, len);
    // SAFETY: `ptr` was allocated by the global allocator with the layout of
    // `len` bytes, aligned for `u8`, and all `len` bytes are initialised
    // (to zero), so it is a valid `Vec<u8>` of length and capacity `len`.
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// Advice to the kernel on the pages of pixel buffers.
mod huge_pages {
    /// Buffers smaller than this are left alone: the 2 MiB-aligned part of
    /// them is small or empty.
    const MIN_LEN: usize = 8 << 20;
    /// The huge page size of x86-64 and of 4 KiB-page arm64.
    const HUGE_PAGE: usize = 2 << 20;

    /// Asks for transparent huge pages under the 2 MiB-aligned part of the
    /// `len` bytes at `ptr`, which must not have been touched yet for the
    /// advice to take effect at the first fault. Only advice: where the
    /// kernel has no huge pages to give, or THP is disabled, nothing changes.
    #[cfg(target_os = "linux")]
    pub fn advise(ptr: *mut u8, len: usize) {
        if len < MIN_LEN {
            return;
        }
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies within the allocation at `ptr` and is
            // page-aligned; MADV_HUGEPAGE changes no contents and a failure
            // leaves the mapping as it was.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn advise(_ptr: *mut u8, _len: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_buffers_are_zeroed_at_every_size() {
        // Sizes either side of the huge-page threshold, and ones that leave
        // a partial 2 MiB page at either end.
        for bytes in [0, 1, 4095, (8 << 20) - 1, 8 << 20, (20 << 20) + 12_345] {
            let buffer = pixel_buffer(bytes).unwrap();
            assert_eq!(buffer.len() as u64, bytes);
            assert!(buffer.iter().all(|&b| b == 0), "{bytes}");
        }
        let error = pixel_buffer(u64::MAX).unwrap_err();
        assert!(
            matches!(error, Error::OutOfMemory { bytes: u64::MAX }),
            "{error:?}"
        );
    }
}
