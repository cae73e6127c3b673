//! folio: a caching reverse proxy for read-heavy JSON APIs.
//!
//! # Reading order
//! The modules in the order a request meets them:
//! - `server`: accept loop, HTTP/1.1 + h2c (or TLS with h2 and HTTP/1.1 by
//!   ALPN), graceful shutdown;
//! - `proxy`: the pipeline, top to bottom (start here);
//! - `inbound`: the client's request made into the one canonical request
//!   folio decides on and forwards (hostile headers refused or removed);
//! - `policy`: endpoint policies from YAML, route matching;
//! - `settings`: process settings, where the tenant comes from;
//! - `key`: the cache key;
//! - `cache`: the tiers (`l1` in process, `l2` Redis), the stored `entry`,
//!   and the `encryption` of entries at rest in Redis;
//! - `flight`: one upstream fetch per key;
//! - `invalidation`: purge marks, checked on every read and shared by every
//!   instance through Redis; `admin`: the purge and event API; `rewarm`:
//!   refetching popular entries after a purge;
//! - `freshness`: RFC 9111 rules as pure functions; `ranges`: byte ranges
//!   and stored parts;
//! - `upstream`: the pooled client and proxy header hygiene;
//! - `outcome`: `X-Cache` / `Cache-Status` vocabulary;
//! - `body`, `error`: the body type and request errors;
//! - `tls`: rustls (on ring) for the listener, the upstream and Redis.
//!
//! Around it, for operators: `access` (the access log, written off the
//! request path), `metrics` (counters, Prometheus text), `ops`
//! (health, stats), the dashboard (`dashboard.html`), `reload` (SIGHUP and
//! `/_folio/reload`), `explain`, `warm`, and `config` (the `--config` file).

mod access;
mod admin;
mod body;
mod cache;
mod compression;
pub mod config;
mod error;
mod explain;
mod flight;
mod freshness;
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
mod tls;
mod upstream;
mod warm;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

pub use access::{AccessFormat, AccessTarget};
#[doc(hidden)]
pub use admin::routes as admin_routes;
pub use policy::units::{parse_duration, parse_size};
pub use policy::{PolicyError, PolicyErrors, PolicySet};
pub use settings::{AdminAuth, Cidr, Settings, TenantSource};
pub use tls::{redact_url, trusted_client_config};
pub use warm::{WarmReport, warm};

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
    settings
        .admin
        .validate()
        .map_err(|e| Error::Config(format!("refusing to start: {e}")))?;
    let known_tenants = settings.admin.tenant_tokens.iter().map(|(t, _)| t.as_str());
    let metrics =
        Arc::new(metrics::Metrics::new(settings.metrics_tenants).with_known_tenants(known_tenants));
    let access = access::AccessLog::start(
        &settings.access_log,
        settings.log_format,
        settings.access_log_buffer,
        Arc::clone(&metrics),
    )
    .map_err(|e| Error::Config(format!("cannot open the access log: {e}")))?
    .map(Arc::new);
    let security = Security::load(&settings)?;
    let upstream = upstream::Upstream::new(
        &settings.upstream,
        settings.connect_timeout,
        settings.upstream_timeout,
        security.trust.as_ref(),
    )
    .map_err(Error::Upstream)?
    .with_metrics(Arc::clone(&metrics));
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
    let cache = cache::Cache::new(
        settings.l1_capacity,
        redis.as_ref(),
        settings.l2_timeout,
        &metrics,
        cache::Protection {
            trust: security.trust.clone(),
            keyring: security.keyring.clone(),
        },
    )?;
    if security.keyring.is_some() && redis.is_none() {
        tracing::warn!(
            "--encryption-keys is set but there is no Redis: L1 holds plain entries, so nothing is encrypted"
        );
    }
    let invalidator = Arc::new(invalidation::Invalidator::new(
        cache.clone(),
        Arc::clone(&metrics),
    ));
    invalidator.spawn_listener();
    let state = Arc::new(proxy::State {
        policies: ArcSwap::from_pointee(policies),
        cache,
        flights: Arc::default(),
        upstream,
        tenant: settings.tenant.clone(),
        invalidator,
        hot: proxy::Hot::default(),
        cdn: settings.cdn,
        metrics,
        trusted_proxies: settings.trusted_proxies.clone(),
        access: access.clone(),
        unmatched: Arc::from("-"),
        started: std::time::Instant::now(),
    });
    tracing::info!(
        upstream = %tls::redact_url(&settings.upstream.to_string()),
        cache = %state.cache.describe(),
        tls = security.served.is_some(),
        encrypted_l2 = security.keyring.is_some(),
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
    let limits = server::Limits {
        idle: settings.idle_timeout,
        grace: settings.shutdown_grace,
    };
    spawn_housekeeping(
        &state,
        &settings,
        security.served.clone(),
        listener.local_addr().ok(),
        stopping(),
    );
    let admin_server = admin_listener.map(|listener| {
        let listen = listener.local_addr().ok();
        if settings.admin.operator_token.is_none() && !settings.admin.is_open() {
            tracing::warn!(
                "admin API: tenant tokens but no --admin-token, so stats and metrics stay readable without a token"
            );
        }
        if settings.admin.is_open() {
            tracing::warn!(
                "admin API: no --admin-token configured, so purges and events are accepted from loopback only, and only requests naming localhost, a loopback address or the listener's address are answered"
            );
        }
        let admin = Arc::new(admin::Admin {
            state: Arc::clone(&state),
            auth: settings.admin.clone(),
            thresholds: settings.config.health.clone(),
            policies_dir: settings.policies_dir.clone(),
            listen,
        });
        let handler = move |request, peer| admin::handle(Arc::clone(&admin), request, peer);
        tokio::spawn(server::serve(listener, handler, stopping(), limits, None))
    });
    let handler = move |request, peer| proxy::handle(Arc::clone(&state), request, peer);
    let acceptor = security
        .served
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

/// The TLS and encryption material of a run, read once at start.
struct Security {
    /// Roots for an `https://` upstream and `rediss://` Redis, loaded only
    /// when one of them is used.
    trust: Option<tls::Trust>,
    /// The listener's certificate, when it speaks TLS.
    served: Option<Arc<tls::ServedCertificate>>,
    /// The keys sealing entries in Redis.
    keyring: Option<Arc<cache::encryption::Keyring>>,
}

impl Security {
    fn load(settings: &Settings) -> Result<Self, Error> {
        let config = |e: &dyn std::fmt::Display| Error::Config(format!("refusing to start: {e}"));
        let tls_redis = settings
            .redis
            .iter()
            .chain(&settings.redis_cluster)
            .any(|url| {
                let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
                scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
            });
        let tls_upstream = settings.upstream.scheme() == Some(&http::uri::Scheme::HTTPS);
        let trust = if tls_redis || tls_upstream {
            Some(tls::Trust::load(settings.ca_file.as_deref()).map_err(|e| config(&e))?)
        } else {
            if settings.ca_file.is_some() {
                tracing::warn!(
                    "--ca-file is set, but neither the upstream (https://) nor Redis (rediss://) uses TLS"
                );
            }
            None
        };
        let served = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls::ServedCertificate::load(cert, key).map_err(|e| config(&e))?)
            }
            (None, None) => None,
            (Some(_), None) => return Err(config(&"--tls-cert needs --tls-key")),
            (None, Some(_)) => return Err(config(&"--tls-key needs --tls-cert")),
        };
        let keyring = settings
            .encryption_keys
            .as_deref()
            .map(cache::encryption::Keyring::load)
            .transpose()
            .map_err(|e| config(&e))?
            .map(Arc::new);
        if let Some(keyring) = &keyring {
            tracing::info!(
                sealing_key = keyring.sealing_id(),
                "L2 entries are encrypted"
            );
        }
        Ok(Self {
            trust,
            served,
            keyring,
        })
    }
}

/// What `folio explain` prints for a request (see `explain.rs`).
pub fn explain_text(
    policies: &PolicySet,
    tenants: &TenantSource,
    method: &str,
    url: &str,
    headers: &[(String, String)],
) -> Result<String, String> {
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("'{method}' is not an HTTP method"))?;
    let uri: http::Uri = url.parse().map_err(|_| format!("'{url}' is not a URL"))?;
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("'{name}' is not a header name"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not valid"))?;
        map.append(name, value);
    }
    Ok(explain::explain(policies, tenants, &method, &uri, &map).to_text())
}

/// Warming attempts in a row while some URLs fail.
const WARM_ATTEMPTS: u32 = 3;

/// Background work that lives as long as the server: the metrics sampler,
/// reloading on SIGHUP, and warming.
fn spawn_housekeeping(
    state: &Arc<proxy::State>,
    settings: &Settings,
    served: Option<Arc<tls::ServedCertificate>>,
    proxy_addr: Option<std::net::SocketAddr>,
    stopping: impl Future<Output = ()> + Send + 'static,
) {
    let (done, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stopping.await;
        let _ = done.send(true);
    });
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };

    let sampler = Arc::clone(state);
    let stop = until_stopped();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(metrics::SAMPLE_EVERY);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => sampler.metrics.sample(),
                () = &mut stop => return,
            }
        }
    });

    #[cfg(unix)]
    if let Some(access) = state.access.clone()
        && let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    {
        // logrotate moved the file: write to a new one at the path.
        let stop = until_stopped();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = hangups.recv() => access.reopen(),
                    () = &mut stop => return,
                }
            }
        });
    }
    #[cfg(unix)]
    if let Some(dir) = settings.policies_dir.clone()
        && let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    {
        let state = Arc::clone(state);
        let stop = until_stopped();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = hangups.recv() => {
                        if let Err(errors) = reload::reload(&state, &dir).await {
                            tracing::error!("SIGHUP: the policies were not reloaded; the running ones stay:\n{errors}");
                        }
                    }
                    () = &mut stop => return,
                }
            }
        });
    }

    #[cfg(unix)]
    if let Some(served) = served.clone()
        && let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    {
        // A renewed certificate: new handshakes use it, open connections
        // keep theirs.
        let stop = until_stopped();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = hangups.recv() => {
                        let served = Arc::clone(&served);
                        match tokio::task::spawn_blocking(move || served.reload()).await {
                            Ok(Ok(())) => tracing::info!("SIGHUP: the TLS certificate was reloaded"),
                            Ok(Err(error)) => tracing::error!(%error, "SIGHUP: the TLS certificate was not reloaded; the running one stays"),
                            Err(_) => {}
                        }
                    }
                    () = &mut stop => return,
                }
            }
        });
    }

    if let (Some(plan), Some(addr)) = (settings.config.warm.clone(), proxy_addr) {
        let tenants = settings.tenant.clone();
        let stop = until_stopped();
        // Through the listener as clients reach it: over TLS when it
        // speaks TLS, trusting exactly the certificate it serves.
        let (base, tls) = match &served {
            Some(served) => (
                format!("https://{addr}"),
                Some(tls::own_listener_client(served)),
            ),
            None => (format!("http://{addr}"), None),
        };
        tokio::spawn(async move {
            tokio::pin!(stop);
            // The upstream may start alongside folio: give it a moment, and
            // try again (with backoff) while some URLs fail.
            let mut pause = Duration::from_millis(500);
            let mut attempts = 0;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = &mut stop => return,
                }
                let total = plan.urls.len();
                let report = warm::warm(
                    &base,
                    &plan,
                    &tenants,
                    tls.clone(),
                    move |done, total, failed| {
                        if done == total || done % 100 == 0 {
                            tracing::info!("warming: {done}/{total} fetched ({failed} failed)");
                        }
                    },
                )
                .await;
                tracing::info!(
                    total,
                    ok = report.ok,
                    failed = report.failed,
                    "warming done"
                );
                attempts += 1;
                if report.failed > 0 && attempts < WARM_ATTEMPTS {
                    pause = Duration::from_secs(2u64.pow(attempts));
                    continue;
                }
                attempts = 0;
                pause = Duration::ZERO;
                let Some(every) = plan.every else { return };
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = &mut stop => return,
                }
            }
        });
    }
}

/// Entry points for `benches/hot_path.rs` (criterion). Not an API.
#[doc(hidden)]
pub mod bench {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Method, StatusCode};

    use crate::cache::entry::{Entry, EntryParts};
    use crate::key::CacheKey;
    use crate::metrics::Metrics;
    use crate::policy::PolicySet;

    /// The cache key of a GET, as the pipeline builds it.
    pub fn key(
        policies: &PolicySet,
        tenant: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> [u8; 32] {
        let policy = match policies.match_request(&Method::GET, path) {
            Some(matched) => Arc::clone(matched.policy),
            None => Arc::clone(policies.rfc()),
        };
        CacheKey::new(tenant, path, query, headers, &policy).bytes()
    }

    /// Whether a policy matches `path`.
    pub fn route(policies: &PolicySet, path: &str) -> bool {
        policies.match_request(&Method::GET, path).is_some()
    }

    /// A response to store, with a body of `len` bytes.
    #[derive(Debug, Clone)]
    pub struct StoredEntry(EntryParts);

    impl StoredEntry {
        pub fn new(len: usize) -> Self {
            let now = SystemTime::now();
            let mut headers = HeaderMap::new();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("via", HeaderValue::from_static("1.1 folio"));
            Self(EntryParts {
                status: StatusCode::OK,
                headers,
                body: Bytes::from(vec![b'x'; len]),
                etag: HeaderValue::from_static("\"0123456789abcdef0123456789abcdef\""),
                requested_at: now,
                stored_at: now,
                fresh_until: now + Duration::from_secs(3600),
                initial_age: Duration::ZERO,
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                tenant: "acme".into(),
                path: "/api/v1/products/42".into(),
                tags: vec!["route:/api/v1/products/{id}".into()],
                vary: Vec::new(),
                revalidate: false,
                no_stale: false,
                shared_ok: false,
                upstream_etag: false,
                vary_index: false,
                immutable: false,
                grace: false,
                compressed: false,
            })
        }

        /// The encoding (what L2 stores and L1 keeps).
        pub fn encode(&self) -> Bytes {
            self.0.encode().unwrap_or_default()
        }

        pub fn decode(bytes: Bytes) -> bool {
            Entry::decode(bytes).is_some()
        }

        fn sealed(&self) -> Entry {
            self.0
                .seal()
                .unwrap_or_else(|| panic!("a bench entry fits the encoding"))
        }
    }

    /// An L1 holding one entry, to time a hit.
    #[derive(Debug)]
    pub struct L1Hit {
        l1: crate::cache::l1::L1,
        key: CacheKey,
    }

    impl Default for L1Hit {
        fn default() -> Self {
            Self::new()
        }
    }

    impl L1Hit {
        pub fn new() -> Self {
            let l1 = crate::cache::l1::L1::new(64 << 20, Arc::new(Metrics::new(1)));
            let policies = PolicySet::from_yaml("bench.yaml", "\"/p/{id}\":\n  cache_ttl: 1h\n")
                .unwrap_or_else(|e| panic!("{e}"));
            let key_bytes = key(&policies, "acme", "/p/1", None, &HeaderMap::new());
            let key = CacheKey::from_bytes(key_bytes);
            l1.insert(key, StoredEntry::new(1024).sealed());
            Self { l1, key }
        }

        pub fn hit(&self) -> bool {
            self.l1.get(&self.key, SystemTime::now()).is_some()
        }
    }

    /// folio in process in front of an upstream that answers every GET with
    /// the same cacheable 1 KB JSON, both on loopback, and one kept-alive
    /// HTTP/1.1 connection to folio: an L1 hit end to end. Dropping it stops
    /// both servers.
    #[derive(Debug)]
    pub struct EndToEnd {
        sender: tokio::sync::Mutex<
            hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
        >,
        uri: http::Uri,
        _stop: (
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Sender<()>,
        ),
    }

    impl EndToEnd {
        /// Starts both servers and stores the product with one first GET.
        pub async fn start() -> std::io::Result<Self> {
            use tokio::net::{TcpListener, TcpStream};
            let (stop_upstream, upstream_stopped) = tokio::sync::oneshot::channel::<()>();
            let (stop_folio, folio_stopped) = tokio::sync::oneshot::channel::<()>();

            let upstream = TcpListener::bind("127.0.0.1:0").await?;
            let upstream_addr = upstream.local_addr()?;
            let product = Bytes::from(format!(
                "{{\"id\":1,\"description\":\"{}\"}}",
                "x".repeat(1000)
            ));
            let answer = move |_, _| {
                let mut response = http::Response::new(crate::body::Body::full(product.clone()));
                let headers = response.headers_mut();
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                headers.insert("cache-control", HeaderValue::from_static("max-age=3600"));
                std::future::ready(response)
            };
            tokio::spawn(crate::server::serve(
                upstream,
                answer,
                async move { drop(upstream_stopped.await) },
                crate::server::Limits {
                    idle: Duration::from_secs(75),
                    grace: Duration::from_secs(1),
                },
                None,
            ));

            let proxy = TcpListener::bind("127.0.0.1:0").await?;
            let addr = proxy.local_addr()?;
            let upstream_uri = format!("http://{upstream_addr}")
                .parse()
                .map_err(std::io::Error::other)?;
            let policies = PolicySet::from_yaml(
                "bench.yaml",
                "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n",
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            let settings = crate::Settings::new(upstream_uri);
            tokio::spawn(async move {
                let stopped = async move { drop(folio_stopped.await) };
                drop(crate::run(proxy, settings, policies, stopped).await);
            });

            let stream = TcpStream::connect(addr).await?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            let this = Self {
                sender: tokio::sync::Mutex::new(sender),
                uri: format!("http://{addr}/api/v1/products/1")
                    .parse()
                    .map_err(std::io::Error::other)?,
                _stop: (stop_upstream, stop_folio),
            };
            drop(this.get().await); // the miss that stores it
            this.get().await?;
            Ok(this)
        }

        /// One GET of the product; the length of the body received, or an
        /// error when folio did not answer it from L1.
        pub async fn get(&self) -> std::io::Result<usize> {
            use http_body_util::BodyExt as _;
            let request = http::Request::get(self.uri.clone())
                .header("x-tenant-id", "acme")
                .body(http_body_util::Empty::new())
                .map_err(std::io::Error::other)?;
            let response = self
                .sender
                .lock()
                .await
                .send_request(request)
                .await
                .map_err(std::io::Error::other)?;
            let hit = response
                .headers()
                .get("x-cache-layer")
                .is_some_and(|layer| layer == "L1");
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?;
            if !hit {
                return Err(std::io::Error::other("not an L1 hit"));
            }
            Ok(body.to_bytes().len())
        }
    }
}
