//! The age a response arrives with (RFC 9111 §4.2.3): what its `Age` says,
//! or how long ago its `Date` was, whichever is more.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, header};

use super::http_date;

/// RFC 9111 §4.2.3: `max(apparent_age, age_value + response_delay)`.
pub(super) fn corrected_initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let age_value = Duration::from_secs(age_value(headers).unwrap_or(0));
    // `Date` has one-second resolution, so it is compared with the response
    // time in whole seconds: otherwise a response made a moment ago would be
    // aged by the fraction of a second its `Date` dropped, up to a whole
    // second of a short TTL.
    let apparent_age = headers
        .get(header::DATE)
        .and_then(|date| http_date(date, response_time))
        .and_then(|date| whole_seconds(response_time).duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    apparent_age.max(age_value.saturating_add(response_delay))
}

/// `at` without its fraction of a second.
fn whole_seconds(at: SystemTime) -> SystemTime {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => at,
    }
}

/// The upstream's `Age` in seconds (RFC 9111 §5.1): of several values (on
/// one line or several) the first counts, and it must be a non-negative
/// integer; anything else is ignored. Too large a value reads as 2³¹
/// (RFC 9111 §1.2.2), which is stale for any lifetime.
pub(super) fn age_value(headers: &HeaderMap) -> Option<u64> {
    let first = headers.get(header::AGE)?.to_str().ok()?;
    let first = first.split(',').next()?.trim_matches([' ', '\t']);
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(first.parse::<u64>().unwrap_or(1 << 31).min(1 << 31))
}
