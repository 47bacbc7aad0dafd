//! A connection's input: one request line at a time through a capped
//! reader before a deadline, and payloads with `read_exact` semantics under
//! the moving payload deadline, into a buffer that grows, under the memory
//! budget, only as bytes arrive, and counted in the metrics as they do. The
//! socket's read timeout is set to what is left before the deadline ahead
//! of every read, so a client trickling bytes cannot stretch a read past
//! it.

use super::registry::Activity;
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::protocol;
use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;
use std::time::Instant;

/// Read buffer per connection.
const READ_BUFFER: usize = 8 * 1024;
/// What a payload buffer first grows by, once the first payload byte has
/// arrived: a client that sends one byte holds at most this much.
const FIRST_CHUNK: u64 = 64 * 1024;
/// The most a payload buffer grows by at once. Growth is by reallocation,
/// which for blocks this large is a remapping, not a copy.
const MAX_STEP: u64 = 8 * 1024 * 1024;

/// Why reading from the client stopped.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The deadline passed.
    Timeout,
    /// The client closed its side.
    Eof,
    /// The socket failed.
    Io(io::Error),
}

/// Why a payload was not read whole.
#[derive(Debug)]
pub(super) enum PayloadError {
    /// Reading stopped.
    Read(ReadError),
    /// The memory budget refused more room, after `received` bytes.
    NoMemory {
        /// Payload bytes read so far.
        received: u64,
    },
}

impl From<ReadError> for PayloadError {
    fn from(e: ReadError) -> PayloadError {
        PayloadError::Read(e)
    }
}

/// Why no request line was read.
#[derive(Debug)]
pub(super) enum LineError {
    /// The line was longer than [`protocol::MAX_LINE`].
    TooLong,
    /// Reading stopped first.
    Read(ReadError),
}

impl From<ReadError> for LineError {
    fn from(e: ReadError) -> LineError {
        LineError::Read(e)
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// The buffered read side of one connection's socket.
pub(super) struct Reader<'a> {
    inner: BufReader<TcpStream>,
    /// The timeout and minimum rate the deadlines are made of.
    limits: &'a Limits,
    /// Where payload bytes are counted as they arrive.
    metrics: &'a Metrics,
}

impl<'a> Reader<'a> {
    pub(super) fn new(stream: TcpStream, limits: &'a Limits, metrics: &'a Metrics) -> Reader<'a> {
        Reader {
            inner: BufReader::with_capacity(READ_BUFFER, stream),
            limits,
            metrics,
        }
    }

    /// Whether a whole request line has been read from the socket already
    /// (a client that pipelines), so [`read_line`](Reader::read_line) will
    /// return without waiting for the client.
    pub(super) fn holds_line(&self) -> bool {
        self.inner.buffer().contains(&b'\n')
    }

    /// Reads one request line, without its ending, before `deadline`.
    pub(super) fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, LineError> {
        let mut line = Vec::new();
        loop {
            let available = self.fill(deadline)?;
            if available.is_empty() {
                return Err(ReadError::Eof.into());
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if line.len() + i + 1 > protocol::MAX_LINE {
                        return Err(LineError::TooLong);
                    }
                    line.extend_from_slice(&available[..i]);
                    self.inner.consume(i + 1);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(line);
                }
                None => {
                    let n = available.len();
                    if line.len() + n >= protocol::MAX_LINE {
                        return Err(LineError::TooLong);
                    }
                    line.extend_from_slice(available);
                    self.inner.consume(n);
                }
            }
        }
    }

    /// Reads one part of an upload, `size` bytes whose request line ended
    /// at `started`, into `out`, under the moving payload deadline,
    /// reporting the bytes received so far to `activity` as they arrive.
    /// An upload is one transfer: the `before` bytes of it received, and
    /// still held, ahead of this part (a signature before its payload)
    /// count towards the deadline, the progress and the memory reported.
    ///
    /// `out` grows as bytes arrive, never ahead of them: before it grows,
    /// at least one more byte must have arrived, and `reserve` must grant
    /// the bytes it grows by (see [`next_len`]). Announcing a SIZE costs
    /// nothing; holding memory costs sending it. If `reserve` refuses,
    /// reading stops with [`PayloadError::NoMemory`] and the bytes of this
    /// part received.
    pub(super) fn read_payload(
        &mut self,
        out: &mut Vec<u8>,
        size: u64,
        (started, before): (Instant, u64),
        activity: &Activity,
        mut reserve: impl FnMut(u64) -> bool,
    ) -> Result<(), PayloadError> {
        out.clear();
        let mut received = 0u64;
        while received < size {
            let deadline = self.payload_deadline(started, before + received);
            if received == out.len() as u64 {
                if self.fill(deadline)?.is_empty() {
                    return Err(ReadError::Eof.into());
                }
                let len = next_len(received, size);
                if !reserve(len - received) {
                    return Err(PayloadError::NoMemory { received });
                }
                // `len` is at most SIZE, which the caller checked against
                // the upload limit, and was just reserved.
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                // Exactly: `resize` alone may take twice what it needs.
                out.reserve_exact(len - out.len());
                out.resize(len, 0);
            }
            let at = usize::try_from(received).unwrap_or(usize::MAX);
            received += self.read_some(&mut out[at..], deadline)? as u64;
            activity.set_progress(before + received, before + out.len() as u64);
        }
        Ok(())
    }

    /// Reads and discards the rest of a refused upload of `size` bytes (its
    /// signature and payload, as one transfer), of which `received` were
    /// read already, as
    /// [`read_payload`](Reader::read_payload) would read it, so the
    /// connection stays in step.
    pub(super) fn skip_payload(
        &mut self,
        size: u64,
        mut received: u64,
        started: Instant,
        activity: &Activity,
    ) -> Result<(), ReadError> {
        let mut scratch = [0u8; 16 * 1024];
        while received < size {
            let want = scratch
                .len()
                .min(usize::try_from(size - received).unwrap_or(usize::MAX));
            received += self.read_some(
                &mut scratch[..want],
                self.payload_deadline(started, received),
            )? as u64;
            activity.set_progress(received, 0);
        }
        Ok(())
    }

    /// When the next payload bytes are due, `received` bytes into a payload
    /// whose request line ended at `started`: one timeout of grace plus the
    /// time the bytes so far take at the minimum rate. Counting from what
    /// was received, not from SIZE, is what stops a client from announcing
    /// a large SIZE and then holding its slot and memory while sending
    /// nothing.
    fn payload_deadline(&self, started: Instant, received: u64) -> Instant {
        started + self.limits.payload_time(received)
    }

    /// Returns buffered input, reading more if there is none, before
    /// `deadline`. An empty slice means end of input.
    fn fill(&mut self, deadline: Instant) -> Result<&[u8], ReadError> {
        while self.inner.buffer().is_empty() {
            self.arm(deadline)?;
            match self.inner.fill_buf() {
                Ok([]) => return Ok(&[]),
                Ok(_) => break,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.inner.buffer())
    }

    /// Reads some payload bytes into `out` before `deadline`, and counts
    /// them; never returns 0 for a non-empty `out`.
    fn read_some(&mut self, out: &mut [u8], deadline: Instant) -> Result<usize, ReadError> {
        loop {
            if self.inner.buffer().is_empty() {
                self.arm(deadline)?;
            }
            match self.inner.read(out) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => {
                    self.metrics.received(n as u64);
                    return Ok(n);
                }
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sets the socket's read timeout to what is left before `deadline`, so
    /// that a client trickling bytes cannot stretch a read past it.
    fn arm(&mut self, deadline: Instant) -> Result<(), ReadError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        self.inner
            .get_ref()
            .set_read_timeout(Some(left.min(self.limits.timeout)))?;
        Ok(())
    }
}

/// How long a payload buffer holding `len` bytes, all received, grows to
/// for a payload of `size`: by [`FIRST_CHUNK`] at first, then by as much as
/// it holds (so it never holds more than twice what was received), at most
/// [`MAX_STEP`] at a time, never past `size`.
fn next_len(len: u64, size: u64) -> u64 {
    len.saturating_add(len.clamp(FIRST_CHUNK, MAX_STEP))
        .min(size)
}

/// Timeouts surface as `WouldBlock` or `TimedOut`; the deadline decides.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_buffers_grow_with_what_was_received() {
        let mib = 1 << 20;
        // (bytes held and received, SIZE, bytes held next)
        let cases = [
            (0, 22, 22),
            (0, 64 * mib, 64 * 1024),
            (64 * 1024, 64 * mib, 128 * 1024),
            (mib, 64 * mib, 2 * mib),
            (8 * mib, 64 * mib, 16 * mib),
            (16 * mib, 64 * mib, 24 * mib),
            (60 * mib, 64 * mib, 64 * mib),
            (100, 150, 150),
        ];
        for (len, size, next) in cases {
            assert_eq!(next_len(len, size), next, "{len} of {size}");
        }
        // However SIZE and the bytes received, the buffer holds at most
        // twice what was received, or the first chunk.
        for size in [1, 1000, 65_537, 3 * mib + 5, 64 * mib] {
            let mut len = 0;
            while len < size {
                let next = next_len(len, size);
                assert!(next > len && next <= size);
                assert!(next <= (2 * len).max(FIRST_CHUNK), "{len} -> {next}");
                len = next;
            }
        }
    }
}
