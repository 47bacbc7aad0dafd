//! UTC calendar arithmetic for the proleptic Gregorian calendar: days since
//! 1970-01-01 to and from (year, month, day), by the era arithmetic of
//! Howard Hinnant's `days_from_civil` and `civil_from_days`, and the three
//! ways the crate writes an instant: ISO 8601 to the second (signer
//! validity in messages), to the millisecond (log lines) and RFC 9110's
//! IMF-fixdate (the metrics responder's `Date` header).
//!
//! The module is a leaf: it imports nothing of the crate.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Days from 0000-03-01 to 1970-01-01: the eras below start in March, so
/// that a leap day ends its year.
const EPOCH_SHIFT: i64 = 719_468;
/// Days in 400 years, after which the calendar repeats.
const DAYS_PER_ERA: i64 = 146_097;

/// Whether `year` has a 29 February.
pub(crate) fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1 to 12) of `year`; 31 for a month outside 1 to 12.
pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date, negative before it. The date must exist
/// (month 1 to 12, day 1 to [`days_in_month`]); the caller checks that.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    // Months counted from March, so February is last.
    let march_month = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * march_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT
}

/// The date (year, month 1 to 12, day 1 to 31) `days` days after
/// 1970-01-01, before it if negative.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + EPOCH_SHIFT;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    // Both in range by construction: day 1 to 31, month 1 to 12.
    let day = (day_of_year - (153 * march_month + 2) / 5 + 1) as u32;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// An instant, in whole seconds since the epoch, split into its UTC date
/// and time of day.
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    /// 0 for Thursday (as 1970-01-01 was) to 6 for Wednesday.
    weekday_from_thursday: usize,
}

impl Utc {
    fn at(secs: u64) -> Utc {
        // At most 2^64 / 86400 < 2^48 days: no i64 overflows below.
        let days = (secs / 86_400) as i64;
        let rest = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        Utc {
            year,
            month,
            day,
            hour: rest / 3600,
            minute: rest % 3600 / 60,
            second: rest % 60,
            weekday_from_thursday: days.rem_euclid(7) as usize,
        }
    }
}

/// `2024-02-29T12:30:00`: the date and time both ISO 8601 forms below
/// begin with.
impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// `2024-02-29T12:30:00Z` for `secs` seconds since the epoch.
pub(crate) fn iso8601(secs: u64) -> String {
    format!("{}Z", Utc::at(secs))
}

/// `2026-11-28T08:48:51.123Z`; an instant before the epoch is written as
/// the epoch.
pub(crate) fn iso8601_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}Z", Utc::at(since.as_secs()), since.subsec_millis())
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's IMF-fixdate); an instant
/// before the epoch is written as the epoch.
pub(crate) fn http_date(t: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let u = Utc::at(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[u.weekday_from_thursday],
        u.day,
        MONTHS[(u.month as usize).clamp(1, 12) - 1],
        u.year,
        u.hour,
        u.minute,
        u.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Days since 1970-01-01 and their dates, from Python's
    /// `date.toordinal()` less that of 1970-01-01, and for year 0 from the
    /// 366 days of that leap year before 0001-01-01.
    const DATES: [(i64, (i64, u32, u32)); 16] = [
        (0, (1970, 1, 1)),
        (-1, (1969, 12, 31)),
        (59, (1970, 3, 1)),
        (10_957, (2000, 1, 1)),
        (11_016, (2000, 2, 29)),
        (11_017, (2000, 3, 1)),
        (19_782, (2024, 2, 29)),
        (47_540, (2100, 2, 28)),
        (47_541, (2100, 3, 1)),
        (2_932_896, (9999, 12, 31)),
        (-25_508, (1900, 3, 1)),
        (-135_081, (1600, 2, 29)),
        (-719_162, (1, 1, 1)),
        (-719_468, (0, 3, 1)),
        (-719_469, (0, 2, 29)),
        (-719_528, (0, 1, 1)),
    ];

    #[test]
    fn days_and_dates_convert_both_ways() {
        for (days, (y, m, d)) in DATES {
            assert_eq!(civil_from_days(days), (y, m, d), "{days}");
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn far_years_repeat_every_400_years() {
        // A million 400-year eras either way, and the largest day count
        // that seconds in a u64 reach.
        let eras: [i64; 4] = [1_000_000, -1_000_000, 2_500, -2_500];
        for (days, (y, m, d)) in DATES {
            for n in eras {
                let shifted = days + n * DAYS_PER_ERA;
                assert_eq!(civil_from_days(shifted), (y + n * 400, m, d), "{days} {n}");
                assert_eq!(days_from_civil(y + n * 400, m, d), shifted, "{y} {n}");
            }
        }
        let last = (u64::MAX / 86_400) as i64;
        let (y, m, d) = civil_from_days(last);
        assert_eq!(days_from_civil(y, m, d), last);
    }

    #[test]
    fn every_day_from_1600_to_2500_follows_the_day_before() {
        // Walk the calendar a day at a time, by month lengths alone, and
        // compare each date with the era arithmetic.
        let mut days = days_from_civil(1600, 1, 1);
        for year in 1600..=2500 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(civil_from_days(days), (year, month, day), "{days}");
                    assert_eq!(days_from_civil(year, month, day), days);
                    days += 1;
                }
            }
        }
        assert_eq!(days, days_from_civil(2501, 1, 1));
    }

    #[test]
    fn leap_years_and_month_lengths() {
        let leap = [
            (2024, true),
            (2023, false),
            (2000, true),
            (1900, false),
            (2100, false),
            (2400, true),
            (0, true),
            (-4, true),
            (-100, false),
        ];
        for (year, want) in leap {
            assert_eq!(is_leap(year), want, "{year}");
            assert_eq!(days_in_month(year, 2), if want { 29 } else { 28 }, "{year}");
        }
        let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        for (month, want) in (1..=12).zip(lengths) {
            assert_eq!(days_in_month(2023, month), want, "{month}");
        }
    }

    #[test]
    fn instants_in_each_format() {
        // From Python's `datetime.fromtimestamp(secs, timezone.utc)`.
        let cases = [
            (0, "1970-01-01T00:00:00Z", "Thu, 01 Jan 1970 00:00:00 GMT"),
            (
                784_111_777,
                "1994-11-06T08:49:37Z",
                "Sun, 06 Nov 1994 08:49:37 GMT",
            ),
            (
                951_782_400,
                "2000-02-29T00:00:00Z",
                "Tue, 29 Feb 2000 00:00:00 GMT",
            ),
            (
                1_795_769_331,
                "2026-11-27T08:48:51Z",
                "Fri, 27 Nov 2026 08:48:51 GMT",
            ),
            (
                4_107_542_400,
                "2100-03-01T00:00:00Z",
                "Mon, 01 Mar 2100 00:00:00 GMT",
            ),
            (
                253_402_300_799,
                "9999-12-31T23:59:59Z",
                "Fri, 31 Dec 9999 23:59:59 GMT",
            ),
        ];
        for (secs, iso, http) in cases {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(iso8601(secs), iso);
            assert_eq!(iso8601_millis(t), iso.replace('Z', ".000Z"));
            assert_eq!(http_date(t), http);
        }
        let t = UNIX_EPOCH + Duration::from_millis(1_234);
        assert_eq!(iso8601_millis(t), "1970-01-01T00:00:01.234Z");
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(iso8601_millis(before), "1970-01-01T00:00:00.000Z");
        assert_eq!(http_date(before), "Thu, 01 Jan 1970 00:00:00 GMT");
        // The last second a u64 counts, from Python's dates shifted by
        // whole 400-year eras.
        assert_eq!(iso8601(u64::MAX), "584554051223-11-09T07:00:15Z");
    }
}
