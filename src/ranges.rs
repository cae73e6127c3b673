//! Byte ranges (RFC 9110 §14) as pure functions: the one range a request
//! asks for, the part a `206` holds (`Content-Range`), and two parts of the
//! same representation joined into one (RFC 9110 §15.3.7.3, RFC 9111 §3.4).
//!
//! Only single ranges: a request for several is answered with the whole
//! representation or forwarded, and a multipart `206` is never stored.

use bytes::{Bytes, BytesMut};

/// The one byte range a request asks for, before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// `bytes=first-last` or `bytes=first-` (`last` `None`).
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// Why a range cannot be served from a representation of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsatisfiable;

/// The single byte range of a `Range` value; `None` when there are several
/// or the value is not a byte range (RFC 9110 §14.2: the field is then
/// ignored and the whole representation is the answer).
pub(crate) fn asked(range: &str) -> Option<Asked> {
    let (unit, set) = range.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return None;
    }
    let (first, last) = set.trim().split_once('-')?;
    let number = |text: &str| {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => Some(Asked::Suffix(number(suffix)?)),
        (first, "") => Some(Asked::From {
            first: number(first)?,
            last: None,
        }),
        (first, last) => {
            let (first, last) = (number(first)?, number(last)?);
            // RFC 9110 §14.1.1: last below first is invalid, so ignored.
            (last >= first).then_some(Asked::From {
                first,
                last: Some(last),
            })
        }
    }
}

impl Asked {
    /// The inclusive byte positions this range names in a representation
    /// of `length` bytes (RFC 9110 §14.1.2).
    pub(crate) fn resolve(self, length: u64) -> Result<(u64, u64), Unsatisfiable> {
        let end = length.checked_sub(1).ok_or(Unsatisfiable)?;
        match self {
            Self::Suffix(0) => Err(Unsatisfiable),
            Self::Suffix(n) => Ok((length.saturating_sub(n), end)),
            Self::From { first, .. } if first >= length => Err(Unsatisfiable),
            Self::From { first, last } => Ok((first, last.map_or(end, |last| last.min(end)))),
        }
    }
}

/// What a `206` holds: bytes `first..=last` of a representation of
/// `complete` bytes (RFC 9110 §14.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) complete: u64,
}

impl Part {
    /// A `Content-Range: bytes first-last/complete` value; `None` for any
    /// other (an unknown length `*`, an unsatisfied `*/len`, another unit,
    /// positions out of order or beyond the length).
    pub(crate) fn of(content_range: &str) -> Option<Self> {
        let (unit, rest) = content_range.trim().split_once(' ')?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return None;
        }
        let (range, complete) = rest.trim().split_once('/')?;
        let (first, last) = range.split_once('-')?;
        let number = |text: &str| {
            (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<u64>().ok())
                .flatten()
        };
        let part = Self {
            first: number(first)?,
            last: number(last)?,
            complete: number(complete)?,
        };
        (part.first <= part.last && part.last < part.complete).then_some(part)
    }

    /// How many bytes the part holds.
    pub(crate) fn len(self) -> u64 {
        self.last - self.first + 1
    }

    /// Whether it is the whole representation.
    pub(crate) fn is_complete(self) -> bool {
        self.first == 0 && self.last + 1 == self.complete
    }

    /// The `Content-Range` value.
    pub(crate) fn header(self) -> String {
        format!("bytes {}-{}/{}", self.first, self.last, self.complete)
    }

    /// Where `first..=last` lies in this part's body, when it holds all of it.
    pub(crate) fn slice(self, first: u64, last: u64) -> Option<std::ops::RangeInclusive<usize>> {
        if first < self.first || last > self.last || first > last {
            return None;
        }
        let start = usize::try_from(first - self.first).ok()?;
        let end = usize::try_from(last - self.first).ok()?;
        Some(start..=end)
    }
}

/// Two parts of one representation joined into one continuous part: they
/// must overlap or touch, and have the same complete length. Where both
/// hold a byte, the newer's counts (RFC 9110 §15.3.7.3). `None` when they
/// cannot be joined, or a body does not have its part's length.
pub(crate) fn join(older: (Part, &Bytes), newer: (Part, &Bytes)) -> Option<(Part, Bytes)> {
    let ((old, old_body), (new, new_body)) = (older, newer);
    if old.complete != new.complete
        || u64::try_from(old_body.len()).ok()? != old.len()
        || u64::try_from(new_body.len()).ok()? != new.len()
        || new.first > old.last.saturating_add(1)
        || old.first > new.last.saturating_add(1)
    {
        return None;
    }
    let joined = Part {
        first: old.first.min(new.first),
        last: old.last.max(new.last),
        complete: new.complete,
    };
    let mut body = BytesMut::with_capacity(usize::try_from(joined.len()).ok()?);
    if old.first < new.first {
        body.extend_from_slice(&old_body[..usize::try_from(new.first - old.first).ok()?]);
    }
    body.extend_from_slice(new_body);
    if old.last > new.last {
        body.extend_from_slice(&old_body[usize::try_from(new.last + 1 - old.first).ok()?..]);
    }
    Some((joined, body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_byte_range_is_read() {
        assert_eq!(
            asked("bytes=2-5"),
            Some(Asked::From {
                first: 2,
                last: Some(5)
            })
        );
        assert_eq!(
            asked(" Bytes = 7- "),
            Some(Asked::From {
                first: 7,
                last: None
            })
        );
        assert_eq!(asked("bytes=-3"), Some(Asked::Suffix(3)));
        for ignored in [
            "bytes=1-2,4-5",
            "bytes=5-2",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "items=1-2",
            "bytes 1-2",
            "",
        ] {
            assert_eq!(asked(ignored), None, "{ignored:?}");
        }
    }

    #[test]
    fn ranges_resolve_against_a_length() {
        let from = |first, last| Asked::From { first, last };
        assert_eq!(from(2, Some(5)).resolve(10), Ok((2, 5)));
        assert_eq!(from(2, Some(50)).resolve(10), Ok((2, 9)));
        assert_eq!(from(7, None).resolve(10), Ok((7, 9)));
        assert_eq!(Asked::Suffix(3).resolve(10), Ok((7, 9)));
        assert_eq!(Asked::Suffix(30).resolve(10), Ok((0, 9)));
        assert_eq!(from(10, None).resolve(10), Err(Unsatisfiable));
        assert_eq!(Asked::Suffix(0).resolve(10), Err(Unsatisfiable));
        assert_eq!(from(0, None).resolve(0), Err(Unsatisfiable));
    }

    #[test]
    fn content_ranges_name_a_part_or_nothing() {
        assert_eq!(
            Part::of("bytes 4-9/10"),
            Some(Part {
                first: 4,
                last: 9,
                complete: 10
            })
        );
        for other in [
            "bytes 0-4/*",
            "bytes */10",
            "bytes 5-4/10",
            "bytes 4-10/10",
            "items 0-1/2",
            "bytes 0-1",
            "bytes -1-2/3",
        ] {
            assert_eq!(Part::of(other), None, "{other:?}");
        }
        let part = Part::of("bytes 4-9/10").unwrap();
        assert_eq!((part.len(), part.is_complete()), (6, false));
        assert_eq!(part.header(), "bytes 4-9/10");
        assert_eq!(part.slice(6, 8), Some(2..=4));
        assert_eq!(part.slice(3, 8), None);
        assert_eq!(part.slice(6, 10), None);
        assert!(Part::of("bytes 0-9/10").unwrap().is_complete());
    }

    #[test]
    fn parts_that_overlap_or_touch_join() {
        let part = |text: &str| Part::of(text).unwrap();
        let body = |text: &'static str| Bytes::from_static(text.as_bytes());
        let joined = join(
            (part("bytes 0-4/10"), &body("01234")),
            (part("bytes 5-9/10"), &body("56789")),
        );
        assert_eq!(joined, Some((part("bytes 0-9/10"), body("0123456789"))));
        let joined = join(
            (part("bytes 3-9/10"), &body("3456789")),
            (part("bytes 0-4/10"), &body("abcde")),
        );
        assert_eq!(
            joined,
            Some((part("bytes 0-9/10"), body("abcde56789"))),
            "the newer part's bytes win"
        );
        let joined = join(
            (part("bytes 0-9/20"), &body("0123456789")),
            (part("bytes 2-3/20"), &body("xy")),
        );
        assert_eq!(joined, Some((part("bytes 0-9/20"), body("01xy456789"))));
        let apart = join(
            (part("bytes 0-2/10"), &body("012")),
            (part("bytes 5-9/10"), &body("56789")),
        );
        assert_eq!(apart, None, "a gap");
        let other_length = join(
            (part("bytes 0-4/10"), &body("01234")),
            (part("bytes 5-9/11"), &body("56789")),
        );
        assert_eq!(other_length, None);
        let short = join(
            (part("bytes 0-4/10"), &body("0123")),
            (part("bytes 5-9/10"), &body("56789")),
        );
        assert_eq!(short, None, "a body shorter than its part");
    }
}
