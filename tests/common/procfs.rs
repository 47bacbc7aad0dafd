//! What the kernel shows of the server in /proc: a process's status
//! fields and a TCP socket's queues, the waits built on them, and the
//! clients that read no reply, which those waits are mostly for.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use super::conn::Conn;
use super::server::TestServer;
use super::wait::{after, wait_until};
use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

/// One TCP socket's queues from `/proc/net/tcp`: bytes sent and not yet
/// acknowledged by the peer, and bytes received and not yet read by the
/// socket's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    pub unacked: u64,
    pub unread: u64,
}

/// The queues of the IPv4 socket bound to `local` and connected to
/// `remote`, as the kernel reports them; `None` if there is none.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<Queues> {
    let fields = tcp_row(local, remote)?;
    let (tx, rx) = fields.get(4)?.split_once(':')?;
    Some(Queues {
        unacked: u64::from_str_radix(tx, 16).ok()?,
        unread: u64::from_str_radix(rx, 16).ok()?,
    })
}

/// The inode of the IPv4 socket bound to `local` and connected to
/// `remote` (what its descriptors link to, `socket:[INODE]`); `None` if
/// there is none.
pub fn tcp_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    tcp_row(local, remote)?.get(9)?.parse().ok()
}

/// The fields of `/proc/net/tcp`'s line for the IPv4 socket bound to
/// `local` and connected to `remote`.
fn tcp_row(local: SocketAddr, remote: SocketAddr) -> Option<Vec<String>> {
    let (local, remote) = (tcp_hex(local)?, tcp_hex(remote)?);
    tcp_rows()?
        .into_iter()
        .find(|fields| fields.get(1) == Some(&local) && fields.get(2) == Some(&remote))
}

/// An IPv4 address as `/proc/net/tcp` writes it.
fn tcp_hex(addr: SocketAddr) -> Option<String> {
    match addr {
        SocketAddr::V4(v4) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        )),
        SocketAddr::V6(_) => None,
    }
}

/// The fields of every line of `/proc/net/tcp`.
fn tcp_rows() -> Option<Vec<Vec<String>>> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    Some(
        table
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().map(str::to_string).collect())
            .collect(),
    )
}

/// Connections to the listener at `listening` that the server has not
/// accepted yet: those in its accept queue, and those whose handshake the
/// kernel has still to finish (`SYN_RECV`; a client counts them as
/// connected, and the kernel completes them later when the accept queue was
/// full). `None` if the table cannot be read.
pub fn unaccepted(listening: SocketAddr) -> Option<u64> {
    let local = tcp_hex(listening)?;
    let mut count = 0;
    for fields in tcp_rows()? {
        if fields.get(1) != Some(&local) {
            continue;
        }
        match fields.get(3).map(String::as_str) {
            // SYN_RECV.
            Some("03") => count += 1,
            // LISTEN: its receive queue is the accept queue's length.
            Some("0A") => {
                let (_, rx) = fields.get(4)?.split_once(':')?;
                count += u64::from_str_radix(rx, 16).ok()?;
            }
            _ => {}
        }
    }
    Some(count)
}

/// A field of /proc/PID/status (e.g. `Threads`, `VmHWM` in kB), or `None`
/// once the process is gone.
pub fn proc_status_of(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let prefix = format!("{field}:");
    let line = text.lines().find(|l| l.starts_with(&prefix))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl TestServer {
    /// Waits up to `limit` until the server has read everything `conn` has
    /// sent: the client's bytes are all acknowledged (so they reached the
    /// server's socket) and none is left unread in it.
    pub fn wait_read(&self, conn: &Conn, limit: Duration) -> bool {
        let client = conn.stream.local_addr().unwrap();
        wait_until(after(limit), || {
            let sent = tcp_queues(client, self.addr);
            let received = tcp_queues(self.addr, client);
            matches!(
                (sent, received),
                (
                    Some(Queues { unacked: 0, .. }),
                    Some(Queues { unread: 0, .. })
                )
            )
        })
    }

    /// Waits up to `limit` until the server is stuck writing to `conn`:
    /// its replies fill the client's receive buffer, and more wait unsent
    /// in the server's socket (on loopback, bytes the peer has room for are
    /// acknowledged at once, so unacknowledged bytes mean a closed window).
    pub fn wait_stuck_writing(&self, conn: &Conn, limit: Duration) -> bool {
        let client = conn.stream.local_addr().unwrap();
        wait_until(after(limit), || {
            let received = tcp_queues(client, self.addr);
            let sent = tcp_queues(self.addr, client);
            received.is_some_and(|q| q.unread > 0) && sent.is_some_and(|q| q.unacked > 0)
        })
    }

    /// A connection that pipelines 20,000 `KEY` requests (several hundred bytes
    /// of reply for each 5 bytes sent) and reads none of the replies.
    pub fn non_reader(&self) -> Conn {
        let c = self.connect();
        let mut stream = c.stream.try_clone().unwrap();
        let requests = b"KEY\r\n".repeat(20_000);
        // Writes until the server stops reading: its replies fill the buffers.
        thread::spawn(move || {
            let _ = stream.write_all(&requests);
        });
        c
    }

    /// `n` non-readers (see [`TestServer::non_reader`]) that the server is
    /// stuck writing to, each waited for up to `limit`: until its requests
    /// arrive a non-reader is idle, and a newcomer would evict it as such.
    /// Panics, with the server's log, if one is not stuck in time.
    pub fn stuck_non_readers(&self, n: usize, limit: Duration) -> Vec<Conn> {
        let readers: Vec<Conn> = (0..n).map(|_| self.non_reader()).collect();
        for r in &readers {
            assert!(self.wait_stuck_writing(r, limit), "{}", self.log_text());
        }
        readers
    }

    /// Waits up to `limit` until the server runs `n` threads.
    pub fn wait_threads(&self, n: u64, limit: Duration) -> bool {
        wait_until(after(limit), || {
            proc_status_of(self.pid(), "Threads").is_some_and(|t| t == n)
        })
    }

    /// A line from /proc/PID/status, e.g. `Threads` or `VmHWM`, as a number.
    pub fn proc_status(&self, field: &str) -> u64 {
        proc_status_of(self.pid(), field)
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }
}
