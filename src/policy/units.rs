//! Human-written durations (`5m`, `1h30m`, `250ms`) and sizes (`1MiB`, `512KB`)
//! as they appear in policy files and on the command line.

use std::time::Duration;

/// Parses a duration such as `30s`, `5m`, `1h30m`, `250ms`, `2d`, or a bare
/// number of seconds (`300`).
///
/// ```
/// # use folio::parse_duration;
/// # use std::time::Duration;
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(parse_duration("5 minutes").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let fail = || {
        format!(
            "bad duration '{text}': expected a number with a unit (ms, s, m, h, d), e.g. 30s, 5m or 1h30m"
        )
    };
    if text.is_empty() {
        return Err(fail());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail());
        }
        let (number, after) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| fail())?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            _ => return Err(fail()),
        };
        total = total.saturating_add(part);
        rest = after;
    }
    Ok(total)
}

/// Parses a byte size such as `512`, `64KB`, `1MiB`, `2G` (K/M/G count in 1024s,
/// as operators of caches expect).
///
/// ```
/// # use folio::parse_size;
/// assert_eq!(parse_size("1MiB"), Ok(1 << 20));
/// assert_eq!(parse_size("64k"), Ok(64 << 10));
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let fail = || {
        format!("bad size '{text}': expected bytes or a number with a unit (KB, MB, GB), e.g. 1MB")
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(fail());
    }
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| fail())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(fail()),
    };
    number.checked_mul(1 << shift).ok_or_else(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 90 "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for bad in ["", "5", "m", "5 minutes", "5x", "-5s", "1.5h", "s5"] {
            if bad == "5" {
                continue; // a bare number is seconds
            }
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("expected a number with a unit"), "{err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KB"), Ok(64 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("MB").is_err());
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("99999999999999999999GB").is_err());
    }
}
