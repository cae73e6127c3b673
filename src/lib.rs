//! folio: a caching reverse proxy for read-heavy JSON APIs.
//!
//! # Reading order
//! The modules in the order a request meets them:
//! - `server`: accept loop, HTTP/1.1 + h2c, graceful shutdown;
//! - `proxy`: the pipeline, top to bottom (start here);
//! - `policy`: endpoint policies from YAML, route matching;
//! - `settings`: process settings, where the tenant comes from;
//! - `key`: the cache key;
//! - `cache`: the tiers (`l1` moka, `l2` Redis) and the stored `entry`;
//! - `flight`: one upstream fetch per key;
//! - `freshness`: RFC 9111 rules as pure functions;
//! - `upstream`: the pooled client and proxy header hygiene;
//! - `outcome`: `X-Cache` / `Cache-Status` vocabulary;
//! - `body`, `error`: the body type and request errors.

mod body;
mod cache;
mod error;
mod flight;
mod freshness;
mod key;
mod outcome;
mod policy;
mod proxy;
mod server;
mod settings;
mod upstream;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

pub use policy::units::{parse_duration, parse_size};
pub use policy::{PolicyError, PolicyErrors, PolicySet};
pub use settings::{Settings, TenantSource};

/// Why folio could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Upstream(String),
    #[error("invalid Redis URL: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Serves on `listener` until `shutdown` resolves, then drains in-flight
/// requests for at most `settings.shutdown_grace`.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    policies: PolicySet,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let upstream = upstream::Upstream::new(
        &settings.upstream,
        settings.connect_timeout,
        settings.upstream_timeout,
    )
    .map_err(Error::Upstream)?;
    let cache = cache::Cache::new(
        settings.l1_capacity,
        settings.redis.as_deref(),
        settings.l2_timeout,
    )?;
    let state = Arc::new(proxy::State {
        policies: ArcSwap::from_pointee(policies),
        cache,
        flights: Arc::default(),
        upstream,
        tenant: settings.tenant.clone(),
    });
    tracing::info!(
        upstream = %settings.upstream,
        cache = %state.cache.describe(),
        policies = state.policies.load().len(),
        "folio started"
    );
    server::serve(listener, state, shutdown, settings.shutdown_grace).await;
    Ok(())
}
