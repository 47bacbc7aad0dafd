//! A connection's input: one request line at a time through a capped
//! reader before a deadline, and payloads with `read_exact` semantics under
//! the moving payload deadline. The socket's read timeout is set to what is
//! left before the deadline ahead of every read, so a client trickling bytes
//! cannot stretch a read past it.

use crate::config::Limits;
use crate::protocol;
use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Read buffer per connection.
const READ_BUFFER: usize = 8 * 1024;

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
}

impl<'a> Reader<'a> {
    pub(super) fn new(stream: TcpStream, limits: &'a Limits) -> Reader<'a> {
        Reader {
            inner: BufReader::with_capacity(READ_BUFFER, stream),
            limits,
        }
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

    /// Fills `out` with the payload whose request line ended at `started`,
    /// under the moving payload deadline, storing the bytes received so far
    /// in `progress` as they arrive. `progress` holds the bytes of this
    /// upload already received (a signature before its payload), and the
    /// deadline counts on from them: an upload is one transfer.
    pub(super) fn read_payload(
        &mut self,
        out: &mut [u8],
        started: Instant,
        progress: &AtomicU64,
    ) -> Result<(), ReadError> {
        let before = progress.load(Ordering::Relaxed);
        let mut received = 0;
        while received < out.len() {
            let deadline = self.payload_deadline(started, before + received as u64);
            received += self.read_some(&mut out[received..], deadline)?;
            progress.store(before + received as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Reads and discards a refused payload of `size` bytes, as
    /// [`read_payload`](Reader::read_payload) would read it, so the
    /// connection stays in step.
    pub(super) fn skip_payload(
        &mut self,
        size: u64,
        started: Instant,
        progress: &AtomicU64,
    ) -> Result<(), ReadError> {
        let before = progress.load(Ordering::Relaxed);
        let mut scratch = [0u8; 16 * 1024];
        let mut received = 0;
        while received < size {
            let want = scratch
                .len()
                .min(usize::try_from(size - received).unwrap_or(usize::MAX));
            received += self.read_some(
                &mut scratch[..want],
                self.payload_deadline(started, before + received),
            )? as u64;
            progress.store(before + received, Ordering::Relaxed);
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

    /// Reads some bytes into `out` before `deadline`; never returns 0 for a
    /// non-empty `out`.
    fn read_some(&mut self, out: &mut [u8], deadline: Instant) -> Result<usize, ReadError> {
        loop {
            if self.inner.buffer().is_empty() {
                self.arm(deadline)?;
            }
            match self.inner.read(out) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => return Ok(n),
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

/// Timeouts surface as `WouldBlock` or `TimedOut`; the deadline decides.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
