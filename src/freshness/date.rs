//! HTTP-date parsing as RFC 9110 §5.6.7 asks of recipients: the
//! preferred IMF-fixdate and both obsolete forms (RFC 850, asctime), with
//! day names, month names and `GMT` in any case (senders get them wrong,
//! and the meaning is the same). Nothing looser: another zone, a two-digit
//! year outside the RFC 850 form, missing or extra separators, or a
//! one-digit hour make the value invalid, which callers must treat as such
//! (an invalid `Expires` means already expired).
//!
//! The day name is checked to be one, not to match the date: it is
//! redundant, and `asctime()` output with a wrong one is still a time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// The time an HTTP-date names; `None` when it is not one. `now` places a
/// two-digit RFC 850 year: never more than 50 years ahead (RFC 9110 §5.6.7).
pub(crate) fn parse(text: &str, now: SystemTime) -> Option<SystemTime> {
    let text = text.trim_matches([' ', '\t']);
    if !text.is_ascii() {
        return None;
    }
    imf_fixdate(text)
        .or_else(|| rfc850(text, now))
        .or_else(|| asctime(text))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    day_name(&s[..3], &DAYS)?;
    if b[25] != b' ' || !s[26..].eq_ignore_ascii_case("gmt") {
        return None;
    }
    let day = two_digits(&s[5..7])?;
    let month = month(&s[8..11])?;
    let year = digits(&s[12..16])?;
    time(year, month, day, &s[17..25])
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(s: &str, now: SystemTime) -> Option<SystemTime> {
    let (name, rest) = s.split_once(", ")?;
    day_name(name, &LONG_DAYS)?;
    let b = rest.as_bytes();
    if b.len() != 22 || b[2] != b'-' || b[6] != b'-' || b[9] != b' ' || b[18] != b' ' {
        return None;
    }
    if !rest[19..].eq_ignore_ascii_case("gmt") {
        return None;
    }
    let day = two_digits(&rest[..2])?;
    let month = month(&rest[3..6])?;
    let year = full_year(two_digits(&rest[7..9])?, now);
    time(year, month, day, &rest[10..18])
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    day_name(&s[..3], &DAYS)?;
    let month = month(&s[4..7])?;
    let day = match &b[8..10] {
        [b' ', digit] => digits(std::str::from_utf8(&[*digit]).ok()?)?,
        _ => two_digits(&s[8..10])?,
    };
    let year = digits(&s[20..24])?;
    time(year, month, day, &s[11..19])
}

fn day_name(name: &str, names: &[&str; 7]) -> Option<()> {
    names
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
        .then_some(())
}

/// 1 to 12.
fn month(name: &str) -> Option<u64> {
    let at = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    u64::try_from(at + 1).ok()
}

/// Only ASCII digits (no sign, no space), as a number.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn two_digits(text: &str) -> Option<u64> {
    if text.len() != 2 {
        return None;
    }
    digits(text)
}

/// The century of a two-digit year: the latest one not more than 50 years
/// after `now`'s year.
fn full_year(two_digits: u64, now: SystemTime) -> u64 {
    let this_year = year_of(now);
    let century = this_year - this_year % 100;
    let year = century + two_digits;
    if year > this_year + 50 {
        year.saturating_sub(100)
    } else {
        year
    }
}

/// `hh:mm:ss` on that day, UTC.
fn time(year: u64, month: u64, day: u64, clock: &str) -> Option<SystemTime> {
    let c = clock.as_bytes();
    if c.len() != 8 || c[2] != b':' || c[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (
        two_digits(&clock[..2])?,
        two_digits(&clock[3..5])?,
        two_digits(&clock[6..])?,
    );
    if hour > 23 || minute > 59 || second > 59 || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).ok()?;
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`); years are at most four digits, so nothing overflows.
fn days_from_civil(year: u64, month: u64, day: u64) -> i64 {
    let (year, month, day) = (year as i64, month as i64, day as i64);
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The (UTC) year `time` falls in; 1970 for times before it.
fn year_of(time: SystemTime) -> u64 {
    let days = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let mut year = 1970 + days / 366;
    while days_from_civil(year + 1, 1, 1) <= i64::try_from(days).unwrap_or(i64::MAX) {
        year += 1;
    }
    year
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        // 2026-11-21, the project's present.
        UNIX_EPOCH + Duration::from_secs(1_795_219_200)
    }

    fn at(text: &str) -> Option<u64> {
        parse(text, now()).map(|t| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    #[test]
    fn the_three_forms_name_the_same_time() {
        let expected = Some(784_111_777);
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(at("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(at("Sun Nov  6 08:49:37 1994"), expected);
        assert_eq!(at("Sun Nov 06 08:49:37 1994"), expected);
        assert_eq!(at("  Sun, 06 Nov 1994 08:49:37 GMT "), expected);
    }

    #[test]
    fn agrees_with_httpdate_on_what_it_writes() {
        for secs in [
            0u64,
            951_782_400,
            1_700_000_000,
            2_147_483_648,
            9_999_999_999,
        ] {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse(&httpdate::fmt_http_date(time), now()), Some(time));
        }
    }

    #[test]
    fn names_and_zone_in_any_case() {
        let expected = at("Thu, 18 Aug 2050 02:01:18 GMT");
        assert!(expected.is_some());
        for text in [
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 AUG 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gMT",
            "thursday, 18-aug-50 02:01:18 gmt",
        ] {
            assert_eq!(at(text), expected, "{text}");
        }
    }

    #[test]
    fn the_day_name_need_not_match_the_date() {
        // The conformance suite's asctime example: 8 Aug 2050 is a Monday.
        assert_eq!(
            at("Thu Aug  8 02:01:18 2050"),
            at("Mon, 08 Aug 2050 02:01:18 GMT")
        );
        assert_eq!(at("Xyz Aug  8 02:01:18 2050"), None, "but must be a day");
    }

    #[test]
    fn two_digit_years_are_never_more_than_50_years_ahead() {
        assert_eq!(
            at("Thursday, 18-Aug-50 02:01:18 GMT"),
            at("Thu, 18 Aug 2050 02:01:18 GMT")
        );
        assert_eq!(
            at("Monday, 01-Jan-76 00:00:00 GMT"),
            at("Mon, 01 Jan 2076 00:00:00 GMT")
        );
        assert_eq!(
            at("Monday, 01-Jan-77 00:00:00 GMT"),
            at("Mon, 01 Jan 1977 00:00:00 GMT")
        );
        assert_eq!(
            at("Monday, 01-Jan-00 00:00:00 GMT"),
            at("Mon, 01 Jan 2000 00:00:00 GMT")
        );
    }

    #[test]
    fn dates_before_1970_are_times_too() {
        assert_eq!(
            parse("Mon, 01 Jan 1900 00:00:00 GMT", now()),
            UNIX_EPOCH.checked_sub(Duration::from_secs(2_208_988_800))
        );
    }

    #[test]
    fn what_is_not_an_http_date_is_none() {
        for text in [
            "",
            "0",
            "-1",
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 31 Sep 2050 02:01:18 GMT",
            "Thu, 29 Feb 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 24:00:00 GMT",
            "Thu, 18 Aug 2050 23:60:00 GMT",
            "Thu, 18 Aug +050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT extra",
            "Thursday, 18-Aug-2050 02:01:18 GMT",
            "Thu Aug 8 02:01:18 2050",
            "Thé, 18 Aug 2050 02:01:18 GMT",
        ] {
            assert_eq!(at(text), None, "{text:?}");
        }
        assert!(at("Tue, 29 Feb 2000 00:00:00 GMT").is_some(), "a leap day");
    }

    #[test]
    fn the_year_of_a_time() {
        assert_eq!(year_of(UNIX_EPOCH), 1970);
        assert_eq!(year_of(now()), 2026);
        let new_year = parse("Sat, 01 Jan 2000 00:00:00 GMT", now()).unwrap();
        assert_eq!(year_of(new_year), 2000);
        assert_eq!(year_of(new_year - Duration::from_secs(1)), 1999);
    }
}
