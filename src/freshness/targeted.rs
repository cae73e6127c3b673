//! Targeted cache-control fields (RFC 9213): `CDN-Cache-Control` read as
//! an RFC 8941 Dictionary and mapped onto the directives `Cache-Control`
//! has.
//!
//! RFC 9213 §2.1: a field that is empty or not a valid Dictionary is
//! ignored as a whole (the cache falls back to `Cache-Control`), and values
//! that violate a directive's type are not consumed. Which way "not
//! consumed" leans is chosen for safety (RFC 9111 §4.2.1: the most
//! restrictive reading wins):
//! - `max-age`, `s-maxage`, `stale-while-revalidate`, `stale-if-error`
//!   count only as a non-negative Integer; any other value (a String, a
//!   Decimal, a Token, a negative number) leaves the directive out;
//! - `no-store`, `must-revalidate`, `proxy-revalidate` hold whatever their
//!   value;
//! - `no-cache` and `private` with a String naming fields are qualified;
//!   with any other value they hold unqualified;
//! - `public`, `immutable` and `must-understand`, which allow more, count
//!   only as Boolean true.
//!
//! Parameters are ignored (RFC 9213 §2.1), and so are unknown directives.

use http::{HeaderMap, HeaderName};

use super::CacheControl;
use super::structured::{BareItem, Member, parse_dictionary};

/// The directives of the targeted `field`, or `None` when it is absent,
/// empty or not a valid Dictionary (then `Cache-Control` governs).
pub(super) fn parse(headers: &HeaderMap, field: &HeaderName) -> Option<CacheControl> {
    let mut joined = String::new();
    for value in headers.get_all(field) {
        // Bytes beyond visible ASCII are not a Structured Field.
        let text = value.to_str().ok()?;
        if !joined.is_empty() {
            joined.push_str(", ");
        }
        joined.push_str(text);
    }
    let members = parse_dictionary(&joined).ok()?;
    if members.is_empty() {
        return None;
    }
    let mut cc = CacheControl {
        targeted: true,
        ..CacheControl::default()
    };
    for (name, member) in &members {
        let value = match member {
            Member::Item(value, _) => Some(value),
            Member::InnerList(..) => None,
        };
        let seconds = match value {
            Some(BareItem::Integer(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let yes = value == Some(&BareItem::Boolean(true));
        let fields = match value {
            Some(BareItem::String(list)) => list
                .split(',')
                .filter_map(|f| HeaderName::from_bytes(f.trim().as_bytes()).ok())
                .collect(),
            _ => Vec::new(),
        };
        match name.as_str() {
            "max-age" => cc.max_age = seconds.or(cc.max_age),
            "s-maxage" => cc.s_maxage = seconds.or(cc.s_maxage),
            "stale-while-revalidate" => {
                cc.stale_while_revalidate = seconds.or(cc.stale_while_revalidate);
            }
            "stale-if-error" => cc.stale_if_error = seconds.or(cc.stale_if_error),
            "no-store" => cc.no_store = true,
            "must-revalidate" => cc.must_revalidate = true,
            "proxy-revalidate" => cc.proxy_revalidate = true,
            "no-cache" if fields.is_empty() => cc.no_cache = true,
            "no-cache" => cc.no_cache_fields.extend(fields),
            "private" if fields.is_empty() => cc.private = true,
            "private" => cc.private_fields.extend(fields),
            "public" => cc.public |= yes,
            "immutable" => cc.immutable |= yes,
            "must-understand" => cc.must_understand |= yes,
            _ => {}
        }
    }
    Some(cc)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::freshness::CDN_CACHE_CONTROL;

    fn cdn(lines: &[&'static str]) -> Option<CacheControl> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(CDN_CACHE_CONTROL, HeaderValue::from_static(line));
        }
        parse(&headers, &CDN_CACHE_CONTROL)
    }

    #[test]
    fn a_valid_dictionary_maps_to_the_directives() {
        let cc = cdn(&["max-age=600, s-maxage=60;x=1, stale-if-error=30, foobar"]).unwrap();
        assert_eq!(cc.max_age, Some(600));
        assert_eq!(cc.s_maxage, Some(60), "parameters are ignored");
        assert_eq!(cc.stale_if_error, Some(30));
        assert!(cc.targeted);
        let cc = cdn(&["max-age=999999999999999", "private=\"x-user, x-id\""]).unwrap();
        assert_eq!(cc.max_age, Some(999_999_999_999_999));
        assert!(!cc.private, "qualified");
        assert_eq!(cc.private_fields.len(), 2);
        let cc = cdn(&["no-store, must-revalidate, no-cache, public, immutable"]).unwrap();
        assert!(cc.no_store && cc.must_revalidate && cc.no_cache && cc.public && cc.immutable);
    }

    #[test]
    fn an_invalid_or_empty_field_is_ignored_as_a_whole() {
        for lines in [
            &["max-age=10000, &&&&&"][..],
            &["MaX-aGe=3600"],
            &["max-age =100"],
            &["max-age= 100"],
            &["max-age=1,"],
            &["max-age=1", ""],
            &[""],
            &["max-age=1000000000000000"],
        ] {
            assert_eq!(cdn(lines), None, "{lines:?}");
        }
        assert_eq!(cdn(&[]), None, "absent");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_read_the_restrictive_way() {
        for value in [
            "max-age=\"10000\"",
            "max-age=1.5",
            "max-age=-1",
            "max-age=ten",
            "max-age=?1",
            "max-age=(1 2)",
        ] {
            let cc = cdn(&[value]).unwrap_or_else(|| panic!("{value} is a valid dictionary"));
            assert_eq!(cc.max_age, None, "{value}: not consumed");
        }
        let cc = cdn(&["no-store=?0, must-revalidate=1, private=5, no-cache=(a)"]).unwrap();
        assert!(cc.no_store && cc.must_revalidate, "restrictive ones hold");
        assert!(
            cc.private && cc.no_cache,
            "unqualified when not a String of fields"
        );
        let cc = cdn(&["public=1, immutable=\"yes\", must-understand=?0"]).unwrap();
        assert!(!cc.public && !cc.immutable && !cc.must_understand);
        let cc = cdn(&["max-age=60, max-age=\"x\""]).unwrap();
        assert_eq!(cc.max_age, None, "the last of duplicates is the one");
    }
}
