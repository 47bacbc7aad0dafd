//! Fuzzes what a client controls before any payload: the request-line parser
//! ([`protocol::parse_request`]) and the name rules ([`Name::parse`]). Any
//! line must parse to a request or an error, never panic; an error must map
//! to a one-line reply; an accepted name, and every variant the store may
//! try for it, must be a safe basename that parses back to itself.

#![no_main]

use colorsort::name::{self, Name};
use colorsort::protocol::{self, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    match protocol::parse_request(line) {
        Ok(Request::Upload { name, .. }) => check_name(name),
        Ok(_) => {}
        Err(e) => {
            let reply = protocol::err(e.code(), &e.to_string());
            assert!(reply.ends_with("\r\n"));
            assert!(!reply[..reply.len() - 2].contains(['\r', '\n']));
            let _ = e.closes();
        }
    }
    // The whole line as a name too: names reach Name::parse from elsewhere
    // (the client sanitizes local file names with the same rules).
    check_name(line);
    assert!(protocol::printable(line, 40).is_ascii());
});

fn check_name(raw: &[u8]) {
    let Ok(Name::Given(safe)) = Name::parse(raw) else {
        return;
    };
    assert_safe(&safe);
    for variant in name::variants(&safe).take(3) {
        assert_safe(&variant);
    }
    assert_safe(&name::with_suffix(&safe, "0a1b2c3d"));
}

fn assert_safe(name: &str) {
    assert!(!name.is_empty() && name.len() <= name::MAX_NAME, "{name:?}");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
        "{name:?}"
    );
    assert!(!name.starts_with(['.', '-']), "{name:?}");
    assert_eq!(
        Name::parse(name.as_bytes()),
        Ok(Name::Given(name.to_string()))
    );
}
