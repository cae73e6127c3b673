//! The request pipeline, top to bottom:
//!
//! 1. unsafe methods pass to the upstream; a 2xx/3xx answer purges the
//!    cached GETs of the same path on every instance (RFC 9111 §4.4), and a
//!    2xx raises the route's events before the client gets its answer;
//! 2. the policy for the route decides whether and how the cache is used; a
//!    request no policy matches is governed by plain RFC 9111 (the implicit
//!    policy), so only the upstream's headers count;
//! 3. the key (tenant, path, kept query, varied headers) is built; when the
//!    upstream's answer named `Vary`, the key of this request's variant;
//! 4. L1, then L2, are asked; an entry a purge covers is ignored; the
//!    request's own directives and the entry's freshness decide between a
//!    `HIT`, a stale answer (`STALE`), and asking the upstream;
//! 5. otherwise one request per key asks the upstream (single flight),
//!    conditionally when a stale entry has validators (a 304 refreshes it);
//!    the answer is stored if the rules allow and no purge came meanwhile,
//!    and every waiting request gets it (`MISS`, or `EXPIRED` for a stale
//!    entry asked again);
//! 6. if the upstream fails, a stale entry within `stale-if-error` answers;
//!    else a 502/504 with a JSON body.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use tracing::warn;

use crate::body::Body;
use crate::cache::entry::{Entry, EntryParts};
use crate::cache::forms::{Forms, Made};
use crate::cache::{Cache, Layer};
use crate::compression::{self, Coding, Form};
use crate::error::ProxyError;
use crate::flight::{Flights, Outcome, Role};
use crate::freshness::{self, Asked, CDN_CACHE_CONTROL, NotStored, Storage, Stored, Use};
use crate::inbound;
use crate::invalidation::{Invalidator, Mark, Scope, Verdict, route_tag, scopes_for_event};
use crate::key::{CacheKey, canonical_path, canonical_query, normalize_path, query_pairs};
use crate::metrics::{self, Metrics};
use crate::outcome::{BypassReason, CACHE_STATUS, Forward, Served, X_CACHE, X_CACHE_LAYER};
use crate::policy::{DEFAULT_MAX_BODY, Match, Policy, PolicySet, TagPart};
use crate::ranges;
use crate::settings::TenantSource;
use crate::upstream::{self, Collected, UPSTREAM_TIME, Upstream};

mod partial;
pub(crate) mod rewarm;

pub(crate) use rewarm::Hot;

/// How much longer than the upstream timeout a coalesced request waits for
/// the leader's fetch before fetching itself.
const FOLLOWER_MARGIN: Duration = Duration::from_secs(1);

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
    pub(crate) trusted_proxies: Vec<crate::settings::Cidr>,
    /// One line per request, when on.
    pub(crate) access: Option<Arc<crate::access::AccessLog>>,
    /// The label of requests no policy (or tenant) names.
    pub(crate) unmatched: Arc<str>,
    pub(crate) started: Instant,
}

/// What `serve` learns about a request that metrics and the access log need.
#[derive(Debug)]
struct Ctx {
    /// The policy's name (never the raw path: bounded label cardinality).
    endpoint: Arc<str>,
    tenant: Arc<str>,
}

/// Marks responses folio made up because something failed.
#[derive(Debug, Clone, Copy)]
struct Failed;

/// Serves one request; never fails (errors are JSON responses).
pub(crate) async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    client: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let log = state
        .access
        .as_ref()
        .map(|_| (request.method().clone(), request.uri().clone()));
    let mut ctx = Ctx {
        endpoint: Arc::clone(&state.unmatched),
        tenant: Arc::clone(&state.unmatched),
    };
    let served = UPSTREAM_TIME.scope(std::cell::Cell::new(Duration::ZERO), async {
        let response = serve(&state, request, client.ip(), &mut ctx).await;
        (response, UPSTREAM_TIME.with(std::cell::Cell::get))
    });
    // A bug met by one request fails that request alone, with a 500, and is
    // counted; the connection and every other request go on.
    let (response, upstream) = match std::panic::AssertUnwindSafe(served).catch_unwind().await {
        Ok(done) => done,
        Err(_) => {
            state
                .metrics
                .panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!("a request panicked; answered 500 (see folio_panics_total)");
            let mut response = ProxyError::Internal.to_response();
            response.extensions_mut().insert(Failed);
            (response, Duration::ZERO)
        }
    };
    let took = started.elapsed();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("-")
    };
    let failed = response.extensions().get::<Failed>().is_some();
    let (result, layer) = classify(header(X_CACHE), header(X_CACHE_LAYER), failed);
    state
        .metrics
        .request(&ctx.endpoint, &ctx.tenant, result, layer, took);
    if let (Some(access), Some((method, uri))) = (&state.access, log) {
        access.record(&crate::access::Line {
            at: SystemTime::now(),
            client: client.ip(),
            method: &method,
            path: uri.path(),
            tenant: &ctx.tenant,
            status: response.status().as_u16(),
            result: result.as_str(),
            layer: layer.as_str(),
            took,
            upstream,
            endpoint: &ctx.endpoint,
        });
    }
    response
}

/// The metric labels of an answer, from the headers that describe it.
fn classify(x_cache: &str, layer: &str, failed: bool) -> (metrics::Result, metrics::Layer) {
    let result = match x_cache {
        _ if failed => metrics::Result::Error,
        "HIT" => metrics::Result::Hit,
        "STALE" => metrics::Result::Stale,
        "BYPASS" => metrics::Result::Bypass,
        _ => metrics::Result::Miss,
    };
    let layer = match layer {
        "L1" => metrics::Layer::L1,
        "L2" => metrics::Layer::L2,
        _ => metrics::Layer::Upstream,
    };
    (result, layer)
}

async fn serve(
    state: &Arc<State>,
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &mut Ctx,
) -> Response<Body> {
    let policies = state.policies.load_full();
    let (mut parts, body) = request.into_parts();
    // One canonical request: the policy, the tenant, the key and the
    // upstream all see the same path, query and headers (see `inbound`).
    if let Err(error) = inbound::refuse_loop(&parts.headers) {
        return error.to_response();
    }
    let path = match canonical_path(parts.uri.path()) {
        Ok(path) => path.into_owned(),
        Err(why) => {
            return ProxyError::BadRequest(format!("an ambiguous path: it has {why}"))
                .to_response();
        }
    };
    let matched = policies.match_request(&parts.method, &path);
    let decided = inbound::DecidedOn {
        tenant: state.tenant.header(),
        keyed: matched.as_ref().map_or(&[], |m| &m.policy.key_headers),
    };
    let trusted = state
        .trusted_proxies
        .iter()
        .any(|range| range.contains(client));
    if let Err(error) = inbound::clean_headers(&mut parts.headers, &parts.method, decided, trusted)
    {
        return error.to_response();
    }
    if let Err(error) = inbound::canonical_host(&mut parts.headers, &parts.uri) {
        return error.to_response();
    }
    match inbound::with_path_and_query(&parts.uri, &path, parts.uri.query()) {
        Ok(uri) => parts.uri = uri,
        Err(error) => return error.to_response(),
    }
    let tenant = match state.tenant.tenant(&parts) {
        Ok(tenant) => tenant.into_owned(),
        Err(error) => return error.to_response(),
    };
    ctx.tenant = state.metrics.tenant_label(&tenant);
    state.metrics.sample_path(&ctx.tenant, &path);
    match &matched {
        Some(matched) => ctx.endpoint = Arc::clone(&matched.policy.name),
        None if is_safe(&parts.method) => ctx.endpoint = Arc::clone(&policies.rfc().name),
        None => {}
    }

    if !is_safe(&parts.method) {
        let effects = WriteEffects::of(&policies, matched.as_ref(), &tenant, &parts);
        return pass(
            state,
            parts,
            body,
            client,
            BypassReason::Method,
            Some(effects),
        )
        .await;
    }
    let cacheable_method = parts.method == Method::GET || parts.method == Method::HEAD;
    let (policy, params) = match matched {
        Some(matched) => (matched.policy, matched.params),
        None if cacheable_method => (policies.rfc(), Vec::new()),
        None => return pass(state, parts, body, client, BypassReason::NoPolicy, None).await,
    };
    if !policy.caches(&parts.method) {
        let reason = if policy.cache {
            BypassReason::Method
        } else {
            BypassReason::CacheOff
        };
        return pass(state, parts, body, client, reason, None).await;
    }
    // A cookie may change the answer without the upstream saying so (few
    // send `Vary: Cookie`): shared entries are never built from one.
    if !policy.private && parts.headers.contains_key(header::COOKIE) {
        return pass(state, parts, body, client, BypassReason::Credentials, None).await;
    }
    // Asked to act as another method: never answered from, nor stored in,
    // the cache. Nor does it purge: most upstreams ignore the header, and a
    // reader must not be able to purge what it likes.
    if inbound::method_override(&parts.headers, &parts.method).is_some() {
        let reason = BypassReason::MethodOverride;
        return pass(state, parts, body, client, reason, None).await;
    }
    drop(body); // a GET's body has no meaning for the cache (RFC 9110 §9.3.1)
    inbound::drop_unkeyed(&mut parts.headers, &policy.key_headers);
    inbound::forward_as_keyed(&mut parts.headers, &policy.key_headers);
    let query = canonical_query(policy, parts.uri.query());
    match inbound::with_path_and_query(&parts.uri, &path, query.as_deref()) {
        Ok(uri) => parts.uri = uri,
        Err(error) => return error.to_response(),
    }
    let tenant = tenant.as_str();
    let asked = freshness::Request::new(&parts.headers);
    // RFC 9111 §3.5: only responses that say so may answer (or be stored
    // for) requests with credentials; a private policy keys on them instead.
    let authorization = !policy.private && parts.headers.contains_key(header::AUTHORIZATION);
    let primary = CacheKey::new(
        tenant,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        policy,
    );
    // Private entries are per caller: a replay would need the caller's
    // credentials, which are not kept.
    if policy.rewarm && !policy.private {
        let fill = || {
            Fill::new(
                policy, primary, primary, tenant, &params, &parts, client, None,
            )
            .remembered(state.tenant.header())
        };
        state.hot.touch(primary, fill);
    }

    let now = SystemTime::now();
    let (key, found, saw_index) = lookup(state, primary, &parts.headers, now).await;
    let mut forward = if saw_index {
        Forward::VaryMiss
    } else {
        Forward::UriMiss
    };
    let mut stale = None;
    if let Some((entry, layer)) = found {
        let verdict = state.invalidator.verdict(&key, &entry);
        if entry.tenant() != tenant {
            // Cannot happen short of a SHA-256 collision; never serve it.
        } else if verdict == Verdict::Purged {
            state.cache.remove_local(&key); // free the memory; L2 expires by itself
        } else if !entry.vary_matches(&parts.headers) {
            forward = Forward::VaryMiss;
        } else if authorization && !entry.shared_ok() {
            forward = Forward::Request;
        } else {
            let facts = stored_facts(&entry, now);
            let mut usable = asked.allows(&facts);
            if verdict == Verdict::Stale && usable == Use::Fresh {
                usable = Use::StaleWhileRevalidate; // a soft purge
            }
            match usable {
                Use::Fresh => {
                    return respond(
                        state.cache.forms(),
                        &parts,
                        policy,
                        &entry,
                        Served::Hit(layer),
                        now,
                    );
                }
                Use::StaleAccepted => {
                    return respond(
                        state.cache.forms(),
                        &parts,
                        policy,
                        &entry,
                        Served::StaleAccepted(layer),
                        now,
                    );
                }
                Use::StaleWhileRevalidate => {
                    if !asked.cc.only_if_cached {
                        let fill = Fill::new(
                            policy,
                            key,
                            primary,
                            tenant,
                            &params,
                            &parts,
                            client,
                            Some(&entry),
                        );
                        refresh_in_background(state, fill);
                    }
                    return respond(
                        state.cache.forms(),
                        &parts,
                        policy,
                        &entry,
                        Served::StaleWhileRevalidate(layer),
                        now,
                    );
                }
                Use::Revalidate => {
                    let fresh = facts.age < facts.lifetime && verdict == Verdict::Valid;
                    forward = if fresh {
                        Forward::Request
                    } else {
                        Forward::Stale
                    };
                    stale = Some((entry, layer));
                }
            }
        }
    }
    if parts.headers.contains_key(header::RANGE) && parts.method == Method::GET {
        // The whole response could not answer: a stored part may, else the
        // range is asked of the upstream (and a part it sends kept).
        let fill = Fill::new(policy, key, primary, tenant, &params, &parts, client, None)
            .asking(asked.cc.no_store);
        return partial::serve(state, &parts, fill, &asked, forward).await;
    }
    if asked.cc.only_if_cached {
        return error_response(&ProxyError::NotCached, Served::OnlyIfCached);
    }
    let validators = stale.as_ref().map(|(entry, _)| entry);
    let fill = Fill::new(
        policy, key, primary, tenant, &params, &parts, client, validators,
    )
    .asking(asked.cc.no_store);
    fill_and_respond(state, &parts, fill, &asked, forward, stale).await
}

pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Looks up `primary`; when it holds a vary index, looks up this request's
/// variant instead. Returns the key to use, what was found, and whether an
/// index was seen.
async fn lookup(
    state: &State,
    primary: CacheKey,
    headers: &HeaderMap,
    now: SystemTime,
) -> (CacheKey, Option<(Entry, Layer)>, bool) {
    match state.cache.lookup(&primary, now).await {
        Some((index, _)) if index.vary_index() => {
            let variant = primary.variant(&index.vary_names(), headers);
            (variant, state.cache.lookup(&variant, now).await, true)
        }
        found => (primary, found, false),
    }
}

/// What a write does to the cache once the upstream accepts it.
#[derive(Debug)]
struct WriteEffects {
    tenant: Box<str>,
    /// The request's host: absolute `Location`s on it count too.
    host: Option<Box<str>>,
    /// The written path: its cached GETs are purged on a 2xx or 3xx.
    path: Box<str>,
    /// Scopes of the events the route raises, purged on a 2xx.
    events: Vec<Scope>,
}

impl WriteEffects {
    fn of(policies: &PolicySet, matched: Option<&Match<'_>>, tenant: &str, parts: &Parts) -> Self {
        let mut events = Vec::new();
        if let Some(rule) = matched {
            let params: HashMap<String, String> = rule
                .params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            for event in &rule.policy.events {
                events.extend(scopes_for_event(policies, event, &params));
            }
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .map(|h| h.to_ascii_lowercase().into_boxed_str());
        Self {
            tenant: tenant.into(),
            host,
            path: normalize_path(parts.uri.path()).into(),
            events,
        }
    }

    /// Purges, everywhere, what the answer `status` (with `headers`) invalidates.
    async fn apply(self, state: &State, status: StatusCode, headers: &HeaderMap) {
        if !(status.is_success() || status.is_redirection()) {
            return;
        }
        let mut scopes = vec![Scope::Path(self.path)];
        // The URIs the answer names on this host are written too (RFC 9111 §4.4).
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(path) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| local_path(v, self.host.as_deref()))
            {
                scopes.push(Scope::Path(normalize_path(&path).into()));
            }
        }
        if status.is_success() {
            scopes.extend(self.events);
        }
        let at = state.invalidator.now_us();
        let marks: Vec<Mark> = scopes
            .into_iter()
            .map(|scope| Mark {
                tenant: Some(self.tenant.clone()),
                scope,
                at,
                soft: false,
            })
            .collect();
        if let Err(error) = state.invalidator.purge(&marks).await {
            warn!(%error, "a write's invalidation did not reach every instance");
        }
    }
}

/// The path of a URI reference on the request's host: a relative one, or an
/// absolute one naming that host (RFC 9111 §4.4: only the same host).
fn local_path(reference: &str, host: Option<&str>) -> Option<String> {
    let uri: Uri = reference.parse().ok()?;
    if let Some(authority) = uri.authority()
        && host.is_none_or(|host| !authority.as_str().eq_ignore_ascii_case(host))
    {
        return None;
    }
    Some(uri.path().to_owned()).filter(|p| p.starts_with('/'))
}

/// Forwards a request untouched by the cache, streaming both bodies.
async fn pass(
    state: &State,
    parts: Parts,
    body: Incoming,
    client: IpAddr,
    reason: BypassReason,
    effects: Option<WriteEffects>,
) -> Response<Body> {
    let served = Served::Bypass(reason);
    let Parts {
        method,
        uri,
        headers,
        ..
    } = parts;
    let headers = upstream::forward_headers(headers, &uri, Some(client));
    let body = if inbound::bodiless(&method) {
        Body::Empty
    } else {
        Body::stream(body)
    };
    let request = state
        .upstream
        .request(method, uri.path_and_query(), headers, body);
    relay(state, request, served, effects).await
}

/// Sends a request that bypasses the cache and streams the answer back,
/// applying a write's effects first.
async fn relay(
    state: &State,
    request: Result<Request<Body>, ProxyError>,
    served: Served,
    effects: Option<WriteEffects>,
) -> Response<Body> {
    let response = match request {
        Ok(request) => state.upstream.send(request).await,
        Err(error) => Err(error),
    };
    match response {
        Ok(response) => {
            let status = response.status();
            let (mut head, body) = response.into_parts();
            if let Some(effects) = effects {
                effects.apply(state, status, &head.headers).await;
            }
            upstream::strip_hop_by_hop(&mut head.headers);
            upstream::append_via(&mut head.headers);
            served.annotate(&mut head.headers, None, Some(status.as_u16()));
            Response::from_parts(head, Body::stream(body))
        }
        Err(error) => error_response(&error, served),
    }
}

fn error_response(error: &ProxyError, served: Served) -> Response<Body> {
    let mut response = error.to_response();
    served.annotate(response.headers_mut(), None, None);
    response.extensions_mut().insert(Failed);
    response
}

/// Forwards a `Range` request as asked, for an answer not stored.
async fn forward_range(state: &State, parts: &Parts, headers: HeaderMap) -> Response<Body> {
    let request = state.upstream.request(
        Method::GET,
        parts.uri.path_and_query(),
        headers,
        Body::Empty,
    );
    relay(state, request, Served::Bypass(BypassReason::Range), None).await
}

/// Everything a fetch needs, owned, so a background refresh can take it.
#[derive(Debug, Clone)]
pub(crate) struct Fill {
    policy: Arc<Policy>,
    /// The flight's key: the variant's when an index named it.
    key: CacheKey,
    /// The key without variant: where responses without `Vary` and vary
    /// indexes are stored.
    primary: CacheKey,
    pub(crate) tenant: Box<str>,
    pub(crate) path: Box<str>,
    pub(crate) tags: Vec<Box<str>>,
    uri: Uri,
    /// The request headers to forward: the client's (cleaned), or for a
    /// remembered fill only those the key is made of.
    headers: HeaderMap,
    /// Named in `X-Forwarded-For`; none for a remembered fill.
    client: Option<IpAddr>,
    /// The stale entry being revalidated: its validators go upstream, and a
    /// 304 refreshes it.
    stale: Option<Entry>,
    authorization: bool,
    no_store: bool,
    /// A HEAD revalidating a stale entry: ask with HEAD (RFC 9111 §4.3.5).
    head: bool,
}

impl Fill {
    #[allow(clippy::too_many_arguments)]
    fn new(
        policy: &Arc<Policy>,
        key: CacheKey,
        primary: CacheKey,
        tenant: &str,
        params: &[(&str, &str)],
        parts: &Parts,
        client: IpAddr,
        stale: Option<&Entry>,
    ) -> Self {
        // Only an entry with validators can be revalidated.
        let stale = stale.filter(|e| e.has_validators());
        Self {
            policy: Arc::clone(policy),
            key,
            primary,
            tenant: tenant.into(),
            path: normalize_path(parts.uri.path()).into(),
            tags: render_tags(policy, params, parts.uri.query()),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            client: Some(client),
            stale: stale.cloned(),
            // RFC 9111 §3.5: only responses that say so may be stored for
            // requests with credentials; a private policy keys on them instead.
            authorization: !policy.private && parts.headers.contains_key(header::AUTHORIZATION),
            no_store: false,
            head: parts.method == Method::HEAD && stale.is_some(),
        }
    }

    /// A fill to keep for rewarming: of the client's request only what the
    /// key is made of (`Host`, the tenant header, the policy's key headers,
    /// `Accept-Encoding`), so a replay fetches the shared entry, not this
    /// client's variant of it, and costs little to remember.
    fn remembered(mut self, tenant_header: Option<&http::HeaderName>) -> Self {
        let mut kept = HeaderMap::new();
        let names = [&header::HOST, &header::ACCEPT_ENCODING]
            .into_iter()
            .chain(tenant_header)
            .chain(self.policy.key_headers.iter());
        for name in names {
            for value in self.headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        self.headers = kept;
        self.client = None;
        self.authorization = false;
        self.stale = None;
        self.head = false;
        self
    }

    /// Roughly the bytes this fill holds, to bound what is remembered.
    pub(crate) fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + 16).sum();
        std::mem::size_of::<Self>()
            + self.uri.to_string().len()
            + self.tenant.len()
            + self.path.len()
            + headers
            + tags
    }

    #[cfg(test)]
    pub(crate) fn primary_key(&self) -> CacheKey {
        self.primary
    }

    /// A fill of `path` whose request carried `extra` bytes of headers.
    #[cfg(test)]
    pub(crate) fn for_test(path: &str, extra: usize) -> Self {
        let policy = Arc::new(Policy::rfc());
        let mut request = Request::get(path).header("x-tenant-id", "acme");
        if extra > 0 {
            request = request.header("x-padding", "p".repeat(extra));
        }
        let (parts, ()) = request.body(()).unwrap_or_default().into_parts();
        let key = CacheKey::new("acme", path, None, &parts.headers, &policy);
        Self::new(
            &policy,
            key,
            key,
            "acme",
            &[],
            &parts,
            IpAddr::from([127, 0, 0, 1]),
            None,
        )
    }

    fn asking(mut self, no_store: bool) -> Self {
        self.no_store = no_store;
        self
    }
}

/// The policy's tag templates filled in from this request, and the tag of
/// the whole endpoint.
pub(crate) fn render_tags(
    policy: &Policy,
    params: &[(&str, &str)],
    query: Option<&str>,
) -> Vec<Box<str>> {
    let mut tags: Vec<Box<str>> = policy
        .tags
        .iter()
        .map(|template| {
            let mut tag = String::new();
            for part in template {
                match part {
                    TagPart::Text(text) => tag.push_str(text),
                    TagPart::Param(name) => {
                        tag.push_str(
                            params
                                .iter()
                                .find(|(n, _)| *n == &**name)
                                .map_or("", |(_, v)| v),
                        );
                    }
                    TagPart::Query(name) => {
                        if let Some((_, value)) = query_pairs(query).find(|(n, _)| *n == **name) {
                            tag.push_str(&value);
                        }
                    }
                }
            }
            tag.into_boxed_str()
        })
        .collect();
    tags.push(route_tag(policy));
    tags
}

/// The result of asking the upstream on behalf of the cache.
enum Fetched {
    /// Stored-worthy: an entry every waiting request may get. `true` when
    /// a stale entry was revalidated (304) rather than fetched anew.
    Entry(Entry, bool),
    /// Not to be stored; the response goes to this client only.
    Response(Response<Body>, NotStored),
}

/// Asks the upstream for the cache: a GET (also for HEAD), without the
/// client's conditionals, but with the stale entry's validators.
async fn fetch(state: &State, fill: &Fill) -> Result<Fetched, ProxyError> {
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
    if let Some(stale) = fill.stale.as_ref().filter(|_| !fill.head) {
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
        && let Some(stale) = &fill.stale
        && (head.status != StatusCode::OK || !same_validators(stale, &head.headers))
    {
        // The representation changed: the stored one must not answer again.
        state.cache.remove(&fill.key).await;
        return Ok(Fetched::Response(
            Response::from_parts(head, Body::Empty),
            NotStored::NoLifetime,
        ));
    }
    if (head.status == StatusCode::NOT_MODIFIED || fill.head)
        && let Some(stale) = &fill.stale
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
                    sealed(entry, true)
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
                Response::from_parts(head, Body::stream(body)),
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
            Response::from_parts(head, Body::stream(body)),
            NotStored::TooLarge,
        ));
    }
    let collected = upstream::collect(body, fill.policy.max_body, state.upstream.timeout())
        .await
        .inspect_err(|_| state.upstream.body_failed())?;
    match collected {
        Collected::TooLarge { prefix, rest } => {
            let body = Body::Stream {
                prefix: Some(prefix),
                rest,
            };
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
            Ok(sealed(entry, false))
        }
    }
}

/// The entry to store and share; or, for the rare answer its encoding cannot
/// hold (a header name or tag over 64 KiB), a response for this client only.
fn sealed(parts: EntryParts, revalidated: bool) -> Fetched {
    match parts.seal() {
        Some(entry) => Fetched::Entry(entry, revalidated),
        None => {
            let mut headers = parts.headers;
            headers.insert(header::ETAG, parts.etag);
            let mut response = Response::new(Body::full(parts.body));
            *response.status_mut() = parts.status;
            *response.headers_mut() = headers;
            Fetched::Response(response, NotStored::TooLarge)
        }
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
        if *name == header::CONTENT_LENGTH {
            continue;
        }
        merged.remove(name);
        for value in fresh.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

fn make_entry(
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

/// A cache miss (or a stale entry to revalidate): lead or follow the key's
/// single flight, store what may be stored, and answer.
async fn fill_and_respond(
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
                return respond(
                    state.cache.forms(),
                    parts,
                    &fill.policy,
                    &entry,
                    miss(true, true, false, None),
                    SystemTime::now(),
                );
            }
            Part::Failed(error) => {
                return stale_or_error(
                    state.cache.forms(),
                    parts,
                    &fill.policy,
                    stale,
                    &error,
                    forward,
                );
            }
        }
    };
    // Across instances sharing Redis: one fetches under a short lease, the
    // others wait for its entry in L2 (and fetch themselves if it does not
    // come, or Redis cannot say).
    let mut _lease = None;
    if let Some(l2) = state.cache.l2().filter(|_| leader.is_some()) {
        let ttl = state.upstream.timeout().saturating_add(FOLLOWER_MARGIN);
        match l2.take_lease(&fill.key, ttl).await {
            Some(true) => {
                _lease = Some(Lease {
                    l2: l2.clone(),
                    key: fill.key,
                })
            }
            Some(false) => {
                if let Some(entry) = wait_for_shared(state, parts, &fill, asked, l2, ttl).await {
                    if let Some(leader) = leader {
                        leader.finish(Outcome::Shared(entry.clone()));
                    }
                    let served = miss(false, true, false, Some("collapsed-L2"));
                    return respond(
                        state.cache.forms(),
                        parts,
                        &fill.policy,
                        &entry,
                        served,
                        SystemTime::now(),
                    );
                }
            }
            None => {}
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
                return respond(
                    state.cache.forms(),
                    parts,
                    &fill.policy,
                    &entry,
                    served,
                    now,
                );
            }
            if let Some(leader) = leader {
                leader.finish(Outcome::Shared(entry.clone()));
            }
            if passing {
                state.flights.stored(&fill.key);
            }
            respond(
                state.cache.forms(),
                parts,
                &fill.policy,
                &entry,
                miss(true, false, revalidated, None),
                now,
            )
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
                return respond(
                    state.cache.forms(),
                    parts,
                    &fill.policy,
                    &entry,
                    Served::StaleIfError(layer),
                    now,
                );
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
            stale_or_error(
                state.cache.forms(),
                parts,
                &fill.policy,
                stale,
                &error,
                forward,
            )
        }
    }
}

/// How long a key whose answer could not be stored skips the single flight.
const HIT_FOR_PASS: Duration = Duration::from_secs(10);

/// Rejoins after an abandoned or slow flight, at most this often, before
/// fetching alone.
const FLIGHT_ROUNDS: usize = 3;

/// Whether an answer not stored for `reason` will likely not be stored for
/// the next request either (the answer's fault, not this request's).
fn marks_pass(reason: NotStored) -> bool {
    matches!(
        reason,
        NotStored::NoStore
            | NotStored::Private
            | NotStored::SetCookie
            | NotStored::VaryStar
            | NotStored::TooLarge
    )
}

/// A request's part in the single flight for its key.
enum Part {
    /// Fetch, and publish the outcome to the followers.
    Lead(crate::flight::Leader),
    /// Fetch for this client alone.
    Alone,
    /// Another request's fetch answered.
    Answered(Entry),
    /// Another request's fetch failed, for this request too.
    Failed(ProxyError),
}

/// Leads or follows the flight for the fill's key. A follower whose leader
/// went away or is too slow rejoins: the first to do so leads, the rest
/// follow it. A new leader first looks in L1 again: a flight that ended
/// between this request's lookup and its lead has stored its answer there.
async fn take_part(state: &State, parts: &Parts, fill: &Fill, asked: &freshness::Request) -> Part {
    let mut role = state.flights.join(fill.key);
    let mut rounds = 0;
    loop {
        match role {
            Role::Leader(leader) => {
                let now = SystemTime::now();
                if let Some(entry) = state.cache.lookup_local(&fill.key, now)
                    && answers(state, parts, fill, asked, &entry, now)
                {
                    leader.finish(Outcome::Shared(entry.clone()));
                    return Part::Answered(entry);
                }
                return Part::Lead(leader);
            }
            Role::Follower(mut follower) => {
                let limit = state.upstream.timeout().saturating_add(FOLLOWER_MARGIN);
                match follower.wait(limit).await {
                    Some(Outcome::Shared(entry))
                        if entry.vary_matches(&parts.headers)
                            && (!fill.authorization || entry.shared_ok()) =>
                    {
                        return Part::Answered(entry);
                    }
                    Some(Outcome::Failed(error)) => return Part::Failed(error),
                    // Not for us (another variant, private, too large).
                    Some(Outcome::Shared(_) | Outcome::NotShareable) => return Part::Alone,
                    _ if rounds >= FLIGHT_ROUNDS => return Part::Alone,
                    Some(Outcome::Abandoned) => role = state.flights.join(fill.key),
                    None => role = state.flights.take_over(&follower),
                }
                rounds += 1;
            }
        }
    }
}

/// How often an instance waiting on another's lease looks for its entry.
const LEASE_POLL: Duration = Duration::from_millis(20);

/// This instance's lease to fetch a key for every instance; given back
/// when dropped, whatever the fetch came to.
struct Lease {
    l2: crate::cache::l2::L2,
    key: CacheKey,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.l2.release_lease(&self.key);
    }
}

/// Waits, at most `limit`, for the entry another instance is fetching
/// under its lease; `None` when it does not come (its answer could not be
/// stored, its lease ended, or Redis cannot say).
async fn wait_for_shared(
    state: &State,
    parts: &Parts,
    fill: &Fill,
    asked: &freshness::Request,
    l2: &crate::cache::l2::L2,
    limit: Duration,
) -> Option<Entry> {
    let started = tokio::time::Instant::now();
    let mut released = 0;
    loop {
        tokio::time::sleep(LEASE_POLL).await;
        let now = SystemTime::now();
        if let (_, Some((entry, _)), _) = lookup(state, fill.primary, &parts.headers, now).await
            && answers(state, parts, fill, asked, &entry, now)
        {
            return Some(entry);
        }
        if started.elapsed() >= limit {
            return None;
        }
        match l2.leased(&fill.key).await {
            Some(true) => {}
            // Given back: its entry, if any, is a write away; look twice more.
            Some(false) => {
                released += 1;
                if released > 2 {
                    return None;
                }
            }
            None => return None,
        }
    }
}

/// Whether a stored entry may answer this request as a fresh hit would.
fn answers(
    state: &State,
    parts: &Parts,
    fill: &Fill,
    asked: &freshness::Request,
    entry: &Entry,
    now: SystemTime,
) -> bool {
    *entry.tenant() == *fill.tenant
        && state.invalidator.verdict(&fill.key, entry) == Verdict::Valid
        && entry.vary_matches(&parts.headers)
        && (!fill.authorization || entry.shared_ok())
        && asked.allows(&stored_facts(entry, now)) == Use::Fresh
}

/// What the freshness rules need to know of a stored entry at `now`.
fn stored_facts(entry: &Entry, now: SystemTime) -> Stored {
    Stored {
        age: entry.age(now),
        lifetime: entry.lifetime(),
        stale_while_revalidate: entry.stale_while_revalidate(),
        revalidate: entry.revalidate(),
        no_stale: entry.no_stale(),
        immutable: entry.immutable(),
    }
}

/// Stores a fetched entry unless a purge that covers it arrived while it was
/// being fetched (the generation check that keeps purged data out). An
/// entry with `Vary` goes under its variant's key, with an index under the
/// primary key naming the headers that pick the variant.
fn store_unless_purged(state: &State, fill: &Fill, entry: &Entry, now: SystemTime) -> bool {
    if state.invalidator.verdict(&fill.key, entry) != Verdict::Valid {
        return false;
    }
    if !entry.has_vary() {
        state.cache.store(fill.primary, entry.clone(), now);
    } else {
        let variant = fill.primary.variant(&entry.vary_names(), &fill.headers);
        state.cache.store(variant, entry.clone(), now);
        if let Some(index) = entry.index() {
            state.cache.store(fill.primary, index, now);
        }
    }
    true
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

/// Refreshes a stale entry without anyone waiting.
fn refresh_in_background(state: &Arc<State>, fill: Fill) {
    let state = Arc::clone(state);
    tokio::spawn(async move { refetch(&state, &fill).await });
}

/// Fetches and stores an entry with no client waiting (a refresh, a
/// rewarm); one per key at a time. Whether a new entry was stored.
pub(crate) async fn refetch(state: &Arc<State>, fill: &Fill) -> bool {
    let Role::Leader(leader) = state.flights.join(fill.key) else {
        return false; // a fetch for this key is already under way
    };
    // Another refresh may have stored a fresh entry between our read and
    // our lead: then there is nothing to do.
    let now = SystemTime::now();
    let (_, found, _) = lookup(state, fill.primary, &fill.headers, now).await;
    if let Some((entry, _)) = found
        && entry.age(now) < entry.lifetime()
        && !entry.revalidate()
        && state.invalidator.verdict(&fill.key, &entry) == Verdict::Valid
    {
        leader.finish(Outcome::Shared(entry));
        return false;
    }
    match fetch(state, fill).await {
        Ok(Fetched::Entry(entry, _)) => {
            if store_unless_purged(state, fill, &entry, SystemTime::now()) {
                leader.finish(Outcome::Shared(entry));
                true
            } else {
                leader.finish(Outcome::NotShareable);
                false
            }
        }
        Ok(Fetched::Response(..)) => {
            leader.finish(Outcome::NotShareable);
            false
        }
        Err(error) => {
            leader.finish(Outcome::Failed(error));
            false
        }
    }
}

/// Headers `respond` may add to the stored ones: ETag, Cache-Control,
/// CDN-Cache-Control, Age, Via, X-Cache, X-Cache-Layer, Cache-Status,
/// Accept-Ranges and a Content-Range or Content-Length.
const RESPONSE_HEADERS_ADDED: usize = 10;

/// An answer from a stored entry: 304 when the client's conditional matches,
/// 206 for a satisfiable byte range, else the stored response (without body
/// for HEAD).
fn respond(
    forms: Option<&Forms>,
    request: &Parts,
    policy: &Policy,
    entry: &Entry,
    served: Served,
    now: SystemTime,
) -> Response<Body> {
    let mut headers = answer_headers(policy, entry, served, now);
    let etag = entry.etag();
    // A compressed entry answers in the form the client takes, each form
    // with its own ETag; a range is always a range of the decoded body.
    let coding = entry.compressed();
    let ranged = request.method == Method::GET && request.headers.contains_key(header::RANGE);
    let form = match coding {
        None => Form::Stored,
        Some(_) if ranged => Form::Identity,
        Some(coding) => compression::negotiate(&request.headers, coding),
    };
    let etag = match (coding, form) {
        (Some(coding), Form::Stored) => tagged(&etag, coding),
        (Some(_), Form::Gzip) => tagged(&etag, Coding::Gzip),
        _ => etag,
    };
    if coding.is_some() {
        add_vary_accept_encoding(&mut headers);
    }

    let (status, body) = if entry.status().is_success()
        && freshness::not_modified(&request.headers, &etag, &headers, now)
    {
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ] {
            headers.remove(name);
        }
        (StatusCode::NOT_MODIFIED, Body::Empty)
    } else {
        let body = match (coding, form) {
            (Some(coding), Form::Identity | Form::Gzip) => {
                match coded_form(forms, entry, coding, form, policy.max_body) {
                    Ok(body) => {
                        if form == Form::Gzip {
                            headers.insert(header::CONTENT_ENCODING, Coding::Gzip.header_value());
                        } else {
                            headers.remove(header::CONTENT_ENCODING);
                        }
                        body
                    }
                    Err(error) => {
                        warn!(%error, "a stored entry could not be decoded");
                        return error_response(&ProxyError::Internal, served);
                    }
                }
            }
            _ => entry.body(),
        };
        match requested_range(request, entry, body.len()) {
            Some(Ok((start, end))) => {
                let len = body.len();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
                (
                    StatusCode::PARTIAL_CONTENT,
                    Body::full(body.slice(start..=end)),
                )
            }
            Some(Err(len)) => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
                headers.remove(header::CONTENT_TYPE);
                (StatusCode::RANGE_NOT_SATISFIABLE, Body::Empty)
            }
            None if request.method == Method::HEAD => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                (entry.status(), Body::Empty)
            }
            None => (entry.status(), Body::full(body)),
        }
    };
    headers.insert(header::ETAG, etag);
    if entry.status() == StatusCode::OK {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The decoded body of a compressed entry, or its gzip, kept in `forms`
/// so a hot entry is decoded once.
fn coded_form(
    forms: Option<&Forms>,
    entry: &Entry,
    coding: Coding,
    form: Form,
    max_body: usize,
) -> Result<Bytes, compression::DecodeError> {
    let stored = entry.body();
    let limit = max_body.max(DEFAULT_MAX_BODY);
    let decode = || compression::decode(coding, &stored, limit);
    let Some(forms) = forms else {
        return match form {
            Form::Gzip => decode().map(|decoded| compression::gzip(&decoded)),
            _ => decode(),
        };
    };
    let decoded = forms.get_or_make(&stored, Made::Decoded, decode)?;
    match form {
        Form::Gzip => forms.get_or_make(&stored, Made::Gzip, || Ok(compression::gzip(&decoded))),
        _ => Ok(decoded),
    }
}

/// The ETag of a coded form of the representation tagged `etag`:
/// `"abc"` → `"abc-br"` (a strong ETag names one exact byte sequence).
fn tagged(etag: &HeaderValue, coding: Coding) -> HeaderValue {
    let text = etag.as_bytes();
    let Some(body) = text.strip_suffix(b"\"") else {
        return etag.clone();
    };
    let mut out = Vec::with_capacity(text.len() + 6);
    out.extend_from_slice(body);
    out.push(b'-');
    out.extend_from_slice(coding.as_str().as_bytes());
    out.push(b'"');
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| etag.clone())
}

/// Adds `Accept-Encoding` to `Vary` unless it is named already.
fn add_vary_accept_encoding(headers: &mut HeaderMap) {
    let named = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| name.trim().eq_ignore_ascii_case("accept-encoding") || name.trim() == "*");
    if !named {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The stored headers as an answer from `entry` carries them: with the
/// policy's `Cache-Control` / `CDN-Cache-Control`, `Age`, `Via` and what
/// folio did added.
fn answer_headers(policy: &Policy, entry: &Entry, served: Served, now: SystemTime) -> HeaderMap {
    // Room for what is added here and by the caller without growing the map.
    let mut headers = entry.headers(RESPONSE_HEADERS_ADDED);
    if let Some(cache_control) = &policy.cache_control {
        headers.insert(header::CACHE_CONTROL, cache_control.clone());
    }
    if let Some(cdn) = &policy.cdn_cache_control {
        headers.insert(CDN_CACHE_CONTROL, cdn.clone());
    }
    headers.insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
    upstream::append_via(&mut headers);
    let forwarded = match served {
        Served::Miss {
            revalidated: true, ..
        } => Some(304),
        Served::Miss { .. } => Some(entry.status().as_u16()),
        _ => None,
    };
    served.annotate(&mut headers, Some(entry.ttl_secs(now)), forwarded);
    headers
}

/// The byte range a GET asks of a stored full 200 (RFC 9110 §14): `None`
/// to send the whole body (no range, several ranges, an unparsable one, or
/// an `If-Range` that does not match); `Err(len)` when unsatisfiable.
fn requested_range(
    request: &Parts,
    entry: &Entry,
    len: usize,
) -> Option<Result<(usize, usize), usize>> {
    if request.method != Method::GET || entry.status() != StatusCode::OK {
        return None;
    }
    let asked = ranges::asked(request.headers.get(header::RANGE)?.to_str().ok()?)?;
    if !if_range_holds(&request.headers, entry) {
        return None;
    }
    if len == 0 && matches!(asked, ranges::Asked::Suffix(n) if n > 0) {
        return None; // satisfiable, but no byte to send: the whole (empty) body
    }
    match asked.resolve(u64::try_from(len).ok()?) {
        Ok((first, last)) => Some(Ok((
            usize::try_from(first).ok()?,
            usize::try_from(last).ok()?,
        ))),
        Err(ranges::Unsatisfiable) => Some(Err(len)),
    }
}

/// Whether the request's `If-Range`, if any, names the stored
/// representation: a strong ETag match, or exactly its `Last-Modified`
/// (RFC 9110 §13.1.5).
fn if_range_holds(request: &HeaderMap, entry: &Entry) -> bool {
    let Some(condition) = request.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(condition) = condition.to_str() else {
        return false;
    };
    if condition.starts_with('"') {
        entry.upstream_etag() && entry.etag_bytes() == condition.as_bytes()
    } else {
        entry
            .header(&header::LAST_MODIFIED)
            .is_some_and(|lm| lm.as_bytes() == condition.as_bytes())
    }
}
