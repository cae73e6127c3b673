//! folio: a caching reverse proxy for read-heavy JSON APIs.
//!
//! # Reading order
//! [`run`] below wires the house; then the rooms in the order a request
//! meets them (docs/ARCHITECTURE.md draws the walk and what each may call):
//! - `server`: accept loop, HTTP/1.1 + h2c (or TLS with h2 and HTTP/1.1 by
//!   ALPN), graceful shutdown;
//! - `proxy`: the spine, one screen (start here), and its phases under
//!   `proxy/`: `admit` (the canonical request), `pass` (pass-through and a
//!   write's purges), `lookup` (look up, decide), `respond` (answers from an
//!   entry), `miss`, `coalesce`, `fetch` and `fill` (one fetch per key,
//!   stored), `partial` (ranges), `record` (metrics, access log), `rewarm`
//!   (refetching popular entries after a purge);
//! - `inbound`: the client's request made into the one canonical request
//!   folio decides on and forwards (hostile headers refused or removed);
//! - `policy`: endpoint policies from YAML, route matching;
//! - `settings`: process settings, where the tenant comes from;
//! - `key`: the cache key;
//! - `cache`: the tiers (`l1` in process, `l2` Redis), the stored `entry`,
//!   and the `encryption` of entries at rest in Redis;
//! - `flight`: one upstream fetch per key;
//! - `invalidation`: purge marks, checked on every read and shared by every
//!   instance through Redis; `admin`: the purge and event API;
//! - `freshness`: RFC 9111 rules as pure functions; `ranges`: byte ranges
//!   and stored parts; `compression`: the stored form and the coded ones;
//! - `upstream`: the pooled client and proxy header hygiene;
//! - `outcome`: `X-Cache` / `Cache-Status` vocabulary;
//! - `body`, `error`: the body type, request errors and start errors;
//! - `tls`: rustls (on ring) for the listener, the upstream and Redis.
//!
//! Around it, for operators: `start` (what a run builds before it serves),
//! `housekeeping` (background work: sampling, SIGHUP, warming), `access`
//! (the access log, written off the request path), `metrics` (counters,
//! Prometheus text), `ops` (health, stats), the dashboard
//! (`dashboard.html`), `reload` (SIGHUP and `/_folio/reload`), `explain`,
//! `warm`, and `config` (the `--config` file).

mod access;
mod admin;
#[doc(hidden)]
pub mod bench;
mod body;
mod cache;
mod compression;
pub mod config;
mod error;
mod explain;
mod files;
mod flight;
mod freshness;
mod housekeeping;
mod inbound;
mod invalidation;
mod key;
mod metrics;
mod ops;
mod outcome;
mod policy;
#[cfg(test)]
mod properties;
mod proxy;
mod ranges;
mod reload;
mod server;
mod settings;
mod start;
mod tls;
mod upstream;
mod warm;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use access::{AccessFormat, AccessTarget};
#[doc(hidden)]
pub use admin::routes as admin_routes;
pub use error::Error;
pub use explain::explain_text;
pub use policy::units::{parse_duration, parse_size};
pub use policy::{PolicyError, PolicyErrors, PolicySet};
pub use settings::{AdminAuth, Cidr, Settings, TenantSource};
pub use tls::{redact_url, trusted_client_config};
pub use warm::{WarmReport, warm};

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
    let (state, served) = start::state(&settings, policies)?;
    let access = state.access.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let limits = server::Limits {
        idle: settings.idle_timeout,
        grace: settings.shutdown_grace,
    };
    housekeeping::spawn(
        &state,
        &settings,
        served.clone(),
        listener.local_addr().ok(),
        stopping(),
    );
    let admin_server = admin_listener.map(|listener| {
        let admin = admin::Admin::new(Arc::clone(&state), &settings, listener.local_addr().ok());
        let admin = Arc::new(admin);
        let handler = move |request, peer| admin::handle(Arc::clone(&admin), request, peer);
        tokio::spawn(server::serve(listener, handler, stopping(), limits, None))
    });
    let handler = move |request, peer| proxy::handle(Arc::clone(&state), request, peer);
    let acceptor = served
        .as_ref()
        .map(|served| tokio_rustls::TlsAcceptor::from(served.server_config()));
    let proxy_server = server::serve(listener, handler, stopping(), limits, acceptor);
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
    // Every request has finished: its line is buffered; write them all.
    if let Some(access) = access {
        access.close();
    }
    Ok(())
}
