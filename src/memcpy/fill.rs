//! Filling bytes with one value: the body of the musl build's `memset`
//! (see the module above for why it exists and what it must not do).
//!
//! Up to 256 bytes, overlapping unaligned stores of the value repeated, no
//! loop; beyond, a 64-byte loop with the destination 16-byte aligned, or
//! `rep stosb` from 2 KiB on CPUs with ERMSB.

use super::copy::{Long, REP_MOVSB_MIN, barrier};
use core::arch::asm;
use core::ptr::write_unaligned;

/// `memset`: sets `n` bytes at `dst` to `value`.
///
/// # Safety
///
/// `dst` must be writable for `n` bytes.
#[inline]
pub unsafe fn fill(dst: *mut u8, value: u8, n: usize) {
    if n <= 256 {
        // SAFETY: the caller's contract, with n <= 256.
        unsafe { short(dst, value, n) }
    } else {
        // SAFETY: the caller's contract, with n > 256.
        unsafe { fill_long(dst, value, n, Long::here()) }
    }
}

/// [`fill`] with the way of long fills chosen by the caller
/// ([`Long::RepMovsb`] standing for `rep stosb`).
///
/// # Safety
///
/// As for [`fill`].
pub unsafe fn fill_with(dst: *mut u8, value: u8, n: usize, long: Long) {
    if n <= 256 {
        // SAFETY: the caller's contract, with n <= 256.
        unsafe { short(dst, value, n) }
    } else {
        // SAFETY: the caller's contract, with n > 256.
        unsafe { fill_long(dst, value, n, long) }
    }
}

/// `value` in every byte of a 16-byte word.
#[inline(always)]
fn splat(value: u8) -> u128 {
    u128::from_ne_bytes([value; 16])
}

/// Fills `n <= 256` bytes.
///
/// # Safety
///
/// `dst` writable for `n <= 256` bytes.
#[inline(always)]
unsafe fn short(dst: *mut u8, value: u8, n: usize) {
    let v16 = splat(value);
    let v8 = v16 as u64;
    // SAFETY: each store starts at `dst + k` with
    // `k + width <= n`, the branch's bounds on `n` making each offset fit.
    unsafe {
        if n <= 16 {
            if n >= 8 {
                write_unaligned(dst.cast::<u64>(), v8);
                write_unaligned(dst.add(n - 8).cast::<u64>(), v8);
            } else if n >= 4 {
                write_unaligned(dst.cast::<u32>(), v8 as u32);
                write_unaligned(dst.add(n - 4).cast::<u32>(), v8 as u32);
            } else if n >= 2 {
                write_unaligned(dst.cast::<u16>(), v8 as u16);
                write_unaligned(dst.add(n - 2).cast::<u16>(), v8 as u16);
            } else if n == 1 {
                *dst = value;
            }
        } else if n <= 32 {
            write_unaligned(dst.cast::<u128>(), v16);
            write_unaligned(dst.add(n - 16).cast::<u128>(), v16);
        } else if n <= 64 {
            write_unaligned(dst.cast::<u128>(), v16);
            write_unaligned(dst.add(16).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 32).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 16).cast::<u128>(), v16);
        } else if n <= 128 {
            // Written out: a loop here could become a call to memset.
            write_unaligned(dst.cast::<u128>(), v16);
            write_unaligned(dst.add(16).cast::<u128>(), v16);
            write_unaligned(dst.add(32).cast::<u128>(), v16);
            write_unaligned(dst.add(48).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 64).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 48).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 32).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 16).cast::<u128>(), v16);
        } else {
            // The JPEG decoder clears a 256-byte coefficient buffer a
            // great many times.
            write_unaligned(dst.cast::<u128>(), v16);
            write_unaligned(dst.add(16).cast::<u128>(), v16);
            write_unaligned(dst.add(32).cast::<u128>(), v16);
            write_unaligned(dst.add(48).cast::<u128>(), v16);
            write_unaligned(dst.add(64).cast::<u128>(), v16);
            write_unaligned(dst.add(80).cast::<u128>(), v16);
            write_unaligned(dst.add(96).cast::<u128>(), v16);
            write_unaligned(dst.add(112).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 128).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 112).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 96).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 80).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 64).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 48).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 32).cast::<u128>(), v16);
            write_unaligned(dst.add(n - 16).cast::<u128>(), v16);
        }
    }
}

/// Fills `n > 256` bytes.
///
/// # Safety
///
/// `dst` writable for `n > 256` bytes.
#[inline(never)]
unsafe fn fill_long(dst: *mut u8, value: u8, n: usize, long: Long) {
    if long == Long::RepMovsb && n >= REP_MOVSB_MIN {
        // SAFETY: stores `value` at exactly [dst, dst + n), ascending (the
        // ABI guarantees the direction flag clear), the caller's region.
        unsafe {
            asm!(
                "rep stosb",
                inout("rcx") n => _,
                inout("rdi") dst => _,
                in("al") value,
                options(nostack, preserves_flags),
            );
        }
        return;
    }
    let v16 = splat(value);
    // SAFETY: the first 16 and last 64 bytes are stored directly (n > 256),
    // and each turn of the loop covers [i, i + 64) with i + 64 < n.
    unsafe {
        write_unaligned(dst.cast::<u128>(), v16);
        let mut i = 16 - (dst as usize & 15);
        while n - i > 64 {
            barrier();
            write_unaligned(dst.add(i).cast::<u128>(), v16);
            write_unaligned(dst.add(i + 16).cast::<u128>(), v16);
            write_unaligned(dst.add(i + 32).cast::<u128>(), v16);
            write_unaligned(dst.add(i + 48).cast::<u128>(), v16);
            i += 64;
        }
        write_unaligned(dst.add(n - 64).cast::<u128>(), v16);
        write_unaligned(dst.add(n - 48).cast::<u128>(), v16);
        write_unaligned(dst.add(n - 32).cast::<u128>(), v16);
        write_unaligned(dst.add(n - 16).cast::<u128>(), v16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARD: usize = 128;
    const SENTINEL: u8 = 0xa5;

    #[test]
    fn fills_exactly_the_region() {
        let mut buf = vec![SENTINEL; 4096 + 64 + 2 * GUARD];
        let clean = buf.clone();
        for long in [Long::RepMovsb, Long::Loop] {
            for n in 0..=4096 {
                let offsets = if n <= 256 { 64 } else { 16 };
                for d in 0..offsets {
                    let at = GUARD + d;
                    let value = (n % 255) as u8 ^ 0x5a;
                    // SAFETY: buf has at + n + GUARD bytes.
                    unsafe { fill_with(buf.as_mut_ptr().add(at), value, n, long) };
                    assert!(
                        buf[at..at + n].iter().all(|&b| b == value),
                        "fill of {n} at offset {d} ({long:?})"
                    );
                    assert!(
                        buf[..at] == clean[..at] && buf[at + n..] == clean[at + n..],
                        "fill of {n} at offset {d} ({long:?}) wrote outside"
                    );
                    buf[at..at + n].copy_from_slice(&clean[at..at + n]);
                }
            }
        }
        let n = (1 << 20) + 5;
        let mut big = vec![SENTINEL; n + 2];
        // SAFETY: big has 1 + n + 1 bytes.
        unsafe { fill(big.as_mut_ptr().add(1), 0, n) };
        assert!(big[1..=n].iter().all(|&b| b == 0));
        assert!(big[0] == SENTINEL && big[n + 1] == SENTINEL);
    }
}
