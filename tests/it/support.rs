//! The harness: start folio, an upstream, Redis; send requests; read answers.

pub(crate) mod cluster;
pub(crate) mod process;
pub(crate) mod raw;
pub(crate) mod redis;
pub(crate) mod schema;
pub(crate) mod tls;
pub(crate) mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use folio::{PolicySet, Settings};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) use self::cluster::TestCluster;
pub(crate) use self::process::FolioProcess;
pub(crate) use self::redis::TestRedis;
pub(crate) use self::upstream::{Reply, TestUpstream};

/// A directory of its own for one test, removed when dropped.
#[derive(Debug)]
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// An empty `folio-<kind>-<pid>-<name>` under the system's temp dir.
    pub(crate) fn new(kind: &str, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("folio-{kind}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A directory no other in this test run has (Redis servers, clusters).
    pub(crate) fn unique(kind: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::new(kind, &n.to_string())
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tenants most scenarios speak for.
pub(crate) const ACME: &[(&str, &str)] = &[("x-tenant-id", "acme")];
pub(crate) const GLOBEX: &[(&str, &str)] = &[("x-tenant-id", "globex")];

/// The repository's own policies, as the quick start runs them.
pub(crate) const REPO_POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");

/// Settings for a test folio in front of `upstream` with `redis` as L2.
pub(crate) fn settings_with_redis(upstream: &TestUpstream, redis: &TestRedis) -> Settings {
    let mut settings = settings(upstream.uri());
    settings.redis = Some(redis.url.clone());
    settings
}

/// The example bookstore API (50 products, no added latency) on an
/// ephemeral loopback port; it stops when the sender is dropped.
pub(crate) async fn start_bookstore() -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = crate::bookstore::Options {
        latency: Duration::ZERO,
        products: 50,
    };
    tokio::spawn(crate::bookstore::serve(listener, options, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Generous bound on any one request in a test: nothing may hang.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings for a test folio in front of `upstream`.
pub(crate) fn settings(upstream: Uri) -> Settings {
    let mut settings = Settings::new(upstream);
    settings.upstream_timeout = Duration::from_secs(5);
    settings.shutdown_grace = Duration::from_secs(5);
    settings
}

/// A folio server running in this process on an ephemeral loopback port.
#[derive(Debug)]
pub(crate) struct Folio {
    pub(crate) addr: SocketAddr,
    /// The admin API (purge, events, health).
    pub(crate) admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Folio {
    /// folio in front of `upstream` with the given policy YAML and defaults.
    pub(crate) async fn start(upstream: &TestUpstream, policies: &str) -> Self {
        Self::start_with(settings(upstream.uri()), policies).await
    }

    pub(crate) async fn start_with(settings: Settings, policies: &str) -> Self {
        let policies =
            PolicySet::from_yaml("test.yaml", policies).unwrap_or_else(|e| panic!("{e}"));
        Self::start_with_set(settings, policies).await
    }

    pub(crate) async fn start_with_set(settings: Settings, policies: PolicySet) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let listeners = folio::Listeners {
            proxy: listener,
            admin: Some(admin_listener),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            folio::run(listeners, settings, policies, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Returns once this folio has replayed the purge log in Redis: until
    /// then it reads no entry from Redis.
    pub(crate) async fn replayed_purges(&self) {
        let health = format!("http://{}/_folio/health", self.admin);
        eventually(REQUEST_TIMEOUT, "the purge log replayed", || async {
            get(&health, &[]).await.json()["checks"]["invalidation"]["subscribed"] == true
        })
        .await;
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs JSON to the admin API (as loopback, with `headers`).
    pub(crate) async fn admin_post(&self, path: &str, headers: &[(&str, &str)], json: &str) -> Got {
        admin_post(self.admin, path, headers, json).await
    }

    /// Asks folio to shut down and returns once it has.
    pub(crate) async fn stop(mut self) {
        self.begin_stop();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(REQUEST_TIMEOUT, task)
                .await
                .expect("folio did not stop")
                .unwrap();
        }
    }

    pub(crate) fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Folio {
    fn drop(&mut self) {
        self.begin_stop();
    }
}

/// A response as a test sees it.
#[derive(Debug)]
pub(crate) struct Got {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Got {
    /// A header's value, or "" when absent.
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn x_cache(&self) -> &str {
        self.header("x-cache")
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub(crate) async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    send("GET", url, headers, "").await
}

/// Sends one request on a fresh connection, bounded by [`REQUEST_TIMEOUT`].
pub(crate) async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let (head, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Got {
            status: head.status,
            headers: head.headers,
            body,
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {url} took longer than {REQUEST_TIMEOUT:?}"))
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs JSON to an admin API.
pub(crate) async fn admin_post(
    admin: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    json: &str,
) -> Got {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send("POST", &format!("http://{admin}{path}"), &all, json).await
}
