//! Looking up a key (and the variant a vary index names), and deciding what
//! the entry found can do for this request: answer it, fresh or stale, or
//! be revalidated.

use std::sync::Arc;
use std::time::SystemTime;

use http::request::Parts;
use http::{HeaderMap, Response, header};

use super::State;
use super::fill::{Fill, refresh_in_background};
use super::respond::respond;
use crate::body::Body;
use crate::cache::Layer;
use crate::cache::entry::Entry;
use crate::freshness::{self, Stored, Use};
use crate::invalidation::Verdict;
use crate::key::{CacheKey, normalize_path};
use crate::outcome::{Forward, Served};
use crate::policy::Policy;

/// What a lookup found.
pub(super) struct Found {
    /// The key to use: the variant's when an index named one.
    pub(super) key: CacheKey,
    pub(super) entry: Option<(Entry, Layer)>,
    /// Whether the primary key held a vary index.
    pub(super) saw_index: bool,
}

/// What this instance's memory alone finds for `primary` (and the variant a
/// vary index there names); else the key L1 did not hold, for Redis to be
/// asked. A hit so needs no future: it is answered at once.
pub(super) fn in_memory(
    state: &State,
    primary: CacheKey,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<Found, NotInMemory> {
    let Some(entry) = state.cache.lookup_local(&primary, now) else {
        return Err(NotInMemory {
            key: primary,
            saw_index: false,
        });
    };
    if !entry.vary_index() {
        return Ok(Found {
            key: primary,
            entry: Some((entry, Layer::L1)),
            saw_index: false,
        });
    }
    let variant = primary.variant(&entry.vary_names(), headers);
    match state.cache.lookup_local(&variant, now) {
        Some(entry) => Ok(Found {
            key: variant,
            entry: Some((entry, Layer::L1)),
            saw_index: true,
        }),
        None => Err(NotInMemory {
            key: variant,
            saw_index: true,
        }),
    }
}

/// A key L1 did not hold: the primary, or the variant its index named.
pub(super) struct NotInMemory {
    key: CacheKey,
    saw_index: bool,
}

/// Finishes a lookup `in_memory` began: asks L2 for the key L1 did not
/// hold (and, when that is a vary index, for this request's variant).
pub(super) async fn in_redis(
    state: &State,
    missing: NotInMemory,
    headers: &HeaderMap,
    now: SystemTime,
) -> Found {
    let NotInMemory { key, saw_index } = missing;
    match state.cache.lookup_shared(&key, now).await {
        Some((index, _)) if !saw_index && index.vary_index() => {
            let variant = key.variant(&index.vary_names(), headers);
            Found {
                key: variant,
                entry: state.cache.lookup(&variant, now).await,
                saw_index: true,
            }
        }
        entry => Found {
            key,
            entry,
            saw_index,
        },
    }
}

/// Looks up `primary`, in L1 then L2; when it holds a vary index, looks up
/// this request's variant instead.
pub(super) async fn lookup(
    state: &State,
    primary: CacheKey,
    headers: &HeaderMap,
    now: SystemTime,
) -> Found {
    match in_memory(state, primary, headers, now) {
        Ok(found) => found,
        Err(missing) => in_redis(state, missing, headers, now).await,
    }
}

/// What the entry a lookup found does for this request.
pub(super) enum Decided {
    /// It answers: fresh, or stale as the request or a soft purge allows.
    Answer(Response<Body>),
    /// The upstream is asked: why, and the stale entry it may revalidate.
    Ask {
        forward: Forward,
        stale: Option<(Entry, Layer)>,
    },
}

/// Decides between answering from the entry found and asking the upstream.
/// An entry a purge covers is dropped; a stale one allowed to answer while
/// revalidating is refreshed in the background (`fill` makes that fetch).
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    state: &Arc<State>,
    parts: &Parts,
    policy: &Policy,
    tenant: &str,
    asked: &freshness::Request,
    found: Found,
    now: SystemTime,
    fill: impl Fn(CacheKey, Option<&Entry>) -> Fill,
) -> Decided {
    let Found {
        key,
        entry,
        saw_index,
    } = found;
    let mut forward = if saw_index {
        Forward::VaryMiss
    } else {
        Forward::UriMiss
    };
    // RFC 9111 §3.5: only responses that say so may answer (or be stored
    // for) requests with credentials; a private policy keys on them instead.
    let authorization = !policy.private && parts.headers.contains_key(header::AUTHORIZATION);
    if let Some((entry, layer)) = entry {
        let verdict = state.invalidator.verdict(&key, &entry);
        if !entry.is_for(tenant, &normalize_path(parts.uri.path())) {
            // Short of a SHA-256 collision, only a value copied onto another
            // key in Redis (which plain entries cannot tell): never serve it.
        } else if verdict == Verdict::Purged {
            state.cache.remove_local(&key); // free the memory; L2 expires by itself
        } else if !entry.vary_matches(&parts.headers) {
            forward = Forward::VaryMiss;
        } else if authorization && !entry.shared_ok() {
            forward = Forward::Request;
        } else {
            let facts = stored_facts(&entry, now);
            let mut usable = asked.allows(&facts);
            // A soft purge made the entry stale: served while it is
            // refreshed, unless it may never be served stale
            // (`must-revalidate`, `s-maxage`, `no-cache`): then it is
            // revalidated first (RFC 9111 §4.2.4).
            if verdict == Verdict::Stale && usable == Use::Fresh {
                usable = if facts.no_stale {
                    Use::Revalidate
                } else {
                    Use::StaleWhileRevalidate
                };
            }
            let served = match usable {
                Use::Fresh => Served::Hit(layer),
                Use::StaleAccepted => Served::StaleAccepted(layer),
                Use::StaleWhileRevalidate => {
                    if !asked.cc.only_if_cached {
                        refresh_in_background(state, fill(key, Some(&entry)));
                    }
                    Served::StaleWhileRevalidate(layer)
                }
                Use::Revalidate => {
                    let fresh = facts.age < facts.lifetime && verdict == Verdict::Valid;
                    let forward = if fresh {
                        Forward::Request
                    } else {
                        Forward::Stale
                    };
                    let stale = Some((entry, layer));
                    return Decided::Ask { forward, stale };
                }
            };
            let forms = state.cache.forms();
            return Decided::Answer(respond(forms, parts, policy, &entry, served, now));
        }
    }
    Decided::Ask {
        forward,
        stale: None,
    }
}

/// What the freshness rules need to know of a stored entry at `now`.
pub(super) fn stored_facts(entry: &Entry, now: SystemTime) -> Stored {
    Stored {
        age: entry.age(now),
        lifetime: entry.lifetime(),
        stale_while_revalidate: entry.stale_while_revalidate(),
        revalidate: entry.revalidate(),
        no_stale: entry.no_stale(),
        immutable: entry.immutable(),
    }
}
