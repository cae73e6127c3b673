//! HTTP caching rules in one file: one engine, so storing and serving agree.
//!
//! RFC 9111, 5861 and 9213 as pure functions of headers, a policy and the
//! time: may a response be stored and for how long
//! ([`decide`]), may a stored response answer a request ([`Request`]), and
//! does a conditional request match ([`not_modified`]).
//!
//! Two modes, one engine: a request no policy matches is governed by the
//! implicit [`Policy::rfc`], so only the upstream's headers count; a matched
//! policy sets the TTL, bounded by the upstream unless `override_upstream`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::policy::{MAX_ENTRY_LIFETIME, Policy};

mod age;
pub(crate) mod date;
mod directives;
pub(crate) mod structured;
mod targeted;

/// The targeted field of CDN-class caches (RFC 9213 §3).
pub(crate) const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// Heuristic freshness never exceeds this (RFC 9111 §4.2.2 leaves the cap to us).
const MAX_HEURISTIC: Duration = Duration::from_secs(24 * 3600);

/// Statuses RFC 9110 §15.1 calls heuristically cacheable (206 aside: folio
/// does not store partial content): the same as a policy's default.
pub(crate) const HEURISTIC_STATUSES: [u16; 11] = crate::policy::DEFAULT_CACHE_STATUSES;

/// The directives of all `Cache-Control` lines of a message (request or response).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub(crate) no_store: bool,
    /// Unqualified `no-cache`.
    pub(crate) no_cache: bool,
    /// `no-cache="field, ..."`: those fields may not be reused.
    pub(crate) no_cache_fields: Vec<HeaderName>,
    /// Unqualified `private`.
    pub(crate) private: bool,
    /// `private="field, ..."`: a shared cache must not store those fields.
    pub(crate) private_fields: Vec<HeaderName>,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    pub(crate) immutable: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) stale_while_revalidate: Option<u64>,
    pub(crate) stale_if_error: Option<u64>,
    /// Request: `max-stale` (without a value: any staleness).
    pub(crate) max_stale: Option<u64>,
    pub(crate) min_fresh: Option<u64>,
    pub(crate) only_if_cached: bool,
    /// `must-understand`: stored only if folio knows the status's caching
    /// rules, and then despite `no-store` (RFC 9111 §5.2.2.3).
    pub(crate) must_understand: bool,
    /// Read from a targeted field (RFC 9213): `Expires` does not count.
    pub(crate) targeted: bool,
}

impl CacheControl {
    /// All `Cache-Control` lines of `headers`.
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        Self::parse_field(headers, &header::CACHE_CONTROL)
    }

    /// All lines of `field`; unknown directives are ignored (RFC 9111 §5.2.3).
    pub(crate) fn parse_field(headers: &HeaderMap, field: &HeaderName) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(field) {
            let Ok(text) = value.to_str() else { continue };
            for directive in directives::split(text) {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => (name.trim(), Some(argument.trim())),
                    None => (directive.trim(), None),
                };
                let unquoted = argument.map(directives::unquote);
                // A malformed delta-seconds reads as 0, the safe reading
                // (RFC 9111 §1.2.2); an overflow as the largest value.
                let seconds = || {
                    let text = unquoted.as_deref().unwrap_or("");
                    Some(
                        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                            text.parse::<u64>().unwrap_or(u64::from(u32::MAX))
                        } else {
                            0
                        },
                    )
                };
                let fields = || -> Vec<HeaderName> {
                    unquoted
                        .as_deref()
                        .unwrap_or("")
                        .split(',')
                        .filter_map(|f| HeaderName::from_bytes(f.trim().as_bytes()).ok())
                        .collect()
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" if argument.is_some() => cc.no_cache_fields.extend(fields()),
                    "no-cache" => cc.no_cache = true,
                    "private" if argument.is_some() => cc.private_fields.extend(fields()),
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" => cc.must_revalidate = true,
                    "proxy-revalidate" => cc.proxy_revalidate = true,
                    "immutable" => cc.immutable = true,
                    // A directive given twice counts once, as first given
                    // (RFC 9111 §4.2.1), as the first `Expires` and `Age` do.
                    "max-age" => first(&mut cc.max_age, seconds),
                    "s-maxage" => first(&mut cc.s_maxage, seconds),
                    "stale-while-revalidate" => first(&mut cc.stale_while_revalidate, seconds),
                    "stale-if-error" => first(&mut cc.stale_if_error, seconds),
                    "max-stale" if argument.is_some() => first(&mut cc.max_stale, seconds),
                    "max-stale" => first(&mut cc.max_stale, || Some(u64::MAX)),
                    "min-fresh" => first(&mut cc.min_fresh, seconds),
                    "only-if-cached" => cc.only_if_cached = true,
                    "must-understand" => cc.must_understand = true,
                    _ => {}
                }
            }
        }
        cc
    }

    /// The directives that govern a response for folio: `CDN-Cache-Control`
    /// when folio acts as a CDN-class cache and the field is a valid,
    /// non-empty RFC 8941 Dictionary (RFC 9213 §2.1, §2.2: then
    /// `Cache-Control` and `Expires` are ignored), else `Cache-Control`.
    pub(crate) fn of_response(headers: &HeaderMap, cdn: bool) -> Self {
        if cdn && let Some(targeted) = targeted::parse(headers, &CDN_CACHE_CONTROL) {
            return targeted;
        }
        Self::parse(headers)
    }

    /// A request's directives; `Pragma: no-cache` counts as `no-cache` when
    /// there is no `Cache-Control` (RFC 9111 §5.4).
    pub(crate) fn of_request(headers: &HeaderMap) -> Self {
        let mut cc = Self::parse(headers);
        if !headers.contains_key(header::CACHE_CONTROL)
            && headers.get_all(header::PRAGMA).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
                })
            })
        {
            cc.no_cache = true;
        }
        cc
    }

    /// Shared caches may not serve the response stale (§5.2.2.2, §5.2.2.8;
    /// `s-maxage` implies `proxy-revalidate`, §5.2.2.10).
    fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// Sets `slot` unless an earlier occurrence of its directive did.
fn first(slot: &mut Option<u64>, value: impl FnOnce() -> Option<u64>) {
    if slot.is_none() {
        *slot = value();
    }
}

/// Why a response was not stored; shown in `Cache-Status: detail=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    Status,
    NoStore,
    RequestNoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    /// `Vary` names `X-Forwarded-For`, which folio writes from the client's
    /// address: the key cannot hold what the upstream varied on.
    VaryClientAddress,
    NoLifetime,
    TooLarge,
}

impl NotStored {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status-not-cacheable",
            Self::NoStore => "upstream-no-store",
            Self::RequestNoStore => "request-no-store",
            Self::Private => "upstream-private",
            Self::Authorization => "authorization",
            Self::SetCookie => "set-cookie",
            Self::VaryStar => "vary-star",
            Self::VaryClientAddress => "vary-client-address",
            Self::NoLifetime => "no-lifetime",
            Self::TooLarge => "too-large",
        }
    }
}

/// How long a stored response stays fresh, and its stale windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// Freshness lifetime from the moment of storing, `Age` already counted.
    pub(crate) fresh_for: Duration,
    /// The response's age when stored (RFC 9111 §4.2.3 corrected initial age).
    pub(crate) initial_age: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
}

/// What a stored response may be used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Storage {
    pub(crate) lifetime: Lifetime,
    /// `no-cache`: stored, but validated with the upstream before every use.
    pub(crate) revalidate: bool,
    /// May be served stale for a short grace while the upstream cannot be
    /// reached (refused, reset, timed out), beyond any `stale-if-error`.
    pub(crate) grace: bool,
    /// Never served stale (must-revalidate, proxy-revalidate, s-maxage,
    /// no-cache).
    pub(crate) no_stale: bool,
    /// May answer a request carrying `Authorization` (RFC 9111 §3.5).
    pub(crate) shared_ok: bool,
    /// `immutable` (RFC 8246): while fresh, client reloads do not revalidate.
    pub(crate) immutable: bool,
    /// Header fields not to store (`private="f"`, `no-cache="f"`).
    pub(crate) strip: Vec<HeaderName>,
}

/// What about the request matters to storing its response.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Asked {
    pub(crate) authorization: bool,
    pub(crate) no_store: bool,
    /// When the request went upstream (local clock), for the age calculation.
    pub(crate) at: Option<SystemTime>,
}

/// Decides whether a response may be stored, and how it may be used.
///
/// With a policy TTL, the TTL is bounded by the upstream's `s-maxage` /
/// `max-age` / `Expires`, and the upstream's `no-store` / `private` /
/// `no-cache` hold, unless the policy sets `override_upstream`. Without one
/// (and always for the implicit RFC policy), the upstream's explicit
/// freshness counts, else heuristic freshness where allowed, else a response
/// with a validator is stored for revalidation only.
pub(crate) fn decide(
    policy: &Policy,
    asked: Asked,
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
    cdn: bool,
) -> Result<Storage, NotStored> {
    if asked.no_store {
        return Err(NotStored::RequestNoStore);
    }
    let cc = CacheControl::of_response(headers, cdn);
    let obey = !policy.override_upstream;
    let explicit = explicit_lifetime(&cc, headers, now);
    let heuristic_status = HEURISTIC_STATUSES.contains(&status.as_u16());
    let status_ok = if policy.implicit {
        // Any final status with explicit freshness; heuristically cacheable
        // ones (or `public`) otherwise. Partial and not-modified answers
        // are never stored as such.
        !matches!(status.as_u16(), 100..=199 | 206 | 304)
            && (explicit.is_some() || heuristic_status || cc.public)
    } else {
        policy.cache_statuses.contains(&status)
    };
    if !status_ok || cc.must_understand && !understood(status) {
        return Err(NotStored::Status);
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    let varied_on = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for name in varied_on {
        if name == "*" {
            return Err(NotStored::VaryStar);
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            return Err(NotStored::VaryClientAddress);
        }
    }
    // A cache that knows the status's rules ignores `no-store` beside
    // `must-understand` (the status was checked above).
    if obey && cc.no_store && !cc.must_understand {
        return Err(NotStored::NoStore);
    }
    if obey && cc.private {
        return Err(NotStored::Private);
    }
    let shared_ok = cc.public || cc.s_maxage.is_some() || cc.must_revalidate;
    if asked.authorization && !shared_ok && !policy.private {
        return Err(NotStored::Authorization);
    }
    let initial_age = age::corrected_initial_age(headers, asked.at.unwrap_or(now), now);
    let upstream = explicit.or_else(|| {
        // Heuristics need Last-Modified and a status (or `public`) that allows them.
        (heuristic_status || cc.public)
            .then(|| heuristic_lifetime(headers, now))
            .flatten()
    });
    let has_validator =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    let lifetime = match (policy.ttl, upstream) {
        (Some(ttl), Some(upstream)) if obey => ttl.min(upstream),
        (Some(ttl), _) => ttl,
        (None, Some(upstream)) => upstream,
        // Storable for revalidation only: stale from the start.
        (None, None) if has_validator => Duration::ZERO,
        (None, None) => return Err(NotStored::NoLifetime),
    };
    let fresh_for = lifetime.saturating_sub(initial_age).min(MAX_ENTRY_LIFETIME);
    if fresh_for.is_zero() && !has_validator {
        return Err(NotStored::NoLifetime);
    }
    // `no-cache` forbids use without a successful validation: never stale,
    // not even while the entry would otherwise be fresh (RFC 9111 §5.2.2.4).
    let no_stale = obey && (cc.forbids_stale() || cc.no_cache);
    let room = MAX_ENTRY_LIFETIME - fresh_for;
    let window = |policy_window: Duration, upstream_window: Option<u64>| {
        if no_stale {
            Duration::ZERO
        } else if policy_window.is_zero() {
            upstream_window
                .map_or(Duration::ZERO, Duration::from_secs)
                .min(room)
        } else {
            policy_window.min(room)
        }
    };
    let mut strip = cc.private_fields.clone();
    strip.extend(cc.no_cache_fields.iter().cloned());
    Ok(Storage {
        lifetime: Lifetime {
            fresh_for,
            initial_age,
            stale_while_revalidate: window(
                policy.stale_while_revalidate,
                cc.stale_while_revalidate,
            ),
            stale_if_error: match policy.stale_if_error {
                Some(_) if no_stale => Duration::ZERO,
                Some(window) => window.min(room),
                None => window(Duration::ZERO, cc.stale_if_error),
            },
        },
        // RFC 9111 §4.2.4: a cache that cannot reach the origin may serve
        // stale, unless the response forbids it or the policy said 0.
        grace: !no_stale && policy.stale_if_error != Some(Duration::ZERO),
        revalidate: obey && cc.no_cache,
        no_stale,
        shared_ok,
        immutable: cc.immutable,
        strip,
    })
}

/// Final statuses whose caching rules folio knows, for `must-understand`:
/// those RFC 9110 §15 defines (a 206 is stored as a part, a 304 never as
/// such). Others (`299`, `599`, …) are not stored with `must-understand`.
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// `s-maxage`, else `max-age`, else `Expires` − `Date` (RFC 9111 §4.2.1);
/// an `Expires` that is not a valid date means already expired. A
/// targeted field's directives stand alone: `Expires` is ignored beside
/// them (RFC 9213 §2.2).
fn explicit_lifetime(cc: &CacheControl, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(seconds) = cc.s_maxage.or(cc.max_age) {
        return Some(Duration::from_secs(seconds));
    }
    if cc.targeted {
        return None;
    }
    let expires = headers.get(header::EXPIRES)?;
    let Some(expires) = http_date(expires, now) else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(header::DATE)
        .and_then(|date| http_date(date, now))
        .unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// 10% of the time since `Last-Modified` (RFC 9111 §4.2.2), capped.
fn heuristic_lifetime(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let modified = headers
        .get(header::LAST_MODIFIED)
        .and_then(|modified| http_date(modified, now))?;
    let date = headers
        .get(header::DATE)
        .and_then(|date| http_date(date, now))
        .unwrap_or(now);
    let age = date.duration_since(modified).ok()?;
    Some((age / 10).min(MAX_HEURISTIC))
}

/// A header's HTTP-date, in any of the forms RFC 9110 §5.6.7 has recipients
/// accept; `now` places two-digit years.
fn http_date(value: &HeaderValue, now: SystemTime) -> Option<SystemTime> {
    date::parse(value.to_str().ok()?, now)
}

/// RFC 9110 §6.6.1: a response received without a valid `Date` is given
/// the time it was received, so what is stored, and every answer built
/// from it, carries the same `Date`.
pub(crate) fn date_received(headers: &mut HeaderMap, received: SystemTime) {
    let valid = headers
        .get(header::DATE)
        .is_some_and(|date| http_date(date, received).is_some());
    if !valid && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(received)) {
        headers.insert(header::DATE, value);
    }
}

/// What a request's directives allow of a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Serve it as is.
    Fresh,
    /// Serve it stale: the client accepts it (`max-stale`).
    StaleAccepted,
    /// Stale, within `stale-while-revalidate`: serve, refresh behind.
    StaleWhileRevalidate,
    /// Ask the upstream first (conditionally when the entry has validators);
    /// serve stale only if the upstream fails within `stale-if-error`.
    Revalidate,
}

/// Facts about a stored response, for [`Request::allows`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored {
    pub(crate) age: Duration,
    /// Freshness lifetime (fresh while `age` is below it).
    pub(crate) lifetime: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) revalidate: bool,
    pub(crate) no_stale: bool,
    pub(crate) immutable: bool,
}

/// A request's cache directives.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    pub(crate) cc: CacheControl,
}

impl Request {
    pub(crate) fn new(headers: &HeaderMap) -> Self {
        Self {
            cc: CacheControl::of_request(headers),
        }
    }

    /// How a stored response may answer this request (RFC 9111 §4.2, §5.2.1).
    pub(crate) fn allows(&self, stored: &Stored) -> Use {
        let cc = &self.cc;
        // RFC 8246: a fresh immutable response answers reloads as it is.
        if stored.immutable && !stored.revalidate && stored.age < stored.lifetime {
            return Use::Fresh;
        }
        if cc.no_cache || stored.revalidate {
            return Use::Revalidate;
        }
        let mut lifetime = stored.lifetime;
        if let Some(max_age) = cc.max_age {
            lifetime = lifetime.min(Duration::from_secs(max_age));
        }
        let remaining = lifetime.saturating_sub(stored.age);
        let min_fresh = Duration::from_secs(cc.min_fresh.unwrap_or(0));
        if stored.age < lifetime && (min_fresh.is_zero() || remaining >= min_fresh) {
            return Use::Fresh;
        }
        if stored.no_stale {
            return Use::Revalidate;
        }
        let staleness = stored.age.saturating_sub(stored.lifetime);
        if let Some(max_stale) = cc.max_stale
            && staleness <= Duration::from_secs(max_stale)
            && cc
                .max_age
                .is_none_or(|max_age| stored.age <= Duration::from_secs(max_age))
        {
            return Use::StaleAccepted;
        }
        // The client's own limits (max-age, min-fresh) rule out serving stale
        // without asking; otherwise stale-while-revalidate may.
        if cc.max_age.is_none()
            && cc.min_fresh.is_none()
            && staleness < stored.stale_while_revalidate
        {
            return Use::StaleWhileRevalidate;
        }
        Use::Revalidate
    }
}

/// A strong ETag from the body's SHA-256 (first 128 bits).
pub(crate) fn etag_for(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    // 64 bits tell one version of a resource from the next; each byte more
    // is a byte more in every stored entry and every answer.
    let tag = format!("\"{}\"", hex::encode(&digest[..8]));
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether a conditional GET/HEAD is answered with 304 by a stored response
/// with this ETag and these headers (RFC 9110 §13.2.2: `If-None-Match` with
/// weak comparison; `If-Modified-Since` only when there is no
/// `If-None-Match`, against `Last-Modified`, or without one the stored
/// `Date`, RFC 9111 §4.3.2).
pub(crate) fn not_modified(
    request: &HeaderMap,
    etag: &HeaderValue,
    stored: &HeaderMap,
    now: SystemTime,
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
    let Some(since) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|since| http_date(since, now))
    else {
        return false;
    };
    let modified = stored
        .get(header::LAST_MODIFIED)
        .or_else(|| stored.get(header::DATE))
        .and_then(|modified| http_date(modified, now));
    modified.is_some_and(|modified| modified <= since)
}

/// The opaque part of an entity tag: weak comparison ignores `W/`.
fn opaque(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests;
