//! Section 5b: the static musl binary's own `memcpy`, `memmove` and
//! `memset` (src/mem/): that the link took them, where a JPEG decode's time
//! goes with them and with musl's, and what each way of copying costs by
//! length on this CPU.

use crate::images::SET;
use crate::util::{Report, Table, command_output, note};
use colorsort::memcpy::copy::{Long, REP_MOVSB_MIN, forward_with};
use colorsort::memcpy::cpu::fast_strings;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Config<'a> {
    pub glibc: &'a Path,
    pub musl: &'a Path,
    pub musl_libc_mem: Option<&'a Path>,
    pub assets: &'a Path,
    pub work: &'a Path,
    pub quick: bool,
}

/// Where a profile's samples fell, in per cent of the process's.
#[derive(Default)]
struct Shares {
    /// CPU milliseconds sampled per run.
    ms_per_run: f64,
    copy: f64,
    set: f64,
    alloc: f64,
    kernel: f64,
    /// The symbols that took most, with their shares.
    top: Vec<(String, f64)>,
}

/// Which group a profile's symbol belongs to.
fn group(symbol: &str, kernel: bool) -> &'static str {
    let s = symbol;
    if kernel {
        "kernel"
    } else if matches!(s, "memcpy" | "memmove" | "__memcpy_fwd")
        || s.starts_with("__memcpy_")
        || s.starts_with("__memmove_")
        || s.starts_with("colorsort::memcpy::copy::")
    {
        "copy"
    } else if s == "memset"
        || s.starts_with("__memset_")
        || s.starts_with("colorsort::memcpy::fill::")
    {
        "set"
    } else if matches!(
        s,
        "malloc"
            | "free"
            | "calloc"
            | "realloc"
            | "aligned_alloc"
            | "posix_memalign"
            | "cfree"
            | "alloc_slot"
            | "nontrivial_free"
            | "default_malloc"
            | "malloc_consolidate"
            | "sysmalloc"
            | "unlink_chunk"
    ) || s.starts_with("__libc_")
        && (s.contains("malloc") || s.contains("free") || s.contains("alloc"))
        || s.starts_with("__malloc_")
        || s.starts_with("_int_")
        || s.starts_with("tcache")
        || s.starts_with("__rust_alloc")
        || s.starts_with("__rust_dealloc")
        || s.starts_with("__rust_realloc")
        || s.starts_with("__rdl_")
    {
        "alloc"
    } else {
        "other"
    }
}

/// Samples `binary classify file` `runs` times with `perf record` (the
/// cpu-clock software event, which needs no hardware counters); `None`
/// with the reason if perf cannot.
fn profile(binary: &Path, file: &Path, runs: usize, work: &Path) -> Result<Shares, String> {
    let data = work.join("perf.data");
    // perf keeps an existing output as perf.data.old.
    let clean = || {
        let _ = std::fs::remove_file(&data);
        let _ = std::fs::remove_file(work.join("perf.data.old"));
    };
    let mut periods: BTreeMap<(String, bool), f64> = BTreeMap::new();
    for _ in 0..runs {
        clean();
        let status = Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-F", "10000", "-o"])
            .arg(&data)
            .arg("--")
            .arg(binary)
            .arg("classify")
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("perf: {e}"))?;
        if !status.success() {
            return Err(format!("`perf record` failed ({status})"));
        }
        let out = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "-F",
                "period,sym",
                "-i",
            ])
            .arg(&data)
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("perf: {e}"))?;
        // `PERIOD [.] SYMBOL`, or `[k]` for the kernel's.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let line = line.trim();
            let Some((period, rest)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            let Ok(period) = period.parse::<f64>() else {
                continue;
            };
            let rest = rest.trim();
            let (kernel, symbol) = match rest.split_once(' ') {
                Some(("[k]", symbol)) => (true, symbol),
                Some(("[.]", symbol)) => (false, symbol),
                _ => continue,
            };
            *periods
                .entry((symbol.trim().to_string(), kernel))
                .or_default() += period;
        }
    }
    clean();
    let total: f64 = periods.values().sum();
    if total <= 0.0 {
        return Err("`perf report` found no samples".into());
    }
    let mut shares = Shares {
        // cpu-clock periods are nanoseconds.
        ms_per_run: total / 1e6 / runs as f64,
        ..Shares::default()
    };
    for ((symbol, kernel), period) in &periods {
        let share = 100.0 * period / total;
        match group(symbol, *kernel) {
            "copy" => shares.copy += share,
            "set" => shares.set += share,
            "alloc" => shares.alloc += share,
            "kernel" => shares.kernel += share,
            _ => {}
        }
    }
    let mut top: Vec<(String, f64)> = periods
        .iter()
        .map(|((s, _), p)| (s.clone(), 100.0 * p / total))
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top.truncate(3);
    shares.top = top;
    Ok(shares)
}

/// What `nm` and `objdump` say about the memory functions of a binary.
struct Symbols {
    /// `memcpy`, `memmove` and `memset` are all defined.
    defined: bool,
    /// musl's own `memcpy` (its alias `__memcpy_fwd`) is linked in.
    musl_own: bool,
    /// Calls from the three, or from src/mem/'s functions, to the three:
    /// none is right (one would recurse).
    recursive: usize,
    /// Calls whose target could not be told.
    unresolved: usize,
    /// The other functions they call.
    callees: Vec<String>,
}

/// Reads `binary`'s symbols and disassembly: direct calls name their
/// target; calls through the GOT (a static PIE has them) are resolved
/// from the slot's link-time content.
fn symbols(binary: &Path) -> Option<Symbols> {
    let path = binary.display().to_string();
    let nm = command_output("nm", &["-C", &path])?;
    let mut by_address: HashMap<u64, String> = HashMap::new();
    let mut names = Vec::new();
    for line in nm.lines() {
        let mut f = line.splitn(3, ' ');
        let (Some(address), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if matches!(kind, "T" | "t" | "W" | "w") {
            names.push(name.to_string());
            if let Ok(address) = u64::from_str_radix(address, 16) {
                by_address
                    .entry(address)
                    .or_insert_with(|| name.to_string());
            }
        }
    }
    let defined = ["memcpy", "memmove", "memset"]
        .iter()
        .all(|n| names.iter().any(|m| m == n));
    let musl_own = names.iter().any(|m| m == "__memcpy_fwd");
    // The GOT's words: `ADDRESS WORD WORD WORD WORD  ascii`, 4 bytes a word.
    let got_dump = command_output("objdump", &["-s", "-j", ".got", &path]).unwrap_or_default();
    let mut got: HashMap<u64, u64> = HashMap::new();
    for line in got_dump.lines() {
        let mut f = line.split_whitespace();
        let Some(Ok(start)) = f.next().map(|a| u64::from_str_radix(a, 16)) else {
            continue;
        };
        let bytes: Vec<u8> = f
            .take(4)
            .take_while(|w| w.len() == 8 && w.chars().all(|c| c.is_ascii_hexdigit()))
            .flat_map(|w| {
                (0..4).map(move |i| u8::from_str_radix(&w[2 * i..2 * i + 2], 16).unwrap_or(0))
            })
            .collect();
        for (i, slot) in bytes.chunks_exact(8).enumerate() {
            let value = u64::from_le_bytes(slot.try_into().unwrap_or([0; 8]));
            got.insert(start + 8 * i as u64, value);
        }
    }
    let dump = command_output("objdump", &["-d", "--no-show-raw-insn", "-C", &path])?;
    let mut out = Symbols {
        defined,
        musl_own,
        recursive: 0,
        unresolved: 0,
        callees: Vec::new(),
    };
    let mut inside = false;
    for line in dump.lines() {
        if let Some(head) = line.strip_suffix(">:") {
            let name = head.split_once('<').map_or("", |(_, n)| n);
            inside = matches!(name, "memcpy" | "memmove" | "memset")
                || name.starts_with("colorsort::memcpy::");
            continue;
        }
        if !inside {
            continue;
        }
        // `ADDR:\tcall   TARGET <name>`, `call   *0x..(%rip)  # SLOT <..>`, or
        // the same with `jmp`, which is a tail call when its target is a
        // function's start (`<name>`, no `+offset`).
        let Some((_, instruction)) = line.split_once('\t') else {
            continue;
        };
        let Some((mnemonic, operand)) = instruction.split_once(' ') else {
            continue;
        };
        let operand = operand.trim();
        if mnemonic != "call" && mnemonic != "jmp" {
            continue;
        }
        let target = if operand.starts_with('*') {
            if mnemonic == "jmp" && !operand.contains('#') {
                // Through a register: a jump table within the function.
                continue;
            }
            operand
                .split_once('#')
                .and_then(|(_, c)| c.split_whitespace().next())
                .and_then(|slot| u64::from_str_radix(slot, 16).ok())
                .and_then(|slot| got.get(&slot))
                .and_then(|address| by_address.get(address))
                .cloned()
        } else {
            let name = operand
                .split_once('<')
                .and_then(|(_, n)| n.strip_suffix('>'));
            match name {
                // A jump within a function.
                Some(n) if mnemonic == "jmp" && n.contains('+') => continue,
                Some(n) => Some(n.split('+').next().unwrap_or(n).to_string()),
                None => None,
            }
        };
        match target {
            Some(t) if matches!(t.as_str(), "memcpy" | "memmove" | "memset") => out.recursive += 1,
            Some(t) => {
                if !out.callees.contains(&t) {
                    out.callees.push(t);
                }
            }
            None => out.unresolved += 1,
        }
    }
    Some(out)
}

/// Nanoseconds per call of `copy` for `n` bytes, best of several trials.
fn ns_per_copy(copy: fn(*mut u8, *const u8, usize), n: usize, quick: bool) -> f64 {
    let mut src = vec![0x5au8; n + 64];
    let mut dst = vec![0u8; n + 64];
    // Enough calls for a few milliseconds a trial.
    let calls = (4 << 20) / n.max(64) + 256;
    let trials = if quick { 2 } else { 7 };
    let mut best = f64::INFINITY;
    for _ in 0..trials {
        let started = Instant::now();
        for _ in 0..calls {
            let (d, s) = (black_box(dst.as_mut_ptr()), black_box(src.as_mut_ptr()));
            black_box(copy)(d, s, black_box(n));
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e9 / calls as f64);
    }
    black_box((&mut src, &mut dst));
    best
}

fn copy_loop(d: *mut u8, s: *const u8, n: usize) {
    // SAFETY: ns_per_copy's buffers hold n + 64 bytes each, disjoint.
    unsafe { forward_with(d, s, n, Long::Loop) }
}

fn copy_rep(d: *mut u8, s: *const u8, n: usize) {
    // SAFETY: as above.
    unsafe { forward_with(d, s, n, Long::RepMovsb) }
}

fn copy_libc(d: *mut u8, s: *const u8, n: usize) {
    // SAFETY: as above.
    unsafe { libc::memcpy(d.cast(), s.cast(), n) };
}

pub fn section(report: &mut Report, cfg: &Config) {
    report.heading("5b. memcpy, memmove and memset in the static musl binary");
    let mut builds: Vec<(&str, &Path)> = vec![("glibc", cfg.glibc), ("static musl", cfg.musl)];
    if let Some(libc_mem) = cfg.musl_libc_mem {
        builds.push((
            "static musl, musl's memcpy (`--features libc-mem`)",
            libc_mem,
        ));
    }

    let mut table = Table::new(&[
        "build",
        "memcpy, memmove, memset defined",
        "musl's memcpy linked",
        "calls from them (and src/mem/) to them",
        "what else they call",
    ]);
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    for (name, binary) in &builds[1..] {
        match symbols(binary) {
            Some(s) => table.row(vec![
                name.to_string(),
                yes(s.defined),
                yes(s.musl_own),
                if s.unresolved > 0 {
                    format!("{} ({} calls unresolved)", s.recursive, s.unresolved)
                } else {
                    s.recursive.to_string()
                },
                if s.callees.is_empty() {
                    "nothing".into()
                } else {
                    s.callees
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ]),
            None => table.row(vec![
                name.to_string(),
                "nm or objdump missing".into(),
                String::new(),
                String::new(),
                String::new(),
            ]),
        }
    }
    report.table(&table);

    let file = cfg.assets.join(SET[0].file);
    let runs = if cfg.quick { 2 } else { 6 };
    note(format!("perf record, {runs} runs of each build"));
    let mut table = Table::new(&[
        "build",
        "CPU ms per run (sampled)",
        "memcpy + memmove",
        "memset",
        "allocator",
        "kernel",
        "most samples",
    ]);
    let mut skipped = None;
    let mut copy_share: Vec<(&str, f64)> = Vec::new();
    for (name, binary) in &builds {
        match profile(binary, &file, runs, cfg.work) {
            Ok(s) => {
                copy_share.push((name, s.copy + s.set));
                table.row(vec![
                    name.to_string(),
                    format!("{:.1}", s.ms_per_run),
                    format!("{:.1} %", s.copy),
                    format!("{:.1} %", s.set),
                    format!("{:.1} %", s.alloc),
                    format!("{:.1} %", s.kernel),
                    s.top
                        .iter()
                        .map(|(sym, share)| format!("`{sym}` {share:.0} %"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]);
            }
            Err(why) => {
                skipped = Some(why);
                break;
            }
        }
    }
    match &skipped {
        Some(why) => report.para(&format!("Profiles SKIPPED: {why}.")),
        None => report.table(&table),
    }

    let lengths = [
        4usize,
        16,
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
        8192,
        16384,
        32768,
        65536,
        262_144,
        1 << 20,
    ];
    let mut table = Table::new(&[
        "bytes",
        "ours, no ERMSB: ns",
        "ours, ERMSB: ns",
        "glibc `memcpy`: ns",
        "ours, no ERMSB: GB/s",
        "ours, ERMSB: GB/s",
        "glibc: GB/s",
    ]);
    for n in lengths {
        let (lp, rep, libc) = (
            ns_per_copy(copy_loop, n, cfg.quick),
            ns_per_copy(copy_rep, n, cfg.quick),
            ns_per_copy(copy_libc, n, cfg.quick),
        );
        table.row(vec![
            n.to_string(),
            format!("{lp:.1}"),
            format!("{rep:.1}"),
            format!("{libc:.1}"),
            format!("{:.1}", n as f64 / lp),
            format!("{:.1}", n as f64 / rep),
            format!("{:.1}", n as f64 / libc),
        ]);
    }
    report.table(&table);

    let shares = copy_share
        .iter()
        .map(|(name, share)| format!("{name} {share:.1} %"))
        .collect::<Vec<_>>()
        .join(", ");
    report.para(&format!(
        "musl's x86-64 `memcpy` is `rep movsq` with a byte-wise `movsb` head and tail, \
         and its `memset` is `rep stosq` from 127 bytes: every call pays a string \
         instruction's start-up cost, however short. zune-jpeg refills its bit reader \
         with a 4-byte `copy_from_slice` that is not inlined, so a baseline JPEG makes \
         hundreds of thousands of 4-byte `memcpy` calls, and about as many 256-byte \
         `memset` calls on its coefficients. The static musl binary therefore defines the \
         three symbols itself (`src/mem/`), and the link takes them instead of musl's: \
         the first table checks that with `nm` (musl's `memcpy` carries the alias \
         `__memcpy_fwd`) and `objdump` (no call or tail jump from them to any of the \
         three, which would recurse; calls through the GOT resolved from its slots). Up to 128 bytes, 256 for a disjoint copy or a fill, they are a \
         few overlapping unaligned loads and stores; longer, a 64-byte SSE loop, or `rep \
         movsb` / `rep stosb` from {REP_MOVSB_MIN} bytes on CPUs that report ERMSB (this \
         one: {}); `memmove` walks backward when the destination overlaps the source from \
         above. The second table is `perf record -e cpu-clock` of `colorsort classify {}` \
         ({runs} runs each, all samples of the process, kernel included): the share in \
         the memory routines (copy and fill) is {shares}. *allocator* is `malloc`, `free` \
         and their helpers: small under every build, so the binary keeps musl's \
         allocator; *kernel* is mostly the first touch of fresh pages, which moves from \
         run to run. The third table times one call of each way of copying, on this CPU, \
         the same buffers over and over (so in cache, except the largest), best of \
         several trials, in this benchmark's process (glibc): *ours* are the functions \
         of `src/mem/copy.rs`, called directly the one way or the other, which differ \
         from {REP_MOVSB_MIN} bytes on.",
        if fast_strings() { "yes" } else { "no" },
        SET[0].file,
    ));
}
