//! The upstream: a pooled client (HTTP/1.1; for an `https://` upstream, TLS
//! verified against folio's roots, with HTTP/2 when the upstream offers it
//! by ALPN), and the header hygiene of a proxy (hop-by-hop headers removed,
//! `X-Forwarded-For` and `Via` added).

use std::net::IpAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::tls::Trust;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Idle keep-alive connections kept per upstream host.
const MAX_IDLE_PER_HOST: usize = 512;

tokio::task_local! {
    /// Time spent waiting for the upstream's answer, for the access log:
    /// the proxy scopes it around a request, [`Upstream::send`] adds to it.
    pub(crate) static UPSTREAM_TIME: std::cell::Cell<Duration>;
}

/// The pooled client, by the upstream's scheme (one branch per request,
/// nothing more, for a plain upstream).
#[derive(Debug, Clone)]
enum Transport {
    Plain(Client<HttpConnector, Body>),
    /// https only: never a request in clear.
    Tls(Client<HttpsConnector<HttpConnector>, Body>),
}

#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    client: Transport,
    scheme: Scheme,
    authority: Authority,
    /// A path prefix from the upstream URL (`http://api/v2` → `/v2`), or empty.
    base_path: String,
    timeout: Duration,
    /// Longest wait for each part of a body streamed on.
    read_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Upstream {
    /// A client for `base`; an `https://` one verifies the upstream against
    /// `trust`, which it then needs.
    pub(crate) fn new(
        base: &Uri,
        connect_timeout: Duration,
        timeout: Duration,
        trust: Option<&Trust>,
    ) -> Result<Self, String> {
        let scheme = base.scheme().cloned().unwrap_or(Scheme::HTTP);
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!(
                "upstream '{base}': only http:// and https:// upstreams are supported"
            ));
        }
        let authority = base
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream '{base}' has no host; e.g. http://127.0.0.1:8081"))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST);
        let client = if scheme == Scheme::HTTPS {
            let trust = trust.ok_or_else(|| {
                format!("upstream '{base}': https needs TLS roots, and none were loaded")
            })?;
            connector.enforce_http(false);
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(trust.client_config())
                .https_only()
                .enable_http1()
                .enable_http2()
                .wrap_connector(connector);
            builder.timer(TokioTimer::new());
            Transport::Tls(builder.build(connector))
        } else {
            Transport::Plain(builder.build(connector))
        };
        Ok(Self {
            client,
            scheme,
            authority,
            base_path: base.path().trim_end_matches('/').to_owned(),
            timeout,
            read_timeout: timeout,
            metrics: Arc::new(Metrics::new(0)),
        })
    }

    /// Cuts a streamed body short when no part of it comes for `limit`.
    pub(crate) fn with_read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = limit;
        self
    }

    /// Counts latency and failures in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// An answer's body, streamed on after `prefix`; it ends in an error
    /// when the upstream sends no part of it for the read timeout.
    pub(crate) fn stream(&self, prefix: Option<Bytes>, rest: Incoming) -> Body {
        Body::from_upstream(prefix, rest, self.read_timeout)
    }

    /// A request for `path_and_query` on the upstream.
    pub(crate) fn request(
        &self,
        method: Method,
        path_and_query: Option<&PathAndQuery>,
        mut headers: HeaderMap,
        body: Body,
    ) -> Result<Request<Body>, ProxyError> {
        let pq = path_and_query.map_or("/", PathAndQuery::as_str);
        let target = if self.base_path.is_empty() {
            pq.to_owned()
        } else {
            format!("{}{pq}", self.base_path)
        };
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|e| ProxyError::BadRequest(format!("cannot forward this path: {e}")))?;
        if matches!(body, Body::Empty) {
            // Framing for a body that is not sent would make the upstream
            // read the next request on the connection as this one's body.
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::TRANSFER_ENCODING);
        }
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// Sends a request; waits for the response headers at most the upstream timeout.
    pub(crate) async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let conditional = request.headers().contains_key(header::IF_NONE_MATCH)
            || request.headers().contains_key(header::IF_MODIFIED_SINCE);
        let started = std::time::Instant::now();
        let exchange = match &self.client {
            Transport::Plain(client) => Either::Left(client.request(request)),
            Transport::Tls(client) => Either::Right(client.request(request)),
        };
        let outcome = tokio::time::timeout(self.timeout, exchange).await;
        let took = started.elapsed();
        self.metrics.upstream_latency.observe(took);
        let _ = UPSTREAM_TIME.try_with(|time| time.set(time.get() + took));
        match outcome {
            // folio asks for no upgrade: a 101 (or any 1xx as the final
            // answer) would hand the client's connection to the upstream.
            Ok(Ok(response)) if response.status().is_informational() => {
                self.metrics.upstream_errors[0].fetch_add(1, Ordering::Relaxed);
                Err(ProxyError::UpstreamInvalid(format!(
                    "it answered {} to a request that asked for no upgrade",
                    response.status()
                )))
            }
            // It describes nothing folio or the client holds: stored or
            // passed on, it is an empty answer for every client of the key.
            Ok(Ok(response)) if response.status() == StatusCode::NOT_MODIFIED && !conditional => {
                self.metrics.upstream_errors[0].fetch_add(1, Ordering::Relaxed);
                Err(ProxyError::UpstreamInvalid(
                    "it answered 304 Not Modified to a request without validators".into(),
                ))
            }
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                self.metrics.upstream_errors[0].fetch_add(1, Ordering::Relaxed);
                if let Some(problem) = crate::tls::tls_failure(&error) {
                    return Err(ProxyError::UpstreamTls(problem));
                }
                let cause = std::error::Error::source(&error)
                    .map_or_else(|| error.to_string(), ToString::to_string);
                Err(ProxyError::UpstreamUnavailable(cause))
            }
            Err(_) => {
                self.metrics.upstream_errors[1].fetch_add(1, Ordering::Relaxed);
                Err(ProxyError::UpstreamTimeout(self.timeout))
            }
        }
    }

    /// Whether a TCP connection to the upstream opens within `limit`.
    pub(crate) async fn reachable(&self, limit: Duration) -> bool {
        let default_port = if self.scheme == Scheme::HTTPS {
            443
        } else {
            80
        };
        let port = self.authority.port_u16().unwrap_or(default_port);
        let connect = tokio::net::TcpStream::connect((self.authority.host(), port));
        matches!(tokio::time::timeout(limit, connect).await, Ok(Ok(_)))
    }

    /// Counts a body that broke off or stalled.
    pub(crate) fn body_failed(&self) {
        self.metrics.upstream_errors[2].fetch_add(1, Ordering::Relaxed);
    }
}

/// A body read to the end, or the part read before it proved too large.
#[derive(Debug)]
pub(crate) enum Collected {
    Complete(Bytes),
    TooLarge { prefix: Bytes, rest: Incoming },
}

/// Reads a body up to `max` bytes, with `timeout` for the whole read.
pub(crate) async fn collect(
    mut body: Incoming,
    max: usize,
    timeout: Duration,
) -> Result<Collected, ProxyError> {
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(timeout)
        .unwrap_or(now + Duration::from_secs(86_400));
    // Most bodies arrive as one chunk: keep it as is rather than copying.
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout(timeout)),
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(ProxyError::UpstreamBody(error.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match first.take() {
            None if buffer.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    buffer.extend_from_slice(&earlier);
                }
                buffer.extend_from_slice(&data);
            }
        }
        let len = first.as_ref().map_or(buffer.len(), Bytes::len);
        if len > max {
            let prefix = first.take().unwrap_or_else(|| buffer.split().freeze());
            return Ok(Collected::TooLarge { prefix, rest: body });
        }
    }
    Ok(Collected::Complete(
        first.unwrap_or_else(|| buffer.freeze()),
    ))
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including those `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// The headers to send upstream for a client's request.
pub(crate) fn forward_headers(
    mut headers: HeaderMap,
    uri: &Uri,
    client: Option<IpAddr>,
) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    // HTTP/2 clients name the host in the URI, not in a header.
    if !headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    if let Some(client) = client {
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {client}"),
            None => client.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
            headers.insert("x-forwarded-for", value);
        }
    }
    append_via(&mut headers);
    headers
}

/// Our `Via` entry (RFC 9110 §7.6.3): protocol version and cache name.
const VIA: &str = "1.1 folio";

/// Adds folio to `Via` (RFC 9110 §7.6.3).
pub(crate) fn append_via(headers: &mut HeaderMap) {
    let value = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(earlier) => HeaderValue::from_str(&format!("{earlier}, {VIA}")).ok(),
        None => Some(HeaderValue::from_static(VIA)),
    };
    if let Some(value) = value {
        headers.insert(header::VIA, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_names_the_cache() {
        use crate::outcome::CACHE_NAME;
        assert_eq!(VIA, format!("1.1 {CACHE_NAME}"));
    }

    #[test]
    fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.insert("x-tenant-id", HeaderValue::from_static("acme"));
        let uri: Uri = "http://api.example/x".parse().unwrap();
        let out = forward_headers(headers, &uri, Some("127.0.0.1".parse().unwrap()));
        assert!(!out.contains_key(header::CONNECTION));
        assert!(!out.contains_key("x-secret-hop"));
        assert!(!out.contains_key("keep-alive"));
        assert!(!out.contains_key(header::TE));
        assert_eq!(out["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(out[header::VIA], "1.1 folio");
        assert_eq!(out[header::HOST], "api.example");
        assert_eq!(out["x-tenant-id"], "acme");
    }

    #[test]
    fn http_and_https_upstreams_only() {
        let t = Duration::from_secs(1);
        assert!(
            Upstream::new(&"ftp://x".parse().unwrap(), t, t, None)
                .unwrap_err()
                .contains("only http:// and https://")
        );
        assert!(
            Upstream::new(&"https://x".parse().unwrap(), t, t, None)
                .unwrap_err()
                .contains("needs TLS roots")
        );
        assert!(
            Upstream::new(&"/relative".parse().unwrap(), t, t, None)
                .unwrap_err()
                .contains("no host")
        );
    }
}
