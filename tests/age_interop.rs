//! Live interoperability with the reference `age` command: files we seal
//! must open with `age -d`, files `age -R` seals must open with us (also
//! when sent to the running server, to the key it gives out), our PEM and
//! OpenSSH encodings of a key must be ones `age` reads, and every file, good
//! or bad, gets the verdict `age -d` gives it, but for the listed deliberate
//! differences. Skipped, with a note on stderr, where `age` is not
//! installed.

mod common {
    pub mod conn;
    pub mod fixtures;
    pub mod server;
    pub mod skip;
    pub mod wait;
}

use colorsort::age::{armor, decrypt_in_place, encrypt};
use colorsort::identity::{Identity, PublicKey};
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
        common::skip::skipped("age interoperability", "age is not installed");
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
        Err(_) => common::skip::skipped("ssh-keygen fingerprint", "ssh-keygen is not installed"),
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

// --- Verdicts side by side ---------------------------------------------------

/// Files that `age` 1.1.1 opens and colorsort refuses on purpose, each with
/// the reason. Everything else in test-data/age gets the same verdict from
/// both.
const DELIBERATE: [(&str, &str); 5] = [
    (
        "fail_scrypt_beside.age",
        "the specification: an scrypt stanza MUST be alone",
    ),
    (
        "fail_file_key_15.age",
        "the specification: the file key is 16 bytes",
    ),
    ("fail_too_many_stanzas.age", "cap: at most 64 stanzas"),
    (
        "fail_stanza_body_too_large.age",
        "cap: a stanza body of at most 8 KiB",
    ),
    (
        "fail_header_too_long.age",
        "cap: a header of at most 64 KiB",
    ),
];

fn server_identity() -> Identity {
    Identity::from_pem(&fs::read_to_string(data("keys/test-only-server-key.pem")).unwrap()).unwrap()
}

/// What `age -d -i test-only-server-key.pem` makes of `file`: the
/// plaintext, or `None` if it refuses.
fn age_verdict(dir: &Path, file: &[u8]) -> Option<Vec<u8>> {
    let path = dir.join("input.age");
    fs::write(&path, file).unwrap();
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(data("keys/test-only-server-key.pem"))
        .arg(&path)
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// What colorsort makes of `file`: the plaintext, or `None`.
fn our_verdict(identity: &Identity, file: &[u8]) -> Option<Vec<u8>> {
    let mut buf = file.to_vec();
    decrypt_in_place(&mut buf, identity).ok().map(|()| buf)
}

/// Checks each (name, file, opens) case against both `age` and colorsort;
/// where a file opens, both must give the same plaintext.
fn assert_same_verdicts(cases: &[(String, Vec<u8>, bool)]) {
    let dir = tempfile::tempdir().unwrap();
    let identity = server_identity();
    let mut wrong = Vec::new();
    for (name, file, opens) in cases {
        let age = age_verdict(dir.path(), file);
        let ours = our_verdict(&identity, file);
        if age.is_some() != *opens || ours.is_some() != *opens || age != ours {
            wrong.push(format!(
                "{name}: expected {}, age {}, colorsort {}",
                if *opens { "open" } else { "refuse" },
                if age.is_some() { "opens" } else { "refuses" },
                if ours.is_some() { "opens" } else { "refuses" },
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_fixture_gets_the_verdict_age_gives() {
    if !age_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let identity = server_identity();
    let mut names: Vec<String> = fs::read_dir(data("age"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".age"))
        .collect();
    names.sort();
    assert!(names.len() >= 30, "fixtures: {names:?}");
    let mut wrong = Vec::new();
    for name in &names {
        let file = read(&format!("age/{name}"));
        let age = age_verdict(dir.path(), &file);
        let ours = our_verdict(&identity, &file);
        let deliberate = DELIBERATE.iter().any(|(f, _)| f == name);
        let (age_opens, we_open) = match (name.starts_with("fail_"), deliberate) {
            (false, _) => (true, true),
            (true, false) => (false, false),
            (true, true) => (true, false),
        };
        if age.is_some() != age_opens || ours.is_some() != we_open {
            wrong.push(format!(
                "{name}: age {}, colorsort {}",
                if age.is_some() { "opens" } else { "refuses" },
                if ours.is_some() { "opens" } else { "refuses" },
            ));
        } else if we_open {
            assert!(age == ours, "{name}: the plaintexts differ");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for (name, reason) in DELIBERATE {
        assert!(names.iter().any(|n| n == name), "{name} ({reason}) missing");
    }
}

#[test]
fn first_ssh_rsa_stanza_for_our_key_decides_as_in_age() {
    if !age_installed() {
        return;
    }
    // A stanza for our key whose body does not OAEP-decrypt, before a good
    // one: age stops at it and fails. After a good one it is never tried.
    let cases: Vec<(String, Vec<u8>, bool)> = [
        ("fail_rsa_garbage_first.age", false),
        ("fail_rsa_short_garbage_first.age", false),
        ("fail_rsa_no_tag_first.age", false),
        ("rsa-garbage-after.age", true),
        ("rsa-no-tag-after.age", true),
        ("rsa-short-body.age", true),
        ("script-sealed.age", true),
    ]
    .into_iter()
    .map(|(name, opens)| (name.to_string(), read(&format!("age/{name}")), opens))
    .collect();
    assert_same_verdicts(&cases);
}

/// `text` with `n` of its LF line endings, from the first, made CRLF.
fn crlf_first(text: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut done = 0;
    for &b in text {
        if b == b'\n' && done < n {
            out.push(b'\r');
            done += 1;
        }
        out.push(b);
    }
    out
}

#[test]
fn armor_whitespace_and_line_endings_as_in_age() {
    if !age_installed() {
        return;
    }
    let small = read("age/small.armored.age");
    // Its sealed file fills whole 48-byte lines: no short line before END.
    let aligned = read("age/aligned.armored.age");
    let end = b"-----END AGE ENCRYPTED FILE-----";
    let before_end = |text: &[u8], insert: &[u8]| {
        let at = text.windows(end.len()).position(|w| w == end).unwrap();
        [&text[..at], insert, &text[at..]].concat()
    };
    // The short last line of small: a CR inside it is skipped by age.
    let lines: Vec<&[u8]> = small.split(|&b| b == b'\n').collect();
    let short = lines.len() - 3;
    assert!(lines[short].len() < 64 && lines[short + 1] == end);
    let with_cr = |i: usize| {
        let mut l = lines.clone();
        let cr = [&l[i][..4], b"\r", &l[i][4..]].concat();
        l[i] = &cr;
        l.join(&b'\n')
    };
    let spaces = |n: usize| " ".repeat(n).into_bytes();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("as age writes it", small.clone(), true),
        ("one leading newline", [b"\n", &small[..]].concat(), false),
        (
            "2000 leading newlines",
            [vec![b'\n'; 2000], small.clone()].concat(),
            false,
        ),
        ("one leading space", [b" ", &small[..]].concat(), false),
        ("trailing \\v\\f", [&small[..], b"\x0b\x0c"].concat(), true),
        (
            "trailing U+00A0",
            [&small[..], "\u{a0}".as_bytes()].concat(),
            true,
        ),
        (
            "trailing U+3000 and U+2028",
            [&small[..], "\u{3000}\u{2028}".as_bytes()].concat(),
            true,
        ),
        (
            "trailing Latin-1 0xA0",
            [&small[..], b"\xa0"].concat(),
            false,
        ),
        (
            "trailing U+FEFF",
            [&small[..], "\u{feff}".as_bytes()].concat(),
            false,
        ),
        (
            "1023 trailing spaces",
            [small.clone(), spaces(1023)].concat(),
            true,
        ),
        (
            "1024 trailing spaces",
            [small.clone(), spaces(1024)].concat(),
            false,
        ),
        ("no final newline", small[..small.len() - 1].to_vec(), true),
        ("all CRLF", crlf_first(&small, usize::MAX), true),
        ("first two lines CRLF", crlf_first(&small, 2), true),
        ("only the begin line CRLF", crlf_first(&small, 1), true),
        (
            "only the end line CRLF",
            [&small[..small.len() - 1], b"\r\n"].concat(),
            true,
        ),
        ("CR inside the short line", with_cr(short), true),
        ("CR inside a full line", with_cr(1), false),
        (
            "blank line before END after a short line",
            before_end(&small, b"\n"),
            false,
        ),
        ("aligned, as age writes it", aligned.clone(), true),
        (
            "aligned, blank line before END",
            before_end(&aligned, b"\n"),
            true,
        ),
        (
            "aligned, CRLF blank line before END",
            before_end(&aligned, b"\r\n"),
            true,
        ),
        (
            "aligned, two blank lines before END",
            before_end(&aligned, b"\n\n"),
            false,
        ),
        (
            "aligned, blank line of spaces before END",
            before_end(&aligned, b"  \n"),
            false,
        ),
    ];
    let cases: Vec<(String, Vec<u8>, bool)> = cases
        .into_iter()
        .map(|(name, file, opens)| (name.to_string(), file, opens))
        .collect();
    assert_same_verdicts(&cases);
}

// --- Sealed by age, sent to the server ---------------------------------------

#[test]
fn age_sealed_uploads_are_stored_by_the_server() {
    if !age_installed() {
        return;
    }
    let s = common::server::TestServer::start(&[]);
    let mut c = s.connect();
    let key = c.ask("KEY");
    let line = key.strip_prefix("OK ").unwrap_or_else(|| panic!("{key}"));
    let dir = tempfile::tempdir().unwrap();
    let recipients = dir.path().join("server.pub");
    fs::write(&recipients, format!("{line}\n")).unwrap();
    let cases = [
        (
            "red.png",
            [220u8, 20, 30],
            false,
            "red",
            "r=220.0 g=20.0 b=30.0",
        ),
        (
            "green.png",
            [10, 200, 40],
            true,
            "green",
            "r=10.0 g=200.0 b=40.0",
        ),
    ];
    for (name, rgb, armored, folder, means) in cases {
        let image = common::fixtures::png(rgb, 12, 9);
        let plain = dir.path().join(name);
        fs::write(&plain, &image).unwrap();
        let sealed = age_encrypt(&recipients, armored, &plain);
        assert_eq!(sealed.starts_with(b"-----BEGIN"), armored);
        assert_eq!(
            c.upload("SEAL", name, &sealed),
            format!("OK {folder}/{name} {means}")
        );
        assert_eq!(
            fs::read(s.data.join(folder).join(name)).unwrap(),
            image,
            "{name}: stored bytes"
        );
    }
    assert_eq!(c.ask("STATS"), "OK red=1 green=1 blue=0 not_trusted=0");
}
