//! OpenSSH pattern lists (ssh_config(5) PATTERNS), as allowed_signers uses
//! them for principals and `namespaces=`: comma-separated patterns where `*`
//! matches any run of bytes and `?` any one byte, each optionally negated by
//! a leading `!`. A list matches when some pattern matches and no negated
//! one does, whatever their order (`match_pattern_list`).

/// Longest pattern accepted, in bytes. ssh-keygen silently matches nothing
/// from a list holding a longer one, so such a list is refused instead.
pub const MAX_PATTERN: usize = 1022;

/// Why a pattern list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListError {
    /// A pattern in the list is empty (`a,,b`, a trailing comma, a lone `!`).
    Empty,
    /// A pattern is longer than [`MAX_PATTERN`].
    TooLong,
}

/// Checks that every pattern in `list` is usable.
pub fn check_list(list: &str) -> Result<(), ListError> {
    for pattern in list.split(',') {
        let pattern = pattern.strip_prefix('!').unwrap_or(pattern);
        if pattern.is_empty() {
            return Err(ListError::Empty);
        }
        if pattern.len() > MAX_PATTERN {
            return Err(ListError::TooLong);
        }
    }
    Ok(())
}

/// Whether `s` matches the pattern list `list`: some pattern matches and no
/// negated pattern does.
pub fn matches_list(s: &str, list: &str) -> bool {
    let mut positive = false;
    for pattern in list.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if matches(s.as_bytes(), negated.as_bytes()) => return false,
            Some(_) => {}
            None => positive |= matches(s.as_bytes(), pattern.as_bytes()),
        }
    }
    positive
}

/// Whether `s` matches the glob `pattern` (`*` and `?`, byte-wise, case
/// sensitive). Backtracks only to the last `*`, so it runs in
/// O(len(s) · len(pattern)) where ssh-keygen's recursion can take
/// exponential time.
fn matches(s: &[u8], pattern: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    // Where the last `*` was, and the first byte of `s` it has not yet
    // swallowed.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match pattern.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&p) if p == b'?' || p == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((star_pi, star_si)) => {
                    pi = star_pi + 1;
                    si = star_si + 1;
                    star = Some((star_pi, si));
                }
                None => return false,
            },
        }
    }
    pattern[pi..].iter().all(|&p| p == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_ssh_keygen_does() {
        let cases = [
            ("alice@example.com", "alice@example.com", true),
            ("alice@example.com", "Alice@example.com", false),
            ("alice@example.com", "*@example.com", true),
            ("alice@example.com", "*", true),
            ("", "*", true),
            ("", "", true),
            ("a", "", false),
            ("", "?", false),
            ("ab", "?", false),
            ("ab", "??", true),
            ("alice@example.com", "a*e@*.c?m", true),
            ("alice@example.com", "*.org", false),
            ("aaa", "a*a*a", true),
            ("aa", "a*a*a", false),
            ("abcabcabd", "*abd", true),
            ("mississippi", "m*iss*ppi", true),
            ("mississippi", "m*iss*ppx", false),
            ("x*y", "x?y", true),
            ("é", "?", false),
            ("é", "??", true),
        ];
        for (s, pattern, want) in cases {
            assert_eq!(
                matches(s.as_bytes(), pattern.as_bytes()),
                want,
                "{s:?} ~ {pattern:?}"
            );
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let s = "a".repeat(2000);
        let pattern = format!("{}b", "a*".repeat(500));
        assert!(!matches(s.as_bytes(), pattern.as_bytes()));
    }

    #[test]
    fn negation_wins_in_any_order() {
        let cases = [
            ("colorsort", "colorsort", true),
            ("colorsort", "file,colorsort", true),
            ("colorsort", "file,git", false),
            ("colorsort", "color*,!colorsort-test", true),
            ("colorsort-test", "color*,!colorsort-test", false),
            ("colorsort-test", "!colorsort-test,color*", false),
            ("colorsort", "*,!colorsort", false),
            ("colorsort", "!git", false),
            (
                "mallory@team.example.com",
                "*@team.example.com,!mallory@team.example.com",
                false,
            ),
            (
                "bob@team.example.com",
                "*@team.example.com,!mallory@team.example.com",
                true,
            ),
        ];
        for (s, list, want) in cases {
            assert_eq!(matches_list(s, list), want, "{s:?} ~ {list:?}");
        }
    }

    #[test]
    fn lists_must_hold_usable_patterns() {
        let long = "x".repeat(MAX_PATTERN + 1);
        let longest = "x".repeat(MAX_PATTERN);
        let cases = [
            ("a,b", Ok(())),
            ("!a,*", Ok(())),
            (longest.as_str(), Ok(())),
            ("", Err(ListError::Empty)),
            ("a,,b", Err(ListError::Empty)),
            ("a,", Err(ListError::Empty)),
            ("!", Err(ListError::Empty)),
            (long.as_str(), Err(ListError::TooLong)),
        ];
        for (list, want) in cases {
            assert_eq!(check_list(list), want, "{list:?}");
        }
    }
}
