//! Asking the upstream on behalf of the cache (a GET without the client's
//! conditionals, with a stale entry's validators), and making the entry to
//! store from its answer (or from a 304 and the stale entry).

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::State;
use super::fill::Fill;
use crate::body::Body;
use crate::cache::entry::{Entry, EntryParts};
use crate::compression::{self, Coding};
use crate::error::ProxyError;
use crate::freshness::{self, Asked, NotStored, Storage};
use crate::outcome::{CACHE_STATUS, X_CACHE, X_CACHE_LAYER};
use crate::policy::DEFAULT_MAX_BODY;
use crate::upstream::{self, Collected};

/// The result of asking the upstream on behalf of the cache.
pub(super) enum Fetched {
    /// Stored-worthy: an entry every waiting request may get. `true` when
    /// a stale entry was revalidated (304) rather than fetched anew.
    Entry(Entry, bool),
    /// Not to be stored; the response goes to this client only.
    Response(Response<Body>, NotStored),
}

/// Asks the upstream for the cache: a GET (also for HEAD), without the
/// client's conditionals, but with the stale entry's validators.
pub(super) async fn fetch(state: &State, fill: &Fill) -> Result<Fetched, ProxyError> {
    let first_asked = tokio::time::Instant::now();
    fetch_with(state, fill, fill.stale.as_ref(), first_asked).await
}

/// `fetch`, with `stale`'s validators, for a fill that first asked the
/// upstream at `first_asked`.
async fn fetch_with(
    state: &State,
    fill: &Fill,
    stale: Option<&Entry>,
    first_asked: tokio::time::Instant,
) -> Result<Fetched, ProxyError> {
    let mut headers = upstream::forward_headers(fill.headers.clone(), &fill.uri, fill.client);
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::RANGE,
    ] {
        headers.remove(name);
    }
    if let Some(stale) = stale.filter(|_| !fill.head) {
        if stale.upstream_etag() {
            headers.insert(header::IF_NONE_MATCH, stale.etag());
        }
        if let Some(modified) = stale.header(&header::LAST_MODIFIED) {
            headers.insert(header::IF_MODIFIED_SINCE, modified);
        }
    }
    let method = if fill.head { Method::HEAD } else { Method::GET };
    let request =
        state
            .upstream
            .request(method, fill.uri.path_and_query(), headers, Body::Empty)?;
    let requested_at = state.invalidator.now();
    let asked = Asked {
        authorization: fill.authorization,
        no_store: fill.no_store,
        at: Some(SystemTime::now()),
    };
    let response = state.upstream.send(request).await?;
    let now = SystemTime::now();
    let (mut head, body) = response.into_parts();
    upstream::strip_hop_by_hop(&mut head.headers);
    // The stored entry, and every answer from it, carries the upstream's
    // Date (a 304's replaces it); one is added if the upstream sent none.
    freshness::date_received(&mut head.headers, now);

    if fill.head
        && let Some(stale) = stale
        && (head.status != StatusCode::OK || !same_validators(stale, &head.headers))
    {
        // The representation changed: the stored one must not answer again.
        state.cache.remove(&fill.key).await;
        return Ok(Fetched::Response(
            Response::from_parts(head, Body::Empty),
            NotStored::NoLifetime,
        ));
    }
    if head.status == StatusCode::NOT_MODIFIED
        && !fill.head
        && stale.is_some_and(|stale| !describes(stale, &head.headers))
    {
        // A 304 naming another representation than the stored one updates
        // nothing (RFC 9111 §4.3.4): the stored one is outdated, so it
        // goes, and the upstream is asked again, without validators.
        // Within the time the first ask had: the client waits one
        // upstream timeout at most.
        state.cache.remove(&fill.key).await;
        let timeout = state.upstream.timeout();
        let left = timeout.saturating_sub(first_asked.elapsed());
        let again = Box::pin(fetch_with(state, fill, None, first_asked));
        return tokio::time::timeout(left, again)
            .await
            .unwrap_or(Err(ProxyError::UpstreamTimeout(timeout)));
    }
    if (head.status == StatusCode::NOT_MODIFIED || fill.head)
        && let Some(stale) = stale
    {
        // RFC 9111 §4.3.4: the 304's fields replace the stored ones.
        let merged = merge_not_modified(stale, &head.headers);
        return Ok(
            match freshness::decide(&fill.policy, asked, stale.status(), &merged, now, state.cdn) {
                Ok(storage) => {
                    let mut entry = make_entry(
                        fill,
                        stale.status(),
                        merged,
                        stale.body(),
                        &storage,
                        requested_at,
                        now,
                    );
                    // The stored body is kept in the form it was stored in,
                    // under the ETag it had.
                    if let Some(coding) = stale.compressed() {
                        entry.compressed = true;
                        entry.etag = stale.etag();
                        entry
                            .headers
                            .insert(header::CONTENT_ENCODING, coding.header_value());
                    }
                    // A 304 rarely repeats the upstream's tags (Surrogate-Key):
                    // the revalidated entry keeps the ones it had, so a tag
                    // purge still reaches it.
                    for tag in stale.tags() {
                        if entry.tags.len() < MAX_UPSTREAM_TAGS + fill.tags.len()
                            && !entry.tags.iter().any(|t| **t == *tag)
                        {
                            entry.tags.push(tag.into());
                        }
                    }
                    let revalidated = head.status == StatusCode::NOT_MODIFIED;
                    sealed(
                        entry,
                        revalidated,
                        DEFAULT_MAX_BODY.max(fill.policy.max_body),
                    )?
                }
                Err(reason) => {
                    let mut merged = merged;
                    let body = match stale.compressed() {
                        None => stale.body(),
                        // Sent once, to this client: decoded, as any client takes it.
                        Some(coding) => {
                            merged.remove(header::CONTENT_ENCODING);
                            compression::decode(
                                coding,
                                &stale.body(),
                                DEFAULT_MAX_BODY.max(fill.policy.max_body),
                            )
                            .map_err(|error| ProxyError::UpstreamBody(error.to_string()))?
                        }
                    };
                    let mut response = Response::new(Body::full(body));
                    *response.status_mut() = stale.status();
                    *response.headers_mut() = merged;
                    Fetched::Response(response, reason)
                }
            },
        );
    }
    let storage = match freshness::decide(
        &fill.policy,
        asked,
        head.status,
        &head.headers,
        now,
        state.cdn,
    ) {
        Ok(storage) => storage,
        Err(reason) => {
            return Ok(Fetched::Response(
                Response::from_parts(head, state.upstream.stream(None, body)),
                reason,
            ));
        }
    };
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > fill.policy.max_body) {
        return Ok(Fetched::Response(
            Response::from_parts(head, state.upstream.stream(None, body)),
            NotStored::TooLarge,
        ));
    }
    let collected = upstream::collect(body, fill.policy.max_body, state.upstream.timeout())
        .await
        .inspect_err(|_| state.upstream.body_failed())?;
    match collected {
        Collected::TooLarge { prefix, rest } => {
            let body = state.upstream.stream(Some(prefix), rest);
            Ok(Fetched::Response(
                Response::from_parts(head, body),
                NotStored::TooLarge,
            ))
        }
        Collected::Complete(bytes) => {
            let entry = make_entry(
                fill,
                head.status,
                head.headers,
                bytes,
                &storage,
                requested_at,
                now,
            );
            sealed(entry, false, DEFAULT_MAX_BODY.max(fill.policy.max_body))
        }
    }
}

/// The entry to store and share; or, for the rare answer its encoding cannot
/// hold (over 64 KiB before the body), a response for this client only,
/// decoded if it was compressed for storing: as any client takes it.
fn sealed(parts: EntryParts, revalidated: bool, max_body: usize) -> Result<Fetched, ProxyError> {
    if let Some(entry) = parts.seal() {
        return Ok(Fetched::Entry(entry, revalidated));
    }
    let mut headers = parts.headers;
    let body = if parts.compressed {
        headers.remove(header::CONTENT_ENCODING);
        compression::decode(Coding::Br, &parts.body, max_body)
            .map_err(|error| ProxyError::UpstreamBody(error.to_string()))?
    } else {
        parts.body
    };
    headers.insert(header::ETAG, parts.etag);
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = parts.status;
    *response.headers_mut() = headers;
    Ok(Fetched::Response(response, NotStored::TooLarge))
}

/// Whether a 304 describes the stored response (RFC 9111 §4.3.4): its
/// strong ETag is the stored strong one, an ETag matches a weak one (or a
/// weak ETag a strong one) weakly, or,
/// without an ETag, its Last-Modified is the stored one. A 304 with no
/// validator at all answers the validators it was asked with.
fn describes(stale: &Entry, not_modified: &HeaderMap) -> bool {
    if let Some(etag) = not_modified.get(header::ETAG) {
        let etag = etag.as_bytes();
        let stored = stale.etag_bytes();
        // Strong against strong byte for byte; with a weak side, the
        // opaque tags: nginx's gzip weakens a 200's ETag, not its 304's.
        fn opaque(tag: &[u8]) -> &[u8] {
            tag.strip_prefix(b"W/").unwrap_or(tag)
        }
        return stale.upstream_etag()
            && if etag.starts_with(b"W/") || stored.starts_with(b"W/") {
                opaque(etag) == opaque(stored)
            } else {
                etag == stored
            };
    }
    match not_modified.get(header::LAST_MODIFIED) {
        Some(modified) => stale.header(&header::LAST_MODIFIED).as_ref() == Some(modified),
        None => true,
    }
}

/// Whether a HEAD answer describes the stored representation: the same
/// ETag, or without ETags the same Last-Modified (RFC 9111 §4.3.5).
fn same_validators(stale: &Entry, fresh: &HeaderMap) -> bool {
    match fresh.get(header::ETAG) {
        Some(etag) => stale.upstream_etag() && etag.as_bytes() == stale.etag_bytes(),
        None => {
            !stale.upstream_etag()
                && fresh
                    .get(header::LAST_MODIFIED)
                    .is_some_and(|lm| stale.header(&header::LAST_MODIFIED).as_ref() == Some(lm))
        }
    }
}

/// The stored headers updated with a 304's (RFC 9111 §4.3.4), the stored
/// ETag put back where the upstream gave one.
fn merge_not_modified(stale: &Entry, fresh: &HeaderMap) -> HeaderMap {
    let mut merged = stale.headers(fresh.len() + 1);
    if stale.upstream_etag() {
        merged.insert(header::ETAG, stale.etag());
    }
    for name in fresh.keys() {
        // The stored body's framing and coding are the stored body's: a
        // 304 cannot relabel its bytes (RFC 9111 §3.2).
        if *name == header::CONTENT_LENGTH || *name == header::CONTENT_ENCODING {
            continue;
        }
        merged.remove(name);
        for value in fresh.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

pub(super) fn make_entry(
    fill: &Fill,
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    storage: &Storage,
    requested_at: SystemTime,
    now: SystemTime,
) -> EntryParts {
    for name in [
        header::AGE,
        header::CONTENT_LENGTH,
        CACHE_STATUS,
        X_CACHE,
        X_CACHE_LAYER,
    ] {
        headers.remove(name);
    }
    for name in &storage.strip {
        headers.remove(name);
    }
    // Our own Via is added to each answer (respond), never stored, so a
    // revalidated entry does not collect one per revalidation.
    let upstream_etag = headers.remove(header::ETAG);
    let mut tags = fill.tags.clone();
    take_upstream_tags(&mut headers, &mut tags);
    // Vary names headers the policy does not key on: the entry answers only
    // requests with the same (normalized) values, under its variant key.
    let vary = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !fill.policy.key_headers.contains(name))
        .map(|name| {
            let value = crate::key::vary_value(&fill.headers, &name)
                .and_then(|v| HeaderValue::from_str(&v).ok());
            (name, value)
        })
        .collect();
    let lifetime = storage.lifetime;
    // The ETag names the decoded body; coded forms get their own from it.
    let etag = upstream_etag
        .clone()
        .unwrap_or_else(|| freshness::etag_for(&body));
    let mut body = body;
    let mut compressed = false;
    // Parts of a body (206) stay as they came: they are sliced and joined.
    if fill.policy.compress
        && status != StatusCode::PARTIAL_CONTENT
        && compression::worth_compressing(&headers, &body)
        && let Some(smaller) = compression::compress(&body)
    {
        headers.insert(header::CONTENT_ENCODING, Coding::Br.header_value());
        body = smaller;
        compressed = true;
    }
    EntryParts {
        status,
        headers,
        upstream_etag: upstream_etag.is_some(),
        etag,
        body,
        requested_at,
        stored_at: now,
        fresh_until: now.checked_add(lifetime.fresh_for).unwrap_or(now),
        initial_age: lifetime.initial_age,
        stale_while_revalidate: lifetime.stale_while_revalidate,
        stale_if_error: lifetime.stale_if_error,
        tenant: fill.tenant.clone(),
        path: fill.path.clone(),
        tags,
        vary,
        revalidate: storage.revalidate,
        no_stale: storage.no_stale,
        shared_ok: storage.shared_ok,
        vary_index: false,
        immutable: storage.immutable,
        grace: storage.grace,
        compressed,
    }
}

/// Headers in which upstreams name an answer's tags (Fastly, Cloudflare,
/// Varnish xkey); they are for caches, so clients do not see them.
const UPSTREAM_TAG_HEADERS: [&str; 3] = ["surrogate-key", "cache-tag", "xkey"];
/// Bounds on tags taken from one upstream answer.
const MAX_UPSTREAM_TAGS: usize = 256;
const MAX_TAG_LEN: usize = 256;

/// Moves the upstream's tags (space- or comma-separated) into `tags`.
fn take_upstream_tags(headers: &mut HeaderMap, tags: &mut Vec<Box<str>>) {
    for name in UPSTREAM_TAG_HEADERS {
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else { continue };
            for tag in text
                .split([' ', ','])
                .filter(|t| !t.is_empty() && t.len() <= MAX_TAG_LEN)
            {
                if tags.len() < MAX_UPSTREAM_TAGS && !tags.iter().any(|t| **t == *tag) {
                    tags.push(tag.into());
                }
            }
        }
        headers.remove(name);
    }
}
