//! The worker's system-call filter: what a decode may still ask of the
//! kernel once it has its job, as a classic BPF program for
//! `seccomp(2)`, built by a pure function and installed under
//! `no_new_privs`.
//!
//! Allowed, and nothing else (any other call kills the whole process with
//! `SIGSYS`):
//!
//! - `read` from descriptor 0 (its input), `write` to 1 (its answer) and 2
//!   (a panic message, discarded);
//! - memory: `brk`, `mmap` and `mprotect` never asking for executable
//!   pages, `munmap`, `mremap`, `madvise`;
//! - what the runtime needs to run and to die: `futex`, `sched_yield`,
//!   `clock_gettime`, `getrandom` (hash seeds), `rt_sigreturn`,
//!   `rt_sigprocmask`, `rt_sigaction`, `sigaltstack` (the stack-overflow
//!   report), `getpid`, `gettid`, `tkill`/`tgkill` of itself only (an
//!   abort), `exit`, `exit_group`.
//!
//! So no file, socket or descriptor can be opened, closed or duplicated, no
//! process or thread made, nothing exec'd, no limit raised, no other
//! process signalled. The filter checks the architecture first: a call
//! through another ABI (x32, i386) is killed too.

use std::io;

/// One BPF instruction.
type Insn = libc::sock_filter;

/// `SECCOMP_RET_ALLOW`.
const ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_KILL_PROCESS`.
const KILL: u32 = 0x8000_0000;

// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of argument `n` (little-endian).
const fn arg(n: u32) -> u32 {
    16 + 8 * n
}

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// The `AUDIT_ARCH_*` value of the architecture this is built for.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xc000_003e);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xc000_00b7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// What a rule lets through.
#[derive(Clone, Copy)]
enum Rule {
    /// The call, whatever its arguments.
    Any(libc::c_long),
    /// The call when argument `arg` (its low 32 bits) is one of `values`.
    ArgIn(libc::c_long, u32, &'static [u32]),
    /// The call when argument `arg` has none of the bits in `mask`.
    ArgWithout(libc::c_long, u32, u32),
}

/// The rules, for a process whose id is `pid`.
fn rules(pid: u32) -> Vec<Rule> {
    use Rule::*;
    // Leaked once per worker process, which lives for one decode.
    let pid: &'static [u32] = Box::leak(Box::new([pid]));
    let exec = libc::PROT_EXEC as u32;
    let mut rules = vec![
        ArgIn(libc::SYS_read, 0, &[0]),
        ArgIn(libc::SYS_write, 0, &[1, 2]),
        Any(libc::SYS_brk),
        ArgWithout(libc::SYS_mmap, 2, exec),
        ArgWithout(libc::SYS_mprotect, 2, exec),
        Any(libc::SYS_munmap),
        Any(libc::SYS_mremap),
        Any(libc::SYS_madvise),
        Any(libc::SYS_futex),
        Any(libc::SYS_sched_yield),
        Any(libc::SYS_clock_gettime),
        Any(libc::SYS_getrandom),
        Any(libc::SYS_rt_sigreturn),
        Any(libc::SYS_rt_sigprocmask),
        Any(libc::SYS_rt_sigaction),
        Any(libc::SYS_sigaltstack),
        Any(libc::SYS_getpid),
        Any(libc::SYS_gettid),
        ArgIn(libc::SYS_tkill, 0, pid),
        ArgIn(libc::SYS_tgkill, 0, pid),
        Any(libc::SYS_exit),
        Any(libc::SYS_exit_group),
    ];
    #[cfg(target_arch = "x86_64")]
    rules.push(Any(libc::SYS_restart_syscall));
    rules
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// The filter program for a process whose id is `pid`, for the
/// architecture `arch`.
fn program(arch: u32, pid: u32) -> Vec<Insn> {
    let mut p = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, arch, 1, 0),
        stmt(RET_K, KILL),
        stmt(LD_W_ABS, NR),
    ];
    // Each rule is a block that returns if the call is this rule's, and
    // else jumps past itself with the call number still loaded.
    for rule in rules(pid) {
        match rule {
            Rule::Any(nr) => {
                p.push(jump(JEQ_K, nr as u32, 0, 1));
                p.push(stmt(RET_K, ALLOW));
            }
            Rule::ArgIn(nr, n, values) => {
                let count = values.len() as u8;
                p.push(jump(JEQ_K, nr as u32, 0, count + 3));
                p.push(stmt(LD_W_ABS, arg(n)));
                for (i, &v) in values.iter().enumerate() {
                    // To the ALLOW after the KILL below the comparisons.
                    p.push(jump(JEQ_K, v, count - i as u8, 0));
                }
                p.push(stmt(RET_K, KILL));
                p.push(stmt(RET_K, ALLOW));
            }
            Rule::ArgWithout(nr, n, mask) => {
                p.push(jump(JEQ_K, nr as u32, 0, 4));
                p.push(stmt(LD_W_ABS, arg(n)));
                p.push(jump(JSET_K, mask, 0, 1));
                p.push(stmt(RET_K, KILL));
                p.push(stmt(RET_K, ALLOW));
            }
        }
    }
    p.push(stmt(RET_K, KILL));
    p
}

/// Sets `no_new_privs` on this process: nothing it execs can gain
/// privileges (set-user-ID bits and file capabilities are ignored).
pub fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with plain integer arguments; it reads or writes no
    // memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Installs the filter on this process, which must have one thread, and
/// sets `no_new_privs`, which an unprivileged filter needs. Irreversible.
pub(super) fn install() -> io::Result<()> {
    let Some(arch) = AUDIT_ARCH else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no system-call filter for this architecture",
        ));
    };
    no_new_privs()?;
    let program = program(arch, std::process::id());
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: the kernel copies the program that `fprog` points to, which
    // lives until this call returns; a malformed program is refused with
    // EINVAL, not run.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &raw const fprog,
            0,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` as the kernel would on one call, and returns the
    /// action.
    fn run(program: &[Insn], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let insn = program[pc];
            match insn.code {
                LD_W_ABS => {
                    let k = insn.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                JEQ_K | JSET_K => {
                    let taken = if insn.code == JEQ_K {
                        acc == insn.k
                    } else {
                        acc & insn.k != 0
                    };
                    pc += 1 + usize::from(if taken { insn.jt } else { insn.jf });
                }
                RET_K => return insn.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_filter_allows_only_what_a_decode_needs() {
        let arch = 0xc000_003e;
        let pid = 4242;
        let p = program(arch, pid);
        let exec = libc::PROT_EXEC as u64;
        let read_write = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let cases: &[(i64, [u64; 6], u32)] = &[
            (libc::SYS_read, [0, 0, 0, 0, 0, 0], ALLOW),
            (libc::SYS_read, [3, 0, 0, 0, 0, 0], KILL),
            (libc::SYS_write, [1, 0, 0, 0, 0, 0], ALLOW),
            (libc::SYS_write, [2, 0, 0, 0, 0, 0], ALLOW),
            (libc::SYS_write, [0, 0, 0, 0, 0, 0], KILL),
            (libc::SYS_write, [5, 0, 0, 0, 0, 0], KILL),
            (libc::SYS_mmap, [0, 4096, read_write, 0, 0, 0], ALLOW),
            (libc::SYS_mmap, [0, 4096, read_write | exec, 0, 0, 0], KILL),
            (libc::SYS_mprotect, [0, 4096, exec, 0, 0, 0], KILL),
            (libc::SYS_munmap, [0; 6], ALLOW),
            (libc::SYS_exit_group, [0; 6], ALLOW),
            (libc::SYS_tgkill, [u64::from(pid), 1, 6, 0, 0, 0], ALLOW),
            (libc::SYS_tgkill, [1, 1, 9, 0, 0, 0], KILL),
            (libc::SYS_tkill, [u64::from(pid), 6, 0, 0, 0, 0], ALLOW),
            (libc::SYS_tkill, [1, 9, 0, 0, 0, 0], KILL),
            (libc::SYS_openat, [0; 6], KILL),
            (libc::SYS_socket, [0; 6], KILL),
            (libc::SYS_execve, [0; 6], KILL),
            (libc::SYS_clone, [0; 6], KILL),
            (libc::SYS_close, [1, 0, 0, 0, 0, 0], KILL),
            (libc::SYS_prlimit64, [0; 6], KILL),
            (libc::SYS_kill, [1, 9, 0, 0, 0, 0], KILL),
            // The x32 ABI's numbers have bit 30 set.
            (libc::SYS_read | 0x4000_0000, [0; 6], KILL),
        ];
        for &(nr, args, action) in cases {
            assert_eq!(run(&p, arch, nr, args), action, "call {nr} {args:?}");
        }
        // Another architecture's call is killed whatever it is.
        assert_eq!(run(&p, 0x4000_0003, libc::SYS_read, [0; 6]), KILL);
    }
}
