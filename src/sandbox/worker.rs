//! The worker's side: `colorsort decode-worker PARENT`, started by
//! [`Workers`](super::Workers) and by nothing else. It asks to die with its
//! parent, closes every descriptor beyond its pipes, installs its
//! system-call filter, and only then reads its job and input; it opens the
//! image, answers with the header, waits for the go-ahead (its memory
//! limit raised meanwhile by the parent), decodes, answers, and exits.
//! Its memory and CPU limits are set from outside before it reads a byte.
//!
//! An allocation that fails against the memory limit ends it with
//! [`EXIT_OUT_OF_MEMORY`] rather than an abort, so that the parent can
//! tell the limit from a crash: that is [`ExitOnOom`], the binary's global
//! allocator.

use super::process::{EXIT_NO_SANDBOX, EXIT_ORPHAN, EXIT_OUT_OF_MEMORY};
use super::wire::{self, Header, Kind};
use super::{seccomp, thumbnail};
use crate::classify::{self, Limits};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once this process is a worker: from then on a failed allocation
/// exits with [`EXIT_OUT_OF_MEMORY`].
static WORKER: AtomicBool = AtomicBool::new(false);

/// The system allocator, except that in a worker a failed allocation ends
/// the process with [`EXIT_OUT_OF_MEMORY`]. Anywhere else it is the
/// system allocator unchanged.
pub struct ExitOnOom;

// SAFETY: every call is passed to `System` unchanged; only a null result
// is looked at, and in a worker answered by exiting instead of returning.
unsafe impl GlobalAlloc for ExitOnOom {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        checked(unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        checked(unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        checked(unsafe { System.realloc(ptr, layout, new_size) })
    }
}

fn checked(ptr: *mut u8) -> *mut u8 {
    if ptr.is_null() && WORKER.load(Ordering::Relaxed) {
        // SAFETY: _exit ends the process at once, touching no memory of
        // ours; nothing else can be allocated here.
        unsafe { libc::_exit(EXIT_OUT_OF_MEMORY) }
    }
    ptr
}

/// Runs a worker for the parent whose process id is `parent`, and returns
/// its exit status: 0 once it has answered, or refused, whatever the
/// image; [`EXIT_ORPHAN`] or [`EXIT_NO_SANDBOX`] if it cannot start.
pub fn main(parent: &str) -> u8 {
    if !die_with(parent) {
        return EXIT_ORPHAN as u8;
    }
    // `ps` and `docker top` show it by this name, not as `exe`.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes, which this literal is.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"decode-worker".as_ptr(), 0, 0, 0) };
    close_inherited();
    WORKER.store(true, Ordering::Relaxed);
    #[cfg(debug_assertions)]
    let fault = fault::from_env();
    if seccomp::install().is_err() {
        return EXIT_NO_SANDBOX as u8;
    }
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut head = [0; wire::JOB_LEN];
    if input.read_exact(&mut head).is_err() {
        // The parent let it go unused.
        return 0;
    }
    let Some(job) = wire::parse_job(&head) else {
        return 2;
    };
    let Some(bytes) = read_input(&mut input, job.len) else {
        return 2;
    };
    let answer = |output: &mut io::StdoutLock, frame: &[u8]| {
        let _ = output.write_all(frame).and_then(|()| output.flush());
    };
    let limits = Limits::new(job.max_pixels);
    let image = match classify::open(&bytes, &limits) {
        Ok(image) => image,
        Err(e) => {
            answer(&mut output, &wire::refusal(&e));
            return 0;
        }
    };
    let header = Header {
        format: image.format(),
        width: image.width(),
        height: image.height(),
        peak: image.peak_memory(),
    };
    answer(&mut output, &wire::header(&header));
    let mut go = [0];
    if input.read_exact(&mut go).is_err() || go[0] != wire::GO {
        return 0;
    }
    #[cfg(debug_assertions)]
    if let Some(fault) = fault {
        fault.strike_if(header.width);
    }
    let verdict = match image.classify() {
        Ok(v) => v,
        Err(e) => {
            answer(&mut output, &wire::refusal(&e));
            return 0;
        }
    };
    let thumb = match job.kind {
        Kind::Classify => Vec::new(),
        Kind::Thumbnail { side } => match thumbnail::jpeg(&bytes, side) {
            Some(t) => t,
            None => {
                let e = classify::Error::NotAnImage("no thumbnail could be made".into());
                answer(&mut output, &wire::refusal(&e));
                return 0;
            }
        },
    };
    answer(&mut output, &wire::verdict(&verdict, &thumb));
    0
}

/// Asks the kernel to kill this process when the thread that started it
/// ends, and checks that `parent` is still its parent (else that thread
/// died before the request could count).
fn die_with(parent: &str) -> bool {
    let Ok(parent) = parent.parse::<libc::pid_t>() else {
        return false;
    };
    // SAFETY: prctl and getppid take and return plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0
            && libc::getppid() == parent
    }
}

/// Closes every descriptor but standard input, output and error, whatever
/// the parent left open.
fn close_inherited() {
    // SAFETY: close_range takes plain integers; closing descriptors this
    // process does not use cannot break memory safety.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        // Kernels before 5.9, or a filter that refuses it.
        for fd in 3..1024 {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
}

/// Reads `len` bytes of input into one buffer of exactly that size; `None`
/// if it ends early or cannot be held in memory here.
fn read_input(input: &mut impl Read, len: u64) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok()?;
    let mut bytes = vec![0; len];
    input.read_exact(&mut bytes).ok()?;
    Some(bytes)
}

/// Faults a test build's worker can be told to make, through
/// `COLORSORT_WORKER_FAULT`, on an image of [`fault::WIDTH`] pixels
/// across, once it has been told to decode. Release builds have none of
/// this; nothing a client sends can set the variable.
#[cfg(debug_assertions)]
mod fault {
    use super::super::process::FAULT_VARIABLE;

    /// The width of the images that strike.
    pub(super) const WIDTH: u32 = 13;

    #[derive(Clone, Copy)]
    pub(super) enum Fault {
        Loop,
        Abort,
        Stack,
        Segfault,
        Allocate,
        Syscall,
    }

    pub(super) fn from_env() -> Option<Fault> {
        Some(match std::env::var(FAULT_VARIABLE).ok()?.as_str() {
            "loop" => Fault::Loop,
            "abort" => Fault::Abort,
            "stack" => Fault::Stack,
            "segfault" => Fault::Segfault,
            "allocate" => Fault::Allocate,
            "syscall" => Fault::Syscall,
            _ => return None,
        })
    }

    impl Fault {
        pub(super) fn strike_if(self, width: u32) {
            if width != WIDTH {
                return;
            }
            match self {
                Fault::Loop => loop {
                    std::hint::spin_loop();
                },
                Fault::Abort => std::process::abort(),
                Fault::Stack => {
                    std::hint::black_box(recurse(std::hint::black_box(1)));
                }
                // SAFETY: none; this is the fault. The null page is never
                // mapped, so the write ends the process with SIGSEGV.
                Fault::Segfault => unsafe {
                    std::ptr::null_mut::<u64>().write_volatile(1);
                },
                Fault::Allocate => {
                    let mut held = Vec::new();
                    loop {
                        held.push(vec![1u8; 16 << 20]);
                    }
                }
                Fault::Syscall => {
                    // SAFETY: socket(2) with plain integers; the filter
                    // kills the process before it returns.
                    unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
                }
            }
        }
    }

    #[allow(unconditional_recursion)]
    fn recurse(n: u64) -> u64 {
        let frame = std::hint::black_box([n; 512]);
        recurse(frame[7] + 1) + frame[3]
    }
}
