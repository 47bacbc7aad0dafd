//! Decoding someone else's bytes in a worker process that the kernel
//! holds to its limits: every decode of an upload, of a file `classify`
//! reads and of a gallery's thumbnail runs in `colorsort decode-worker`,
//! never in the process that asked for it.
//!
//! A decode goes in two steps, with memory charged before each:
//!
//! 1. the worker's own [`OVERHEAD`], the input's copy and what opening it
//!    may take ([`classify::open_memory`]) are reserved against the
//!    caller's budget; a ready worker's address space is limited to that
//!    much, then it gets its job and input, and answers with the image's
//!    header;
//! 2. the decode's peak memory from that header is reserved beside it (a
//!    large one taking its turn first), the worker's limit raised by as
//!    much, and it decodes and answers with the sums (and a thumbnail).
//!
//! So the kernel holds each worker to exactly what was charged for it, and
//! everything both processes hold for one decode is charged: the caller's
//! copy of the input (by the caller), the worker's copy, its overhead, its
//! tables and its pixels.
//!
//! Each step has [`Workers`]' deadline; a worker also has a CPU-time
//! limit, a system-call filter (`seccomp`) from before it reads its job,
//! no descriptor but its pipes, and dies with the thread that started it.
//! Whatever goes wrong in it, the caller gets a [`Failure`], never a crash
//! or a hang of its own.
//!
//! `wire` is the pipe format, `process` one worker from the parent's side,
//! `pool` the workers started ahead of need, `worker` the worker's side,
//! `seccomp` its filter, `thumbnail` the gallery's job, `local` the
//! reading of local files for `classify` and `gallery`.

mod local;
mod pool;
mod process;
mod seccomp;
mod thumbnail;
mod wire;
pub mod worker;

pub use local::{FileError, Local};
pub use process::{COMMAND, EXIT_NO_SANDBOX, EXIT_ORPHAN, EXIT_OUT_OF_MEMORY, Failure, OVERHEAD};
pub use seccomp::no_new_privs;
pub use wire::{Header, Kind};

use crate::budget::{Guards, Reservation, Turn};
use crate::classify::{self, Verdict};
use pool::{Lease, Pool, Settings, Unavailable};
use process::Stop;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Workers kept started ahead of need.
pub const IDLE_WORKERS: usize = 2;

/// Why a decode in a worker gave no verdict.
#[derive(Debug)]
pub enum Error {
    /// The image is refused, as [`classify`] refuses it.
    Image(classify::Error),
    /// The worker failed: over its memory or time, killed by its sandbox,
    /// crashed, or answered nonsense.
    Worker(Failure),
    /// Decoding it needs more memory than the whole budget.
    OverBudget {
        /// Width and height, when the header was read.
        size: Option<(u32, u32)>,
        /// Bytes needed, with what the caller holds already.
        need: u64,
        /// The budget, in bytes.
        max: u64,
    },
    /// The budget has no room for the decode now.
    NoMemory {
        /// Bytes the decode needs in all so far, with what the caller
        /// holds: a caller that can wait may wait for this much.
        need: u64,
    },
    /// Every worker was busy until the deadline.
    Busy,
    /// No worker can be started; the text says why.
    Unavailable(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Image(e) => e.fmt(f),
            Error::Worker(e) => e.fmt(f),
            Error::OverBudget {
                size: Some((w, h)),
                need,
                max,
            } => write!(
                f,
                "a {w}x{h} image needs {need} bytes to decode, over the memory limit of {max} bytes"
            ),
            Error::OverBudget {
                size: None,
                need,
                max,
            } => write!(
                f,
                "opening the image needs {need} bytes, over the memory limit of {max} bytes"
            ),
            Error::NoMemory { .. } => f.write_str("out of memory for decoding; try again later"),
            Error::Busy => f.write_str("every decode worker is busy; try again later"),
            Error::Unavailable(why) => write!(f, "no decode worker: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// Where a decode's memory comes from, and how large decodes take turns:
/// the server evicts to make room, local tools wait.
pub trait Memory {
    /// The whole budget, in bytes.
    fn limit(&self) -> u64;
    /// Reserves `bytes`, or `None` if there is no room.
    fn reserve(&self, bytes: u64) -> Option<Reservation<'_>>;
    /// Grows `memory` by `more` bytes, or `false` if there is no room.
    fn grow(&self, memory: &mut Reservation<'_>, more: u64) -> bool;
    /// A decode turn for a decode of `peak` bytes, if it needs one.
    fn turn(&self, peak: u64) -> Option<Turn<'_>>;
}

/// The budget and gate themselves: memory reserved only if it fits now,
/// large decodes waiting for their turn.
impl Memory for Guards {
    fn limit(&self) -> u64 {
        self.budget.limit()
    }

    fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        self.budget.try_reserve(bytes)
    }

    fn grow(&self, memory: &mut Reservation<'_>, more: u64) -> bool {
        memory.try_grow(more)
    }

    fn turn(&self, peak: u64) -> Option<Turn<'_>> {
        self.gate.enter_if_large(peak)
    }
}

/// What a worker gives back.
#[derive(Debug)]
pub struct Decoded {
    /// The image's header.
    pub header: Header,
    /// Its class and sums.
    pub verdict: Verdict,
    /// Its thumbnail, for a [`Kind::Thumbnail`] job; else empty.
    pub thumbnail: Vec<u8>,
}

/// How [`Workers`] are started and held.
#[derive(Debug, Clone)]
pub struct Config {
    /// The binary to run as `colorsort decode-worker`: this one,
    /// `/proc/self/exe`, unless a test says otherwise.
    pub program: PathBuf,
    /// Workers alive at most, idle and busy.
    pub max_workers: usize,
    /// Each step's deadline.
    pub timeout: Duration,
    /// The memory budget: no worker is ever allowed more.
    pub max_memory: u64,
}

impl Config {
    /// Workers of this binary.
    pub fn new(max_workers: usize, timeout: Duration, max_memory: u64) -> Config {
        Config {
            program: PathBuf::from(crate::config::SELF_EXE),
            max_workers,
            timeout,
            max_memory,
        }
    }
}

/// The decode workers of one process.
pub struct Workers {
    pool: Pool,
    timeout: Duration,
}

impl Workers {
    /// Starts keeping [`IDLE_WORKERS`] workers ready.
    pub fn new(config: Config) -> io::Result<Workers> {
        let settings = Settings {
            program: config.program,
            max: config.max_workers.max(1),
            idle: IDLE_WORKERS.min(config.max_workers.max(1)),
            most: config.max_memory,
            // Both steps' deadlines, and one more second: a backstop.
            cpu: config.timeout.saturating_mul(2),
        };
        Ok(Workers {
            pool: Pool::new(settings)?,
            timeout: config.timeout,
        })
    }

    /// Workers alive now, idle and busy, and the most allowed.
    pub fn alive(&self) -> (usize, usize) {
        self.pool.alive()
    }

    /// Decodes `input` in a worker as `kind` asks, under `max_pixels`, with
    /// its memory charged to `memory` in two steps (see the module
    /// documentation); the caller already holds `held` bytes of the same
    /// budget, which count against it.
    pub fn decode(
        &self,
        memory: &impl Memory,
        kind: Kind,
        input: &[u8],
        held: u64,
        max_pixels: u64,
    ) -> Result<Decoded, Error> {
        let max = memory.limit();
        let len = input.len() as u64;
        let opening = OVERHEAD
            .saturating_add(len)
            .saturating_add(classify::open_memory(input));
        let need = held.saturating_add(opening);
        if need > max {
            return Err(Error::OverBudget {
                size: None,
                need,
                max,
            });
        }
        let mut reserved = memory.reserve(opening).ok_or(Error::NoMemory { need })?;
        let deadline = Instant::now() + self.timeout;
        let mut lease = self.pool.take(deadline).map_err(|e| match e {
            Unavailable::Busy => Error::Busy,
            Unavailable::Start(why) => Error::Unavailable(why),
        })?;
        let job = wire::Job {
            kind,
            max_pixels,
            len,
        };
        let header = self.open(&mut lease, &job, input, opening)?;
        // A thumbnail decodes twice, one after the other: the crate's
        // decode for the picture and the colour rule's.
        let peak = match kind {
            Kind::Classify => header.peak,
            Kind::Thumbnail { .. } => header.peak.saturating_mul(2),
        };
        let need = need.saturating_add(peak);
        if need > max {
            return Err(Error::OverBudget {
                size: Some((header.width, header.height)),
                need,
                max,
            });
        }
        let turn = memory.turn(peak);
        if !memory.grow(&mut reserved, peak) {
            return Err(Error::NoMemory { need });
        }
        let decoded = self.finish(lease, header, opening.saturating_add(peak))?;
        drop((turn, reserved));
        Ok(decoded)
    }

    /// Step 1: limits the worker to `charged` bytes, sends the job and
    /// input, and reads the header or the refusal.
    fn open(
        &self,
        lease: &mut Lease<'_>,
        job: &wire::Job,
        input: &[u8],
        charged: u64,
    ) -> Result<Header, Error> {
        let deadline = Instant::now() + self.timeout;
        let process = &mut lease.process;
        if process.allow(charged).is_err() {
            return Err(Error::Unavailable(
                "cannot set a decode worker's memory limit".into(),
            ));
        }
        let sent = process
            .write_all(&wire::job(job), deadline)
            .and_then(|()| process.write_all(input, deadline));
        let mut head = [0; wire::HEADER_LEN];
        // The first byte says which frame this is; a refusal is shorter.
        let read = sent.and_then(|()| process.read_exact(&mut head[..1], deadline));
        if let Err(stop) = read {
            return Err(self.failed(lease, Some(stop)));
        }
        if head[0] == b'E' {
            return Err(self.refusal(lease, head[0], deadline));
        }
        if let Err(stop) = lease.process.read_exact(&mut head[1..], deadline) {
            return Err(self.failed(lease, Some(stop)));
        }
        wire::parse_header(&head).ok_or_else(|| self.failed(lease, None))
    }

    /// Step 2: raises the worker's limit to `charged` bytes, lets it decode,
    /// and reads the verdict or the refusal.
    fn finish(&self, mut lease: Lease<'_>, header: Header, charged: u64) -> Result<Decoded, Error> {
        let deadline = Instant::now() + self.timeout;
        if lease.process.allow(charged).is_err() {
            return Err(Error::Unavailable(
                "cannot set a decode worker's memory limit".into(),
            ));
        }
        let mut fixed = [0; wire::VERDICT_LEN];
        let read = lease
            .process
            .write_all(&[wire::GO], deadline)
            .and_then(|()| lease.process.read_exact(&mut fixed[..1], deadline));
        if let Err(stop) = read {
            return Err(self.failed(&mut lease, Some(stop)));
        }
        if fixed[0] == b'E' {
            return Err(self.refusal(&mut lease, fixed[0], deadline));
        }
        if let Err(stop) = lease.process.read_exact(&mut fixed[1..], deadline) {
            return Err(self.failed(&mut lease, Some(stop)));
        }
        let Some((verdict, thumb_len)) = wire::parse_verdict(&fixed, &header) else {
            return Err(self.failed(&mut lease, None));
        };
        let mut thumbnail = vec![0; thumb_len];
        if let Err(stop) = lease.process.read_exact(&mut thumbnail, deadline) {
            return Err(self.failed(&mut lease, Some(stop)));
        }
        Ok(Decoded {
            header,
            verdict,
            thumbnail,
        })
    }

    /// Reads the rest of a refusal whose first byte is `first`.
    fn refusal(&self, lease: &mut Lease<'_>, first: u8, deadline: Instant) -> Error {
        let mut head = [first, 0, 0, 0];
        if let Err(stop) = lease.process.read_exact(&mut head[1..], deadline) {
            return self.failed(lease, Some(stop));
        }
        let Some((kind, len)) = wire::parse_refusal_head(&head) else {
            return self.failed(lease, None);
        };
        let mut text = vec![0; len];
        if let Err(stop) = lease.process.read_exact(&mut text, deadline) {
            return self.failed(lease, Some(stop));
        }
        match wire::parse_refusal(kind, &text) {
            Some(e) => Error::Image(e),
            None => self.failed(lease, None),
        }
    }

    /// Ends a worker that stopped answering (`stop`) or answered nonsense
    /// (`None`), and says how it failed.
    fn failed(&self, lease: &mut Lease<'_>, stop: Option<Stop>) -> Error {
        Error::Worker(lease.process.fail(stop, self.timeout))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! The worker binary for the library's own tests, which are not it.

    use std::path::PathBuf;

    /// `target/<profile>/colorsort`, beside the test binary's `deps/`.
    pub(crate) fn program() -> PathBuf {
        let exe = std::env::current_exe().expect("the test binary's path");
        let bin = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test binary is in target/<profile>/deps")
            .join("colorsort");
        assert!(
            bin.exists(),
            "{} is missing: build the binary first (cargo test builds it)",
            bin.display()
        );
        bin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Budget, DecodeGate};
    use std::cell::Cell;

    /// Guards whose growth can be refused, and that count the turns asked
    /// for.
    struct TestMemory {
        guards: Guards,
        refuse_growth: bool,
        turns: Cell<usize>,
    }

    impl TestMemory {
        fn new(limit: u64, refuse_growth: bool) -> TestMemory {
            TestMemory {
                guards: Guards {
                    budget: Budget::new(limit),
                    gate: DecodeGate::new(1, 0),
                },
                refuse_growth,
                turns: Cell::new(0),
            }
        }
    }

    impl Memory for TestMemory {
        fn limit(&self) -> u64 {
            self.guards.limit()
        }
        fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
            self.guards.reserve(bytes)
        }
        fn grow(&self, memory: &mut Reservation<'_>, more: u64) -> bool {
            !self.refuse_growth && self.guards.grow(memory, more)
        }
        fn turn(&self, peak: u64) -> Option<Turn<'_>> {
            self.turns.set(self.turns.get() + 1);
            self.guards.turn(peak)
        }
    }

    fn workers() -> Workers {
        let mut config = Config::new(4, Duration::from_secs(20), 1 << 30);
        config.program = testing::program();
        Workers::new(config).unwrap()
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// The outcome, reduced to what the cases compare.
    fn outcome(result: &Result<Decoded, Error>) -> String {
        match result {
            Ok(d) => format!(
                "{} {}x{} {} thumb {}",
                d.header.format,
                d.header.width,
                d.header.height,
                d.verdict.class.as_str(),
                !d.thumbnail.is_empty()
            ),
            Err(Error::Image(e)) => format!("image {e}"),
            Err(Error::OverBudget { size, .. }) => format!("over budget {size:?}"),
            Err(Error::NoMemory { .. }) => "no memory".into(),
            Err(e) => format!("other {e}"),
        }
    }

    #[test]
    fn decodes_are_charged_in_two_steps_and_refused_by_kind() {
        let workers = workers();
        let image = png(64, 48);
        let opening = OVERHEAD + image.len() as u64 + classify::open_memory(&image);
        let thumb = Kind::Thumbnail { side: 16 };
        // (input, kind, budget, refuse growth, outcome)
        let cases: Vec<(&[u8], Kind, u64, bool, &str)> = vec![
            (
                &image,
                Kind::Classify,
                1 << 30,
                false,
                "png 64x48 green thumb false",
            ),
            (&image, thumb, 1 << 30, false, "png 64x48 green thumb true"),
            (
                b"junk",
                Kind::Classify,
                1 << 30,
                false,
                "image not an image: unrecognised format",
            ),
            // Opening alone is over the whole budget: no worker is asked.
            (
                &image,
                Kind::Classify,
                opening - 1,
                false,
                "over budget None",
            ),
            // Opening fits, the decode beside it does not.
            (
                &image,
                Kind::Classify,
                opening,
                false,
                "over budget Some((64, 48))",
            ),
            (&image, Kind::Classify, 1 << 30, true, "no memory"),
        ];
        for (input, kind, limit, refuse, want) in cases {
            let memory = TestMemory::new(limit, refuse);
            let result = workers.decode(&memory, kind, input, 0, 1 << 20);
            assert_eq!(outcome(&result), want, "{kind:?} in {limit}");
            assert_eq!(memory.guards.budget.used(), 0, "everything is given back");
        }
    }

    #[test]
    fn the_sums_are_the_in_process_ones() {
        let workers = workers();
        let image = png(7, 5);
        let memory = TestMemory::new(1 << 30, false);
        let decoded = workers
            .decode(&memory, Kind::Classify, &image, 0, 1 << 20)
            .unwrap();
        let local = classify::classify(&image, &classify::Limits::default()).unwrap();
        assert_eq!(decoded.verdict, local);
        assert_eq!(memory.turns.get(), 1);
    }
}
