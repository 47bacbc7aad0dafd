//! `colorsort send`: finds the images under the given paths, signs each if
//! asked, seals it to the server's key and sends them over parallel
//! connections, retrying what may succeed later, and reports each file and
//! a summary.
//!
//! Files are picked by their magic bytes, not their names; anything else is
//! skipped with a note. Before anything is sent, the server's `POLICY` says
//! whether it files only signed uploads by colour and for which namespace
//! to sign (see [`super::sign`]), and its key is checked: against `--pin`,
//! or against the pin file, where it is pinned on first use (see
//! [`crate::pins`]). Transient failures (connection refused or reset,
//! `ERR busy`, `ERR timeout`, `ERR storage-failed`) are retried with a
//! bounded, doubling backoff ([`client::RETRY`]); permanent ones
//! (`not-an-image`, `too-large`, `bad-name`, `unknown-signer`, ...) are
//! reported at once.
//!
//! This file is the run, in order; `options` is the command line, `policy`
//! whether and how to sign, `pin` the key-pinning dialogue, `upload` one
//! file. The files go out on [`crate::parallel`]'s threads, each keeping
//! its connection from one file to the next, and are reported as they are
//! done.

mod options;
mod pin;
mod policy;
mod upload;

pub(super) use options::USAGE;

use super::args::Args;
use super::exit::{EXIT_OK, Error};
use super::report::Report;
use super::sign::Signer;
use super::walk::walk;
use crate::client::{self, Client};
use crate::parallel::{self, Order};
use crate::pins;
use std::convert::Infallible;
use std::io::{self, Write};
use std::time::Instant;
use upload::{failed_read, send_one, sniff};

/// Runs `colorsort send`.
pub(super) fn run(args: Args) -> Result<u8, Error> {
    let Some(opts) = options::parse(args, options::env)? else {
        return Ok(EXIT_OK);
    };
    let started = Instant::now();
    let mut stderr = io::stderr();
    let program = match &opts.sign {
        Some(key) => Some(policy::signing_tools(&opts.ssh_keygen, key)?),
        None => None,
    };
    let mut skipped = 0;
    let mut unreadable = Vec::new();
    let mut files = Vec::new();
    for path in walk(&opts.paths, &mut |path, e| {
        unreadable.push(failed_read(path, &e))
    }) {
        match sniff(&path) {
            Ok(Some(_)) => files.push(path),
            Ok(None) => {
                skipped += 1;
                let _ = writeln!(stderr, "skipped {}: not an image", path.display());
            }
            Err(e) => unreadable.push(failed_read(&path, &e)),
        }
    }
    if files.is_empty() && unreadable.is_empty() {
        let _ = writeln!(stderr, "colorsort: no images found");
    }

    // The first connection asks for the policy and the key, with the same
    // retries as an upload, and then serves the first worker.
    let (mut first, policy, key) = if files.is_empty() || opts.plain {
        (None, None, None)
    } else {
        let (connected, _) = client::RETRY.run(|| {
            let mut client = Client::connect(&opts.host)?;
            let policy = client.policy()?;
            let key = client.key()?;
            Ok((client, policy, key))
        });
        let (client, policy, key) = connected?;
        (Some(client), policy, Some(key))
    };
    if let Some(key) = &key
        && let Some(code) = pin::check_key(&opts, key, pins::default_path(), &mut stderr)?
    {
        return Ok(code);
    }
    let signer = match (program, &opts.sign) {
        (Some(program), Some(keyfile)) if !files.is_empty() => Some(Signer::new(
            program,
            keyfile.clone(),
            policy::namespace(&opts, policy.as_ref(), &mut stderr)?,
        )),
        _ => None,
    };
    if !files.is_empty() && !opts.plain {
        policy::check_policy(&opts, policy.as_ref(), &mut stderr)?;
    }

    let mut report = Report::new(opts.json, files.len() + unreadable.len(), skipped);
    for r in unreadable {
        report.add(r);
    }
    let (host, key, signer_ref) = (opts.host.as_str(), key.as_ref(), signer.as_ref());
    let sent: Result<(), Infallible> = parallel::run(
        &files,
        opts.jobs,
        Order::Done,
        |worker| if worker == 0 { first.take() } else { None },
        |client, path| send_one(client, host, path, key, signer_ref),
        |_, result| {
            report.add(result);
            Ok(())
        },
    );
    let Ok(()) = sent;
    let unknown_signer = report.failed_with("unknown-signer") > 0;
    let code = report.finish(started.elapsed());
    if let Some(signer) = &signer
        && unknown_signer
        && let Some(key) = signer.signed_with()
    {
        let _ = writeln!(
            stderr,
            "colorsort: {} does not take your key {} as a signer for namespace {}: it is not \
             listed, or listed for other namespaces or times. To be listed, ask its operator \
             to add this line, with your name for PRINCIPAL, to its allowed_signers file:\n  \
             PRINCIPAL {}",
            opts.host,
            key.fingerprint(),
            signer.namespace(),
            key.to_openssh()
        );
    }
    Ok(code)
}
