//! What the server does with an upload, apart from the socket: the check
//! made before its signature and payload are read (their sizes) and, for a
//! signed `SEAL`, the parse of its signature before its payload is read;
//! then, on the payload in memory, decryption, the signature's check over
//! the plaintext and the lookup of its key among the known senders, which
//! decide the folder class, the duplicate check within that class, decoding
//! under the memory budget and the decode gate, and filing, unless a stop's
//! grace is over. Every way an upload can be refused is an [`UploadError`],
//! and [`UploadError::code`] is the one place it becomes a protocol code.
//!
//! [`process`] is logic beside the socket, as `protocol` is: it reads what
//! every upload shares from a [`Pipeline`], and asks the connection for
//! memory and for leave to file through a narrow [`Handle`], which its
//! tests fake.

use crate::age;
use crate::allowed_signers::{self, AllowedSigners};
use crate::classify;
use crate::config::Limits;
use crate::identity::Identity;
use crate::name::{self, Name};
use crate::protocol::{self, Code, Stored, Upload};
use crate::sandbox::{self, Failure, Workers};
use crate::sshsig::{self, PublicKey, Signature};
use crate::store::{self, Digest, Folder, Store, Trust};
use std::fmt;
use std::time::SystemTime;

/// Why an upload was refused.
#[derive(Debug)]
pub(super) enum UploadError {
    /// SIZE is over the upload limit, or over the memory budget, which
    /// could never hold it.
    TooLarge {
        /// The SIZE announced.
        size: u64,
        /// The largest SIZE accepted.
        max: u64,
    },
    /// The name given is not acceptable.
    BadName(name::Error),
    /// The memory budget has no room for more of the signature or payload
    /// now.
    NoPayloadMemory,
    /// A `SEAL` payload could not be decrypted with the server's key.
    Decrypt(age::Error),
    /// A `SEAL`'s signature is malformed, of a key or hash not accepted, for
    /// another namespace, or does not verify over the decrypted image.
    BadSignature(sshsig::Error),
    /// A `SEAL`'s signature verifies, but its key is not an allowed signer
    /// for the namespace now.
    UnknownSigner {
        /// The key's `SHA256:` fingerprint.
        fingerprint: String,
        /// The key's type.
        algorithm: &'static str,
        /// Why, for the log only: the client is not told which.
        why: allowed_signers::Unknown,
    },
    /// The payload could not be decoded in a worker: not an image within
    /// the limits, over the budget, no room or no worker now, or the
    /// worker failed.
    Decode(sandbox::Error),
    /// The server is stopping, and its grace is over: nothing more is
    /// filed.
    Stopping,
    /// The store could not file the upload.
    Store(store::Error),
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::TooLarge { size, max } => {
                write!(f, "SIZE {size} is over the upload limit of {max} bytes")
            }
            UploadError::BadName(e) => e.fmt(f),
            UploadError::NoPayloadMemory => {
                f.write_str("server is out of memory for uploads; try again later")
            }
            UploadError::Decrypt(e) => e.fmt(f),
            UploadError::BadSignature(sshsig::Error::BadSignature) => {
                f.write_str("the signature does not verify over the decrypted image")
            }
            UploadError::BadSignature(e) => e.fmt(f),
            UploadError::UnknownSigner { fingerprint, .. } => {
                write!(f, "key {fingerprint} is not an allowed signer here")
            }
            UploadError::Decode(sandbox::Error::NoMemory { .. }) => {
                f.write_str("server is out of memory for decoding; try again later")
            }
            UploadError::Decode(sandbox::Error::OverBudget {
                size: Some((width, height)),
                max,
                ..
            }) => write!(
                f,
                "a {width}x{height} image needs more memory to decode than the server's limit of {max} bytes"
            ),
            // The log has which limit a worker hit; the client is told what
            // it means for the upload.
            UploadError::Decode(sandbox::Error::Worker(failure)) => match failure {
                Failure::Memory { .. } | Failure::Time { .. } => {
                    f.write_str("image too complex to decode within the limits")
                }
                _ => f.write_str("the decoder failed abnormally on this input"),
            },
            UploadError::Decode(sandbox::Error::Busy | sandbox::Error::Unavailable(_)) => {
                f.write_str("server has no decoder free; try again later")
            }
            UploadError::Decode(e) => e.fmt(f),
            UploadError::Stopping => f.write_str("server is shutting down; not stored"),
            UploadError::Store(e) => write!(f, "{STORE_FAILED}: {e}"),
        }
    }
}

impl std::error::Error for UploadError {}

/// The reply's message when the store fails; what failed stays in the log.
const STORE_FAILED: &str = "the server could not store the file";

impl UploadError {
    /// The code of the `ERR` line that refuses the upload.
    pub(super) fn code(&self) -> Code {
        use classify::Error as E;
        use sandbox::Error as D;
        match self {
            UploadError::TooLarge { .. } => Code::TooLarge,
            UploadError::BadName(_) => Code::BadName,
            UploadError::NoPayloadMemory | UploadError::Stopping => Code::Busy,
            UploadError::Decrypt(_) => Code::DecryptFailed,
            UploadError::BadSignature(_) => Code::BadSignature,
            UploadError::UnknownSigner { .. } => Code::UnknownSigner,
            UploadError::Decode(e) => match e {
                D::Image(E::TooManyPixels { .. }) => Code::TooManyPixels,
                D::Image(E::DecoderLimit(_)) => Code::TooComplex,
                // The pixel buffer could not be allocated: memory, not the image.
                D::Image(E::OutOfMemory { .. }) => Code::Busy,
                D::Image(E::NotAnImage(_) | E::Unsupported(_) | E::DecoderPanic { .. }) => {
                    Code::NotAnImage
                }
                D::Worker(Failure::Memory { .. } | Failure::Time { .. }) => Code::TooComplex,
                D::Worker(Failure::Syscall | Failure::Crash { .. } | Failure::Malformed { .. }) => {
                    Code::NotAnImage
                }
                D::OverBudget { size: Some(_), .. } => Code::TooManyPixels,
                D::OverBudget { size: None, .. } => Code::TooComplex,
                D::NoMemory { .. } | D::Busy | D::Unavailable(_) => Code::Busy,
            },
            UploadError::Store(_) => Code::StorageFailed,
        }
    }

    /// The message of the `ERR` line: the error, less what only the log may
    /// see (a store failure names paths).
    pub(super) fn message(&self) -> String {
        match self {
            UploadError::Store(_) => STORE_FAILED.to_string(),
            other => other.to_string(),
        }
    }

    /// What the log adds to the reply, if anything; never sent.
    pub(super) fn detail(&self) -> Option<String> {
        match self {
            UploadError::Decrypt(e) => Some(format!("{e:?}")),
            UploadError::UnknownSigner {
                fingerprint,
                algorithm,
                why,
            } => Some(format!("{algorithm} key {fingerprint}: {why}")),
            UploadError::Store(e) => Some(e.to_string()),
            UploadError::Decode(
                e @ (sandbox::Error::Worker(_)
                | sandbox::Error::Unavailable(_)
                | sandbox::Error::Busy),
            ) => Some(e.to_string()),
            _ => None,
        }
    }
}

/// An upload the server holds: filed now, or found already stored.
pub(super) struct Accepted {
    /// The copy the reply names.
    pub(super) stored: Stored,
    /// The folder that copy is in.
    pub(super) folder: Folder,
    /// What the log adds to the reply, if anything; never sent.
    pub(super) detail: Option<String>,
    /// The audit line of an upload filed by colour, or of a duplicate of
    /// one: who vouched for which content, stored where.
    pub(super) audit: Option<String>,
}

/// A `SEAL`'s signature, parsed but not yet checked, and its bytes as
/// received, which are what is kept.
pub(super) struct Signed {
    armored: Vec<u8>,
    signature: Signature,
}

/// Who vouches for an upload: the key of a signature that verified over
/// its plaintext and, in known-senders mode, the entry that lists it.
struct Sender<'a> {
    /// The principals of the allowed_signers entry that lists the key;
    /// `None` in v1 mode, where no one is listed.
    principal: Option<String>,
    key: &'a PublicKey,
    hash: &'static str,
    armored: &'a [u8],
}

/// Refuses a SIZE over the upload limit, or one that with its signature of
/// `sigsize` bytes is over the memory budget.
pub(super) fn check_size(limits: &Limits, size: u64, sigsize: usize) -> Result<(), UploadError> {
    // A payload the memory budget could never hold is as refused as one
    // over the upload limit: `busy` would have the client retry forever.
    let sigsize = sigsize as u64;
    let max = limits
        .max_upload
        .min(limits.max_memory.saturating_sub(sigsize));
    if size > max || sigsize > limits.max_memory {
        return Err(UploadError::TooLarge { size, max });
    }
    Ok(())
}

/// Parses a `SEAL`'s signature, before its payload is read or decrypted:
/// what a signature says needs no message, so a malformed one, or one of a
/// key or hash never accepted, costs no decryption.
pub(super) fn parse_signature(armored: Vec<u8>) -> Result<Signed, UploadError> {
    let signature = Signature::parse(&armored).map_err(UploadError::BadSignature)?;
    Ok(Signed { armored, signature })
}

/// What the pipeline asks of the connection it runs for: memory from the
/// server's budget (reserved and grown, making room as the server does,
/// large decodes taking turns), and leave to file. The server's is the
/// connection's hold on the budget and the registry; a test's is a fake.
pub(super) trait Handle: sandbox::Memory {
    /// Whether filing may begin: false once a stop's grace is over, when
    /// nothing more is filed. A `true` is a filing the stop waits for,
    /// until the upload is answered.
    fn begin_filing(&self) -> bool;
}

/// What every upload is opened, checked, decoded and filed with: the
/// server's key, who may file by colour, the store and the decoders.
pub(super) struct Pipeline<'a> {
    pub(super) identity: &'a Identity,
    /// The namespace signed uploads must be signed for.
    pub(super) namespace: &'a str,
    /// The allowed_signers list in force once the payload has arrived, which
    /// decides the whole upload whatever a reload does meanwhile; `None`
    /// in v1 mode.
    pub(super) known: Option<&'a AllowedSigners>,
    pub(super) store: &'a Store,
    pub(super) workers: &'a Workers,
    /// The largest image decoded, in pixels.
    pub(super) max_pixels: u64,
}

/// Opens, classifies and files one payload that the connection behind
/// `handle` received (into memory reserved as it arrived, with its
/// signature's), with its parsed signature, if it came with one: a `SEAL`
/// payload is decrypted in place, decoded from the same buffer and filed
/// from it.
pub(super) fn process(
    pipeline: &Pipeline,
    handle: &impl Handle,
    kind: Upload,
    name: Name,
    payload: &mut Vec<u8>,
    signed: Option<&Signed>,
) -> Result<Accepted, UploadError> {
    // The reservation is the payload's SIZE, whatever decryption leaves,
    // and its signature's.
    let held = payload.len() as u64 + signed.map_or(0, |s| s.armored.len() as u64);
    if kind == Upload::Seal {
        age::decrypt_in_place(payload, pipeline.identity).map_err(UploadError::Decrypt)?;
    }
    let known = pipeline.known;
    let sender = signed
        .map(|s| vouch(pipeline.namespace, known, s, payload))
        .transpose()?;
    // In v1 mode every SEAL is trusted; in known-senders mode only a SEAL
    // whose signer is listed, and no other reaches this point signed.
    let trusted = kind == Upload::Seal && (known.is_none() || sender.is_some());
    let trust = if trusted {
        Trust::Trusted
    } else {
        Trust::NotTrusted
    };
    let principal = sender.as_ref().and_then(|s| s.principal.clone());
    let audit = |what: &str, stored: &Stored, digest: &Digest| {
        trusted.then(|| audit(pipeline.namespace, what, stored, digest, sender.as_ref()))
    };
    // Content already stored in the class it would be filed in is not
    // decoded again: a re-sent folder costs a hash per file, not a decode.
    let digest = Digest::of(payload);
    if let Some((folder, existing)) = pipeline.store.lookup(trust, &digest) {
        let audit = audit("dup of", &existing, &digest);
        return Ok(Accepted {
            stored: Stored {
                signer: principal,
                ..existing
            },
            folder,
            detail: None,
            audit,
        });
    }
    let decoded = pipeline
        .workers
        .decode(
            handle,
            sandbox::Kind::Classify,
            payload,
            held,
            pipeline.max_pixels,
        )
        .map_err(UploadError::Decode)?;
    let (verdict, extension) = (decoded.verdict, decoded.header.format);
    let folder = if trusted {
        Folder::from(verdict.class)
    } else {
        Folder::NotTrusted
    };
    let name = match name {
        Name::Given(n) => n,
        Name::Generated => generated_name(&digest, extension),
    };
    // Past a stop's grace nothing more is filed: a client cut off by it
    // finds nothing of its upload stored. A filing that began before is
    // waited for (see `Server::run`).
    if !handle.begin_filing() {
        return Err(UploadError::Stopping);
    }
    let signature = sender.as_ref().map(|s| s.armored);
    let filed = pipeline
        .store
        .file(folder, &name, payload, &digest, verdict.mean, signature)
        .map_err(UploadError::Store)?;
    let stored = Stored {
        signer: principal,
        ..filed.stored
    };
    let audit = audit(
        if stored.dup { "dup of" } else { "filed" },
        &stored,
        &digest,
    );
    // The log says what the reply does not: an untrusted upload's
    // class, and a copy that could not be indexed.
    let class = (!trusted).then(|| match kind {
        Upload::Seal => format!("unsigned SEAL, class {}", verdict.class.as_str()),
        Upload::Put => format!("class {}", verdict.class.as_str()),
    });
    let unindexed = filed
        .unindexed
        .map(|e| format!("stored, but not indexed: {e}"));
    let detail: Vec<String> = class.into_iter().chain(unindexed).collect();
    // A copy filed first by another upload of the same content (`dup`) is
    // of the same class, so in the same folder.
    Ok(Accepted {
        stored,
        folder,
        detail: (!detail.is_empty()).then(|| detail.join("; ")),
        audit,
    })
}

/// Checks a signature over the decrypted `plaintext`, then, in
/// known-senders mode, looks its key up: in that order, so that an unknown
/// signer is only ever reported for a signature that verifies.
fn vouch<'a>(
    namespace: &str,
    known: Option<&AllowedSigners>,
    signed: &'a Signed,
    plaintext: &[u8],
) -> Result<Sender<'a>, UploadError> {
    let signature = &signed.signature;
    signature
        .verify(plaintext, namespace)
        .map_err(UploadError::BadSignature)?;
    let key = signature.public_key();
    let principal = match known {
        None => None,
        Some(list) => {
            let entry = list
                .find(key, namespace, SystemTime::now())
                .map_err(|why| UploadError::UnknownSigner {
                    fingerprint: key.fingerprint(),
                    algorithm: key.algorithm(),
                    why,
                })?;
            Some(entry.principals().to_string())
        }
    };
    Ok(Sender {
        principal,
        key,
        hash: signature.hash_algorithm(),
        armored: &signed.armored,
    })
}

/// The audit line of a trusted upload: what happened (`filed`, `dup of`),
/// the stored copy, its content hash, and who vouched for it under
/// `namespace`.
fn audit(
    namespace: &str,
    what: &str,
    stored: &Stored,
    digest: &Digest,
    sender: Option<&Sender>,
) -> String {
    let head = format!("{what} {} sha256:{}", stored.path, digest.hex());
    match sender {
        Some(s) => format!(
            "{head} signer={} key={} algorithm={} hash={} namespace={}",
            s.principal
                .as_deref()
                .map_or_else(|| "-".to_string(), protocol::escape_principal),
            s.key.fingerprint(),
            s.key.algorithm(),
            s.hash,
            namespace
        ),
        None => format!("{head} unsigned (no allowed_signers file)"),
    }
}

/// A name for an upload whose given name had nothing usable in it:
/// `upload-` and the first 12 hex digits of the content's SHA-256.
fn generated_name(digest: &Digest, extension: &str) -> String {
    format!("upload-{}.{extension}", &digest.hex()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Budget, DecodeGate, Guards, Reservation, Turn};
    use sandbox::Memory;
    use std::path::Path;

    /// A connection as the pipeline sees it, with room for its decodes or
    /// not, and leave to file or not.
    struct Fake {
        guards: Guards,
        memory: bool,
        filing: bool,
    }

    impl Fake {
        fn new(memory: bool, filing: bool) -> Fake {
            Fake {
                guards: Guards {
                    budget: Budget::new(1 << 30),
                    gate: DecodeGate::new(1, 0),
                },
                memory,
                filing,
            }
        }
    }

    impl Memory for Fake {
        fn limit(&self) -> u64 {
            self.guards.limit()
        }
        fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
            self.memory.then(|| self.guards.reserve(bytes)).flatten()
        }
        fn grow(&self, memory: &mut Reservation<'_>, more: u64) -> bool {
            self.memory && self.guards.grow(memory, more)
        }
        fn turn(&self, peak: u64) -> Option<Turn<'_>> {
            self.guards.turn(peak)
        }
    }

    impl Handle for Fake {
        fn begin_filing(&self) -> bool {
            self.filing
        }
    }

    fn fixture(path: &str) -> Vec<u8> {
        let path = format!("{}/test-data/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn identity() -> Identity {
        let pem = fixture("keys/test-only-server-key.pem");
        Identity::from_pem(std::str::from_utf8(&pem).unwrap()).unwrap()
    }

    fn workers() -> Workers {
        let mut config = sandbox::Config::new(2, std::time::Duration::from_secs(20), 1 << 30);
        config.program = sandbox::testing::program();
        Workers::new(config).unwrap()
    }

    /// The allowed_signers fixture's lines whose principals start with
    /// `who`.
    fn signers(who: &str) -> AllowedSigners {
        let text = String::from_utf8(fixture("sshsig/allowed_signers")).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(who)).collect();
        AllowedSigners::parse(&lines.join("\n")).unwrap()
    }

    /// Every file in the store's four folders.
    fn filed(root: &Path) -> Vec<String> {
        let mut all = Vec::new();
        for folder in Folder::ALL {
            let dir = root.join(folder.as_str());
            for entry in std::fs::read_dir(&dir).into_iter().flatten() {
                let name = entry.unwrap().file_name();
                all.push(format!("{}/{}", folder.as_str(), name.to_string_lossy()));
            }
        }
        all
    }

    /// One upload through the pipeline, into a store of its own.
    struct Case {
        what: &'static str,
        kind: Upload,
        /// Test-data file sent (sealed to the server's key for a `SEAL`,
        /// unless `raw`).
        file: &'static str,
        raw: bool,
        /// Its signature, a test-data/sshsig file.
        signature: Option<&'static str>,
        /// Known-senders mode, with the fixture's entries of this
        /// principal; else v1 mode.
        known: Option<&'static str>,
        max_pixels: u64,
        handle: Fake,
        /// The folder filed in, or the refusal's code.
        want: Result<Folder, Code>,
    }

    #[test]
    fn uploads_are_filed_by_trust_or_refused_with_nothing_filed() {
        let identity = identity();
        let workers = workers();
        let image = "images/red_solid.png";
        let message = "sshsig/message.txt";
        let case = |what, kind, file, want| Case {
            what,
            kind,
            file,
            raw: false,
            signature: None,
            known: None,
            max_pixels: 1 << 20,
            handle: Fake::new(true, true),
            want,
        };
        let cases = [
            case("plaintext", Upload::Put, image, Ok(Folder::NotTrusted)),
            case("sealed, v1 mode", Upload::Seal, image, Ok(Folder::Red)),
            Case {
                known: Some("alice@"),
                ..case(
                    "sealed, unsigned, known senders",
                    Upload::Seal,
                    image,
                    Ok(Folder::NotTrusted),
                )
            },
            Case {
                signature: Some("ed25519.sig"),
                known: Some("rsa@"),
                ..case(
                    "signed by a key not listed",
                    Upload::Seal,
                    message,
                    Err(Code::UnknownSigner),
                )
            },
            Case {
                signature: Some("ed25519.sig"),
                known: Some("alice@"),
                ..case(
                    "signed by a listed key, not an image",
                    Upload::Seal,
                    message,
                    Err(Code::NotAnImage),
                )
            },
            Case {
                signature: Some("fail_wrong-namespace.sig"),
                known: Some("alice@"),
                ..case(
                    "signed for another namespace",
                    Upload::Seal,
                    message,
                    Err(Code::BadSignature),
                )
            },
            Case {
                signature: Some("ed25519.sig"),
                ..case(
                    "signed over other bytes",
                    Upload::Seal,
                    image,
                    Err(Code::BadSignature),
                )
            },
            Case {
                raw: true,
                ..case(
                    "not sealed to the server",
                    Upload::Seal,
                    image,
                    Err(Code::DecryptFailed),
                )
            },
            case(
                "not an image",
                Upload::Put,
                "images/fail_not_an_image.txt",
                Err(Code::NotAnImage),
            ),
            case(
                "truncated",
                Upload::Put,
                "images/fail_truncated.png",
                Err(Code::NotAnImage),
            ),
            Case {
                max_pixels: 10,
                ..case(
                    "over the pixel limit",
                    Upload::Put,
                    image,
                    Err(Code::TooManyPixels),
                )
            },
            Case {
                handle: Fake::new(false, true),
                ..case(
                    "no memory for the decode",
                    Upload::Put,
                    image,
                    Err(Code::Busy),
                )
            },
            Case {
                handle: Fake::new(true, false),
                ..case(
                    "a stop's grace is over",
                    Upload::Seal,
                    image,
                    Err(Code::Busy),
                )
            },
        ];
        for c in cases {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let known = c.known.map(signers);
            let pipeline = Pipeline {
                identity: &identity,
                namespace: "colorsort",
                known: known.as_ref(),
                store: &store,
                workers: &workers,
                max_pixels: c.max_pixels,
            };
            let plain = fixture(c.file);
            let mut payload = match c.kind {
                Upload::Seal if !c.raw => age::encrypt(&plain, identity.public()).unwrap(),
                _ => plain,
            };
            let signed = c
                .signature
                .map(|f| parse_signature(fixture(&format!("sshsig/{f}"))).unwrap());
            let name = Name::Given("a.png".into());
            let got = process(
                &pipeline,
                &c.handle,
                c.kind,
                name,
                &mut payload,
                signed.as_ref(),
            );
            let got = got.map(|a| a.folder).map_err(|e| e.code());
            assert_eq!(got, c.want, "{}", c.what);
            let want_filed: Vec<String> = match c.want {
                Ok(folder) => vec![format!("{}/a.png", folder.as_str())],
                Err(_) => Vec::new(),
            };
            assert_eq!(filed(dir.path()), want_filed, "{}", c.what);
            assert_eq!(c.handle.guards.budget.used(), 0, "{}: given back", c.what);
        }
    }

    #[test]
    fn content_already_stored_in_its_class_is_a_dup_not_decoded_again() {
        let identity = identity();
        let workers = workers();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let pipeline = Pipeline {
            identity: &identity,
            namespace: "colorsort",
            known: None,
            store: &store,
            workers: &workers,
            max_pixels: 1 << 20,
        };
        let image = fixture("images/red_solid.png");
        let put = |handle: &Fake, name: &str| {
            let mut payload = image.clone();
            let name = Name::Given(name.into());
            process(&pipeline, handle, Upload::Put, name, &mut payload, None)
                .map(|a| (a.folder, a.stored.path, a.stored.dup))
                .map_err(|e| e.code())
        };
        let first = put(&Fake::new(true, true), "a.png");
        assert_eq!(
            first,
            Ok((Folder::NotTrusted, "not_trusted/a.png".into(), false))
        );
        // No memory for a decode, nor leave to file: none is needed.
        let again = put(&Fake::new(false, false), "b.png");
        assert_eq!(
            again,
            Ok((Folder::NotTrusted, "not_trusted/a.png".into(), true))
        );
        assert_eq!(filed(dir.path()), ["not_trusted/a.png"]);
        // In the other class it is new.
        let mut sealed = age::encrypt(&image, identity.public()).unwrap();
        let name = Name::Given("c.png".into());
        let handle = Fake::new(true, true);
        let other = process(&pipeline, &handle, Upload::Seal, name, &mut sealed, None);
        assert!(matches!(
            other,
            Ok(Accepted {
                folder: Folder::Red,
                ..
            })
        ));
    }

    #[test]
    fn refusals_have_one_code_and_keep_the_store_out_of_replies() {
        use classify::Error as E;
        // An image refusal's message is the decoder's own.
        let image = |e: E| (e.to_string(), UploadError::Decode(sandbox::Error::Image(e)));
        let (not_image_message, not_image) = image(E::NotAnImage("truncated".into()));
        let (panic_message, panic) = image(E::DecoderPanic { format: "png" });
        let (oom_message, oom) = image(E::OutOfMemory { bytes: 8 });
        let (limit_message, limit) = image(E::DecoderLimit("too big".into()));
        let store = || store::Error::NameExhausted("red/a.png".into());
        // (refusal, code, message sent, detail logged)
        let cases = [
            (
                UploadError::TooLarge { size: 11, max: 10 },
                Code::TooLarge,
                "SIZE 11 is over the upload limit of 10 bytes".to_string(),
                None,
            ),
            (
                UploadError::BadName(name::Error::Path),
                Code::BadName,
                name::Error::Path.to_string(),
                None,
            ),
            (
                UploadError::NoPayloadMemory,
                Code::Busy,
                "server is out of memory for uploads; try again later".to_string(),
                None,
            ),
            (
                UploadError::Decrypt(age::Error::Mac),
                Code::DecryptFailed,
                "decryption failed".to_string(),
                Some("Mac".to_string()),
            ),
            (
                UploadError::BadSignature(sshsig::Error::BadSignature),
                Code::BadSignature,
                "the signature does not verify over the decrypted image".to_string(),
                None,
            ),
            (
                UploadError::BadSignature(sshsig::Error::WrongNamespace("git".into())),
                Code::BadSignature,
                "signature is for namespace \"git\"".to_string(),
                None,
            ),
            (
                UploadError::BadSignature(sshsig::Error::KeySize(1024)),
                Code::BadSignature,
                "rsa key of 1024 bits is outside 2048..=8192".to_string(),
                None,
            ),
            // The client is told the key is not allowed, not why: that is
            // for the log.
            (
                UploadError::UnknownSigner {
                    fingerprint: "SHA256:abc".into(),
                    algorithm: "ssh-ed25519",
                    why: allowed_signers::Unknown::NotListed,
                },
                Code::UnknownSigner,
                "key SHA256:abc is not an allowed signer here".to_string(),
                Some("ssh-ed25519 key SHA256:abc: key is not an allowed signer".to_string()),
            ),
            (
                UploadError::UnknownSigner {
                    fingerprint: "SHA256:abc".into(),
                    algorithm: "ssh-rsa",
                    why: allowed_signers::Unknown::Namespace { line: 4 },
                },
                Code::UnknownSigner,
                "key SHA256:abc is not an allowed signer here".to_string(),
                Some(
                    "ssh-rsa key SHA256:abc: key is allowed on line 4 for other namespaces"
                        .to_string(),
                ),
            ),
            (not_image, Code::NotAnImage, not_image_message, None),
            (panic, Code::NotAnImage, panic_message, None),
            (oom, Code::Busy, oom_message, None),
            (limit, Code::TooComplex, limit_message, None),
            (
                UploadError::Decode(sandbox::Error::OverBudget {
                    size: Some((2, 3)),
                    need: 5,
                    max: 4,
                }),
                Code::TooManyPixels,
                "a 2x3 image needs more memory to decode than the server's limit of 4 bytes"
                    .to_string(),
                None,
            ),
            (
                UploadError::Decode(sandbox::Error::OverBudget {
                    size: None,
                    need: 5,
                    max: 4,
                }),
                Code::TooComplex,
                "opening the image needs 5 bytes, over the memory limit of 4 bytes".to_string(),
                None,
            ),
            (
                UploadError::Decode(sandbox::Error::NoMemory { need: 1 }),
                Code::Busy,
                "server is out of memory for decoding; try again later".to_string(),
                None,
            ),
            (
                UploadError::Decode(sandbox::Error::Busy),
                Code::Busy,
                "server has no decoder free; try again later".to_string(),
                Some("every decode worker is busy; try again later".to_string()),
            ),
            // A worker's failure: the log says which limit, or how it died.
            (
                UploadError::Decode(sandbox::Error::Worker(Failure::Memory { limit: 9 })),
                Code::TooComplex,
                "image too complex to decode within the limits".to_string(),
                Some("the decode worker ran into its memory limit of 9 bytes".to_string()),
            ),
            (
                UploadError::Decode(sandbox::Error::Worker(Failure::Time {
                    limit: std::time::Duration::from_secs(2),
                })),
                Code::TooComplex,
                "image too complex to decode within the limits".to_string(),
                Some("the decode worker was killed at its deadline of 2.0 s".to_string()),
            ),
            (
                UploadError::Decode(sandbox::Error::Worker(Failure::Syscall)),
                Code::NotAnImage,
                "the decoder failed abnormally on this input".to_string(),
                Some(
                    "the decode worker was killed by its sandbox for a forbidden system call"
                        .to_string(),
                ),
            ),
            (
                UploadError::Decode(sandbox::Error::Worker(Failure::Crash { signal: 11 })),
                Code::NotAnImage,
                "the decoder failed abnormally on this input".to_string(),
                Some("the decode worker died of signal 11".to_string()),
            ),
            (
                UploadError::Decode(sandbox::Error::Worker(Failure::Malformed { status: None })),
                Code::NotAnImage,
                "the decoder failed abnormally on this input".to_string(),
                Some("the decode worker sent a malformed answer".to_string()),
            ),
            (
                UploadError::Stopping,
                Code::Busy,
                "server is shutting down; not stored".to_string(),
                None,
            ),
            (
                UploadError::Store(store()),
                Code::StorageFailed,
                "the server could not store the file".to_string(),
                Some("no free name for red/a.png".to_string()),
            ),
        ];
        for (e, code, message, detail) in cases {
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(e.message(), message, "{e:?}");
            assert_eq!(e.detail(), detail, "{e:?}");
        }
        // Unlike the reply, the error itself prints its cause.
        assert_eq!(
            UploadError::Store(store()).to_string(),
            "the server could not store the file: no free name for red/a.png"
        );
    }

    #[test]
    fn signed_uploads_are_charged_their_signature() {
        let limits = Limits {
            max_upload: 1000,
            max_memory: 500,
            ..Limits::default()
        };
        // (SIZE, SIGSIZE, largest SIZE accepted if refused)
        let cases = [
            (500, 0, None),
            (501, 0, Some(500)),
            (400, 100, None),
            (401, 100, Some(400)),
            (0, 600, Some(0)),
        ];
        for (size, sigsize, refused) in cases {
            let got = match check_size(&limits, size, sigsize) {
                Ok(()) => None,
                Err(UploadError::TooLarge { max, .. }) => Some(max),
                Err(e) => panic!("{e:?}"),
            };
            assert_eq!(got, refused, "SIZE {size} SIGSIZE {sigsize}");
        }
    }

    #[test]
    fn signatures_are_parsed_before_anything_is_decrypted() {
        let fixture = |name: &str| {
            let path = format!("{}/test-data/sshsig/{name}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        assert!(parse_signature(fixture("ed25519.sig")).is_ok());
        // Refused from the signature alone: no message is needed.
        for name in [
            "fail_truncated.sig",
            "fail_bad-base64.sig",
            "fail_ecdsa.sig",
            "fail_rsa1024.sig",
        ] {
            let err = parse_signature(fixture(name)).err().unwrap();
            assert_eq!(err.code(), Code::BadSignature, "{name}: {err}");
        }
        let err = parse_signature(b"not a signature".to_vec()).err().unwrap();
        assert!(matches!(err, UploadError::BadSignature(_)), "{err:?}");
    }

    #[test]
    fn generated_names_are_safe() {
        let n = generated_name(&Digest::of(b"content"), "png");
        assert_eq!(n.len(), "upload-".len() + 12 + 4);
        assert_eq!(Name::parse(n.as_bytes()), Ok(Name::Given(n.clone())));
    }
}
