//! Live interoperability with the reference `age` command: files we seal
//! must open with `age -d`, files `age -R` seals must open with us, and our
//! PEM and OpenSSH encodings of a key must be ones `age` reads. Skipped,
//! with a note on stderr, where `age` is not installed.

mod common;

use colorsort::age::{armor, decrypt_in_place, encrypt};
use colorsort::key::{Identity, PublicKey};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const PLAINTEXTS: [&str; 4] = ["small.png", "noise.png", "exact64k.png", "empty.bin"];

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-data")
        .join(path)
}

fn read(path: &str) -> Vec<u8> {
    fs::read(data(path)).unwrap()
}

fn age_installed() -> bool {
    let found = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        common::skipped("age interoperability", "age is not installed");
    }
    found
}

/// The plaintexts, plus one of 200 KiB that is not a multiple of anything.
fn plaintexts() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = PLAINTEXTS
        .iter()
        .map(|name| (name.to_string(), read(&format!("age/plain/{name}"))))
        .collect();
    let mut state = 1u32;
    let big = (0..200 * 1024 + 7)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    all.push(("200k".to_string(), big));
    all
}

/// Writes `pem` as a 0600 file, as a private key file should be.
fn write_key(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, pem).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Runs `age -d -i key file` and returns its output.
fn age_decrypt(key: &Path, file: &Path) -> Vec<u8> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age -d failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `age -R recipients [-a] plaintext` and returns the sealed file.
fn age_encrypt(recipients: &Path, armored: bool, plaintext: &Path) -> Vec<u8> {
    let mut cmd = Command::new("age");
    cmd.arg("-R").arg(recipients);
    if armored {
        cmd.arg("-a");
    }
    let out = cmd.arg(plaintext).output().unwrap();
    assert!(
        out.status.success(),
        "age -R failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn our_files_open_with_age() {
    if !age_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let identity =
        Identity::from_pem(&fs::read_to_string(data("keys/test-only-server-key.pem")).unwrap())
            .unwrap();
    // The committed key as ssh-keygen wrote it, and our re-encoding of it.
    let keys = [
        write_key(
            dir.path(),
            "committed.pem",
            &fs::read_to_string(data("keys/test-only-server-key.pem")).unwrap(),
        ),
        write_key(dir.path(), "ours.pem", &identity.to_pem().unwrap()),
    ];
    for (name, plaintext) in plaintexts() {
        let binary = encrypt(&plaintext, identity.public()).unwrap();
        for (form, file) in [("binary", binary.clone()), ("armored", armor(&binary))] {
            let path = dir.path().join(format!("{name}.{form}.age"));
            fs::write(&path, &file).unwrap();
            for key in &keys {
                assert!(
                    age_decrypt(key, &path) == plaintext,
                    "{name} {form} with {}",
                    key.display()
                );
            }
        }
    }
}

#[test]
fn age_files_open_with_us() {
    if !age_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let identity =
        Identity::from_pem(&fs::read_to_string(data("keys/test-only-server-key.pem")).unwrap())
            .unwrap();
    // The committed .pub line, and our own rendering of the key.
    let ours = dir.path().join("ours.pub");
    fs::write(&ours, identity.public().to_ssh_line("colorsort") + "\n").unwrap();
    let recipients = [data("keys/test-only-server-key.pub"), ours];
    for (name, plaintext) in plaintexts() {
        let plain_path = dir.path().join(&name);
        fs::write(&plain_path, &plaintext).unwrap();
        for recipient in &recipients {
            for armored in [false, true] {
                let mut buf = age_encrypt(recipient, armored, &plain_path);
                assert_eq!(buf.starts_with(b"-----BEGIN"), armored);
                decrypt_in_place(&mut buf, &identity).unwrap();
                assert!(
                    buf == plaintext,
                    "{name} armored={armored} to {}",
                    recipient.display()
                );
            }
        }
    }
}

#[test]
fn generated_key_works_with_ssh_keygen_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate(2048).unwrap();
    let key = write_key(dir.path(), "generated.pem", &identity.to_pem().unwrap());
    let public = dir.path().join("generated.pub");
    fs::write(&public, identity.public().to_ssh_line("generated") + "\n").unwrap();
    let parsed = PublicKey::from_ssh_line(&fs::read_to_string(&public).unwrap()).unwrap();
    assert_eq!(&parsed, identity.public());

    // The unit tests pin the committed key's fingerprint; compare a fresh
    // one against ssh-keygen where it is installed.
    match Command::new("ssh-keygen").arg("-lf").arg(&public).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            let fields: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(
                fields[..2],
                ["2048", identity.public().fingerprint().as_str()]
            );
        }
        Err(_) => common::skipped("ssh-keygen fingerprint", "ssh-keygen is not installed"),
    }

    if !age_installed() {
        return;
    }
    let plaintext = read("age/plain/small.png");
    let sealed = dir.path().join("sealed.age");
    fs::write(&sealed, encrypt(&plaintext, identity.public()).unwrap()).unwrap();
    assert_eq!(age_decrypt(&key, &sealed), plaintext);

    let plain_path = dir.path().join("small.png");
    fs::write(&plain_path, &plaintext).unwrap();
    let mut buf = age_encrypt(&public, false, &plain_path);
    decrypt_in_place(&mut buf, &identity).unwrap();
    assert_eq!(buf, plaintext);
}
