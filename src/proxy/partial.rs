//! Range requests the whole stored response could not answer (RFC 9111
//! §3.3, §3.4):
//!
//! 1. a stored part (a `206` kept under the key's part key, see
//!    [`CacheKey::part`]) answers the ranges it covers while fresh;
//! 2. otherwise the range goes to the upstream as asked, and a `206` for
//!    one range of a known length is stored as the part it is, if the
//!    freshness rules allow storing it as a (whole) `200`;
//! 3. a new part and a stored one of the same representation (the same
//!    strong ETag, the same length) that overlap or touch are joined; a join
//!    that covers the whole representation is stored as the whole response,
//!    which then answers every request, ranged or not.
//!
//! Parts are kept apart from whole responses (their own key), one per key,
//! bounded by the policy's `max_body`, and checked like any entry: the
//! tenant, purges (a purge of the key covers its part), `Authorization`,
//! and the request's own directives. A response with `Vary` is not stored
//! as a part.
//!
//! [`CacheKey::part`]: crate::key::CacheKey::part

use std::time::SystemTime;

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};

use super::State;
use super::fetch::make_entry;
use super::fill::{Fill, store_unless_purged};
use super::lookup::stored_facts;
use super::pass::forward_range;
use super::respond::{answer_headers, error_response, if_range_holds};
use crate::body::Body;
use crate::cache::Layer;
use crate::cache::entry::{Entry, EntryParts};
use crate::error::ProxyError;
use crate::freshness::{self, Asked, Use};
use crate::invalidation::Verdict;
use crate::outcome::{BypassReason, Forward, Served};
use crate::policy::Policy;
use crate::ranges::{self, Part};
use crate::upstream::{self, Collected};

/// Answers a GET with `Range` from a stored part, or from the upstream
/// (storing what it sends when it is one part).
pub(super) async fn serve(
    state: &State,
    parts: &Parts,
    fill: Fill,
    asked: &freshness::Request,
    forward: Forward,
) -> Response<Body> {
    let range = parts
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ranges::asked);
    let Some(range) = range else {
        // Several ranges, or none folio reads: the upstream decides.
        let headers = upstream::forward_headers(parts.headers.clone(), &parts.uri, fill.client);
        return forward_range(state, parts, headers).await;
    };
    let now = SystemTime::now();
    if let Some((entry, layer)) = usable_part(state, parts, &fill, asked, now).await
        && let Some(answer) = answer(&fill.policy, &entry, range, Served::Hit(layer), now)
    {
        return answer;
    }
    if asked.cc.only_if_cached {
        return error_response(&ProxyError::NotCached, Served::OnlyIfCached);
    }
    fetch(state, parts, &fill, forward).await
}

/// The stored part of the fill's key, if it may answer this request as a
/// fresh hit would.
async fn usable_part(
    state: &State,
    parts: &Parts,
    fill: &Fill,
    asked: &freshness::Request,
    now: SystemTime,
) -> Option<(Entry, Layer)> {
    // Other conditionals ask what only the whole representation can say.
    let conditional = [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|name| parts.headers.contains_key(name));
    if conditional {
        return None;
    }
    let (entry, layer) = state.cache.lookup(&fill.key.part(), now).await?;
    let usable = entry.status() == StatusCode::PARTIAL_CONTENT
        && *entry.tenant() == *fill.tenant
        && entry.path() == &*fill.path
        // Checked against the whole response's key: purging it purges its part.
        && state.invalidator.verdict(&fill.key, &entry) == Verdict::Valid
        && (!fill.authorization || entry.shared_ok())
        && if_range_holds(&parts.headers, &entry)
        && asked.allows(&stored_facts(&entry, now)) == Use::Fresh;
    usable.then_some((entry, layer))
}

/// A `206` (or `416`) for `range` from a stored part; `None` when the part
/// does not hold all of the range.
fn answer(
    policy: &Policy,
    entry: &Entry,
    range: ranges::Asked,
    served: Served,
    now: SystemTime,
) -> Option<Response<Body>> {
    let part = Part::of(entry.header(&header::CONTENT_RANGE)?.to_str().ok()?)?;
    // An entry read from Redis is checked, not trusted: its body must be
    // the part it says it is, or slicing it could fail.
    if u64::try_from(entry.body_len()).ok() != Some(part.len()) {
        return None;
    }
    let (status, content_range, body) = match range.resolve(part.complete) {
        Ok((first, last)) => {
            let within = part.slice(first, last)?;
            let bytes = entry.body().slice(within);
            let content_range = format!("bytes {first}-{last}/{}", part.complete);
            (
                StatusCode::PARTIAL_CONTENT,
                content_range,
                Body::full(bytes),
            )
        }
        // The part knows the whole length: a range beyond it never fits.
        Err(ranges::Unsatisfiable) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("bytes */{}", part.complete),
            Body::Empty,
        ),
    };
    let (age, ttl) = (entry.age(now).as_secs(), entry.ttl_secs(now));
    let mut headers = answer_headers(policy, entry, served, age, ttl);
    headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&content_range).ok()?,
    );
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        headers.remove(header::CONTENT_TYPE);
    }
    // A computed ETag would be the part's, not the representation's.
    if entry.upstream_etag() {
        headers.insert(header::ETAG, entry.etag());
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}

/// Asks the upstream for the range as the client asked it, and stores the
/// answer when it is one part that may be stored.
async fn fetch(state: &State, parts: &Parts, fill: &Fill, forward: Forward) -> Response<Body> {
    let not_stored = |detail| Served::Miss {
        forward,
        stored: false,
        collapsed: false,
        revalidated: false,
        detail: Some(detail),
    };
    let headers = upstream::forward_headers(parts.headers.clone(), &parts.uri, fill.client);
    let request = state.upstream.request(
        Method::GET,
        parts.uri.path_and_query(),
        headers,
        Body::Empty,
    );
    let requested_at = state.invalidator.now();
    let asked = Asked {
        authorization: fill.authorization,
        no_store: fill.no_store,
        at: Some(SystemTime::now()),
    };
    let response = match request {
        Ok(request) => state.upstream.send(request).await,
        Err(error) => Err(error),
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => return error_response(&error, not_stored(error.code())),
    };
    let now = SystemTime::now();
    let (mut head, body) = response.into_parts();
    upstream::strip_hop_by_hop(&mut head.headers);
    freshness::date_received(&mut head.headers, now);
    let part = head
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Part::of)
        .filter(|_| head.status == StatusCode::PARTIAL_CONTENT);
    let Some(part) = part else {
        // A whole answer, a multipart one, a 416, an error: passed on.
        return passed_on(
            head,
            state.upstream.stream(None, body),
            Served::Bypass(BypassReason::Range),
        );
    };
    // RFC 9111 §3.3: a 206 may be stored as the incomplete 200 it is part of.
    let storage = match freshness::decide(
        &fill.policy,
        asked,
        StatusCode::OK,
        &head.headers,
        now,
        state.cdn,
    ) {
        Ok(storage) => storage,
        Err(reason) => {
            return passed_on(
                head,
                state.upstream.stream(None, body),
                not_stored(reason.as_str()),
            );
        }
    };
    let max_body = fill.policy.max_body;
    if usize::try_from(part.len()).map_or(true, |len| len > max_body) {
        return passed_on(
            head,
            state.upstream.stream(None, body),
            not_stored("too-large"),
        );
    }
    let collected = match upstream::collect(body, max_body, state.upstream.timeout()).await {
        Ok(collected) => collected,
        Err(error) => {
            state.upstream.body_failed();
            return error_response(&error, not_stored(error.code()));
        }
    };
    let bytes = match collected {
        Collected::Complete(bytes) if u64::try_from(bytes.len()).ok() == Some(part.len()) => bytes,
        Collected::Complete(bytes) => {
            return passed_on(head, Body::full(bytes), not_stored("bad-content-range"));
        }
        Collected::TooLarge { prefix, rest } => {
            let body = state.upstream.stream(Some(prefix), rest);
            return passed_on(head, body, not_stored("too-large"));
        }
    };
    let status = head.status;
    let entry = make_entry(
        fill,
        status,
        head.headers,
        bytes,
        &storage,
        requested_at,
        now,
    );
    if !entry.vary.is_empty() {
        return passed_on_parts(entry, not_stored("vary"));
    }
    let Some(sealed) = entry.seal() else {
        return passed_on_parts(entry, not_stored("too-large"));
    };
    let stored = store(state, fill, &entry, &sealed, part, now).await;
    let served = Served::Miss {
        forward,
        stored,
        collapsed: false,
        revalidated: false,
        detail: (!stored).then_some("purged-during-fill"),
    };
    let whole_part = ranges::Asked::From {
        first: part.first,
        last: Some(part.last),
    };
    match answer(&fill.policy, &sealed, whole_part, served, now) {
        Some(response) => response,
        None => passed_on_parts(entry, served),
    }
}

/// Stores a new part, joined with the stored one when they are parts of
/// one representation; a join that is the whole representation is stored
/// as the whole response. Whether anything was stored (not when a purge
/// came while it was fetched).
async fn store(
    state: &State,
    fill: &Fill,
    new: &EntryParts,
    sealed: &Entry,
    part: Part,
    now: SystemTime,
) -> bool {
    if state.invalidator.verdict(&fill.key, sealed) != Verdict::Valid {
        return false;
    }
    let part_key = fill.key.part();
    let joined = match state.cache.lookup(&part_key, now).await {
        Some((old, _))
            if state.invalidator.verdict(&fill.key, &old) == Verdict::Valid
                && same_representation(fill, &old, sealed) =>
        {
            old.header(&header::CONTENT_RANGE)
                .and_then(|v| Part::of(v.to_str().ok()?))
                .and_then(|old_part| ranges::join((old_part, &old.body()), (part, &new.body)))
                .filter(|(_, body)| body.len() <= fill.policy.max_body)
        }
        _ => None,
    };
    let Some((joined, body)) = joined else {
        state.cache.store(part_key, sealed.clone(), now);
        return true;
    };
    let mut combined = new.clone();
    combined.body = body;
    if joined.is_complete() {
        // RFC 9110 §15.3.7.3: processed as the complete 200 it now is.
        combined.status = StatusCode::OK;
        combined.headers.remove(header::CONTENT_RANGE);
        if let Some(whole) = combined.seal()
            && store_unless_purged(state, fill, &whole, now)
        {
            state.cache.remove_local(&part_key);
            return true;
        }
    } else if let Ok(value) = HeaderValue::from_str(&joined.header()) {
        combined.headers.insert(header::CONTENT_RANGE, value);
        if let Some(bigger) = combined.seal() {
            state.cache.store(part_key, bigger, now);
            return true;
        }
    }
    state.cache.store(part_key, sealed.clone(), now);
    true
}

/// Whether a stored part and a new one are of one representation: the
/// same tenant, the same strong ETag (RFC 9111 §3.4), the stored one older.
fn same_representation(fill: &Fill, old: &Entry, new: &Entry) -> bool {
    old.status() == StatusCode::PARTIAL_CONTENT
        && *old.tenant() == *fill.tenant
        && old.path() == &*fill.path
        && old.upstream_etag()
        && new.upstream_etag()
        && !new.etag_bytes().starts_with(b"W/")
        && old.etag_bytes() == new.etag_bytes()
        && old.requested_at_us() <= new.requested_at_us()
}

/// The upstream's answer, passed on as it came.
fn passed_on(mut head: http::response::Parts, body: Body, served: Served) -> Response<Body> {
    let status = head.status.as_u16();
    upstream::append_via(&mut head.headers);
    served.annotate(&mut head.headers, None, Some(status));
    Response::from_parts(head, body)
}

/// A part not kept, answered as the upstream sent it.
fn passed_on_parts(entry: EntryParts, served: Served) -> Response<Body> {
    let mut headers = entry.headers;
    if entry.upstream_etag {
        headers.insert(header::ETAG, entry.etag);
    }
    upstream::append_via(&mut headers);
    served.annotate(&mut headers, None, Some(entry.status.as_u16()));
    let mut response = Response::new(Body::full(entry.body));
    *response.status_mut() = entry.status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::cache::entry::tests::sample_parts;

    fn part_entry(body: &'static [u8], content_range: &'static str) -> Entry {
        let mut parts = sample_parts(body);
        parts.status = StatusCode::PARTIAL_CONTENT;
        parts.headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static(content_range),
        );
        parts.seal().unwrap_or_else(|| panic!("seals"))
    }

    #[tokio::test]
    async fn a_part_answers_the_ranges_within_it() {
        let entry = part_entry(b"456789", "bytes 4-9/10");
        let asked = ranges::asked("bytes=6-7").unwrap_or_else(|| panic!("a range"));
        let now = SystemTime::now();
        let served = Served::Hit(Layer::L1);
        let response =
            answer(&Policy::rfc(), &entry, asked, served, now).unwrap_or_else(|| panic!("covered"));
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 6-7/10");
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        assert_eq!(body.ok().as_deref(), Some(&b"67"[..]));
        let outside = ranges::asked("bytes=2-5").unwrap_or_else(|| panic!("a range"));
        assert!(answer(&Policy::rfc(), &entry, outside, served, now).is_none());
    }

    #[test]
    fn a_part_whose_body_is_not_its_range_answers_nothing() {
        // As an entry altered in Redis could be: slicing must not fail.
        let entry = part_entry(b"45", "bytes 4-9/10");
        let asked = ranges::asked("bytes=6-9").unwrap_or_else(|| panic!("a range"));
        let served = Served::Hit(Layer::L2);
        assert!(answer(&Policy::rfc(), &entry, asked, served, SystemTime::now()).is_none());
    }
}
