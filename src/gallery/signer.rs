//! Who signed a trusted image, as the page shows it: read from the
//! signature the server kept beside it and named by an allowed_signers
//! entry for its key, or else by the key's fingerprint. The signature is
//! read, not checked.

use super::Item;
use crate::allowed_signers::AllowedSigners;
use crate::sshsig::{self, Signature};
use crate::store::{Folder, SIGNATURES};
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::SystemTime;

/// Who signed an image, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signed {
    /// A signature names its key: `label` is the principal listed for it,
    /// or its fingerprint; `title` gives the details.
    By { label: String, title: String },
    /// The kept signature cannot be read or parsed; the text says why.
    Unreadable(String),
}

/// The signer of a trusted image, from the signature the server kept for
/// it; `None` for an image kept without one.
pub(super) fn signer(data: &Path, item: &Item, signers: Option<&AllowedSigners>) -> Option<Signed> {
    if item.folder == Folder::NotTrusted {
        return None;
    }
    let path = data
        .join(SIGNATURES)
        .join(item.folder.as_str())
        .join(format!("{}.sig", item.name));
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Signed::Unreadable(e.to_string())),
    };
    let mut armored = Vec::new();
    if let Err(e) = file
        .take(sshsig::MAX_SIGNATURE as u64 + 1)
        .read_to_end(&mut armored)
    {
        return Some(Signed::Unreadable(e.to_string()));
    }
    Some(named(&armored, signers))
}

/// Names the key of an armored signature.
fn named(armored: &[u8], signers: Option<&AllowedSigners>) -> Signed {
    let signature = match Signature::parse(armored) {
        Ok(s) => s,
        Err(e) => return Signed::Unreadable(e.to_string()),
    };
    let key = signature.public_key();
    let namespace = String::from_utf8_lossy(signature.namespace());
    let fingerprint = key.fingerprint();
    let title = format!("{} {fingerprint}, namespace {namespace}", key.algorithm());
    // The entry the server would match now, else any entry listing the key:
    // one expired since still names who signed.
    let listed = signers.and_then(|s| {
        s.find(key, &namespace, SystemTime::now())
            .ok()
            .or_else(|| s.signers().iter().find(|e| e.key() == key))
    });
    match listed {
        Some(entry) => Signed::By {
            label: entry.principals().to_string(),
            title,
        },
        None => Signed::By {
            label: fingerprint,
            title,
        },
    }
}
