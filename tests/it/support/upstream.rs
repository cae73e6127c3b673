//! `TestUpstream`: a real HTTP server on 127.0.0.1:0 whose answers a test
//! scripts, and which records every request it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// The HTTP version it came in.
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
    pub(crate) delay: Duration,
}

impl Reply {
    pub(crate) fn json(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.into()),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Clone)]
pub(crate) struct TestUpstream {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<RwLock<Handler>>,
    /// Whether it speaks TLS (`https://`).
    tls: bool,
    _stop: Arc<oneshot::Sender<()>>,
}

impl std::fmt::Debug for TestUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestUpstream")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TestUpstream {
    /// An upstream whose answers carry a version counter the test sets
    /// (`{"path","tenant","v"}`), so a refetch tells itself from a copy.
    pub(crate) async fn versioned() -> (Self, Arc<AtomicUsize>) {
        let version = Arc::new(AtomicUsize::new(1));
        let current = Arc::clone(&version);
        let upstream = Self::start(move |seen| {
            let v = current.load(Ordering::SeqCst);
            Reply::json(format!(
                r#"{{"path":"{}","tenant":"{}","v":{v}}}"#,
                seen.uri.path(),
                seen.header("x-tenant-id")
            ))
        })
        .await;
        (upstream, version)
    }

    /// Starts an upstream answering every request with `handler`.
    pub(crate) async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    /// Starts an upstream on a given address (e.g. one folio already points at).
    pub(crate) async fn start_on(
        addr: SocketAddr,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::launch(addr, None, handler).await
    }

    /// An upstream speaking TLS with `config` (its certificate and ALPN),
    /// HTTP/2 or HTTP/1.1 as the client begins.
    pub(crate) async fn start_tls(
        config: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        Self::launch("127.0.0.1:0".parse().unwrap(), Some(acceptor), handler).await
    }

    async fn launch(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let is_tls = tls.is_some();
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<RwLock<Handler>> = Arc::new(RwLock::new(Arc::new(handler)));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (task_seen, task_handler) = (Arc::clone(&seen), Arc::clone(&handler));
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                let (seen, handler) = (Arc::clone(&task_seen), Arc::clone(&task_handler));
                let service = service_fn(move |request: Request<Incoming>| {
                    let (seen, handler) = (Arc::clone(&seen), Arc::clone(&handler));
                    async move {
                        let (head, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let request = Seen {
                            method: head.method,
                            uri: head.uri,
                            version: head.version,
                            headers: head.headers,
                            body,
                        };
                        let handler = Arc::clone(&*handler.read().unwrap());
                        let reply = handler(&request);
                        seen.lock().unwrap().push(request);
                        tokio::time::sleep(reply.delay).await;
                        let mut response = Response::builder().status(reply.status);
                        for (name, value) in &reply.headers {
                            response = response.header(name, value);
                        }
                        Ok::<_, Infallible>(response.body(Full::new(reply.body)).unwrap())
                    }
                });
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            seen,
            handler,
            tls: is_tls,
            _stop: Arc::new(stop),
        }
    }

    /// An upstream answering `body` as JSON to everything.
    pub(crate) async fn json(body: &'static str) -> Self {
        Self::start(move |_| Reply::json(body)).await
    }

    /// An upstream whose answer is in the language asked for, `{"lang":
    /// <Accept-Language>}`, and says so with `Vary: Accept-Language`.
    pub(crate) async fn varied_by_language() -> Self {
        Self::start(|seen| {
            Reply::json(format!(
                r#"{{"lang":"{}"}}"#,
                seen.header("accept-language")
            ))
            .header("vary", "Accept-Language")
        })
        .await
    }

    /// Changes the answers from now on.
    pub(crate) fn answer(&self, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        *self.handler.write().unwrap() = Arc::new(handler);
    }

    /// Its URL: `http://127.0.0.1:PORT`, or `https://localhost:PORT` for a
    /// TLS one (the name its certificate is made for).
    pub(crate) fn uri(&self) -> Uri {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
        .parse()
        .unwrap()
    }

    /// How many requests for `path` (query ignored) arrived.
    pub(crate) fn hits(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.uri.path() == path)
            .count()
    }

    pub(crate) fn total_hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub(crate) fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

/// A loopback address where nothing listens.
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
