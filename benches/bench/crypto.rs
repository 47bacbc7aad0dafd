//! Section 2: the age STREAM payload's decryption throughput, the RSA-OAEP
//! unwrap per upload at each key size, and the whole decryption of a
//! typical JPEG against its decode + classify.

use crate::util::{Report, Rng, Table, command_output, median, note, timed};
use colorsort::age;
use colorsort::identity::Identity;
use getrandom::SysRng;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::traits::{PaddingScheme, PrivateKeyParts};
use rsa::{Oaep, PrivateKey};
use sha2::Sha256;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// The server's key sizes; 3072 is its default.
pub const BITS: [usize; 3] = [2048, 3072, 4096];

/// The identity of `bits` bits kept under `dir`, generated on first use.
pub fn identity(dir: &Path, bits: usize) -> Identity {
    let path = dir.join(format!("rsa-{bits}.pem"));
    if let Ok(pem) = fs::read_to_string(&path)
        && let Ok(identity) = Identity::from_pem(&pem)
    {
        return identity;
    }
    note(format!("generating a {bits}-bit key for the benchmark"));
    let identity = Identity::generate(bits).expect("key generation");
    fs::create_dir_all(dir).expect("key folder");
    fs::write(&path, identity.to_pem().expect("pem")).expect("write key");
    identity
}

/// What one RSA-OAEP decryption of a file key costs at `bits` bits: the
/// way the age unwrap makes it (blinded), and without blinding; and
/// whether the key holds its CRT values.
struct Oaep3 {
    blinded: f64,
    unblinded: f64,
    crt: bool,
}

/// Times RSA-OAEP-SHA-256 decryptions with `identity`'s key, read back
/// from its PEM as the server reads it, blinded and not, in turn.
fn oaep_secs(identity: &Identity, rounds: usize) -> Oaep3 {
    const LABEL: &[u8] = b"age-encryption.org/v1/ssh-rsa";
    let pem = identity.to_pem().expect("pem");
    let key = PrivateKey::from_pkcs1_pem(&pem).expect("key");
    let ciphertext = key
        .to_public_key()
        .encrypt(&mut SysRng, Oaep::<Sha256>::new_with_label(LABEL), &[7; 16])
        .expect("encrypt");
    let (mut blinded, mut unblinded) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (plain, sample) = timed(|| {
            key.decrypt_blinded(
                &mut SysRng,
                Oaep::<Sha256>::new_with_label(LABEL),
                &ciphertext,
            )
        });
        assert_eq!(plain.expect("decrypt"), [7; 16]);
        blinded.push(sample.cpu);
        let (plain, sample) = timed(|| {
            Oaep::<Sha256>::new_with_label(LABEL).decrypt(None::<&mut SysRng>, &key, &ciphertext)
        });
        assert_eq!(plain.expect("decrypt"), [7; 16]);
        unblinded.push(sample.cpu);
    }
    Oaep3 {
        blinded: median(&mut blinded),
        unblinded: median(&mut unblinded),
        crt: key.dp().is_some() && key.dq().is_some() && key.qinv().is_some(),
    }
}

/// `openssl speed`'s seconds per RSA private-key operation (sign) at
/// `bits` bits, in its own CPU time, or None without openssl.
fn openssl_sign_secs(bits: usize, seconds: u32) -> Option<f64> {
    let out = command_output(
        "openssl",
        &[
            "speed",
            "-seconds",
            &seconds.to_string(),
            &format!("rsa{bits}"),
        ],
    )?;
    // "rsa 3072 bits 0.001838s 0.000035s ...": sign, then verify.
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("rsa {bits} bits")))?;
    line.split_whitespace()
        .nth(3)?
        .strip_suffix('s')?
        .parse()
        .ok()
}

/// Median seconds to open `sealed` in place, over `rounds` runs.
fn decrypt_secs(sealed: &[u8], identity: &Identity, rounds: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let mut buf = sealed.to_vec();
        let (result, sample) = timed(|| age::decrypt_in_place(&mut buf, identity));
        result.expect("decrypt");
        times.push(sample.cpu);
    }
    median(&mut times)
}

pub fn section(
    report: &mut Report,
    keys: &Path,
    assets: &Path,
    classify_secs: &HashMap<&'static str, f64>,
    quick: bool,
) {
    report.heading("2. Decryption");
    let identities: Vec<Identity> = BITS.iter().map(|&bits| identity(keys, bits)).collect();

    // STREAM: a 64 MiB payload, opened in place.
    let mut plaintext = vec![0u8; 64 << 20];
    Rng(0x5eed).fill(&mut plaintext);
    let sealed = age::encrypt(&plaintext, identities[0].public()).expect("seal");
    drop(plaintext);
    let secs = decrypt_secs(&sealed, &identities[0], if quick { 2 } else { 5 });
    let stream_mb_s = (64 << 20) as f64 / 1e6 / secs;
    drop(sealed);

    // The unwrap: opening an empty file is one RSA-OAEP decryption, the
    // header's HKDF and HMAC, and one empty chunk.
    let mut unwrap = Vec::new();
    let mut table = Table::new(&[
        "RSA key",
        "unwrap per upload (ms)",
        "RSA-OAEP decrypt, blinded (ms)",
        "the same unblinded (ms)",
        "`openssl speed` sign (ms)",
        "unwrap / OpenSSL",
        "CRT values loaded",
    ]);
    let mut default_ratio = f64::NAN;
    for identity in &identities {
        let bits = identity.public().bits();
        let empty = age::encrypt(b"", identity.public()).expect("seal");
        let ms = decrypt_secs(&empty, identity, if quick { 5 } else { 30 }) * 1e3;
        unwrap.push(ms);
        let oaep = oaep_secs(identity, if quick { 5 } else { 30 });
        let openssl = openssl_sign_secs(bits, if quick { 1 } else { 3 });
        if bits == 3072 {
            default_ratio = openssl.map_or(f64::NAN, |o| ms / (o * 1e3));
        }
        table.row(vec![
            format!("{bits} bits"),
            format!("{ms:.2}"),
            format!("{:.2}", oaep.blinded * 1e3),
            format!("{:.2}", oaep.unblinded * 1e3),
            openssl.map_or("n/a".into(), |o| format!("{:.2}", o * 1e3)),
            openssl.map_or("n/a".into(), |o| format!("{:.2}", ms / (o * 1e3))),
            if oaep.crt { "yes" } else { "no" }.into(),
        ]);
    }
    report.table(&table);

    // A typical JPEG: 12 MP, about 3 MB.
    let file = "jpeg-12mp-baseline.jpg";
    let jpeg = fs::read(assets.join(file)).expect("asset");
    let classify = classify_secs.get(file).copied().unwrap_or_else(|| {
        let limits = colorsort::classify::Limits::default();
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                timed(|| colorsort::classify::classify(&jpeg, &limits))
                    .1
                    .cpu
            })
            .collect();
        median(&mut times)
    });
    let mut table = Table::new(&[
        "RSA key",
        "decrypt ms (unwrap + STREAM)",
        "decode+classify ms",
        "decryption / (decode+classify)",
    ]);
    // The goal is judged at the server's default key size, 3072 bits.
    let mut default_share = f64::NAN;
    for identity in &identities {
        let sealed = age::encrypt(&jpeg, identity.public()).expect("seal");
        let secs = decrypt_secs(&sealed, identity, if quick { 3 } else { 15 });
        let share = secs / classify;
        if identity.public().bits() == 3072 {
            default_share = share;
        }
        table.row(vec![
            format!("{} bits", identity.public().bits()),
            format!("{:.2}", secs * 1e3),
            format!("{:.1}", classify * 1e3),
            format!("{:.1} %", share * 100.0),
        ]);
    }
    report.table(&table);
    let verdict0 = report.goal(
        "decryption at most 10 % of decode+classify (typical 3 MB JPEG)",
        default_share <= 0.10,
        format!(
            "{:.1} % with the default 3072-bit key; STREAM {stream_mb_s:.0} MB/s",
            default_share * 100.0
        ),
    );
    report.para(&format!(
        "STREAM (ChaCha20-Poly1305, 64 KiB chunks) decrypts a 64 MiB payload in place at \
         **{stream_mb_s:.0} MB/s** (one thread, `age::decrypt_in_place`: each chunk is \
         authenticated, decrypted where it lies and moved down behind the previous one, so \
         the plaintext is never held twice). The RSA-OAEP unwrap costs {:.1} / {:.1} / \
         {:.1} ms at 2048 / 3072 / 4096 bits, once per upload whatever its size. For the \
         typical JPEG (`{file}`, {:.1} MB), **goal: the whole decryption costs at most 10 % \
         of decode + classify: {}** ({:.1} % with the server's default 3072-bit key; the \
         table gives the other sizes: the RSA private-key operation, not the payload, \
         makes the difference, and a 4096-bit key alone costs more than 10 % of this \
         decode). Times are thread CPU time, medians. In the first table, *RSA-OAEP \
         decrypt* is the `rsa` crate's decryption of a wrapped file key alone, with the \
         key read from PEM as the server reads it: *blinded* as the unwrap makes it \
         (`decrypt_blinded`: the input blinded by a random r, the CRT exponents by a \
         random 128-bit multiple of p-1 and q-1, each prime by a random 130-bit factor, \
         and the result checked by re-encrypting), *unblinded* with none of that. \
         `openssl speed rsa{{bits}}` from the same run gives OpenSSL's private-key \
         operation (its sign, the same exponentiation, with OpenSSL's own base \
         blinding) in its CPU time: at 3072 bits the unwrap costs {default_ratio:.2}x it.",
        unwrap[0],
        unwrap[1],
        unwrap[2],
        jpeg.len() as f64 / 1e6,
        verdict0,
        default_share * 100.0,
    ));
}
