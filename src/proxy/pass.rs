//! Pass-through: requests the cache does not serve go to the upstream
//! with both bodies streamed, and a write the upstream accepts purges what
//! it changed, on every instance (RFC 9111 §4.4), before its answer goes
//! back.

use std::collections::HashMap;
use std::net::IpAddr;

use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use tracing::warn;

use super::State;
use super::respond::error_response;
use crate::body::Body;
use crate::error::ProxyError;
use crate::inbound;
use crate::invalidation::{Mark, Scope, scopes_for_event};
use crate::key::{canonical_path, normalize_path};
use crate::outcome::{BypassReason, Served};
use crate::policy::{Match, Policy, PolicySet};
use crate::upstream;

/// Why the cache stays out of a request its policy covers, if it does.
pub(super) fn bypass_reason(policy: &Policy, parts: &Parts) -> Option<BypassReason> {
    if !policy.caches(&parts.method) {
        return Some(if policy.cache {
            BypassReason::Method
        } else {
            BypassReason::CacheOff
        });
    }
    // A cookie may change the answer without the upstream saying so (few
    // send `Vary: Cookie`): shared entries are never built from one.
    if !policy.private && parts.headers.contains_key(header::COOKIE) {
        return Some(BypassReason::Credentials);
    }
    // Asked to act as another method: never answered from, nor stored in,
    // the cache. Nor does it purge: most upstreams ignore the header, and a
    // reader must not be able to purge what it likes.
    if inbound::method_override(&parts.headers, &parts.method).is_some() {
        return Some(BypassReason::MethodOverride);
    }
    None
}

/// What a write does to the cache once the upstream accepts it.
#[derive(Debug)]
pub(super) struct WriteEffects {
    pub(super) tenant: Box<str>,
    /// The request's host: absolute `Location`s on it count too.
    pub(super) host: Option<Box<str>>,
    /// The written path: its cached GETs are purged on a 2xx or 3xx.
    pub(super) path: Box<str>,
    /// Scopes of the events the route raises, purged on a 2xx.
    pub(super) events: Vec<Scope>,
}

impl WriteEffects {
    pub(super) fn of(
        policies: &PolicySet,
        matched: Option<&Match<'_>>,
        tenant: &str,
        parts: &Parts,
    ) -> Self {
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
    pub(super) async fn apply(self, state: &State, status: StatusCode, headers: &HeaderMap) {
        if !(status.is_success() || status.is_redirection()) {
            return;
        }
        let mut scopes = Vec::with_capacity(3 + self.events.len());
        // The URIs the answer names on this host are written too (RFC 9111 §4.4).
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(path) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| local_path(v, self.host.as_deref(), &self.path))
                // A path with no one reading is refused, so never stored.
                && let Ok(path) = canonical_path(&path)
            {
                scopes.push(Scope::Path(path.into()));
            }
        }
        scopes.push(Scope::Path(self.path));
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

/// The path of a URI reference on the request's host (RFC 9111 §4.4: only
/// the same host): a relative one, resolved against the request's `base`
/// path (RFC 3986 §5.2), or an absolute one naming that host, on any port
/// (folio's keys hold the host without its port).
fn local_path(reference: &str, host: Option<&str>, base: &str) -> Option<String> {
    let reference = reference.split('#').next()?.trim();
    let first_segment = reference.split(['/', '?']).next().unwrap_or("");
    if reference.starts_with("//") || first_segment.contains(':') {
        let absolute = if reference.starts_with("//") {
            format!("http:{reference}")
        } else {
            reference.to_owned()
        };
        let uri: Uri = absolute.parse().ok()?;
        let named = uri.authority()?.host();
        return host
            .filter(|host| named.eq_ignore_ascii_case(host))
            .map(|_| uri.path().to_owned())
            .filter(|p| p.starts_with('/'));
    }
    let path = reference.split('?').next().unwrap_or("");
    if path.starts_with('/') {
        return Some(path.to_owned());
    }
    if path.is_empty() {
        return None;
    }
    let directory = &base[..base.rfind('/').map_or(0, |at| at + 1)];
    Some(format!("{directory}{path}")).filter(|p| p.starts_with('/'))
}

/// Forwards a request untouched by the cache, streaming both bodies.
pub(super) async fn pass(
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
            Response::from_parts(head, state.upstream.stream(None, body))
        }
        Err(error) => error_response(&error, served),
    }
}

/// Forwards a `Range` request as asked, for an answer not stored.
pub(super) async fn forward_range(
    state: &State,
    parts: &Parts,
    headers: HeaderMap,
) -> Response<Body> {
    let request = state.upstream.request(
        Method::GET,
        parts.uri.path_and_query(),
        headers,
        Body::Empty,
    );
    relay(state, request, Served::Bypass(BypassReason::Range), None).await
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn locations_on_the_same_host_name_a_path() {
        let host = Some("shop.example");
        for (reference, path) in [
            ("/items/3", Some("/items/3")),
            ("/items/3?x=1#top", Some("/items/3")),
            ("items/6", Some("/api/items/6")),
            ("../x", Some("/api/../x")),
            ("http://shop.example/items/3", Some("/items/3")),
            ("http://Shop.Example:8080/items/3", Some("/items/3")),
            ("https://shop.example:443/items/3?x", Some("/items/3")),
            ("//shop.example:9/items/3", Some("/items/3")),
            ("http://elsewhere.example/items/3", None),
            ("//elsewhere.example/items/3", None),
            ("mailto:someone@shop.example", None),
            ("", None),
            ("?only=query", None),
        ] {
            assert_eq!(
                local_path(reference, host, "/api/list").as_deref(),
                path,
                "{reference:?}"
            );
        }
        assert_eq!(local_path("http://shop.example/x", None, "/"), None);
    }
}
