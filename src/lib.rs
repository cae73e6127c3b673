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
//! - `invalidation`: purge marks, checked on every read and shared by every
//!   instance through Redis; `admin`: the purge and event API; `rewarm`:
//!   refetching popular entries after a purge;
//! - `freshness`: RFC 9111 rules as pure functions;
//! - `upstream`: the pooled client and proxy header hygiene;
//! - `outcome`: `X-Cache` / `Cache-Status` vocabulary;
//! - `body`, `error`: the body type and request errors.

mod admin;
mod body;
mod cache;
mod error;
mod flight;
mod freshness;
mod invalidation;
mod key;
mod outcome;
mod policy;
mod proxy;
mod rewarm;
mod server;
mod settings;
mod upstream;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

pub use admin::AdminAuth;
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
    #[error("{0}")]
    Config(String),
}

/// Where folio listens: the proxy, and optionally the admin API.
#[derive(Debug)]
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(proxy: TcpListener) -> Self {
        Self { proxy, admin: None }
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at
/// most `settings.shutdown_grace`.
pub async fn run(
    listeners: impl Into<Listeners>,
    settings: Settings,
    policies: PolicySet,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let Listeners {
        proxy: listener,
        admin: admin_listener,
    } = listeners.into();
    let upstream = upstream::Upstream::new(
        &settings.upstream,
        settings.connect_timeout,
        settings.upstream_timeout,
    )
    .map_err(Error::Upstream)?;
    let redis = match (&settings.redis, settings.redis_cluster.is_empty()) {
        (Some(_), false) => {
            return Err(Error::Config(
                "give --redis or --redis-cluster, not both".into(),
            ));
        }
        (Some(url), true) => Some(cache::RedisTarget::Single(url.clone())),
        (None, false) => Some(cache::RedisTarget::Cluster(settings.redis_cluster.clone())),
        (None, true) => None,
    };
    let cache = cache::Cache::new(settings.l1_capacity, redis.as_ref(), settings.l2_timeout)?;
    let invalidator = Arc::new(invalidation::Invalidator::new(cache.clone()));
    invalidator.spawn_listener();
    let state = Arc::new(proxy::State {
        policies: ArcSwap::from_pointee(policies),
        cache,
        flights: Arc::default(),
        upstream,
        tenant: settings.tenant.clone(),
        invalidator,
        hot: rewarm::Hot::default(),
        cdn: settings.cdn,
    });
    tracing::info!(
        upstream = %settings.upstream,
        cache = %state.cache.describe(),
        policies = state.policies.load().len(),
        "folio started"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let grace = settings.shutdown_grace;
    let admin_server = admin_listener.map(|listener| {
        if settings.admin.is_open() {
            tracing::warn!(
                "admin API: no --admin-token configured, so purges and events are accepted from loopback only"
            );
        }
        let admin = Arc::new(admin::Admin { state: Arc::clone(&state), auth: settings.admin.clone() });
        let handler = move |request, peer| admin::handle(Arc::clone(&admin), request, peer);
        tokio::spawn(server::serve(listener, handler, stopping(), grace))
    });
    let handler = move |request, peer| proxy::handle(Arc::clone(&state), request, peer);
    let proxy_server = server::serve(listener, handler, stopping(), grace);
    tokio::pin!(proxy_server);
    tokio::select! {
        () = &mut proxy_server => {}
        () = shutdown => {
            let _ = stop.send(true);
            proxy_server.await;
        }
    }
    if let Some(admin_server) = admin_server {
        let _ = admin_server.await;
    }
    Ok(())
}
