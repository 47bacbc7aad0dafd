//! `colorsort gallery` on a data directory filled by a real server, and the
//! page rendered by headless Chromium where it is installed.

mod common {
    pub mod conn;
    pub mod fixtures;
    pub mod server;
    pub mod skip;
    pub mod ssh;
    pub mod wait;
}

use common::fixtures::{bin, png, seal};
use common::server::TestServer;
use std::path::Path;
use std::process::Command;

/// Fills a server's data directory: 3 red, 2 green, 1 blue, 2 not_trusted.
fn filled_server() -> TestServer {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    let sealed = [([220, 20, 20], 3), ([20, 200, 20], 2), ([10, 10, 240], 1)];
    for (rgb, n) in sealed {
        for i in 0..n {
            let reply = c.upload("SEAL", &format!("img{i}.png"), &seal(&png(rgb, 64 + i, 48)));
            assert!(reply.starts_with("OK "), "{reply}");
        }
    }
    for i in 0..2 {
        assert!(
            c.upload(
                "PUT",
                &format!("plain{i}.png"),
                &png([90, 90, 90], 30 + i, 30)
            )
            .starts_with("OK ")
        );
    }
    s
}

fn gallery(data: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["gallery", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn gallery_of_a_served_directory() {
    let s = filled_server();
    let out = gallery(&s.data, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "8 image(s) (red 3, green 2, blue 1, not_trusted 2); 8 thumbnail(s) made, 0 cached"
        ),
        "{stderr}"
    );
    let page = std::fs::read_to_string(s.data.join("gallery.html")).unwrap();
    assert_eq!(page.matches("<figure>").count(), 8);
    assert!(page.contains("r=220.0 g=20.0 b=20.0"));

    // Again: every thumbnail comes from the cache.
    let out = gallery(&s.data, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0 thumbnail(s) made, 8 cached"), "{stderr}");

    // On stdout, the page stands alone.
    let out = gallery(&s.data, &["--out", "-"]);
    let page = String::from_utf8(out.stdout).unwrap();
    assert_eq!(page.matches("src=\"data:image/jpeg;base64,").count(), 8);
}

#[test]
fn a_missing_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = gallery(&dir.path().join("nope"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// Debian's Chromium, if installed.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn chromium_renders_the_counts() {
    let Some(browser) = chromium() else {
        common::skip::skipped("chromium_renders_the_counts", "chromium is not installed");
        return;
    };
    let s = filled_server();
    assert!(gallery(&s.data, &[]).status.success());
    let url = format!("file://{}", s.data.join("gallery.html").display());
    let profile = tempfile::tempdir().unwrap();
    let headless = |extra: &[&str]| {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = headless(&["--dump-dom"]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    for (folder, count) in [("red", 3), ("green", 2), ("blue", 1), ("not_trusted", 2)] {
        let heading = format!("<h2>{folder} <span class=\"count\">{count}</span></h2>");
        assert!(dom.contains(&heading), "rendered page lacks {heading}");
    }
    assert_eq!(dom.matches("<img ").count(), 8);

    let shot = profile.path().join("gallery.png");
    let out = headless(&[
        "--window-size=1200,800",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = image::open(&shot).unwrap().to_rgb8();
    assert_eq!((image.width(), image.height()), (1200, 800));
    // The red thumbnails are on screen: some pixels are strongly red.
    let red = image
        .pixels()
        .filter(|p| p[0] > 180 && p[1] < 60 && p[2] < 60)
        .count();
    assert!(red > 1000, "only {red} red pixels in the screenshot");
}

#[test]
fn signed_images_show_their_signer() {
    let test = "signed_images_show_their_signer";
    if !common::ssh::ssh_keygen_installed(test) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let alice = common::ssh::SshKey::generate(keys.path(), "alice", "ed25519", None);
    let (key, fingerprint) = (alice.path.clone(), alice.fingerprint());

    let data = tempfile::tempdir().unwrap();
    common::fixtures::install_test_key(data.path());
    let listed = data.path().join("allowed_signers");
    std::fs::write(&listed, alice.allowed("alice@example.com", "")).unwrap();
    let s = TestServer::start_in(data.path(), &[]);
    let photos = tempfile::tempdir().unwrap();
    std::fs::write(photos.path().join("r.png"), png([220, 20, 20], 8, 8)).unwrap();
    std::fs::write(photos.path().join("b.png"), png([20, 20, 220], 8, 8)).unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let send = |extra: &[&str]| {
        Command::new(bin())
            .args(["send", "--host", &s.host()])
            .args(extra)
            .arg(photos.path())
            .env("XDG_CONFIG_HOME", cfg.path())
            .env_remove("COLORSORT_PIN")
            .env_remove("COLORSORT_KNOWN_HOSTS")
            .output()
            .unwrap()
    };
    let out = send(&["--sign", key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = send(&["--unsigned"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The data directory's allowed_signers names the signer; the unsigned
    // copies in not_trusted/ show none.
    let page = |extra: &[&str]| {
        let out = gallery(&s.data, &[&["--out", "-"], extra].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let named = page(&[]);
    assert_eq!(named.matches("<figure>").count(), 4);
    assert_eq!(
        named.matches("signed by alice@example.com<").count(),
        2,
        "{named}"
    );
    assert!(named.contains(&fingerprint), "the title gives the key");

    // Without the file, the key's fingerprint; with it named by flag, the
    // principal again.
    let moved = keys.path().join("signers");
    std::fs::rename(&listed, &moved).unwrap();
    let bare = page(&[]);
    assert_eq!(
        bare.matches(&format!("signed by {fingerprint}<")).count(),
        2,
        "{bare}"
    );
    let flagged = page(&["--allowed-signers", moved.to_str().unwrap()]);
    assert_eq!(flagged.matches("signed by alice@example.com<").count(), 2);

    // A named file that does not load is an error.
    let out = gallery(&s.data, &["--allowed-signers", "/nonexistent/signers"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/signers"));
}
