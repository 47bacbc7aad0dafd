//! The timestamps of `valid-after=` and `valid-before=`: `YYYYMMDD`,
//! `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, in UTC, as seconds since the Unix
//! epoch; and their ISO 8601 form for messages.
//!
//! ssh-keygen reads a time without a `Z` (or `UTC`) suffix in the local
//! time zone. The server runs in a container without a time zone database,
//! where "local" would silently mean UTC, so such a time is refused rather
//! than guessed: a typo must not shift when a signer is trusted. Dates are
//! checked against the calendar (ssh-keygen rolls 20230231 over to March)
//! and seconds run to 59.

use crate::calendar::{days_from_civil, days_in_month, iso8601};
use std::fmt;

/// 9999-12-31T23:59:59Z, the last second four year digits can name.
const LAST: u64 = 253_402_300_799;

/// Why a timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not 8, 12 or 14 digits followed by `Z` or `UTC`.
    Format,
    /// Digits without `Z`: a local time, which is not supported.
    LocalTime,
    /// No such date or time of day (month 13, 30 February, 24:00).
    Calendar,
    /// At or before the Unix epoch (ssh-keygen takes 0 for "unset").
    BeforeEpoch,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeError::Format => "not YYYYMMDD[HHMM[SS]]Z",
            TimeError::LocalTime => "local time is not supported: end the time with Z for UTC",
            TimeError::Calendar => "no such date or time",
            TimeError::BeforeEpoch => "not after 1970-01-01",
        })
    }
}

/// Parses a timestamp to seconds since the epoch.
pub fn parse(s: &str) -> Result<u64, TimeError> {
    let digits = if let Some(d) = s.strip_suffix(['Z', 'z']) {
        d
    } else if s.len() >= 3
        && s.is_char_boundary(s.len() - 3)
        && s[s.len() - 3..].eq_ignore_ascii_case("utc")
    {
        &s[..s.len() - 3]
    } else if s.bytes().all(|b| b.is_ascii_digit()) && matches!(s.len(), 8 | 12 | 14) {
        return Err(TimeError::LocalTime);
    } else {
        return Err(TimeError::Format);
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::Format);
    }
    // At most four digits: no overflow.
    let field = |at: usize, len: usize| -> u32 {
        digits.as_bytes()[at..at + len]
            .iter()
            .fold(0, |n, &b| n * 10 + u32::from(b - b'0'))
    };
    let (year, month, day) = (i64::from(field(0, 4)), field(4, 2), field(6, 2));
    let (hour, minute, second) = match digits.len() {
        8 => (0, 0, 0),
        12 => (field(8, 2), field(10, 2), 0),
        _ => (field(8, 2), field(10, 2), field(12, 2)),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(TimeError::Calendar);
    }
    if year < 1970 {
        return Err(TimeError::BeforeEpoch);
    }
    let days =
        u64::try_from(days_from_civil(year, month, day)).map_err(|_| TimeError::BeforeEpoch)?;
    let t = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    if t == 0 {
        return Err(TimeError::BeforeEpoch);
    }
    Ok(t)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
/// Times past 9999 (which [`parse`] never returns) print as its last second.
pub fn format(t: u64) -> String {
    iso8601(t.min(LAST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_in_utc() {
        // Values from `date -u -d ... +%s`.
        let cases = [
            ("20010101Z", 978_307_200),
            ("20300101Z", 1_893_456_000),
            ("203001010000Z", 1_893_456_000),
            ("20300101000001Z", 1_893_456_001),
            ("20200101000000z", 1_577_836_800),
            ("20240229UTC", 1_709_164_800),
            ("202402291230utc", 1_709_209_800),
            ("19700101000001Z", 1),
            ("99991231235959Z", 253_402_300_799),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s), Ok(want), "{s}");
            assert_eq!(
                parse(&format(want).replace(['-', 'T', ':'], "")),
                Ok(want),
                "{s}"
            );
        }
    }

    #[test]
    fn refuses_local_malformed_and_impossible_times() {
        let cases = [
            ("20300101", TimeError::LocalTime),
            ("203001010000", TimeError::LocalTime),
            ("20300101000000", TimeError::LocalTime),
            ("", TimeError::Format),
            ("Z", TimeError::Format),
            ("2030011Z", TimeError::Format),
            ("2030010100Z", TimeError::Format),
            ("203001010Z", TimeError::Format),
            ("2030-01-01Z", TimeError::Format),
            ("+2030101Z", TimeError::Format),
            ("20300101 Z", TimeError::Format),
            ("20300101ZZ", TimeError::Format),
            ("20300101GMT", TimeError::Format),
            ("２0300101Z", TimeError::Format),
            ("now", TimeError::Format),
            ("20301301Z", TimeError::Calendar),
            ("20300001Z", TimeError::Calendar),
            ("20300100Z", TimeError::Calendar),
            ("20230229Z", TimeError::Calendar),
            ("21000229Z", TimeError::Calendar),
            ("20300431Z", TimeError::Calendar),
            ("203001012400Z", TimeError::Calendar),
            ("203001011260Z", TimeError::Calendar),
            ("20300101235960Z", TimeError::Calendar),
            ("19700101Z", TimeError::BeforeEpoch),
            ("19691231Z", TimeError::BeforeEpoch),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s), Err(want), "{s:?}");
        }
    }

    #[test]
    fn formats_as_iso_8601_utc() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(format(1_709_209_800), "2024-02-29T12:30:00Z");
        assert_eq!(format(LAST), "9999-12-31T23:59:59Z");
        assert_eq!(format(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
