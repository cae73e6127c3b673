//! The request pipeline, top to bottom; each phase lives in `proxy/`:
//!
//! 1. the client's request is made the one canonical request folio decides
//!    on (`admit`);
//! 2. unsafe methods pass to the upstream; a 2xx/3xx answer purges the
//!    cached GETs of the same path on every instance (RFC 9111 §4.4), and a
//!    2xx raises the route's events before the client gets its answer
//!    (`pass`);
//! 3. the policy for the route decides whether and how the cache is used; a
//!    request no policy matches is governed by plain RFC 9111 (the implicit
//!    policy), so only the upstream's headers count;
//! 4. the key (tenant, path, kept query, varied headers) is built; when the
//!    upstream's answer named `Vary`, the key of this request's variant
//!    (`lookup`);
//! 5. L1, then L2, are asked (all before L1 is a plain call, so an L1 hit
//!    is answered without a future); an entry a purge covers is ignored; the
//!    request's own directives and the entry's freshness decide between a
//!    `HIT`, a stale answer (`STALE`), and asking the upstream (`lookup`,
//!    answers built by `respond`);
//! 6. otherwise one request per key asks the upstream (single flight,
//!    `coalesce`), conditionally when a stale entry has validators (a 304
//!    refreshes it, `fetch`); the answer is stored if the rules allow and no
//!    purge came meanwhile, and every waiting request gets it (`MISS`, or
//!    `EXPIRED` for a stale entry asked again) (`miss`, `fill`); a range the
//!    whole response could not answer is asked as it is (`partial`);
//! 7. if the upstream fails, a stale entry within `stale-if-error` answers;
//!    else a 502/504 with a JSON body.
//!
//! What each request leaves behind (metrics, the access log line) is
//! `record`; `rewarm` refetches popular entries after a purge.

use std::cell::Cell;
use std::future::{Future, Ready, ready};
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use futures_util::FutureExt as _;
use futures_util::future::Either;
use http::request::Parts;
use http::{Method, Request, Response, Version, header};
use hyper::body::Incoming;

use crate::body::Body;
use crate::cache::entry::Entry;
use crate::cache::{Cache, Layer};
use crate::error::ProxyError;
use crate::flight::Flights;
use crate::freshness;
use crate::invalidation::Invalidator;
use crate::key::CacheKey;
use crate::metrics::Metrics;
use crate::outcome::{BypassReason, Forward, Served};
use crate::policy::{Policy, PolicySet};
use crate::settings::{Cidr, TenantSource};
use crate::upstream::{UPSTREAM_TIME, Upstream};

mod admit;
mod coalesce;
mod fetch;
mod fill;
mod lookup;
mod memo;
mod miss;
mod partial;
mod pass;
mod record;
mod respond;
pub(crate) mod rewarm;

use fill::Fill;
pub(crate) use fill::render_tags;
use lookup::Decided;
use pass::{WriteEffects, pass};
use record::Ctx;
pub(crate) use rewarm::Hot;

/// Shared by every connection.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) policies: ArcSwap<PolicySet>,
    pub(crate) cache: Cache,
    pub(crate) flights: Arc<Flights>,
    pub(crate) upstream: Upstream,
    pub(crate) tenant: TenantSource,
    pub(crate) invalidator: Arc<Invalidator>,
    pub(crate) hot: Hot,
    /// Obey `CDN-Cache-Control` over `Cache-Control` (RFC 9213).
    pub(crate) cdn: bool,
    pub(crate) metrics: Arc<Metrics>,
    /// Peers whose client-address headers are believed.
    pub(crate) trusted_proxies: Vec<Cidr>,
    /// One line per request, when on.
    pub(crate) access: Option<Arc<crate::access::AccessLog>>,
    /// The label of requests no policy (or tenant) names.
    pub(crate) unmatched: Arc<str>,
    pub(crate) started: Instant,
}

/// What `handle` gives hyper: the answer when it was made at once (a hit
/// from L1, a refusal), else the work still to do.
pub(crate) type Handled = Either<Ready<Response<Body>>, Later>;

/// A request's remaining work: Redis, the upstream (over HTTP/2, all of it).
pub(crate) type Later = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// How far `serve` got without waiting.
enum Step {
    Done(Response<Body>),
    Later(Later),
}

/// Serves one request; never fails (errors are JSON responses).
///
/// Up to the L1 lookup nothing waits, so over HTTP/1.1 that part runs
/// here, not in a future: a hit (most requests) is answered without one,
/// and no request carries the state of the slower paths, which are boxed.
pub(crate) fn handle(state: Arc<State>, request: Request<Incoming>, client: SocketAddr) -> Handled {
    // hyper calls this on an HTTP/2 connection's own task and spawns the
    // future it gets: there the work goes into that future, so the streams
    // of one connection are still served in parallel.
    if request.version() == Version::HTTP_2 {
        return Either::Right(Box::pin(
            async move { answer(state, request, client).await },
        ));
    }
    answer(state, request, client)
}

/// `handle`'s work, done here as far as it can be without waiting.
fn answer(state: Arc<State>, request: Request<Incoming>, client: SocketAddr) -> Handled {
    let started = Instant::now();
    let log = state
        .access
        .as_ref()
        .map(|_| (request.method().clone(), request.uri().clone()));
    let mut ctx = Ctx {
        endpoint: Arc::clone(&state.unmatched),
        tenant: Arc::clone(&state.unmatched),
    };
    // A bug met by one request fails that request alone, with a 500, and is
    // counted; the connection and every other request go on.
    let step = catch_unwind(AssertUnwindSafe(|| {
        serve(&state, request, client.ip(), &mut ctx)
    }));
    let response = match step {
        Ok(Step::Done(response)) => response,
        Err(_) => record::panicked(&state),
        Ok(Step::Later(later)) => {
            return Either::Right(Box::pin(async move {
                let served = UPSTREAM_TIME.scope(Cell::new(Duration::ZERO), async {
                    (later.await, UPSTREAM_TIME.with(Cell::get))
                });
                let (response, upstream) = match AssertUnwindSafe(served).catch_unwind().await {
                    Ok(done) => done,
                    Err(_) => (record::panicked(&state), Duration::ZERO),
                };
                let took = started.elapsed();
                record::record(&state, &ctx, &response, client.ip(), log, took, upstream);
                response
            }));
        }
    };
    let took = started.elapsed();
    record::record(
        &state,
        &ctx,
        &response,
        client.ip(),
        log,
        took,
        Duration::ZERO,
    );
    Either::Left(ready(response))
}

fn serve(state: &Arc<State>, request: Request<Incoming>, client: IpAddr, ctx: &mut Ctx) -> Step {
    let policies = state.policies.load();
    // A request sent again as it was sent lately is the request admitted
    // and keyed then (see `memo`).
    let ticket = match memo::recall(&request, client, &policies) {
        memo::Recalled::Found(keyed) => {
            drop(request); // a GET's body has no meaning for the cache
            admit::label(
                state,
                ctx,
                &keyed.tenant,
                &keyed.path,
                Some(&keyed.policy.name),
            );
            return look_up(state, Cached { keyed, client });
        }
        memo::Recalled::Missed(ticket) => ticket,
    };
    let policies = arc_swap::Guard::into_inner(policies);
    let (mut parts, body) = request.into_parts();
    // One canonical request: the policy, the tenant, the key and the
    // upstream all see the same path, query and headers (see `inbound`).
    let path = match admit::path(&parts) {
        Ok(path) => path,
        Err(error) => return Step::Done(respond::refusal(&error)),
    };
    let matched = policies.match_request(&parts.method, &path);
    let admitted = admit::request(
        state,
        &policies,
        &mut parts,
        &path,
        matched.as_ref(),
        client,
        ctx,
    );
    let tenant = match admitted {
        Ok(tenant) => tenant,
        Err(error) => return Step::Done(respond::refusal(&error)),
    };

    // Writes, and what the cache stays out of, pass to the upstream.
    let passed = |parts, body, reason, effects| {
        let state = Arc::clone(state);
        Step::Later(Box::pin(async move {
            pass(&state, parts, body, client, reason, effects).await
        }))
    };
    if !is_safe(&parts.method) {
        let effects = WriteEffects::of(&policies, matched.as_ref(), &tenant, &parts);
        return passed(parts, body, BypassReason::Method, Some(effects));
    }
    let cacheable_method = parts.method == Method::GET || parts.method == Method::HEAD;
    let policy = match matched {
        Some(matched) => matched.policy,
        None if cacheable_method => policies.rfc(),
        None => return passed(parts, body, BypassReason::NoPolicy, None),
    };
    if let Some(reason) = pass::bypass_reason(policy, &parts) {
        return passed(parts, body, reason, None);
    }
    drop(body); // a GET's body has no meaning for the cache (RFC 9110 §9.3.1)

    // The key, of the request as the upstream will get it.
    if let Err(error) = admit::as_keyed(&mut parts, policy, &path) {
        return Step::Done(respond::refusal(&error));
    }
    let asked = freshness::Request::new(&parts.headers);
    let (uri, headers) = (&parts.uri, &parts.headers);
    let primary = CacheKey::new(&tenant, uri.path(), uri.query(), headers, policy);
    parts.extensions.clear(); // nothing folio reads; a kept request holds none
    let keyed = Arc::new(Keyed {
        policy: Arc::clone(policy),
        policies: Arc::clone(&policies),
        parts,
        path,
        tenant,
        primary,
        asked,
    });
    if let Some(ticket) = ticket {
        memo::keep(ticket, &keyed);
    }
    look_up(state, Cached { keyed, client })
}

/// Looks the request up in memory, and in Redis or at the upstream when it
/// must: what follows admission and keying.
fn look_up(state: &Arc<State>, cached: Cached) -> Step {
    let Keyed {
        policy, primary, ..
    } = &*cached.keyed;
    // Private entries are per caller: a replay would need the caller's
    // credentials, which are not kept.
    if policy.rewarm && !policy.private {
        let remembered = || {
            cached
                .fill(*primary, None)
                .remembered(state.tenant.header())
        };
        state.hot.touch(*primary, remembered);
    }

    // Look up in memory; Redis, when it must be asked, is asked later.
    let now = SystemTime::now();
    let state = Arc::clone(state);
    let headers = &cached.keyed.parts.headers;
    let found = match lookup::in_memory(&state, *primary, headers, now) {
        Ok(found) => found,
        Err(missing) => {
            return Step::Later(Box::pin(async move {
                let headers = &cached.keyed.parts.headers;
                let found = lookup::in_redis(&state, missing, headers, now).await;
                let key = found.key;
                match cached.decide(&state, found, now) {
                    Decided::Answer(response) => response,
                    Decided::Ask { forward, stale } => {
                        cached.ask(&state, key, forward, stale).await
                    }
                }
            }));
        }
    };
    let key = found.key;
    match cached.decide(&state, found, now) {
        Decided::Answer(response) => Step::Done(response),
        Decided::Ask { forward, stale } => Step::Later(Box::pin(async move {
            cached.ask(&state, key, forward, stale).await
        })),
    }
}

/// A request the cache may answer, admitted and keyed: what deciding on an
/// entry and asking the upstream read. The same for every request sent
/// alike, so it is shared with `memo`.
#[derive(Debug)]
struct Keyed {
    policy: Arc<Policy>,
    /// The set `policy` was matched in.
    policies: Arc<PolicySet>,
    parts: Parts,
    /// The canonical path, without the query.
    path: String,
    tenant: String,
    primary: CacheKey,
    asked: freshness::Request,
}

/// A keyed request, and who sent it.
struct Cached {
    keyed: Arc<Keyed>,
    client: IpAddr,
}

impl Cached {
    /// What fetches (and stores) this request's response under `key`.
    fn fill(&self, key: CacheKey, stale: Option<&Entry>) -> Fill {
        // Only the slower paths read the route's parameters, so they are
        // found again (the same set matches the same method and path the
        // same way) rather than kept by every request.
        let Keyed {
            policy,
            policies,
            parts,
            tenant,
            primary,
            ..
        } = &*self.keyed;
        let (method, path) = (&parts.method, parts.uri.path());
        let matched = policies.match_request(method, path);
        let params = matched.map(|m| m.params).unwrap_or_default();
        Fill::new(
            policy,
            key,
            *primary,
            tenant,
            &params,
            parts,
            self.client,
            stale,
        )
    }

    /// What the entry found can do for this request.
    fn decide(&self, state: &Arc<State>, found: lookup::Found, now: SystemTime) -> Decided {
        let Keyed {
            policy,
            parts,
            tenant,
            asked,
            ..
        } = &*self.keyed;
        let fill = |key, stale: Option<&Entry>| self.fill(key, stale);
        lookup::decide(state, parts, policy, tenant, asked, found, now, fill)
    }

    /// Asks the upstream for `key`, once per key, and stores what may be
    /// stored.
    async fn ask(
        &self,
        state: &Arc<State>,
        key: CacheKey,
        forward: Forward,
        stale: Option<(Entry, Layer)>,
    ) -> Response<Body> {
        let (parts, asked) = (&self.keyed.parts, &self.keyed.asked);
        if parts.headers.contains_key(header::RANGE) && parts.method == Method::GET {
            // The whole response could not answer: a stored part may, else
            // the range is asked of the upstream (and a part it sends kept).
            let fill = self.fill(key, None).asking(asked.cc.no_store);
            return partial::serve(state, parts, fill, asked, forward).await;
        }
        if asked.cc.only_if_cached {
            return respond::error_response(&ProxyError::NotCached, Served::OnlyIfCached);
        }
        let validators = stale.as_ref().map(|(entry, _)| entry);
        let fill = self.fill(key, validators).asking(asked.cc.no_store);
        miss::fill_and_respond(state, parts, fill, asked, forward, stale).await
    }
}

pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}
