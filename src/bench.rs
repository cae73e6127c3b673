//! Entry points for `benches/hot_path.rs` (criterion): reached as
//! `folio::bench`, hidden from the documentation. Not an API.

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

/// `body` compressed as it is for storing (`None`: not worth it).
pub fn compress(body: &[u8]) -> Option<usize> {
    crate::compression::compress(body).map(|stored| stored.len())
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
    sender:
        tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>>,
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
