//! What the server asks of the operating system through libc: a soft
//! open-file limit high enough for its connections, a listening socket
//! whose connections have small kernel buffers, and an allocator that
//! gives large blocks back. Every `unsafe` call of the server is here, each
//! with the reason it is sound.

use crate::config::{LISTEN_BACKLOG, RECEIVE_BUFFER, SEND_BUFFER};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// File descriptors a connection holds at most: its socket, two duplicates
/// of it (the writer's and the registry's, to shut it from outside), and a
/// staging file while it files an upload. After it ends, its socket may
/// linger one more descriptor in the closer.
pub(super) const FDS_PER_CONNECTION: usize = 4;
/// Descriptors kept for the rest of the process: stdio, the listener, the
/// data directory's folder handles and locks, the key file at start.
const FDS_RESERVED: usize = 64;
/// Descriptors a decode worker holds in the server: its two pipes. One
/// worker at a time is being started, which holds three more for a moment.
pub(super) const FDS_PER_WORKER: usize = 2;
const FDS_STARTING_WORKER: usize = 3;

/// Descriptors the server holds besides its connections, with `workers`
/// decode workers alive at most.
fn reserved(workers: usize) -> usize {
    FDS_RESERVED
        .saturating_add(workers.saturating_mul(FDS_PER_WORKER))
        .saturating_add(FDS_STARTING_WORKER)
}

/// A listening socket on `addr` whose connections have the kernel buffers
/// [`RECEIVE_BUFFER`] and [`SEND_BUFFER`], as `TcpListener::bind` makes it
/// otherwise (close-on-exec, `SO_REUSEADDR`, a backlog of
/// [`LISTEN_BACKLOG`]).
///
/// The buffers are set on the listening socket before listen(2): the
/// sockets it accepts are cloned from it, so every connection, from the
/// first byte it receives, even while still queued for accept(2), has
/// them, and a size set by hand is never grown by the kernel's autotuning.
/// std offers no way to set a socket option between bind(2) and listen(2).
pub(super) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let family = match addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        // SAFETY: socket(2) takes no pointers; a descriptor it returns is
        // new and owned by nothing else, so `OwnedFd` may own it.
        let socket = unsafe {
            let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        let fd = socket.as_raw_fd();
        let options = [
            (libc::SO_REUSEADDR, 1),
            (libc::SO_RCVBUF, RECEIVE_BUFFER as libc::c_int),
            (libc::SO_SNDBUF, SEND_BUFFER as libc::c_int),
        ];
        for (name, value) in options {
            // SAFETY: setsockopt reads one `c_int` through a valid pointer,
            // of the length given, on a socket `socket` keeps open.
            let set = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    name,
                    (&raw const value).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if set != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let bound = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: bind(2) reads one `sockaddr_in` through a valid
                // pointer, of the length given.
                unsafe {
                    libc::bind(
                        fd,
                        (&raw const sin).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: bind(2) reads one `sockaddr_in6` through a valid
                // pointer, of the length given.
                unsafe {
                    libc::bind(
                        fd,
                        (&raw const sin6).cast(),
                        size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                }
            }
        };
        // SAFETY: listen(2) takes no pointers.
        if bound != 0 || unsafe { libc::listen(fd, LISTEN_BACKLOG as libc::c_int) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpListener::from(socket))
    }
    #[cfg(not(target_os = "linux"))]
    TcpListener::bind(addr)
}

/// Raises the soft open-file limit to what `connections` need, as far as
/// the hard limit allows, and returns the soft limit then in force; `None`
/// if it cannot be read or is unlimited. The soft limit is often 1024 where
/// the hard limit is far higher; servers commonly raise it themselves.
pub(super) fn raise_fd_limit(connections: usize, workers: usize) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let wanted = connections
            .saturating_mul(FDS_PER_CONNECTION + 1)
            .saturating_add(reserved(workers));
        let wanted = libc::rlim_t::try_from(wanted).unwrap_or(libc::rlim_t::MAX);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through a valid pointer, and
        // setrlimit reads one; a failure changes nothing.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < wanted {
                let raised = libc::rlimit {
                    rlim_cur: wanted.min(limit.rlim_max),
                    ..limit
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (connections, workers);
        None
    }
}

/// How many connections an open-file limit of `soft` holds: each needs up
/// to [`FDS_PER_CONNECTION`] descriptors plus one lingering, besides the
/// [`FDS_RESERVED`] and the pipes of `workers` decode workers. A server over its limit cannot accept(2): new clients
/// would wait in the kernel's backlog, unanswered, instead of getting a
/// slot by eviction or `ERR busy`.
pub(super) fn connections_for_fd_limit(soft: u64, workers: usize) -> usize {
    let spare = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserved(workers));
    (spare / (FDS_PER_CONNECTION + 1)).max(1)
}

/// Makes glibc's allocator serve every block of 1 MiB or more with its own
/// mapping, returned to the system when freed.
///
/// By default glibc raises that threshold as large blocks are freed, up to
/// 32 MiB, and then keeps freed payloads and pixel buffers in its heap: a
/// server that has decoded one large image holds on to the memory
/// (measured: 135 MiB of peak RSS for one client against 79 MiB with the
/// threshold fixed). A fixed threshold also keeps large buffers on fresh,
/// untouched pages, which zeroed allocation and huge-page advice rely on.
/// musl's allocator already unmaps large blocks when freed.
pub(super) fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before the
    // server starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_file_limit_fits_the_connections() {
        // (soft limit, decode workers, connections)
        let cases = [
            (1024, 0, 191),
            (1024, 32, 178),
            (256, 0, 37),
            (256, 32, 25),
            (64, 0, 1),
            (0, 32, 1),
            (u64::MAX, 32, (usize::MAX - 64 - 64 - 3) / 5),
        ];
        for (soft, workers, fit) in cases {
            assert_eq!(
                connections_for_fd_limit(soft, workers),
                fit,
                "soft limit {soft}, {workers} workers"
            );
        }
        // This process has a finite limit, and raising it for a few
        // connections never lowers it.
        let before = raise_fd_limit(0, 0).unwrap();
        assert!(raise_fd_limit(10, 2).unwrap() >= before);
    }
}
