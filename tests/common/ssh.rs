//! Keys and signatures made by the real `ssh-keygen`, and its verdicts.

// Each test crate declares the helper files it uses, in its `mod common`,
// and uses some of what each holds; tests/tidy.rs checks that every
// helper here has a user.
#![allow(dead_code)]

use super::skip::skipped;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// True if `ssh-keygen` runs; otherwise reports `test` as skipped (see
/// [`skipped`]).
pub fn ssh_keygen_installed(test: &str) -> bool {
    // ssh-keygen has no version flag; `-?` prints usage, so only whether
    // it starts counts.
    let found = Command::new("ssh-keygen")
        .arg("-?")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        skipped(test, "ssh-keygen is not installed");
    }
    found
}

/// A key pair made by the real `ssh-keygen`, without a passphrase.
pub struct SshKey {
    /// The private key file; the public one is beside it, as `.pub`.
    pub path: PathBuf,
    /// `type base64`, as the public key line begins.
    pub public: String,
}

/// Runs a command to completion and panics with its stderr if it fails.
fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl SshKey {
    /// Makes a key with `ssh-keygen -t kind` (`ed25519`, `rsa`), of `bits`
    /// if given, as `dir/name`.
    pub fn generate(dir: &Path, name: &str, kind: &str, bits: Option<u32>) -> SshKey {
        let path = dir.join(name);
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
            .arg(&path);
        if let Some(bits) = bits {
            cmd.args(["-b", &bits.to_string()]);
        }
        run(cmd.stdin(Stdio::null()));
        let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let public: Vec<&str> = line.split_whitespace().take(2).collect();
        SshKey {
            public: public.join(" "),
            path,
        }
    }

    /// Signs `message` with `ssh-keygen -Y sign -n namespace -f key file`
    /// and returns the armored signature it writes to `file.sig`.
    pub fn sign(&self, message: &[u8], namespace: &str) -> Vec<u8> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self.path.with_extension(format!("msg{n}"));
        std::fs::write(&file, message).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(&self.path)
            .arg(&file)
            .stdin(Stdio::null()));
        let sig_path = PathBuf::from(format!("{}.sig", file.display()));
        let sig = std::fs::read(&sig_path).unwrap();
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&sig_path);
        sig
    }

    /// An allowed_signers line for this key: `principals [options] key`.
    pub fn allowed(&self, principals: &str, options: &str) -> String {
        match options {
            "" => format!("{principals} {}\n", self.public),
            options => format!("{principals} {options} {}\n", self.public),
        }
    }

    /// The key's fingerprint as `ssh-keygen -l` prints it, `SHA256:...`.
    pub fn fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.path.with_extension("pub")));
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_string()
    }
}

/// Whether `ssh-keygen -Y verify -f allowed -I principal -n namespace -s sig
/// < message` accepts.
pub fn ssh_keygen_verifies(
    allowed: &Path,
    principal: &str,
    namespace: &str,
    sig: &Path,
    message: &Path,
) -> bool {
    Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", principal, "-n", namespace, "-s"])
        .arg(sig)
        .stdin(std::fs::File::open(message).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}
