//! Tests of whole allowed_signers files and of lookups in them, on the
//! committed fixtures and on small files built here.

use super::*;
use crate::sshsig::Signature;
use std::time::Duration;

const FIXTURE: &str = include_str!("../../test-data/sshsig/allowed_signers");
const ED: &str = include_str!("../../test-data/sshsig/keys/ed25519.pub");
const OTHER: &str = include_str!("../../test-data/sshsig/keys/other-ed25519.pub");
const RSA: &str = include_str!("../../test-data/sshsig/keys/rsa3072.pub");
const SK: &str = include_str!("../../test-data/sshsig/keys/sk-ed25519.pub");
/// 2025-06-01T00:00:00Z: after the fixture's expired entry, before its
/// future one, inside its window.
const NOW: u64 = 1_748_736_000;

fn key(pub_line: &str) -> PublicKey {
    let mut words = pub_line.split(' ');
    PublicKey::from_openssh(words.next().unwrap(), words.next().unwrap()).unwrap()
}

fn at(t: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t)
}

fn fixture_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-data/sshsig")
        .join(name)
}

#[test]
fn the_fixture_parses_in_file_order() {
    let signers = AllowedSigners::parse(FIXTURE).unwrap();
    let lines: Vec<(usize, &str)> = signers
        .signers()
        .iter()
        .map(|s| (s.line(), s.principals()))
        .collect();
    assert_eq!(
        lines,
        [
            (2, "alice@example.com"),
            (3, "rsa@example.com"),
            (5, "sk@example.com"),
            (6, "quoted name@example.com,q2@example.com"),
            (7, "*@team.example.com,!mallory@team.example.com"),
            (9, "expired@example.com"),
            (10, "future@example.com"),
            (11, "window@example.com"),
            (12, "gitonly@example.com"),
            (13, "patterns@example.com"),
            (14, "notcolorsort@example.com"),
        ]
    );
    assert_eq!(signers.len(), 11);
    let window = &signers.signers()[7];
    assert_eq!(window.valid_after(), Some(at(1_577_836_800)));
    assert_eq!(window.valid_before(), Some(at(1_893_456_000)));
    assert_eq!(signers.signers()[8].namespaces(), Some("git"));
    assert_eq!(signers.signers()[2].key(), &key(SK));
    assert_eq!(
        AllowedSigners::load(&fixture_file("allowed_signers"))
            .unwrap()
            .len(),
        11
    );
}

#[test]
fn find_returns_the_first_entry_that_permits() {
    let signers = AllowedSigners::parse(FIXTURE).unwrap();
    let ed = key(ED);
    let found = signers.find(&ed, "colorsort", at(NOW)).unwrap();
    assert_eq!((found.line(), found.principals()), (2, "alice@example.com"));
    assert_eq!(
        signers
            .find(&key(RSA), "colorsort", at(NOW))
            .unwrap()
            .line(),
        3
    );
    assert_eq!(
        signers.find(&key(SK), "colorsort", at(NOW)).unwrap().line(),
        5
    );
    assert_eq!(
        signers.find(&key(OTHER), "colorsort", at(NOW)).unwrap_err(),
        Unknown::NotListed
    );
}

#[test]
fn find_principal_follows_ssh_keygen_verify() {
    let signers = AllowedSigners::parse(FIXTURE).unwrap();
    let ed = key(ED);
    let before_window = 1_577_836_799;
    let window_end = 1_893_456_000;
    let expired = |line, valid_before| Err(Unknown::Expired { line, valid_before });
    let cases: [(&str, &str, u64, Result<usize, Unknown>); 19] = [
        ("alice@example.com", "colorsort", NOW, Ok(2)),
        ("quoted name@example.com", "colorsort", NOW, Ok(6)),
        ("q2@example.com", "colorsort", NOW, Ok(6)),
        ("bob@team.example.com", "colorsort", NOW, Ok(7)),
        (
            "mallory@team.example.com",
            "colorsort",
            NOW,
            Err(Unknown::Principal { line: 2 }),
        ),
        (
            "bob@example.com",
            "colorsort",
            NOW,
            Err(Unknown::Principal { line: 2 }),
        ),
        (
            "rsa@example.com",
            "colorsort",
            NOW,
            Err(Unknown::Principal { line: 2 }),
        ),
        ("window@example.com", "colorsort", NOW, Ok(11)),
        ("window@example.com", "colorsort", window_end, Ok(11)),
        (
            "window@example.com",
            "colorsort",
            window_end + 1,
            expired(11, window_end),
        ),
        (
            "window@example.com",
            "colorsort",
            before_window,
            Err(Unknown::NotYetValid {
                line: 11,
                valid_after: before_window + 1,
            }),
        ),
        ("window@example.com", "colorsort", before_window + 1, Ok(11)),
        ("gitonly@example.com", "git", NOW, Ok(12)),
        (
            "gitonly@example.com",
            "colorsort",
            NOW,
            Err(Unknown::Namespace { line: 12 }),
        ),
        ("patterns@example.com", "colorsort", NOW, Ok(13)),
        (
            "patterns@example.com",
            "colorsort-test",
            NOW,
            Err(Unknown::Namespace { line: 13 }),
        ),
        ("notcolorsort@example.com", "file", NOW, Ok(14)),
        (
            "notcolorsort@example.com",
            "colorsort",
            NOW,
            Err(Unknown::Namespace { line: 14 }),
        ),
        (
            "expired@example.com",
            "colorsort",
            NOW,
            expired(9, 978_307_200),
        ),
    ];
    for (principal, namespace, now, want) in cases {
        assert_eq!(
            signers
                .find_principal(principal, &ed, namespace, at(now))
                .map(Signer::line),
            want,
            "{principal} {namespace} {now}"
        );
    }
}

#[test]
fn unknown_names_the_first_listing_entry() {
    let ed = ED.split(' ').take(2).collect::<Vec<_>>().join(" ");
    let file = format!(
        "a valid-before=\"20010101Z\" {ed}\n\
         b valid-after=\"20990101Z\" {ed}\n\
         c namespaces=\"git\" {ed}\n"
    );
    let signers = AllowedSigners::parse(&file).unwrap();
    let ed = key(ED);
    type Case<'a> = (Option<&'a str>, &'a str, u64, Result<usize, Unknown>);
    let cases: [Case; 8] = [
        (
            None,
            "colorsort",
            NOW,
            Err(Unknown::Expired {
                line: 1,
                valid_before: 978_307_200,
            }),
        ),
        (
            Some("b"),
            "colorsort",
            NOW,
            Err(Unknown::NotYetValid {
                line: 2,
                valid_after: 4_070_908_800,
            }),
        ),
        (
            Some("c"),
            "colorsort",
            NOW,
            Err(Unknown::Namespace { line: 3 }),
        ),
        (Some("c"), "git", NOW, Ok(3)),
        (None, "git", NOW, Ok(3)),
        (None, "colorsort", 978_307_200, Ok(1)),
        (Some("b"), "colorsort", 4_070_908_800, Ok(2)),
        (Some("z"), "git", NOW, Err(Unknown::Principal { line: 1 })),
    ];
    for (principal, namespace, now, want) in cases {
        let got = match principal {
            Some(p) => signers.find_principal(p, &ed, namespace, at(now)),
            None => signers.find(&ed, namespace, at(now)),
        };
        assert_eq!(
            got.map(Signer::line),
            want,
            "{principal:?} {namespace} {now}"
        );
    }
    assert_eq!(
        Unknown::Expired {
            line: 1,
            valid_before: 978_307_200
        }
        .to_string(),
        "key was allowed on line 1 until 2001-01-01T00:00:00Z"
    );
    assert_eq!(
        signers
            .find(&ed, "colorsort", UNIX_EPOCH - Duration::from_secs(5))
            .map(Signer::line),
        Ok(1),
        "a clock before the epoch counts as the epoch"
    );
}

#[test]
fn a_signature_from_a_listed_key_is_found() {
    let signers = AllowedSigners::parse(FIXTURE).unwrap();
    let sig = Signature::parse(include_bytes!("../../test-data/sshsig/sk-ed25519.sig")).unwrap();
    let message = include_bytes!("../../test-data/sshsig/message.txt");
    sig.verify(message, "colorsort").unwrap();
    let found = signers
        .find(sig.public_key(), "colorsort", at(NOW))
        .unwrap();
    assert_eq!(found.principals(), "sk@example.com");
}

#[test]
fn refused_files_name_the_line() {
    let ed = ED.split(' ').take(2).collect::<Vec<_>>().join(" ");
    let cases: [(&str, usize, Reason); 5] = [
        (
            "fail_allowed_signers-unsupported",
            1,
            Reason::UnsupportedKey("ecdsa-sha2-nistp256".into()),
        ),
        (
            "fail_allowed_signers-localtime",
            1,
            Reason::Time {
                option: "valid-before",
                error: TimeError::LocalTime,
            },
        ),
        (
            "fail_allowed_signers-cert-authority",
            1,
            Reason::UnsupportedOption("cert-authority"),
        ),
        (
            "fail_allowed_signers-duplicate-option",
            1,
            Reason::DuplicateOption("namespaces"),
        ),
        (
            "fail_allowed_signers-quote-comma",
            1,
            Reason::Principals("no space after the closing quote"),
        ),
    ];
    for (name, want_line, want) in cases {
        match AllowedSigners::load(&fixture_file(name)) {
            Err(Error::Line { line, reason }) => {
                assert_eq!((line, reason), (want_line, want), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // A key without principals, after a comment and a blank line.
    let file = format!("# ok\n\n{ed}\n");
    match AllowedSigners::parse(&file) {
        Err(Error::Line { line: 3, reason }) => assert_eq!(
            reason,
            Reason::Principals("a key type where the principals belong")
        ),
        other => panic!("{other:?}"),
    }
    let err = AllowedSigners::parse(&format!("a {ed}\nb valid-after=\"1\" {ed}\n")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "allowed signers line 2: valid-after: not YYYYMMDD[HHMM[SS]]Z"
    );
}

#[test]
fn crlf_files_and_a_missing_final_newline_are_fine() {
    let crlf = FIXTURE.replace('\n', "\r\n");
    assert_eq!(AllowedSigners::parse(&crlf).unwrap().len(), 11);
    assert_eq!(AllowedSigners::parse(FIXTURE.trim_end()).unwrap().len(), 11);
    assert!(AllowedSigners::parse("").unwrap().is_empty());
    assert!(
        AllowedSigners::parse("\n\n# only comments\n")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn caps_are_enforced() {
    let ed = ED.split(' ').take(2).collect::<Vec<_>>().join(" ");
    let one = format!("a {ed}\n");
    let full = one.repeat(MAX_ENTRIES);
    assert_eq!(AllowedSigners::parse(&full).unwrap().len(), MAX_ENTRIES);
    let over = one.repeat(MAX_ENTRIES + 1);
    assert!(matches!(
        AllowedSigners::parse(&over),
        Err(Error::TooManyEntries)
    ));
    let comments = "#\n".repeat(MAX_FILE_SIZE / 2 + 1);
    assert!(matches!(
        AllowedSigners::parse(&comments),
        Err(Error::TooLarge)
    ));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowed_signers");
    std::fs::write(&path, &comments).unwrap();
    assert!(matches!(AllowedSigners::load(&path), Err(Error::TooLarge)));
    std::fs::write(
        &path,
        format!("{one}# caf\u{e9}\n{one}").replace('\u{e9}', "\u{1}"),
    )
    .unwrap();
    assert!(matches!(
        AllowedSigners::load(&path),
        Err(Error::Line {
            line: 2,
            reason: Reason::Control
        })
    ));
    std::fs::write(&path, [one.as_bytes(), b"# \xff\n"].concat()).unwrap();
    assert!(matches!(
        AllowedSigners::load(&path),
        Err(Error::Line {
            line: 2,
            reason: Reason::NotUtf8
        })
    ));
    let missing = dir.path().join("missing");
    match AllowedSigners::load(&missing) {
        Err(e @ Error::Read { .. }) => assert!(e.to_string().starts_with("cannot read ")),
        other => panic!("{other:?}"),
    }
}
