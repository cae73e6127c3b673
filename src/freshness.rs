//! HTTP caching rules (RFC 9111) as pure functions of headers, a policy and
//! `now`: may a response be stored, for how long, and does a conditional
//! request match a stored entry.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::invalidation::MAX_ENTRY_LIFETIME;
use crate::policy::Policy;

/// The directives of all `Cache-Control` lines of a message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) stale_while_revalidate: Option<u64>,
    pub(crate) stale_if_error: Option<u64>,
}

impl CacheControl {
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in split_outside_quotes(text) {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                // A malformed delta-seconds counts as 0: the safe reading (RFC 9111 §1.2.2).
                let seconds = || Some(argument.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0));
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    "max-age" => cc.max_age = seconds(),
                    "s-maxage" => cc.s_maxage = seconds(),
                    "stale-while-revalidate" => cc.stale_while_revalidate = seconds(),
                    "stale-if-error" => cc.stale_if_error = seconds(),
                    _ => {} // unknown directives are ignored (RFC 9111 §5.2.3)
                }
            }
        }
        cc
    }
}

fn split_outside_quotes(text: &str) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    text.split(move |c| {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        c == ',' && !in_quotes
    })
    .filter(|d| !d.trim().is_empty())
}

/// Why a response was not stored; shown in `Cache-Status: detail=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    Status,
    NoStore,
    NoCache,
    Private,
    SetCookie,
    VaryStar,
    NoLifetime,
    TooLarge,
}

impl NotStored {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status-not-cacheable",
            Self::NoStore => "upstream-no-store",
            Self::NoCache => "upstream-no-cache",
            Self::Private => "upstream-private",
            Self::SetCookie => "set-cookie",
            Self::VaryStar => "vary-star",
            Self::NoLifetime => "no-lifetime",
            Self::TooLarge => "too-large",
        }
    }
}

/// How long a stored response stays fresh, and its stale windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub(crate) fresh_for: Duration,
    pub(crate) initial_age: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
}

/// Decides whether a response may be stored under `policy`, and for how long.
///
/// The policy's TTL is bounded by what the upstream says (`no-store`,
/// `private`, `no-cache`, `s-maxage`, `max-age`, `Expires`) unless the policy
/// sets `override_upstream`. Without a policy TTL, the upstream's freshness
/// is used as is.
pub(crate) fn lifetime(
    policy: &Policy,
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<Lifetime, NotStored> {
    if !policy.cache_statuses.contains(&status) {
        return Err(NotStored::Status);
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    if headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|f| f.trim() == "*"))
    }) {
        return Err(NotStored::VaryStar);
    }
    let cc = CacheControl::parse(headers);
    let obey = !policy.override_upstream;
    if obey && cc.no_store {
        return Err(NotStored::NoStore);
    }
    if obey && cc.private {
        return Err(NotStored::Private);
    }
    if obey && cc.no_cache {
        return Err(NotStored::NoCache);
    }
    let initial_age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let upstream = upstream_lifetime(&cc, headers).map(|d| d.saturating_sub(initial_age));
    let fresh_for = match (policy.ttl, upstream) {
        (Some(ttl), Some(upstream)) if obey => ttl.min(upstream),
        (Some(ttl), _) => ttl,
        (None, Some(upstream)) => upstream,
        (None, None) => return Err(NotStored::NoLifetime),
    };
    if fresh_for.is_zero() {
        return Err(NotStored::NoLifetime);
    }
    // must-revalidate forbids serving stale (RFC 9111 §5.2.2.2).
    let may_serve_stale = !(obey && cc.must_revalidate);
    let window = |policy_window: Duration, upstream_window: Option<u64>| {
        if !may_serve_stale {
            Duration::ZERO
        } else if policy_window.is_zero() {
            upstream_window.map_or(Duration::ZERO, Duration::from_secs)
        } else {
            policy_window
        }
    };
    let _ = now;
    // No entry outlives the purge marks that could cover it.
    let fresh_for = fresh_for.min(MAX_ENTRY_LIFETIME);
    let room = MAX_ENTRY_LIFETIME - fresh_for;
    Ok(Lifetime {
        fresh_for,
        initial_age,
        stale_while_revalidate: window(policy.stale_while_revalidate, cc.stale_while_revalidate)
            .min(room),
        stale_if_error: window(policy.stale_if_error, cc.stale_if_error).min(room),
    })
}

/// The upstream's own freshness lifetime: `s-maxage`, else `max-age`, else
/// `Expires` − `Date` (an unparsable `Expires` means already stale).
fn upstream_lifetime(cc: &CacheControl, headers: &HeaderMap) -> Option<Duration> {
    if let Some(seconds) = cc.s_maxage.or(cc.max_age) {
        return Some(Duration::from_secs(seconds));
    }
    let expires = headers.get(header::EXPIRES)?;
    let Some(expires) = http_date(expires) else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(header::DATE)
        .and_then(http_date)
        .unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// A strong ETag from the body's SHA-256 (first 128 bits).
pub(crate) fn etag_for(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let tag = format!("\"{}\"", hex::encode(&digest[..16]));
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether a conditional GET/HEAD is answered with 304 by a stored response
/// with this ETag and Last-Modified (RFC 9110 §13.2.2: `If-None-Match` with
/// weak comparison; `If-Modified-Since` only when there is no `If-None-Match`).
pub(crate) fn not_modified(
    request: &HeaderMap,
    etag: &HeaderValue,
    last_modified: Option<&HeaderValue>,
) -> bool {
    let mut saw_if_none_match = false;
    for value in request.get_all(header::IF_NONE_MATCH) {
        saw_if_none_match = true;
        let Ok(text) = value.to_str() else { continue };
        if text.trim() == "*" {
            return true;
        }
        let ours = opaque(etag.to_str().unwrap_or(""));
        if text.split(',').any(|candidate| opaque(candidate) == ours) {
            return true;
        }
    }
    if saw_if_none_match {
        return false;
    }
    let since = request.get(header::IF_MODIFIED_SINCE).and_then(http_date);
    let modified = last_modified.and_then(http_date);
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}

/// The opaque part of an entity tag: weak comparison ignores `W/`.
fn opaque(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn policy(fields: &str) -> std::sync::Arc<Policy> {
        let set = PolicySet::from_yaml("f.yaml", &format!("\"/p\":\n{fields}")).unwrap();
        std::sync::Arc::clone(set.match_request(&http::Method::GET, "/p").unwrap().policy)
    }

    fn ttl(fields: &str, response: &[(&'static str, &'static str)]) -> Result<u64, NotStored> {
        lifetime(
            &policy(fields),
            StatusCode::OK,
            &headers(response),
            SystemTime::now(),
        )
        .map(|l| l.fresh_for.as_secs())
    }

    #[test]
    fn cache_control_parsing() {
        let cc = CacheControl::parse(&headers(&[
            ("cache-control", "Public, max-age=60, s-maxage=\"120\""),
            (
                "cache-control",
                "x-unknown=\"a,b\", stale-if-error=30, max-age=oops",
            ),
        ]));
        assert!(cc.public);
        assert_eq!(cc.s_maxage, Some(120));
        assert_eq!(cc.max_age, Some(0), "a malformed value is read as 0");
        assert_eq!(cc.stale_if_error, Some(30));
    }

    #[test]
    fn policy_ttl_is_bounded_by_the_upstream() {
        assert_eq!(ttl("  cache_ttl: 1h\n", &[]), Ok(3600));
        assert_eq!(
            ttl("  cache_ttl: 1h\n", &[("cache-control", "max-age=60")]),
            Ok(60)
        );
        assert_eq!(
            ttl(
                "  cache_ttl: 1h\n",
                &[("cache-control", "max-age=600, s-maxage=30")]
            ),
            Ok(30)
        );
        assert_eq!(
            ttl(
                "  cache_ttl: 1h\n",
                &[("cache-control", "max-age=60"), ("age", "50")]
            ),
            Ok(10)
        );
        assert_eq!(
            ttl("  cache_ttl: 1h\n", &[("cache-control", "no-store")]),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            ttl("  cache_ttl: 1h\n", &[("cache-control", "private")]),
            Err(NotStored::Private)
        );
        assert_eq!(
            ttl("  cache_ttl: 1h\n", &[("set-cookie", "a=b")]),
            Err(NotStored::SetCookie)
        );
        assert_eq!(
            ttl("  cache_ttl: 1h\n", &[("vary", "Accept, *")]),
            Err(NotStored::VaryStar)
        );
    }

    #[test]
    fn override_upstream_keeps_the_policy_ttl() {
        let fields = "  cache_ttl: 1h\n  override_upstream: true\n";
        assert_eq!(
            ttl(fields, &[("cache-control", "private, max-age=5")]),
            Ok(3600)
        );
        assert_eq!(ttl(fields, &[("cache-control", "no-store")]), Ok(3600));
    }

    #[test]
    fn without_policy_ttl_the_upstream_decides() {
        let fields = "  cache_statuses: [200]\n";
        assert_eq!(ttl(fields, &[]), Err(NotStored::NoLifetime));
        assert_eq!(ttl(fields, &[("cache-control", "max-age=42")]), Ok(42));
        assert_eq!(
            ttl(
                fields,
                &[
                    ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                    ("expires", "Sun, 06 Nov 1994 08:50:37 GMT")
                ]
            ),
            Ok(60)
        );
        assert_eq!(
            ttl(fields, &[("expires", "not a date")]),
            Err(NotStored::NoLifetime)
        );
    }

    #[test]
    fn statuses_outside_the_policy_list_are_not_stored() {
        let p = policy("  cache_ttl: 1m\n");
        let now = SystemTime::now();
        assert!(lifetime(&p, StatusCode::NOT_FOUND, &HeaderMap::new(), now).is_ok());
        assert_eq!(
            lifetime(
                &p,
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                now
            ),
            Err(NotStored::Status)
        );
    }

    #[test]
    fn stale_windows_from_policy_or_upstream_and_must_revalidate() {
        let p = policy("  cache_ttl: 1m\n  stale_if_error: 5m\n");
        let now = SystemTime::now();
        let l = lifetime(
            &p,
            StatusCode::OK,
            &headers(&[("cache-control", "stale-while-revalidate=7")]),
            now,
        )
        .unwrap();
        assert_eq!(l.stale_if_error, Duration::from_secs(300));
        assert_eq!(l.stale_while_revalidate, Duration::from_secs(7));
        let l = lifetime(
            &p,
            StatusCode::OK,
            &headers(&[("cache-control", "must-revalidate")]),
            now,
        )
        .unwrap();
        assert_eq!(l.stale_if_error, Duration::ZERO);
    }

    #[test]
    fn conditional_requests() {
        let etag = HeaderValue::from_static("\"v1\"");
        let lm = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(not_modified(
            &headers(&[("if-none-match", "\"v1\"")]),
            &etag,
            None
        ));
        assert!(not_modified(
            &headers(&[("if-none-match", "\"x\", W/\"v1\"")]),
            &etag,
            None
        ));
        assert!(not_modified(
            &headers(&[("if-none-match", "*")]),
            &etag,
            None
        ));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"v2\"")]),
            &etag,
            None
        ));
        assert!(not_modified(
            &headers(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &etag,
            Some(&lm)
        ));
        assert!(!not_modified(
            &headers(&[("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]),
            &etag,
            Some(&lm)
        ));
        assert!(
            !not_modified(
                &headers(&[
                    ("if-none-match", "\"v2\""),
                    ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")
                ]),
                &etag,
                Some(&lm)
            ),
            "If-Modified-Since is ignored when If-None-Match is present"
        );
        assert!(!not_modified(&HeaderMap::new(), &etag, Some(&lm)));
    }

    #[test]
    fn body_etags_are_strong_and_stable() {
        assert_eq!(etag_for(b"abc"), etag_for(b"abc"));
        assert_ne!(etag_for(b"abc"), etag_for(b"abd"));
        assert!(etag_for(b"").to_str().unwrap().starts_with('"'));
    }
}
