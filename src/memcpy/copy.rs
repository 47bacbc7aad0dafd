//! Copying bytes, forward for disjoint regions and in either direction for
//! overlapping ones: the bodies of the musl build's `memcpy` and `memmove`
//! (see the module above for why they exist and what they must not do).
//!
//! Up to 128 bytes, every byte is loaded before any is stored, with
//! unaligned loads that may overlap each other (17 bytes are two 16-byte
//! loads sharing 15), so the same code serves both functions and needs no
//! loop. Up to 256 bytes between disjoint regions, that twice: the first
//! 128 bytes and the last 128. Beyond that a loop moves 64 bytes a turn with the destination
//! 16-byte aligned; the first and last stretches are loaded before the loop
//! and stored after it, which makes the loop correct for an overlapping
//! move in the direction it walks. Long disjoint copies use `rep movsb`
//! where the CPU makes it fast.

use super::cpu::fast_strings;
use core::arch::asm;
use core::ptr::{read_unaligned, write_unaligned};

/// From this length on, a disjoint copy uses `rep movsb` on CPUs with
/// ERMSB; below it the instruction's start-up cost exceeds the 64-byte
/// loop's (measured in docs/BENCHMARKS.md).
pub const REP_MOVSB_MIN: usize = 2048;

/// How a long copy moves its bytes; a parameter so that tests reach both
/// ways on any CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Long {
    /// `rep movsb` from [`REP_MOVSB_MIN`] bytes on.
    RepMovsb,
    /// The 64-byte loop at every length.
    Loop,
}

impl Long {
    /// The way for this CPU.
    #[inline]
    pub fn here() -> Long {
        if fast_strings() {
            Long::RepMovsb
        } else {
            Long::Loop
        }
    }
}

/// `memcpy`: copies `n` bytes from `src` to `dst`.
///
/// # Safety
///
/// `src` must be readable and `dst` writable for `n` bytes, and the two
/// regions must not overlap.
#[inline]
pub unsafe fn forward(dst: *mut u8, src: *const u8, n: usize) {
    if n <= 128 {
        // SAFETY: the caller's contract, with n <= 128.
        unsafe { short(dst, src, n) }
    } else if n <= 256 {
        // SAFETY: the caller's contract, disjoint, 128 < n <= 256.
        unsafe { medium(dst, src, n) }
    } else {
        // SAFETY: the caller's contract, disjoint, n > 256.
        unsafe { forward_long(dst, src, n, Long::here(), true) }
    }
}

/// `memmove`: copies `n` bytes from `src` to `dst` as if through a
/// temporary buffer.
///
/// # Safety
///
/// `src` must be readable and `dst` writable for `n` bytes; they may
/// overlap.
#[inline]
pub unsafe fn moving(dst: *mut u8, src: *const u8, n: usize) {
    if n <= 128 {
        // SAFETY: the caller's contract, with n <= 128; `short` loads
        // everything before it stores, so overlap is harmless.
        unsafe { short(dst, src, n) }
    } else {
        // SAFETY: the caller's contract.
        unsafe { moving_with(dst, src, n, Long::here()) }
    }
}

/// [`moving`] with the way of long copies chosen by the caller.
///
/// # Safety
///
/// As for [`moving`].
pub unsafe fn moving_with(dst: *mut u8, src: *const u8, n: usize, long: Long) {
    if n <= 128 {
        // SAFETY: the caller's contract, with n <= 128; `short` loads
        // everything before it stores, so overlap is harmless.
        return unsafe { short(dst, src, n) };
    }
    // Distance from src up to dst, wrapping: below n exactly when dst lies
    // inside (src, src + n), the one case a forward walk would read bytes
    // it has already overwritten.
    let ahead = (dst as usize).wrapping_sub(src as usize);
    if ahead == 0 {
        return;
    }
    // Distance from dst up to src, likewise: at least n when disjoint.
    let behind = (src as usize).wrapping_sub(dst as usize);
    if ahead < n {
        // SAFETY: the caller's contract, n > 128, dst above src.
        unsafe { backward_long(dst, src, n) }
    } else if behind >= n && n <= 256 {
        // SAFETY: the caller's contract, disjoint, 128 < n <= 256.
        unsafe { medium(dst, src, n) }
    } else {
        // Disjoint, or dst below src: a forward walk never reads a byte
        // after storing over it. `rep movsb` only when disjoint: it is
        // correct for dst below src too, but slow when the two are close.
        // SAFETY: the caller's contract, n > 128, dst not inside (src, src + n).
        unsafe { forward_long(dst, src, n, long, behind >= n) }
    }
}

/// [`forward`] with the way of long copies chosen by the caller.
///
/// # Safety
///
/// As for [`forward`].
pub unsafe fn forward_with(dst: *mut u8, src: *const u8, n: usize, long: Long) {
    if n <= 128 {
        // SAFETY: the caller's contract, with n <= 128.
        unsafe { short(dst, src, n) }
    } else if n <= 256 {
        // SAFETY: the caller's contract, disjoint, 128 < n <= 256.
        unsafe { medium(dst, src, n) }
    } else {
        // SAFETY: the caller's contract, disjoint, n > 256.
        unsafe { forward_long(dst, src, n, long, true) }
    }
}

/// One unaligned 16-byte load (`movups`).
///
/// # Safety
///
/// `p` readable for 16 bytes.
#[inline(always)]
unsafe fn load16(p: *const u8) -> u128 {
    // SAFETY: the caller's contract; no alignment needed.
    unsafe { read_unaligned(p.cast::<u128>()) }
}

/// One unaligned 16-byte store.
///
/// # Safety
///
/// `p` writable for 16 bytes.
#[inline(always)]
unsafe fn store16(p: *mut u8, v: u128) {
    // SAFETY: the caller's contract; no alignment needed.
    unsafe { write_unaligned(p.cast::<u128>(), v) }
}

/// Copies `n <= 128` bytes, loading all of them before storing any.
///
/// # Safety
///
/// `src` readable and `dst` writable for `n` bytes, `n <= 128`; they may
/// overlap.
#[inline(always)]
unsafe fn short(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: in every branch, each load starts at `src + k` and each
    // store at `dst + k` with `k + width <= n`, the branch's bounds on `n`
    // making each offset fit (for instance `n - 8 >= 0` when `n >= 8`).
    unsafe {
        if n <= 16 {
            if n >= 8 {
                let a = read_unaligned(src.cast::<u64>());
                let b = read_unaligned(src.add(n - 8).cast::<u64>());
                write_unaligned(dst.cast::<u64>(), a);
                write_unaligned(dst.add(n - 8).cast::<u64>(), b);
            } else if n >= 4 {
                let a = read_unaligned(src.cast::<u32>());
                let b = read_unaligned(src.add(n - 4).cast::<u32>());
                write_unaligned(dst.cast::<u32>(), a);
                write_unaligned(dst.add(n - 4).cast::<u32>(), b);
            } else if n >= 2 {
                let a = read_unaligned(src.cast::<u16>());
                let b = read_unaligned(src.add(n - 2).cast::<u16>());
                write_unaligned(dst.cast::<u16>(), a);
                write_unaligned(dst.add(n - 2).cast::<u16>(), b);
            } else if n == 1 {
                *dst = *src;
            }
        } else if n <= 32 {
            let a = load16(src);
            let b = load16(src.add(n - 16));
            store16(dst, a);
            store16(dst.add(n - 16), b);
        } else if n <= 64 {
            let a = load16(src);
            let b = load16(src.add(16));
            let c = load16(src.add(n - 32));
            let d = load16(src.add(n - 16));
            store16(dst, a);
            store16(dst.add(16), b);
            store16(dst.add(n - 32), c);
            store16(dst.add(n - 16), d);
        } else {
            let a = load16(src);
            let b = load16(src.add(16));
            let c = load16(src.add(32));
            let d = load16(src.add(48));
            let e = load16(src.add(n - 64));
            let f = load16(src.add(n - 48));
            let g = load16(src.add(n - 32));
            let h = load16(src.add(n - 16));
            store16(dst, a);
            store16(dst.add(16), b);
            store16(dst.add(32), c);
            store16(dst.add(48), d);
            store16(dst.add(n - 64), e);
            store16(dst.add(n - 48), f);
            store16(dst.add(n - 32), g);
            store16(dst.add(n - 16), h);
        }
    }
}

/// Copies `128 < n <= 256` bytes between disjoint regions: the first 128,
/// then the last 128, which overlap by `256 - n`.
///
/// # Safety
///
/// `src` readable and `dst` writable for `n` bytes, `128 < n <= 256`,
/// the regions disjoint (the second half's loads follow the first half's
/// stores).
#[inline(always)]
unsafe fn medium(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: [0, 128) and [n - 128, n) lie within both regions as
    // 128 < n; disjoint regions make the order of the halves free.
    unsafe {
        short(dst, src, 128);
        short(dst.add(n - 128), src.add(n - 128), 128);
    }
}

/// Keeps LLVM from turning the loop it sits in into a call to `memcpy`,
/// `memmove` or `memset`: an `asm!` block without `nomem` may read and
/// write any memory, so the loop is no longer a plain copy or fill. It
/// emits no instruction.
#[inline(always)]
pub(super) fn barrier() {
    // SAFETY: an empty block; it only constrains the compiler.
    unsafe { asm!("", options(nostack, preserves_flags)) };
}

/// Copies `n > 128` bytes walking forward: correct when the regions are
/// disjoint or `dst` is below `src`. `rep` allows `rep movsb`, which the
/// caller permits only for disjoint regions.
///
/// # Safety
///
/// `src` readable and `dst` writable for `n > 128` bytes; `dst` not in
/// `(src, src + n)`.
#[inline(never)]
unsafe fn forward_long(dst: *mut u8, src: *const u8, n: usize, long: Long, rep: bool) {
    if rep && long == Long::RepMovsb && n >= REP_MOVSB_MIN {
        // SAFETY: copies exactly n bytes from src to dst, ascending (the
        // ABI guarantees the direction flag clear); the caller's contract
        // covers both ranges. The registers it advances are discarded.
        unsafe {
            asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags),
            );
        }
        return;
    }
    // SAFETY: every load is within [src, src + n) and every store within
    // [dst, dst + n): the head is the first 16 bytes, the tail the last
    // 64 (n > 128), and each turn of the loop covers [i, i + 64) with
    // i + 64 < n. Walking up, a turn reads src + i.. only after stores
    // below dst + i, which lie below src + i when dst < src, and the head
    // and tail, loaded first, are stored last, so no load sees a byte this
    // copy has already overwritten.
    unsafe {
        let head = load16(src);
        let t0 = load16(src.add(n - 64));
        let t1 = load16(src.add(n - 48));
        let t2 = load16(src.add(n - 32));
        let t3 = load16(src.add(n - 16));
        // Start the loop where dst + i is 16-byte aligned, 1 to 16 bytes
        // in; the head covers what it skips.
        let mut i = 16 - (dst as usize & 15);
        while n - i > 64 {
            barrier();
            let a = load16(src.add(i));
            let b = load16(src.add(i + 16));
            let c = load16(src.add(i + 32));
            let d = load16(src.add(i + 48));
            store16(dst.add(i), a);
            store16(dst.add(i + 16), b);
            store16(dst.add(i + 32), c);
            store16(dst.add(i + 48), d);
            i += 64;
        }
        store16(dst, head);
        store16(dst.add(n - 64), t0);
        store16(dst.add(n - 48), t1);
        store16(dst.add(n - 32), t2);
        store16(dst.add(n - 16), t3);
    }
}

/// Copies `n > 128` bytes walking backward, for `dst` inside
/// `(src, src + n)`.
///
/// # Safety
///
/// `src` readable and `dst` writable for `n > 128` bytes.
#[inline(never)]
unsafe fn backward_long(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the mirror of `forward_long`: the head is the first 64 bytes,
    // the tail the last 16, and each turn covers [e - 64, e) with
    // e - 64 > 0. Walking down, a turn reads below src + e only after
    // stores at dst + e and above, which lie above src + e as dst > src;
    // head and tail, loaded first, are stored last.
    unsafe {
        let h0 = load16(src);
        let h1 = load16(src.add(16));
        let h2 = load16(src.add(32));
        let h3 = load16(src.add(48));
        let tail = load16(src.add(n - 16));
        // End the loop's first turn where dst + e is 16-byte aligned, 0 to
        // 15 bytes from the end; the tail covers what it skips.
        let mut e = n - ((dst as usize).wrapping_add(n) & 15);
        while e > 64 {
            barrier();
            e -= 64;
            let a = load16(src.add(e));
            let b = load16(src.add(e + 16));
            let c = load16(src.add(e + 32));
            let d = load16(src.add(e + 48));
            store16(dst.add(e), a);
            store16(dst.add(e + 16), b);
            store16(dst.add(e + 32), c);
            store16(dst.add(e + 48), d);
        }
        store16(dst.add(n - 16), tail);
        store16(dst, h0);
        store16(dst.add(16), h1);
        store16(dst.add(32), h2);
        store16(dst.add(48), h3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy under test, as a plain function of the C signature.
    type CopyFn = fn(*mut u8, *const u8, usize);

    /// Room for the largest offset plus any overrun, on each side.
    const GUARD: usize = 128;
    const SENTINEL: u8 = 0xa5;

    /// A byte pattern that never repeats within 251 bytes and never
    /// equals the sentinel at offset 0, so a shifted or missed byte shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ 0x3c).collect()
    }

    /// Copies with `copy` at every length in `lengths` and every pair of
    /// offsets below `align`, checking the destination against the source
    /// and every byte around it against the sentinel.
    fn check_disjoint(
        lengths: std::ops::RangeInclusive<usize>,
        align: usize,
        copy: unsafe fn(*mut u8, *const u8, usize),
    ) {
        let max = *lengths.end();
        let src = pattern(max + align);
        let clean = vec![SENTINEL; max + align + 2 * GUARD];
        let mut dst = clean.clone();
        for n in lengths {
            for s in 0..align {
                for d in 0..align {
                    let at = GUARD + d;
                    // SAFETY: src has s + n bytes, dst at + n + GUARD.
                    unsafe { copy(dst.as_mut_ptr().add(at), src.as_ptr().add(s), n) };
                    assert!(
                        dst[at..at + n] == src[s..s + n],
                        "copy of {n} from offset {s} to {d}"
                    );
                    assert!(
                        dst[..at] == clean[..at] && dst[at + n..] == clean[at + n..],
                        "copy of {n} from offset {s} to {d} wrote outside"
                    );
                    dst[at..at + n].copy_from_slice(&clean[at..at + n]);
                }
            }
        }
    }

    fn forward_rep(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: passed on from check_disjoint's valid regions.
        unsafe { forward_with(dst, src, n, Long::RepMovsb) }
    }

    fn forward_loop(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: as above.
        unsafe { forward_with(dst, src, n, Long::Loop) }
    }

    fn moving_loop(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: as above.
        unsafe { moving_with(dst, src, n, Long::Loop) }
    }

    fn moving_rep(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: as above.
        unsafe { moving_with(dst, src, n, Long::RepMovsb) }
    }

    #[test]
    fn disjoint_copies_match_the_source_and_stay_inside() {
        let ways: [(&str, CopyFn); 4] = [
            ("forward, rep movsb", forward_rep),
            ("forward, loop", forward_loop),
            ("moving, rep movsb", moving_rep),
            ("moving, loop", moving_loop),
        ];
        for (name, way) in ways {
            eprintln!("{name}");
            check_disjoint(0..=256, 64, way);
            check_disjoint(257..=4096, 16, way);
        }
        // The exported path, with this CPU's choice.
        check_disjoint(0..=4096, 4, |d, s, n| unsafe { forward(d, s, n) });
        check_disjoint(0..=4096, 4, |d, s, n| unsafe { moving(d, s, n) });
    }

    #[test]
    fn long_copies_past_the_rep_threshold() {
        for n in [REP_MOVSB_MIN - 1, REP_MOVSB_MIN, 65_536 + 7, (1 << 20) + 13] {
            let src = pattern(n + 16);
            for (s, d) in [(0, 0), (3, 11), (15, 1)] {
                for long in [Long::RepMovsb, Long::Loop] {
                    let mut dst = vec![SENTINEL; n + 32];
                    // SAFETY: src has s + n bytes, dst d + n + 16.
                    unsafe { forward_with(dst.as_mut_ptr().add(d), src.as_ptr().add(s), n, long) };
                    assert!(dst[d..d + n] == src[s..s + n], "{n} bytes, {long:?}");
                    assert!(dst[..d].iter().chain(&dst[d + n..]).all(|&b| b == SENTINEL));
                }
            }
        }
    }

    /// The byte-by-byte reference for an overlapping move within `buf`.
    fn reference_move(buf: &mut [u8], dst: usize, src: usize, n: usize) {
        if dst < src {
            for k in 0..n {
                buf[dst + k] = buf[src + k];
            }
        } else {
            for k in (0..n).rev() {
                buf[dst + k] = buf[src + k];
            }
        }
    }

    /// Moves `n` bytes `distance` up and down within one buffer, from base
    /// offsets 0 to `align - 1`, against the reference.
    fn check_overlap(n: usize, distances: &[usize], align: usize, long: Long) {
        let len = GUARD + align + n + distances.iter().max().unwrap_or(&0) + GUARD;
        let start = pattern(len);
        let mut buf = start.clone();
        let mut want = start.clone();
        for &distance in distances {
            for base in GUARD..GUARD + align {
                for (dst, src) in [(base, base + distance), (base + distance, base)] {
                    buf.copy_from_slice(&start);
                    want.copy_from_slice(&start);
                    reference_move(&mut want, dst, src, n);
                    // SAFETY: both ranges lie inside buf.
                    unsafe {
                        let p = buf.as_mut_ptr();
                        moving_with(p.add(dst), p.add(src), n, long);
                    }
                    assert!(
                        buf == want,
                        "move of {n} from {src} to {dst} ({long:?}) differs from the reference"
                    );
                }
            }
        }
    }

    #[test]
    fn overlapping_moves_match_the_reference_both_ways() {
        for long in [Long::RepMovsb, Long::Loop] {
            // Every overlap distance (and the first without overlap) for
            // short lengths.
            for n in 0..=300 {
                let distances: Vec<usize> = (0..=n + 1).collect();
                check_overlap(n, &distances, 4, long);
            }
            // Longer ones: distances around each width the code uses.
            for n in (301..=4096).step_by(7).chain([REP_MOVSB_MIN, 4096]) {
                let mut distances = vec![0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33];
                distances.extend([63, 64, 65, 127, 128, 129, n / 2, n - 1, n, n + 1]);
                check_overlap(n, &distances, 16, long);
            }
        }
    }
}
