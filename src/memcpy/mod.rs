//! The static musl binary's `memcpy`, `memmove` and `memset`.
//!
//! musl's x86-64 `memcpy` is `rep movsq` with a byte-wise `movsb` head and
//! tail, its `memmove` that or a backward `std; rep movsb`, and its `memset`
//! `rep stosq` from 127 bytes: fine for long runs, but every call pays a
//! string instruction's start-up cost, tens of cycles, however few bytes it
//! moves (a 4-byte copy is a `rep movsq` of no words and four single
//! `movsb`). The JPEG decoder refills its bit reader with a `copy_from_slice`
//! of 4 bytes that is not inlined, so a call to `memcpy`, hundreds of
//! thousands of times a photo, and clears a 256-byte coefficient buffer
//! about as often; glibc picks vector routines at start instead. Measured
//! in docs/BENCHMARKS.md (sections 5 and 5b).
//!
//! This module defines the three symbols itself, in the musl build only: a
//! static link takes a symbol from `libc.a` only while it is still
//! undefined, and the crate's objects come before `libc.a` on the link
//! line, so every caller, musl's own functions included, gets these. The
//! feature `libc-mem` leaves them out, for the benchmark's comparison. The
//! functions behind them ([`copy`], [`fill`]) are ordinary Rust, compiled
//! and tested on every x86-64 target. Up to 128 bytes (256 for a disjoint
//! copy or a fill) they are a branch or two and overlapping unaligned loads
//! and stores, no loop; longer, a 64-byte SSE loop, or `rep movsb` /
//! `rep stosb` from 2 KiB on CPUs that report fast string instructions
//! (ERMSB, read once with `cpuid` and cached in an atomic).
//!
//! # Safety
//!
//! The exports have the C contracts: `memcpy` copies `n` bytes between
//! valid regions that do not overlap, `memmove` between valid regions that
//! may, `memset` fills a valid region; all return `dst`. Callers (Rust's
//! `copy_nonoverlapping`, `copy` and `write_bytes`, and musl) guarantee the
//! regions are valid for `n` bytes; with `n == 0` nothing is read or
//! written, so any pointer is accepted. Inside, every access is an
//! unaligned load or store of 1 to 16 bytes lying wholly within
//! `[src, src + n)` or `[dst, dst + n)`, or a string instruction over
//! exactly those ranges: each `// SAFETY:` comment names the bounds.
//! Overlap is safe in `memmove` because each path either loads every byte
//! before storing any (up to 128 bytes) or walks away from the overlap
//! (forward when `dst` is below `src`, backward when above), its first
//! and last stretches loaded before the walk and stored after it.
//!
//! These functions must never call `memcpy`, `memmove` or `memset`, which
//! would recurse into themselves. They therefore copy only fixed-size
//! values (loads of 1 to 16 bytes, which the compiler emits as single
//! instructions), never slices, and their loops hold an empty `asm!`
//! barrier, which keeps LLVM from recognising a copy or fill loop and
//! replacing it with a call to the very function it is in. Nor may they
//! panic or allocate: the arithmetic cannot overflow for regions that exist
//! (`n` is at most `isize::MAX`), and nothing here touches thread-locals or
//! the heap. The benchmark checks the musl binary with `objdump` for any
//! call from them to the three (section 5b).
//!
//! The string instructions rely on the direction flag being clear, which
//! the System V ABI guarantees on entry to every function.

#![cfg(target_arch = "x86_64")]

pub mod copy;
pub mod cpu;
pub mod fill;

#[cfg(all(target_arch = "x86_64", target_env = "musl", not(feature = "libc-mem")))]
mod exports {
    use core::ffi::{c_int, c_void};

    /// C `memcpy`: copies `n` bytes from `src` to `dst`, which must not
    /// overlap; returns `dst`.
    ///
    /// # Safety
    ///
    /// `src` readable and `dst` writable for `n` bytes, disjoint.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
        // SAFETY: the caller's contract is the one `copy::forward` needs.
        unsafe { super::copy::forward(dst.cast(), src.cast(), n) };
        dst
    }

    /// C `memmove`: copies `n` bytes from `src` to `dst` as if through a
    /// temporary buffer, so the regions may overlap; returns `dst`.
    ///
    /// # Safety
    ///
    /// `src` readable and `dst` writable for `n` bytes.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memmove(
        dst: *mut c_void,
        src: *const c_void,
        n: usize,
    ) -> *mut c_void {
        // SAFETY: the caller's contract is the one `copy::moving` needs.
        unsafe { super::copy::moving(dst.cast(), src.cast(), n) };
        dst
    }

    /// C `memset`: sets `n` bytes at `dst` to `c` converted to a byte;
    /// returns `dst`.
    ///
    /// # Safety
    ///
    /// `dst` writable for `n` bytes.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memset(dst: *mut c_void, c: c_int, n: usize) -> *mut c_void {
        // SAFETY: the caller's contract is the one `fill::fill` needs.
        // C converts `c` to unsigned char: the truncation is the contract.
        unsafe { super::fill::fill(dst.cast(), c as u8, n) };
        dst
    }
}
