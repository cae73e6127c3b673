//! A miss, or a stale entry to revalidate: lead or follow the key's single
//! flight, fetch, store what may be stored, and answer; when the upstream
//! fails, a stale entry within its grace, else an error.

use std::time::{Duration, SystemTime};

use http::request::Parts;
use http::{Method, Response, StatusCode};

use super::State;
use super::coalesce::{FOLLOWER_MARGIN, Lease, Part, take_part, wait_for_shared};
use super::fetch::{Fetched, fetch};
use super::fill::{Fill, store_unless_purged};
use super::respond::{error_response, respond};
use crate::body::Body;
use crate::cache::Layer;
use crate::cache::entry::Entry;
use crate::cache::forms::Forms;
use crate::cache::l2::LeaseTaken;
use crate::error::ProxyError;
use crate::flight::Outcome;
use crate::freshness::{self, NotStored};
use crate::outcome::{Forward, Served};
use crate::policy::Policy;
use crate::upstream;

/// A cache miss (or a stale entry to revalidate): lead or follow the key's
/// single flight, store what may be stored, and answer.
pub(super) async fn fill_and_respond(
    state: &State,
    parts: &Parts,
    fill: Fill,
    asked: &freshness::Request,
    forward: Forward,
    stale: Option<(Entry, Layer)>,
) -> Response<Body> {
    let miss = |stored, collapsed, revalidated, detail| Served::Miss {
        forward,
        stored,
        collapsed,
        revalidated,
        detail,
    };
    let answer = |entry: &Entry, served, now| {
        respond(state.cache.forms(), parts, &fill.policy, entry, served, now)
    };
    let failed = |stale, error: &ProxyError| {
        stale_or_error(
            state.cache.forms(),
            parts,
            &fill.policy,
            stale,
            error,
            forward,
        )
    };
    // A key whose answer could not be stored goes straight upstream.
    let passing = state.flights.passing(&fill.key);
    let leader = if passing {
        None
    } else {
        match take_part(state, parts, &fill, asked).await {
            Part::Lead(leader) => Some(leader),
            Part::Alone => None,
            Part::Answered(entry) => {
                state
                    .metrics
                    .coalesced
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return answer(&entry, miss(true, true, false, None), SystemTime::now());
            }
            Part::Failed(error) => {
                return failed(stale, &error);
            }
        }
    };
    // Across instances sharing Redis: one fetches under a short lease, the
    // others wait for its entry in L2 (and fetch themselves if it does not
    // come, or Redis cannot say).
    let mut _lease = None;
    if let Some(l2) = state.cache.shared().filter(|_| leader.is_some()) {
        let ttl = state.upstream.timeout().saturating_add(FOLLOWER_MARGIN);
        match l2.take_lease(&fill.key, ttl).await {
            LeaseTaken::Ours(ticket) => {
                _lease = Some(Lease {
                    l2: l2.clone(),
                    key: fill.key,
                    ticket,
                })
            }
            LeaseTaken::Theirs => {
                if let Some(entry) = wait_for_shared(state, parts, &fill, asked, l2, ttl).await {
                    if let Some(leader) = leader {
                        leader.finish(Outcome::Shared(entry.clone()));
                    }
                    let served = miss(false, true, false, Some("collapsed-L2"));
                    return answer(&entry, served, SystemTime::now());
                }
            }
            LeaseTaken::Unknown => {}
        }
    }
    let fetched = fetch(state, &fill).await;
    let now = SystemTime::now();
    match fetched {
        Ok(Fetched::Entry(entry, revalidated)) => {
            if !store_unless_purged(state, &fill, &entry, now) {
                // Fetched before a purge landed: right for this client, whose
                // request came first, but not to keep or to share.
                if let Some(leader) = leader {
                    leader.finish(Outcome::NotShareable);
                }
                let served = miss(false, false, revalidated, Some("purged-during-fill"));
                return answer(&entry, served, now);
            }
            if let Some(leader) = leader {
                leader.finish(Outcome::Shared(entry.clone()));
            }
            if passing {
                state.flights.stored(&fill.key);
            }
            answer(&entry, miss(true, false, revalidated, None), now)
        }
        Ok(Fetched::Response(mut response, reason)) => {
            if let Some(leader) = leader {
                leader.finish(Outcome::NotShareable);
            }
            if marks_pass(reason) {
                state.flights.pass(fill.key, HIT_FOR_PASS);
            }
            if is_upstream_failure(response.status())
                && let Some((entry, layer)) =
                    stale.filter(|(entry, _)| entry.may_serve_on_error(now))
            {
                return answer(&entry, Served::StaleIfError(layer), now);
            }
            let status = response.status().as_u16();
            upstream::append_via(response.headers_mut());
            let detail = if passing {
                "hit-for-pass"
            } else {
                reason.as_str()
            };
            miss(false, false, false, Some(detail)).annotate(
                response.headers_mut(),
                None,
                Some(status),
            );
            if parts.method == Method::HEAD {
                *response.body_mut() = Body::Empty;
            }
            response
        }
        Err(error) => {
            if let Some(leader) = leader {
                leader.finish(Outcome::Failed(error.clone()));
            }
            failed(stale, &error)
        }
    }
}

/// How long a key whose answer could not be stored skips the single flight.
const HIT_FOR_PASS: Duration = Duration::from_secs(10);

/// Whether an answer not stored for `reason` will likely not be stored for
/// the next request either (the answer's fault, not this request's).
fn marks_pass(reason: NotStored) -> bool {
    matches!(
        reason,
        NotStored::NoStore
            | NotStored::Private
            | NotStored::SetCookie
            | NotStored::VaryStar
            | NotStored::VaryClientAddress
            | NotStored::TooLarge
    )
}

/// Statuses that let a stale entry answer under `stale-if-error` (RFC 5861 §4).
fn is_upstream_failure(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

fn stale_or_error(
    forms: Option<&Forms>,
    parts: &Parts,
    policy: &Policy,
    stale: Option<(Entry, Layer)>,
    error: &ProxyError,
    forward: Forward,
) -> Response<Body> {
    let now = SystemTime::now();
    // Refused, reset, timed out or cut off: the upstream cannot be reached,
    // and a stale entry within its grace answers (RFC 9111 §4.2.4).
    let unreachable = matches!(
        error,
        ProxyError::UpstreamUnavailable(_)
            | ProxyError::UpstreamTimeout(_)
            | ProxyError::UpstreamBody(_)
    );
    let usable = |entry: &Entry| {
        entry.may_serve_on_error(now) || (unreachable && entry.may_serve_when_unreachable(now))
    };
    match stale.filter(|(entry, _)| usable(entry)) {
        Some((entry, layer)) => respond(
            forms,
            parts,
            policy,
            &entry,
            Served::StaleIfError(layer),
            now,
        ),
        None => {
            let served = Served::Miss {
                forward,
                stored: false,
                collapsed: false,
                revalidated: false,
                detail: Some(error.code()),
            };
            error_response(error, served)
        }
    }
}
