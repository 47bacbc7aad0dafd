//! A connection's output: each reply written whole before a deadline. The
//! socket's write timeout is set to what is left before the deadline ahead
//! of every write, so a client that reads its replies a little at a time
//! cannot stretch one past it, and one that does not read at all is cut.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Why a reply was not written whole.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The deadline passed: the client is not reading.
    Timeout,
    /// The socket failed: the client left, or the connection was shut.
    Failed,
}

/// The write side of one connection's socket.
pub(super) struct Writer {
    stream: TcpStream,
    /// The longest write timeout ever armed: the server's timeout.
    timeout: Duration,
}

impl Writer {
    pub(super) fn new(stream: TcpStream, timeout: Duration) -> Writer {
        Writer { stream, timeout }
    }

    /// Writes all of `bytes` before `deadline`.
    pub(super) fn write_all_by(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<(), WriteError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WriteError::Timeout);
            }
            self.stream
                .set_write_timeout(Some(left.min(self.timeout)))
                .map_err(|_| WriteError::Failed)?;
            match self.stream.write(rest) {
                Ok(0) => return Err(WriteError::Failed),
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(WriteError::Failed),
            }
        }
        Ok(())
    }

    /// The socket, for a last word and a lingering close.
    pub(super) fn into_inner(self) -> TcpStream {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::thread;

    /// A server-side socket and its client.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener.accept().unwrap().0, client)
    }

    #[test]
    fn a_reply_read_slowly_is_cut_at_its_deadline() {
        let (server, mut client) = pair();
        let hang_up = client.try_clone().unwrap();
        // The client reads 4 KiB every 20 ms: each write makes progress
        // well within the per-write timeout, but 64 MiB would take minutes.
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut total = 0usize;
            while let Ok(n @ 1..) = client.read(&mut buf) {
                total += n;
                thread::sleep(Duration::from_millis(20));
            }
            total
        });
        let mut writer = Writer::new(server, Duration::from_secs(1));
        let started = Instant::now();
        let reply = vec![b'x'; 64 << 20];
        let result = writer.write_all_by(&reply, started + Duration::from_millis(1500));
        let took = started.elapsed();
        assert!(matches!(result, Err(WriteError::Timeout)), "{result:?}");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_millis(2600),
            "cut after {took:?}"
        );
        drop(writer);
        hang_up.shutdown(std::net::Shutdown::Both).unwrap();
        let read = reader.join().unwrap();
        assert!(
            read > 0 && read < reply.len(),
            "the client read {read} bytes"
        );
    }

    #[test]
    fn a_reply_read_at_once_is_written_whole() {
        let (server, mut client) = pair();
        let reader = thread::spawn(move || {
            let mut all = Vec::new();
            client.read_to_end(&mut all).unwrap();
            all
        });
        let mut writer = Writer::new(server, Duration::from_secs(5));
        let reply: Vec<u8> = (0..1 << 20).map(|i| i as u8).collect();
        writer
            .write_all_by(&reply, Instant::now() + Duration::from_secs(10))
            .unwrap();
        drop(writer);
        assert_eq!(reader.join().unwrap(), reply);
    }
}
