//! What the server does with an upload, apart from the socket: the checks
//! made before its payload is read (size, name, memory), then, on the
//! payload in memory, decryption, the duplicate check, decoding under the
//! memory budget and the decode gate, and filing. Every way an upload can be
//! refused is an [`UploadError`], and [`UploadError::code`] is the one place
//! it becomes a protocol code.

use super::Shared;
use super::budget::{Budget, Reservation};
use crate::age;
use crate::classify;
use crate::config::Limits;
use crate::name::{self, Name};
use crate::protocol::{Code, Stored, Upload};
use crate::store::{self, Digest, Folder, Trust};
use std::fmt;

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
    /// The memory budget has no room for the payload now.
    NoPayloadMemory,
    /// A `SEAL` payload could not be decrypted with the server's key.
    Decrypt(age::Error),
    /// The payload is not an image that decodes within the limits, or its
    /// pixel buffer could not be allocated.
    Image(classify::Error),
    /// Decoding the image needs more memory, with its payload, than the
    /// whole memory budget.
    OverBudget {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The memory budget, in bytes.
        max: u64,
    },
    /// The memory budget has no room for the decoded pixels now.
    NoPixelMemory,
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
            UploadError::Image(e) => e.fmt(f),
            UploadError::OverBudget { width, height, max } => write!(
                f,
                "a {width}x{height} image needs more memory to decode than the server's limit of {max} bytes"
            ),
            UploadError::NoPixelMemory => {
                f.write_str("server is out of memory for decoding; try again later")
            }
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
        match self {
            UploadError::TooLarge { .. } => Code::TooLarge,
            UploadError::BadName(_) => Code::BadName,
            UploadError::NoPayloadMemory | UploadError::NoPixelMemory => Code::Busy,
            UploadError::Decrypt(_) => Code::DecryptFailed,
            UploadError::Image(e) => match e {
                E::TooManyPixels { .. } | E::DecoderLimit(_) => Code::TooManyPixels,
                // The pixel buffer could not be allocated: memory, not the image.
                E::OutOfMemory { .. } => Code::Busy,
                E::NotAnImage(_) | E::Unsupported(_) | E::DecoderPanic { .. } => Code::NotAnImage,
            },
            UploadError::OverBudget { .. } => Code::TooManyPixels,
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
            UploadError::Store(e) => Some(e.to_string()),
            _ => None,
        }
    }
}

/// An upload the server holds: filed now, or found already stored.
pub(super) struct Accepted {
    /// The copy the reply names.
    pub(super) stored: Stored,
    /// What the log adds to the reply, if anything; never sent.
    pub(super) detail: Option<String>,
}

/// Refuses a SIZE over the upload limit, or over the memory budget.
pub(super) fn check_size(limits: &Limits, size: u64) -> Result<(), UploadError> {
    // A payload the memory budget could never hold is as refused as one
    // over the upload limit: `busy` would have the client retry forever.
    let max = limits.max_upload.min(limits.max_memory);
    if size > max {
        return Err(UploadError::TooLarge { size, max });
    }
    Ok(())
}

/// Parses the upload's name and reserves memory for its payload of `size`
/// bytes, before any byte of the payload is read.
pub(super) fn admit<'a>(
    budget: &'a Budget,
    raw_name: &[u8],
    size: u64,
) -> Result<(Name, Reservation<'a>), UploadError> {
    let name = Name::parse(raw_name).map_err(UploadError::BadName)?;
    let memory = budget
        .try_reserve(size)
        .ok_or(UploadError::NoPayloadMemory)?;
    Ok((name, memory))
}

/// Opens, classifies and files one received payload, which
/// [`admit`] reserved memory for: a `SEAL` payload is decrypted in place,
/// decoded from the same buffer and filed from it.
pub(super) fn process(
    shared: &Shared,
    kind: Upload,
    name: Name,
    payload: &mut Vec<u8>,
) -> Result<Accepted, UploadError> {
    let limits = &shared.limits;
    // The payload's reservation is its SIZE, whatever decryption leaves.
    let size = payload.len() as u64;
    if kind == Upload::Seal {
        age::decrypt_in_place(payload, &shared.identity).map_err(UploadError::Decrypt)?;
    }
    let trust = match kind {
        Upload::Seal => Trust::Sealed,
        Upload::Put => Trust::Plain,
    };
    // Content already stored is not decoded again: a re-sent folder
    // costs a hash per file, not a decode.
    let digest = Digest::of(payload);
    if let Some(existing) = shared.store.lookup(trust, &digest) {
        return Ok(Accepted {
            stored: existing,
            detail: None,
        });
    }
    let classify_limits = classify::Limits::new(limits.max_pixels);
    let image = classify::open(payload, &classify_limits).map_err(UploadError::Image)?;
    let extension = image.format();
    // The turn comes first: uploads waiting for one hold no memory for
    // their pixels, so a queue of large images does not spend the
    // budget and turn others away as busy.
    let peak = image.peak_memory();
    if peak.saturating_add(size) > limits.max_memory {
        return Err(UploadError::OverBudget {
            width: image.width(),
            height: image.height(),
            max: limits.max_memory,
        });
    }
    let waited = std::time::Instant::now();
    let turn = shared.decodes.enter_if_large(peak);
    if turn.is_some() {
        shared.metrics.decode_waited(waited.elapsed());
    }
    let pixel_memory = shared
        .budget
        .try_reserve(peak)
        .ok_or(UploadError::NoPixelMemory)?;
    let verdict = image.classify().map_err(UploadError::Image)?;
    drop((turn, pixel_memory));
    let folder = match kind {
        Upload::Seal => Folder::from(verdict.class),
        Upload::Put => Folder::NotTrusted,
    };
    let name = match name {
        Name::Given(n) => n,
        Name::Generated => generated_name(&digest, extension),
    };
    let filed = shared
        .store
        .file(folder, &name, payload, &digest, verdict.mean)
        .map_err(UploadError::Store)?;
    // The log says what the reply does not: a plaintext upload's
    // class, and a copy that could not be indexed.
    let class = (kind == Upload::Put).then(|| format!("class {}", verdict.class.as_str()));
    let unindexed = filed
        .unindexed
        .map(|e| format!("stored, but not indexed: {e}"));
    let detail: Vec<String> = class.into_iter().chain(unindexed).collect();
    Ok(Accepted {
        stored: filed.stored,
        detail: (!detail.is_empty()).then(|| detail.join("; ")),
    })
}

/// A name for an upload whose given name had nothing usable in it:
/// `upload-` and the first 12 hex digits of the content's SHA-256.
fn generated_name(digest: &Digest, extension: &str) -> String {
    format!("upload-{}.{extension}", &digest.hex()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_one_code_and_keep_the_store_out_of_replies() {
        use classify::Error as E;
        // An image refusal's message is the decoder's own.
        let image = |e: E| (e.to_string(), UploadError::Image(e));
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
            (not_image, Code::NotAnImage, not_image_message, None),
            (panic, Code::NotAnImage, panic_message, None),
            (oom, Code::Busy, oom_message, None),
            (limit, Code::TooManyPixels, limit_message, None),
            (
                UploadError::OverBudget {
                    width: 2,
                    height: 3,
                    max: 4,
                },
                Code::TooManyPixels,
                "a 2x3 image needs more memory to decode than the server's limit of 4 bytes"
                    .to_string(),
                None,
            ),
            (
                UploadError::NoPixelMemory,
                Code::Busy,
                "server is out of memory for decoding; try again later".to_string(),
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
    fn generated_names_are_safe() {
        let n = generated_name(&Digest::of(b"content"), "png");
        assert_eq!(n.len(), "upload-".len() + 12 + 4);
        assert_eq!(Name::parse(n.as_bytes()), Ok(Name::Given(n.clone())));
    }
}
