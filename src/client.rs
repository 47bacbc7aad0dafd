//! The client side of the protocol: a connection that sends requests and
//! reads their one-line replies, used by `colorsort key`, `send`, `stats`
//! and `ping`; and [`Retry`], which tries again what may succeed later
//! (connection refused or reset, `ERR busy`, `ERR timeout`,
//! `ERR storage-failed`) with a bounded, doubling backoff.

use crate::identity::{self, PublicKey};
use crate::protocol::{self, Code, Policy, Reply, Stored, Upload};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

/// The server address used when neither `--host` nor `COLORSORT_HOST` is set.
pub const DEFAULT_HOST: &str = "127.0.0.1:6666";
/// The environment variable naming the server, `HOST:PORT`.
pub const HOST_ENV: &str = "COLORSORT_HOST";
/// How long to wait for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for each read or write. Uploads of large images take
/// the server a few seconds to decode; this leaves a wide margin.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// The server to talk to: `COLORSORT_HOST`, or [`DEFAULT_HOST`].
pub fn default_host() -> String {
    std::env::var(HOST_ENV)
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// What can go wrong talking to a server.
#[derive(Debug)]
pub enum Error {
    /// The host name did not resolve to any address.
    Resolve { host: String, source: io::Error },
    /// No address of the host accepted a connection.
    Connect { host: String, source: io::Error },
    /// The connection failed mid-conversation.
    Io(io::Error),
    /// The server closed the connection before replying.
    Closed,
    /// The server sent something that is not a protocol reply.
    BadReply(String),
    /// The server replied `ERR code message`.
    Server { code: String, message: String },
    /// The server's `KEY` reply is not a usable key.
    Key(identity::Error),
}

impl Error {
    /// The server's error code, if this is an `ERR` reply with a known code.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Server { code, .. } => Code::from_wire(code),
            _ => None,
        }
    }

    /// True if trying again later may succeed: the server was unreachable,
    /// the connection broke, or the server said it was busy or slow.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Io(_) | Error::Closed => true,
            Error::Server { .. } => self.code().is_some_and(Code::is_transient),
            Error::Resolve { .. } | Error::BadReply(_) | Error::Key(_) => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            Error::Connect { host, source } => write!(f, "cannot connect to {host}: {source}"),
            Error::Io(e) => write!(f, "connection failed: {e}"),
            Error::Closed => f.write_str("the server closed the connection"),
            Error::BadReply(line) => write!(f, "unexpected reply from the server: {line}"),
            Error::Server { code, message } => write!(f, "server replied {code}: {message}"),
            Error::Key(e) => write!(f, "the server's key is not usable: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// How a request is retried: how many attempts in all, and how long to
/// wait before each retry, doubling from `first` up to `longest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the first retry; it doubles after each.
    pub first: Duration,
    /// Longest wait between retries.
    pub longest: Duration,
}

/// The retries of `colorsort send`: five attempts, waiting 0.2, 0.4, 0.8
/// and 1.6 s between them, never more than 5 s.
pub const RETRY: Retry = Retry {
    attempts: 5,
    first: Duration::from_millis(200),
    longest: Duration::from_secs(5),
};

impl Retry {
    /// The wait before another attempt, after `made` attempts of which the
    /// last failed with `error`; `None` if there is to be none: the error
    /// is not [transient](Error::is_transient), or the attempts are spent.
    pub fn wait(&self, made: u32, error: &Error) -> Option<Duration> {
        if !error.is_transient() || made >= self.attempts {
            return None;
        }
        let doubled = 2u32.saturating_pow(made.saturating_sub(1));
        Some(self.first.saturating_mul(doubled).min(self.longest))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts
    /// are spent, sleeping [`Retry::wait`] between tries. Returns the last
    /// result and the number of attempts made.
    pub fn run<T>(&self, attempt: impl FnMut() -> Result<T, Error>) -> (Result<T, Error>, u32) {
        self.run_with(attempt, thread::sleep)
    }

    /// [`Retry::run`], waiting with `sleep`.
    fn run_with<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, Error>,
        mut sleep: impl FnMut(Duration),
    ) -> (Result<T, Error>, u32) {
        let mut made = 0;
        loop {
            made += 1;
            let result = attempt();
            match &result {
                Err(e) => match self.wait(made, e) {
                    Some(wait) => sleep(wait),
                    None => return (result, made),
                },
                Ok(_) => return (result, made),
            }
        }
    }
}

/// One connection to a colorsort server.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects to `host` (`HOST:PORT`), trying each address it resolves to.
    pub fn connect(host: &str) -> Result<Client, Error> {
        let addrs: Vec<_> = host
            .to_socket_addrs()
            .map_err(|source| Error::Resolve {
                host: host.to_string(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => return Client::from_stream(stream).map_err(Error::Io),
                Err(e) => last = e,
            }
        }
        Err(Error::Connect {
            host: host.to_string(),
            source: last,
        })
    }

    fn from_stream(stream: TcpStream) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends a command without payload and returns the text of its `OK`.
    pub fn request(&mut self, line: &str) -> Result<String, Error> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Fetches and parses the server's public key.
    pub fn key(&mut self) -> Result<PublicKey, Error> {
        let line = self.request("KEY")?;
        PublicKey::from_ssh_line(&line).map_err(Error::Key)
    }

    /// Fetches the server's upload policy: whether it files only signed
    /// uploads by colour, and the namespace to sign for. `None` from a
    /// server that predates `POLICY` (it answers `ERR unknown-command`),
    /// which takes no signatures.
    pub fn policy(&mut self) -> Result<Option<Policy>, Error> {
        match self.request("POLICY") {
            Ok(text) => Policy::parse(&text).map(Some).ok_or(Error::BadReply(text)),
            Err(e) if e.code() == Some(Code::UnknownCommand) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one upload and returns where the server filed it.
    pub fn upload(&mut self, kind: Upload, name: &str, payload: &[u8]) -> Result<Stored, Error> {
        self.send_upload(kind, name, None, payload)
    }

    /// Sends a signed `SEAL`: `signature`, an armored SSH signature of the
    /// image, then `sealed`, the image sealed to the server's key. Returns
    /// where the server filed it.
    pub fn upload_signed(
        &mut self,
        name: &str,
        signature: &[u8],
        sealed: &[u8],
    ) -> Result<Stored, Error> {
        self.send_upload(Upload::Seal, name, Some(signature), sealed)
    }

    fn send_upload(
        &mut self,
        kind: Upload,
        name: &str,
        signature: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Stored, Error> {
        let head =
            protocol::upload_line(kind, name, payload.len() as u64, signature.map(<[u8]>::len));
        let sent = self
            .writer
            .write_all(head.as_bytes())
            .and_then(|()| self.writer.write_all(signature.unwrap_or_default()))
            .and_then(|()| self.writer.write_all(payload));
        // A server refusing an upload early (too large, say) replies and
        // closes while we are still writing: its reply beats our error.
        let reply = self.reply();
        match (sent, reply) {
            (_, Ok(text)) => Stored::parse(&text).ok_or(Error::BadReply(text)),
            (Err(e), Err(Error::Closed | Error::Io(_))) => Err(Error::Io(e)),
            (_, Err(e)) => Err(e),
        }
    }

    /// Reads one reply line: `Ok(text)` for `OK`, `Err` for `ERR` or trouble.
    fn reply(&mut self) -> Result<String, Error> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(protocol::MAX_REPLY as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(Error::Closed);
        }
        let text = String::from_utf8_lossy(&line);
        let Some(text) = text.strip_suffix('\n') else {
            return Err(Error::BadReply(protocol::printable(&line, 80)));
        };
        let text = text.strip_suffix('\r').unwrap_or(text);
        match protocol::parse_reply(text) {
            Some(Reply::Ok(t)) => Ok(t),
            Some(Reply::Err { code, message }) => Err(Error::Server { code, message }),
            None => Err(Error::BadReply(protocol::printable(text.as_bytes(), 80))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-connection fake server that reads one line and answers `reply`.
    fn fake(reply: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            s.write_all(reply).unwrap();
        });
        addr
    }

    #[test]
    fn replies() {
        let ok = Client::connect(&fake(b"OK PONG\r\n"))
            .unwrap()
            .request("PING");
        assert_eq!(ok.unwrap(), "PONG");
        let err = Client::connect(&fake(b"ERR busy full\r\n"))
            .unwrap()
            .request("PING")
            .unwrap_err();
        assert_eq!(err.code(), Some(Code::Busy));
        assert!(err.is_transient());
        type Check = fn(&Error) -> bool;
        let cases: [(&'static [u8], Check); 4] = [
            (b"", |e| matches!(e, Error::Closed)),
            (b"HELLO\r\n", |e| matches!(e, Error::BadReply(_))),
            (b"OK no newline", |e| matches!(e, Error::BadReply(_))),
            (b"ERR not-an-image nope\n", |e| {
                e.code() == Some(Code::NotAnImage) && !e.is_transient()
            }),
        ];
        for (reply, check) in cases {
            let e = Client::connect(&fake(reply))
                .unwrap()
                .request("PING")
                .unwrap_err();
            assert!(check(&e), "{reply:?} gave {e:?}");
        }
    }

    #[test]
    fn policy_replies() {
        let on = Client::connect(&fake(b"OK signers=on namespace=ns later=1\r\n"))
            .unwrap()
            .policy()
            .unwrap();
        assert_eq!(
            on,
            Some(Policy {
                signers: true,
                namespace: "ns".into()
            })
        );
        let old = Client::connect(&fake(b"ERR unknown-command unknown command POLICY\r\n"))
            .unwrap()
            .policy();
        assert_eq!(old.unwrap(), None, "a server from before POLICY");
        let e = Client::connect(&fake(b"OK signers=maybe namespace=ns\r\n"))
            .unwrap()
            .policy()
            .unwrap_err();
        assert!(matches!(e, Error::BadReply(_)), "{e:?}");
        let e = Client::connect(&fake(b"ERR busy full\r\n"))
            .unwrap()
            .policy()
            .unwrap_err();
        assert_eq!(e.code(), Some(Code::Busy));
    }

    #[test]
    fn signed_uploads_send_the_signature_before_the_payload() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut seen = Vec::new();
            for _ in 0..2 {
                let mut line = Vec::new();
                reader.read_until(b'\n', &mut line).unwrap();
                let line = line.strip_suffix(b"\r\n").unwrap().to_vec();
                let protocol::Request::Upload { size, sigsize, .. } =
                    protocol::parse_request(&line).unwrap()
                else {
                    panic!("not an upload")
                };
                let mut sig = vec![0; sigsize.unwrap_or(0)];
                let mut payload = vec![0; size as usize];
                reader.read_exact(&mut sig).unwrap();
                reader.read_exact(&mut payload).unwrap();
                seen.push((String::from_utf8(line).unwrap(), sig, payload));
                (&s).write_all(b"OK red/a.png r=1.0 g=2.0 b=3.0 signer=a\\x40b\r\n")
                    .unwrap();
            }
            seen
        });
        let mut c = Client::connect(&addr).unwrap();
        let signed = c.upload_signed("a.png", b"SIG", b"payload").unwrap();
        assert_eq!(signed.signer.as_deref(), Some("a@b"));
        c.upload(Upload::Put, "a.png", b"plain").unwrap();
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            [
                (
                    "SEAL a.png 7 3".to_string(),
                    b"SIG".to_vec(),
                    b"payload".to_vec()
                ),
                ("PUT a.png 5".to_string(), Vec::new(), b"plain".to_vec()),
            ]
        );
    }

    #[test]
    fn overlong_reply_is_refused() {
        let long: &'static [u8] =
            Box::leak(vec![b'O'; protocol::MAX_REPLY + 10].into_boxed_slice());
        let e = Client::connect(&fake(long))
            .unwrap()
            .request("PING")
            .unwrap_err();
        assert!(matches!(e, Error::BadReply(_)), "{e:?}");
    }

    fn server(code: &str) -> Error {
        Error::Server {
            code: code.into(),
            message: "m".into(),
        }
    }

    fn io(kind: io::ErrorKind) -> Error {
        Error::Io(io::Error::from(kind))
    }

    #[test]
    fn what_is_retried() {
        let ms = Duration::from_millis;
        let refused = || Error::Connect {
            host: "h:1".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let cases: Vec<(Error, bool)> = vec![
            (refused(), true),
            (io(io::ErrorKind::ConnectionReset), true),
            (Error::Closed, true),
            (server("busy"), true),
            (server("timeout"), true),
            (server("storage-failed"), true),
            (server("not-an-image"), false),
            (server("too-large"), false),
            (server("bad-name"), false),
            (server("unknown-signer"), false),
            (server("no-such-code"), false),
            (Error::BadReply("HELLO".into()), false),
            (
                Error::Resolve {
                    host: "nowhere".into(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                },
                false,
            ),
        ];
        for (error, transient) in cases {
            let want = transient.then_some(ms(200));
            assert_eq!(RETRY.wait(1, &error), want, "{error:?}");
            assert_eq!(RETRY.wait(RETRY.attempts, &error), None, "{error:?}");
        }
        // The waits double, up to the longest.
        let slow = Retry {
            attempts: 40,
            first: ms(300),
            longest: ms(2000),
        };
        let waits: Vec<_> = (1..=5)
            .chain([39, 40])
            .map(|n| slow.wait(n, &Error::Closed))
            .collect();
        let want = [300, 600, 1200, 2000, 2000, 2000]
            .map(|n| Some(ms(n)))
            .into_iter()
            .chain([None])
            .collect::<Vec<_>>();
        assert_eq!(waits, want);
    }

    #[test]
    fn retries_until_success_for_good_or_spent() {
        let ms = Duration::from_millis;
        type Outcome = fn() -> Result<(), Error>;
        /// The replies, in turn; the result, the attempts and the waits.
        type Case = (Vec<Outcome>, Result<(), &'static str>, u32, Vec<u64>);
        let ok: Outcome = || Ok(());
        let busy: Outcome = || Err(server("busy"));
        let refused: Outcome = || Err(io(io::ErrorKind::ConnectionRefused));
        let bad: Outcome = || Err(server("not-an-image"));
        let cases: Vec<Case> = vec![
            (vec![ok], Ok(()), 1, vec![]),
            (vec![bad], Err("not-an-image"), 1, vec![]),
            (vec![busy, ok], Ok(()), 2, vec![200]),
            (
                vec![refused, busy, bad],
                Err("not-an-image"),
                3,
                vec![200, 400],
            ),
            (vec![busy; 5], Err("busy"), 5, vec![200, 400, 800, 1600]),
            (
                vec![refused, refused, refused, refused, ok],
                Ok(()),
                5,
                vec![200, 400, 800, 1600],
            ),
        ];
        for (replies, want, attempts, waits) in cases {
            let mut next = replies.iter();
            let mut slept = Vec::new();
            let (result, made) = RETRY.run_with(
                || next.next().expect("no attempt past the replies")(),
                |d| slept.push(d),
            );
            let result = result.map_err(|e| match e {
                Error::Server { code, .. } => code,
                e => e.to_string(),
            });
            let label = format!("{} replies", replies.len());
            assert_eq!(result, want.map_err(String::from), "{label}");
            assert_eq!(made, attempts, "{label}");
            assert_eq!(
                slept,
                waits.into_iter().map(ms).collect::<Vec<_>>(),
                "{label}"
            );
        }
    }

    #[test]
    fn unreachable_server_is_transient() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Client::connect(&format!("127.0.0.1:{port}")).err().unwrap();
        assert!(
            matches!(e, Error::Connect { .. }) && e.is_transient(),
            "{e:?}"
        );
    }
}
