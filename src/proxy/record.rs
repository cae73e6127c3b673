//! What a request leaves behind: its metrics and its access log line, read
//! from the headers that describe the answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Response, Uri};

use super::State;
use super::respond::{Failed, Refused};
use crate::body::Body;
use crate::error::ProxyError;
use crate::metrics;
use crate::outcome::{X_CACHE, X_CACHE_LAYER};

/// What `serve` learns about a request that metrics and the access log need.
#[derive(Debug)]
pub(super) struct Ctx {
    /// The policy's name (never the raw path: bounded label cardinality).
    pub(super) endpoint: Arc<str>,
    pub(super) tenant: Arc<str>,
}

/// The answer to a request whose handling panicked, counted.
pub(super) fn panicked(state: &State) -> Response<Body> {
    state.metrics.panics.fetch_add(1, Ordering::Relaxed);
    tracing::error!("a request panicked; answered 500 (see folio_panics_total)");
    let mut response = ProxyError::Internal.to_response();
    response.extensions_mut().insert(Failed);
    response
}

/// Counts the answer, and writes its access log line when the log is on
/// (`log` holds the request's method and URI then).
pub(super) fn record(
    state: &State,
    ctx: &Ctx,
    response: &Response<Body>,
    client: IpAddr,
    log: Option<(Method, Uri)>,
    took: Duration,
    upstream: Duration,
) {
    // One pass over the answer's few headers rather than two hashed
    // lookups of custom names; the first value of each, as `get` gives.
    let (mut x_cache, mut x_cache_layer) = (None, None);
    for (name, value) in response.headers() {
        if x_cache.is_none() && name == X_CACHE {
            x_cache = Some(value);
        } else if x_cache_layer.is_none() && name == X_CACHE_LAYER {
            x_cache_layer = Some(value);
        }
    }
    fn text(value: Option<&HeaderValue>) -> &[u8] {
        value.map_or(b"-", HeaderValue::as_bytes)
    }
    let (result, layer) = if response.extensions().get::<Refused>().is_some() {
        (metrics::Result::Refused, metrics::Layer::None)
    } else {
        let failed = response.extensions().get::<Failed>().is_some();
        classify(text(x_cache), text(x_cache_layer), failed)
    };
    state
        .metrics
        .request(&ctx.endpoint, &ctx.tenant, result, layer, took);
    if let (Some(access), Some((method, uri))) = (&state.access, log) {
        access.record(&crate::access::Line {
            at: SystemTime::now(),
            client,
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
}

/// The metric labels of an answer, from the headers that describe it.
fn classify(x_cache: &[u8], layer: &[u8], failed: bool) -> (metrics::Result, metrics::Layer) {
    let result = match x_cache {
        _ if failed => metrics::Result::Error,
        b"HIT" => metrics::Result::Hit,
        b"STALE" => metrics::Result::Stale,
        b"BYPASS" => metrics::Result::Bypass,
        _ => metrics::Result::Miss,
    };
    let layer = match layer {
        b"L1" => metrics::Layer::L1,
        b"L2" => metrics::Layer::L2,
        _ => metrics::Layer::Upstream,
    };
    (result, layer)
}
