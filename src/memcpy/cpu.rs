//! Whether this CPU has fast string instructions (ERMSB), asked once.

use core::arch::x86_64::{__cpuid_count, __get_cpuid_max};
use core::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const SLOW: u8 = 1;
const FAST: u8 = 2;

static STRINGS: AtomicU8 = AtomicU8::new(UNKNOWN);

/// True if `rep movsb` and `rep stosb` are the fast way to move long runs
/// of bytes here: the CPU reports Enhanced REP MOVSB/STOSB (CPUID leaf 7,
/// EBX bit 9).
#[inline]
pub fn fast_strings() -> bool {
    match STRINGS.load(Ordering::Relaxed) {
        FAST => true,
        SLOW => false,
        _ => detect(),
    }
}

#[cold]
fn detect() -> bool {
    // SAFETY: `cpuid` exists on every x86-64 CPU; leaf 7 is asked only
    // when leaf 0 reports it. Neither touches memory.
    #[allow(unused_unsafe)]
    let erms = unsafe { __get_cpuid_max(0).0 >= 7 && __cpuid_count(7, 0).ebx & (1 << 9) != 0 };
    // Threads that race here compute the same answer.
    STRINGS.store(if erms { FAST } else { SLOW }, Ordering::Relaxed);
    erms
}
