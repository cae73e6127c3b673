//! Hostile clients and the origins real APIs run on: each scenario is an
//! attack that once worked (see docs/security.md), and what a client sees
//! now.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::raw::{
    RawOrigin, closed_within, raw_request, raw_request_from, scripted_origin,
};
use crate::support::{ACME, Folio, GLOBEX, Reply, TestUpstream, eventually, get, send, settings};

const POLICIES: &str = r#"
"/api/v1/products/{id}":
  cache_ttl: 1h
  tags: ["product:{id}"]
"/api/v1/hot/{id}":
  cache_ttl: 1h
  tags: [hot]
  rewarm: true
"PUT|DELETE /api/v1/products/{id}":
  events: [product_update]
"#;

fn host(folio: &Folio) -> String {
    folio.addr.to_string()
}

#[tokio::test]
async fn connection_cannot_strip_the_tenant_after_folio_read_it() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    let acme = get(&folio.url("/api/v1/products/42"), ACME).await;
    assert_eq!(acme.json()["tenant"], "acme");

    // globex's key, but an upstream request without a tenant (acme's data
    // for an upstream that defaults to it) — refused.
    for named in ["X-Tenant-ID", "x-tenant-id", "keep-alive, X-Tenant-ID "] {
        let attack = raw_request(
            folio.addr,
            &format!(
                "GET /api/v1/products/42 HTTP/1.1\nHost: {}\nX-Tenant-ID: globex\nCache-Control: no-cache\nConnection: {named}",
                host(&folio)
            ),
            b"",
        )
        .await;
        assert_eq!(attack.status, 400, "Connection: {named}");
        assert_eq!(attack.json()["error"], "bad_request");
    }
    let globex = get(&folio.url("/api/v1/products/42"), GLOBEX).await;
    assert_eq!(globex.json()["tenant"], "globex");
    assert_eq!(globex.x_cache(), "MISS");
}

#[tokio::test]
async fn a_get_with_a_body_cannot_desync_the_upstream_connection() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    // The body the GET declares must not be declared upstream: the origin
    // would read the next request's first bytes as it.
    let padding = "x".repeat(40);
    let first = raw_request(
        folio.addr,
        &format!(
            "GET /api/v1/products/1 HTTP/1.1\nHost: {}\nX-Tenant-ID: acme\nContent-Length: 40",
            host(&folio)
        ),
        padding.as_bytes(),
    )
    .await;
    assert_eq!(first.status, 200);
    assert!(!origin.last().has("content-length"), "{:?}", origin.last());
    let chunked = raw_request(
        folio.addr,
        &format!(
            "GET /api/v1/products/2 HTTP/1.1\nHost: {}\nX-Tenant-ID: acme\nTransfer-Encoding: chunked",
            host(&folio)
        ),
        b"28\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(chunked.status, 200);
    // The pooled connections are reused for these: each answer is its own.
    for (id, headers) in [(3, GLOBEX), (4, ACME), (5, GLOBEX)] {
        let got = get(&folio.url(&format!("/api/v1/products/{id}")), headers).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["tenant"], headers[0].1);
        assert_eq!(
            got.json()["target"],
            format!("/api/v1/products/{id}"),
            "answered with another request's response"
        );
    }
    for seen in origin.seen() {
        assert!(
            seen.method == "GET" || seen.method == "HEAD",
            "the origin read garbage as a request: {seen:?}"
        );
    }
}

#[tokio::test]
async fn tenant_headers_must_be_one_plain_value() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    let h = host(&folio);
    for tenant_lines in [
        "X-Tenant-ID: acme\nX-Tenant-ID: globex",
        "X-Tenant-ID: acme, globex",
        "X-Tenant-ID: acme\nX_Tenant_ID: globex",
        "X-Tenant-ID: <img src=x onerror=alert(1)>",
        "X-Tenant-ID: acme globex",
        "X-Tenant-ID: ",
    ] {
        for method in ["GET", "PUT"] {
            let got = raw_request(
                folio.addr,
                &format!(
                    "{method} /api/v1/products/7 HTTP/1.1\nHost: {h}\n{tenant_lines}\nContent-Length: 0"
                ),
                b"",
            )
            .await;
            assert_eq!(got.status, 400, "{method} with {tenant_lines:?}");
        }
    }
    assert_eq!(origin.requests(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn unkeyed_headers_never_reach_the_upstream_of_a_cached_route() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    let hostile = [
        ("x-tenant-id", "acme"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
        ("forwarded", "host=evil.example"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-forwarded-for", "6.6.6.6"),
    ];
    assert_eq!(
        get(&folio.url("/api/v1/products/8"), &hostile).await.status,
        200
    );
    let seen = origin.last();
    for (name, _) in &hostile[1..] {
        let value = seen.last(name);
        assert!(
            !value.contains("evil") && !value.contains("admin") && !value.contains("6.6"),
            "{name}: {value} reached the upstream"
        );
    }
    // The raw spelling with underscores is dropped too.
    raw_request(
        folio.addr,
        &format!(
            "GET /api/v1/products/9 HTTP/1.1\nHost: {}\nX-Tenant-ID: acme\nX_Forwarded_Host: evil.example",
            host(&folio)
        ),
        b"",
    )
    .await;
    assert_eq!(origin.last().last("x-forwarded-host"), "");
}

#[tokio::test]
async fn an_answer_varied_on_the_client_address_is_never_served_to_another_client() {
    // folio writes X-Forwarded-For from the client's address: an upstream
    // that varies on it answers each client for itself.
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(
            r#"{{"you_are":"{}"}}"#,
            seen.header("x-forwarded-for")
        ))
        .header("vary", "X-Forwarded-For")
        .header("cache-control", "public, max-age=300")
    })
    .await;
    let folio = Folio::start(&upstream, "").await;
    let head = format!(
        "GET /geo HTTP/1.1\nHost: {}\nX-Tenant-ID: acme",
        host(&folio)
    );
    for client in ["127.0.0.1", "127.0.0.2"] {
        let got = raw_request_from(client.parse().unwrap(), folio.addr, &head, b"").await;
        assert_eq!(got.json()["you_are"], client);
        assert_eq!(got.header("x-cache"), "MISS");
    }
    assert_eq!(upstream.hits("/geo"), 2);
    let again = raw_request(folio.addr, &head, b"").await;
    assert!(
        again.header("cache-status").contains("hit-for-pass"),
        "not stored, and known not to be: {}",
        again.header("cache-status")
    );
    assert_eq!(upstream.hits("/geo"), 3);
}

#[tokio::test]
async fn a_get_asking_to_be_another_method_is_never_cached() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    let url = folio.url("/api/v1/products/10");
    let overridden = [
        ("x-tenant-id", "acme"),
        ("x-http-method-override", "DELETE"),
    ];
    let got = get(&url, &overridden).await;
    assert_eq!(got.x_cache(), "BYPASS");
    assert!(got.header("cache-status").contains("method-override"));
    assert_eq!(origin.last().last("x-http-method-override"), "DELETE");
    let plain = get(&url, ACME).await;
    assert_eq!(
        plain.x_cache(),
        "MISS",
        "the override's answer was not stored"
    );
}

#[tokio::test]
async fn the_upstream_gets_the_path_the_key_and_the_route_were_built_from() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    let canonical = get(&folio.url("/api/v1/products/42"), ACME).await;
    assert_eq!(canonical.x_cache(), "MISS");
    for spelling in [
        "/api/v1/products/x/../42",
        "/api/v1/products/%34%32",
        "/api/v1/./products/42",
        "/api//v1/products/42",
    ] {
        let got = get(&folio.url(spelling), ACME).await;
        assert_eq!(got.x_cache(), "HIT", "{spelling} is /api/v1/products/42");
    }
    assert_eq!(origin.requests(), 1);
    assert_eq!(origin.last().target, "/api/v1/products/42");

    // Ambiguous spellings are refused before anything is decided.
    let h = host(&folio);
    for path in [
        "/api/v1/products/4%2F2",
        "/api/v1/products/%2e%2e/admin",
        "/api/v1/products/.%2E",
        "/api/v1/products/4%5C2",
        "/api/v1/products/42%00",
        "/api/v1/products/%zz",
        "/api/v1/products/42;x=1",
        "/api/v1/products\\42",
    ] {
        let got = raw_request(
            folio.addr,
            &format!("GET {path} HTTP/1.1\nHost: {h}\nX-Tenant-ID: acme"),
            b"",
        )
        .await;
        assert_eq!(got.status, 400, "{path}");
    }
    // The query the key ignores is not forwarded; the kept one is, one way.
    get(&folio.url("/api/v1/products/43?a=1;b=2&c=x+y"), ACME).await;
    assert_eq!(
        origin.last().target,
        "/api/v1/products/43?a=1%3Bb%3D2&c=x%20y"
    );
}

#[tokio::test]
async fn a_huge_age_after_a_slow_answer_is_not_a_panic() {
    let upstream = TestUpstream::start(|_| {
        Reply::json("{}")
            .header("cache-control", "max-age=60")
            .header("age", "18446744073709551615")
            .delay(Duration::from_millis(1100))
    })
    .await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let got = get(&folio.url("/api/v1/products/1"), ACME).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.x_cache(), "MISS");
}

#[tokio::test]
async fn connect_is_refused_and_never_reaches_the_upstream() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    let got = raw_request(
        folio.addr,
        "CONNECT evil.example:443 HTTP/1.1\nHost: evil.example:443\nX-Tenant-ID: acme",
        b"",
    )
    .await;
    assert_eq!(got.status, 501);
    assert_eq!(got.json()["error"], "not_implemented");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_request_target_that_is_not_a_path_never_reaches_the_upstream() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    for method in ["GET", "OPTIONS"] {
        let got = raw_request(
            folio.addr,
            &format!("{method} * HTTP/1.1\nHost: shop.example\nX-Tenant-ID: acme"),
            b"",
        )
        .await;
        assert_eq!(got.status, 400, "{method} *");
        assert_eq!(got.json()["error"], "bad_request");
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_body_in_a_transfer_coding_folio_does_not_decode_is_refused() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    // hyper decodes `chunked` only: the gzip-coded bytes inside would
    // reach the upstream as a plain body.
    for coding in ["gzip, chunked", "deflate,chunked"] {
        let got = raw_request(
            folio.addr,
            &format!(
                "PUT /api/v1/products/1 HTTP/1.1\nHost: shop.example\nX-Tenant-ID: acme\nTransfer-Encoding: {coding}"
            ),
            b"2\r\n{}\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(got.status, 501, "{coding}");
        assert_eq!(got.json()["error"], "not_implemented");
    }
    assert_eq!(origin.requests(), 0);
    let chunked = raw_request(
        folio.addr,
        "PUT /api/v1/products/1 HTTP/1.1\nHost: shop.example\nX-Tenant-ID: acme\nTransfer-Encoding: chunked",
        b"2\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(chunked.status, 200);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_request_that_already_passed_through_folio_is_a_loop() {
    let upstream = TestUpstream::json("{}").await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let got = get(
        &folio.url("/api/v1/products/1"),
        &[("x-tenant-id", "acme"), ("via", "1.1 folio")],
    )
    .await;
    assert_eq!(got.status, 508);
    assert_eq!(got.json()["error"], "loop_detected");
    assert_eq!(upstream.total_hits(), 0);
}

#[tokio::test]
async fn rewarm_replays_only_what_the_key_is_made_of() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(r#"{{"debug":"{}"}}"#, seen.header("x-debug")))
    })
    .await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let poisoner = [
        ("x-tenant-id", "acme"),
        ("x-debug", "poisoned"),
        ("content-length", "0"),
    ];
    get(&folio.url("/api/v1/hot/1"), &poisoner).await;
    folio
        .admin_post("/_folio/purge", &[], r#"{"tags":["hot"],"tenant":"acme"}"#)
        .await;
    eventually(Duration::from_secs(5), "rewarm refetched", || async {
        upstream.hits("/api/v1/hot/1") == 2
    })
    .await;
    let replay = upstream.last();
    assert_eq!(
        replay.header("x-debug"),
        "",
        "the requester's header replayed"
    );
    assert_eq!(replay.header("x-tenant-id"), "acme");
    assert_eq!(replay.header("content-length"), "");
    assert_eq!(replay.header("x-forwarded-for"), "");
}

#[tokio::test]
async fn idle_connections_are_closed_over_http1_and_h2c() {
    let upstream = TestUpstream::json("{}").await;
    let mut settings = settings(upstream.uri());
    settings.idle_timeout = Duration::from_millis(500);
    let folio = Folio::start_with(settings, POLICIES).await;
    // An h2c client that opens a connection, says hello, and then nothing.
    let mut h2 = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut h2,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    )
    .await
    .unwrap();
    assert!(
        closed_within(h2, Duration::from_secs(10)).await,
        "an idle h2c connection stayed open"
    );
    // An HTTP/1.1 client that sends half a request head and stops.
    let mut h1 = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut h1, b"GET /api/v1/products/1 HTTP/1.1\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(h1, Duration::from_secs(10)).await,
        "a stalled HTTP/1.1 connection stayed open"
    );
}

/// A new connection on which a client has asked for an export (a POST,
/// with `extra` header lines), its answer left to the caller to read.
async fn ask_for_export(folio: &Folio, extra: &str) -> tokio::net::TcpStream {
    let mut client = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
    let request = format!(
        "POST /api/v1/export HTTP/1.1\r\nHost: {}\r\nX-Tenant-ID: acme\r\n{extra}Content-Length: 2\r\n\r\n{{}}",
        host(folio)
    );
    tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes())
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn a_response_still_being_sent_is_not_closed_as_idle() {
    // An origin that sends its head at once and its body slowly: a large
    // export, or a client on a slow link, as folio's connection sees it.
    const CHUNKS: usize = 6;
    const CHUNK: &[u8] = b"0123456789";
    let (uri, origin) = scripted_origin(|mut stream| async move {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
            CHUNKS * CHUNK.len()
        );
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await;
        for _ in 0..CHUNKS {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, CHUNK).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
    // Quiet connections close after 500 ms, and linger 200 ms at most:
    // the body takes 2.4 s.
    let mut settings = settings(uri);
    settings.idle_timeout = Duration::from_millis(500);
    settings.shutdown_grace = Duration::from_millis(200);
    let folio = Folio::start_with(settings, POLICIES).await;
    let mut client = ask_for_export(&folio, "Connection: close\r\n").await;
    let mut received = Vec::new();
    let read_all = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received);
    let _ = tokio::time::timeout(Duration::from_secs(10), read_all).await;
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    let body = received.split("\r\n\r\n").nth(1).unwrap_or("");
    assert_eq!(
        body.len(),
        CHUNKS * CHUNK.len(),
        "the body was cut off while it was being sent: {body:?}"
    );
    origin.abort();
}

/// An origin with an endless export (any POST); other requests get a
/// small JSON answer.
struct EndlessExport {
    uri: http::Uri,
    released: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl EndlessExport {
    /// Waits for folio to let go of the export's upstream connection.
    async fn released(&self) {
        eventually(
            Duration::from_secs(30),
            "folio let go of the upstream",
            || async { self.released.load(Ordering::SeqCst) },
        )
        .await;
    }
}

impl Drop for EndlessExport {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn endless_export() -> EndlessExport {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let noted = Arc::clone(&released);
    let origin = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let noted = Arc::clone(&noted);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let Ok(n) = stream.read(&mut request).await else {
                    return;
                };
                if !request[..n].starts_with(b"POST") {
                    let small = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=60\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
                    let _ = stream.write_all(small.as_bytes()).await;
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                noted.store(true, Ordering::SeqCst);
            });
        }
    });
    EndlessExport {
        uri,
        released,
        task: origin,
    }
}

async fn with_quick_idle(uri: http::Uri) -> Folio {
    let mut settings = settings(uri);
    settings.idle_timeout = Duration::from_secs(1);
    Folio::start_with(settings, POLICIES).await
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_frees_the_upstream() {
    let origin = endless_export().await;
    let folio = with_quick_idle(origin.uri.clone()).await;
    // A client that asks, and then reads nothing.
    let client = ask_for_export(&folio, "").await;
    origin.released().await;
    assert!(
        closed_within(client, Duration::from_secs(10)).await,
        "the client's connection is closed"
    );
}

#[tokio::test]
async fn an_h2c_client_that_opens_no_window_is_dropped_and_frees_the_upstream() {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let origin = endless_export().await;
    let folio = with_quick_idle(origin.uri.clone()).await;
    // Streams start with no room for data, and the client never makes any;
    // it answers folio's pings all the while.
    let tcp = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::post(folio.url("/api/v1/export"))
        .header("x-tenant-id", "acme")
        .body(Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    // Meanwhile it asks for something small on other streams, answered in
    // full (headers alone): the stalled stream still counts.
    let mut other = sender.clone();
    let url = folio.url("/api/v1/products/1");
    let small = tokio::spawn(async move {
        loop {
            let head = http::Request::head(&url)
                .header("x-tenant-id", "acme")
                .body(Full::new(bytes::Bytes::new()))
                .unwrap();
            if other.send_request(head).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    origin.released().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(10), connection)
            .await
            .is_ok(),
        "the client's connection is closed"
    );
    drop(response);
    small.abort();
}

#[tokio::test]
async fn writes_with_a_bad_tenant_are_refused_not_forwarded_unpurged() {
    let upstream = TestUpstream::json("{}").await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let got = send(
        "PUT",
        &folio.url("/api/v1/products/1"),
        &[("x-tenant-id", "acme,globex")],
        "{}",
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(upstream.total_hits(), 0);
}

#[tokio::test]
async fn host_is_keyed_and_forwarded_as_keyed() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(
            r#"{{"link":"http://{}/next"}}"#,
            seen.header("host")
        ))
    })
    .await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let url = folio.url("/api/v1/products/5");
    let evil = get(&url, &[("x-tenant-id", "acme"), ("host", "evil.example")]).await;
    assert_eq!(evil.json()["link"], "http://evil.example/next");
    let honest = get(&url, ACME).await;
    assert_eq!(honest.x_cache(), "MISS", "another Host is another entry");
    assert_eq!(honest.json()["link"], "http://127.0.0.1/next");
    // A port is not forwarded, so it cannot be built into a shared link.
    let ported = get(&url, &[("x-tenant-id", "acme"), ("host", "127.0.0.1:1337")]).await;
    assert_eq!(ported.x_cache(), "HIT");
    assert_eq!(ported.json()["link"], "http://127.0.0.1/next");
    for bad in ["a b", "x:y", "evil.example/x"] {
        let got = get(&url, &[("x-tenant-id", "acme"), ("host", bad)]).await;
        assert_eq!(got.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn keyed_header_values_reach_the_upstream_as_the_key_holds_them() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(r#"{{"currency":"{}"}}"#, seen.header("x-currency")))
    })
    .await;
    let policies = "\"/prices/{id}\":\n  cache_ttl: 1h\n  key:\n    headers: [X-Currency]\n";
    let folio = Folio::start(&upstream, policies).await;
    let url = folio.url("/prices/1");
    let odd = get(&url, &[("x-currency", " ,USD, ")]).await;
    assert_eq!(odd.json()["currency"], "USD", "forwarded as keyed");
    assert_eq!(get(&url, &[("x-currency", "USD")]).await.x_cache(), "HIT");
    let lower = get(&url, &[("x-currency", "usd")]).await;
    assert_eq!(lower.x_cache(), "MISS", "case may matter to the upstream");
    assert_eq!(lower.json()["currency"], "usd");
}

#[tokio::test]
async fn the_forwarded_query_is_in_the_keys_order() {
    let origin = RawOrigin::start().await;
    let folio = Folio::start_with(settings(origin.uri()), POLICIES).await;
    get(&folio.url("/api/v1/products/1?per_page=100&limit=5"), ACME).await;
    assert_eq!(
        origin.last().target,
        "/api/v1/products/1?limit=5&per_page=100"
    );
    let swapped = get(&folio.url("/api/v1/products/1?limit=5&per_page=100"), ACME).await;
    assert_eq!(swapped.x_cache(), "HIT");
}

#[tokio::test]
async fn a_read_asking_to_be_a_write_purges_nothing() {
    let upstream = TestUpstream::json("{}").await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let url = folio.url("/api/v1/products/1");
    get(&url, ACME).await;
    for method in ["PUT", "DELETE", "x"] {
        get(
            &url,
            &[("x-tenant-id", "acme"), ("x-http-method-override", method)],
        )
        .await;
    }
    assert_eq!(get(&url, ACME).await.x_cache(), "HIT");
}

#[tokio::test]
async fn an_upstream_switching_protocols_unasked_is_a_502() {
    let (uri, origin) = scripted_origin(|mut stream| async move {
        let _ = tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: upgrade\r\n\r\n",
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
    let folio = Folio::start_with(settings(uri), POLICIES).await;
    for path in ["/api/v1/products/1", "/elsewhere"] {
        let got = send("POST", &folio.url(path), ACME, "{}").await;
        assert_eq!(got.status, 502, "{path}");
        let got = get(&folio.url(path), ACME).await;
        assert_eq!(got.status, 502, "{path}");
    }
    origin.abort();
}

#[tokio::test]
async fn an_upstream_answering_304_to_a_request_without_validators_is_a_502() {
    // folio asks without validators when it has nothing stored (it drops the
    // client's own): a 304 then describes nothing folio or the client holds.
    let upstream = TestUpstream::start(|_| {
        Reply::json("")
            .status(304)
            .header("etag", "\"v1\"")
            .header("cache-control", "public, max-age=60")
    })
    .await;
    let folio = Folio::start(&upstream, "\"/private/{id}\":\n  cache: false\n").await;
    let url = folio.url("/api/v1/products/7");
    let plain = get(&url, ACME).await;
    assert_eq!(plain.status, 502);
    assert_eq!(plain.json()["error"], "upstream_invalid");
    // Passed through, the client's own validators go with it: its 304 stands.
    let passed = folio.url("/private/7");
    let revalidated = get(
        &passed,
        &[("x-tenant-id", "acme"), ("if-none-match", "\"v1\"")],
    )
    .await;
    assert_eq!(revalidated.status, 304);
    assert_eq!(get(&passed, ACME).await.status, 502);
    let conditional = get(
        &url,
        &[("x-tenant-id", "acme"), ("if-none-match", "\"v1\"")],
    )
    .await;
    assert_eq!(conditional.status, 502);
    folio.stop().await;
}

#[tokio::test]
async fn a_tag_purge_reaches_an_entry_revalidated_by_a_bare_304() {
    let upstream = TestUpstream::start(|seen| {
        if seen.header("if-none-match") == "\"v1\"" {
            Reply::json("")
                .status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "public, max-age=60")
        } else {
            Reply::json(r#"{"v":1}"#)
                .header("etag", "\"v1\"")
                .header("cache-control", "public, max-age=1")
                .header("surrogate-key", "prod-42")
        }
    })
    .await;
    let folio = Folio::start(&upstream, "").await;
    let url = folio.url("/tagged");
    assert_eq!(get(&url, ACME).await.x_cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revalidated = get(&url, ACME).await;
    assert!(
        revalidated
            .header("cache-status")
            .contains("fwd-status=304"),
        "{}",
        revalidated.header("cache-status")
    );
    assert_eq!(get(&url, ACME).await.x_cache(), "HIT");
    folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["prod-42"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(
        get(&url, ACME).await.x_cache(),
        "MISS",
        "the revalidated entry kept its tag"
    );
}

#[tokio::test]
async fn a_header_the_upstream_varies_on_selects_by_the_bytes_it_read() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(r#"{{"raw":"{}"}}"#, seen.header("x-currency")))
            .header("vary", "X-Currency")
            .header("cache-control", "max-age=60")
    })
    .await;
    let folio = Folio::start(&upstream, "").await;
    let url = folio.url("/prices");
    get(&url, &[("x-tenant-id", "acme"), ("x-currency", ",EUR")]).await;
    let victim = get(&url, &[("x-tenant-id", "acme"), ("x-currency", "EUR")]).await;
    assert_eq!(
        victim.x_cache(),
        "MISS",
        "another spelling, another variant"
    );
    assert_eq!(victim.json()["raw"], "EUR");
    let again = get(&url, &[("x-tenant-id", "acme"), ("x-currency", "EUR")]).await;
    assert_eq!(again.x_cache(), "HIT");
}

#[tokio::test]
async fn requests_folio_refuses_cannot_make_it_report_itself_unhealthy() {
    let upstream = TestUpstream::json("{}").await;
    let folio = Folio::start(&upstream, POLICIES).await;
    get(&folio.url("/api/v1/products/1"), ACME).await;
    for _ in 0..20 {
        get(&folio.url("/api/v1/products/1"), ACME).await;
    }
    // Answers folio makes itself, for what the client asked: a path it will
    // not read two ways, and only-if-cached for what is not stored. Neither
    // is a miss nor a failure of folio or its upstream.
    for i in 0..60 {
        let bad = get(&folio.url(&format!("/api/v1/products/a%2F{i}")), ACME).await;
        assert_eq!(bad.status, 400);
        let absent = get(
            &folio.url(&format!("/api/v1/products/{}", 1000 + i)),
            &[("x-tenant-id", "acme"), ("cache-control", "only-if-cached")],
        )
        .await;
        assert_eq!(absent.status, 504);
    }
    assert_eq!(upstream.total_hits(), 1);

    let health = get(&format!("http://{}/_folio/health", folio.admin), &[]).await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "healthy", "{}", health.text());
    let metrics = get(&format!("http://{}/_folio/metrics", folio.admin), &[]).await;
    let refused: f64 = metrics
        .text()
        .lines()
        .filter(|line| line.contains("result=\"refused\",layer=\"none\"}"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(refused, 120.0, "{}", metrics.text());
}

#[tokio::test]
async fn clients_that_only_miss_cannot_make_folio_report_itself_unhealthy() {
    let upstream = TestUpstream::json("{}").await;
    let folio = Folio::start(&upstream, POLICIES).await;
    // Misses are the clients' to make: new URLs, or reloads (`no-cache`).
    for i in 0..40 {
        get(&folio.url(&format!("/api/v1/products/{i}")), ACME).await;
        let reload = [("x-tenant-id", "acme"), ("cache-control", "no-cache")];
        get(&folio.url("/api/v1/products/0"), &reload).await;
    }
    let health = get(&format!("http://{}/_folio/health", folio.admin), &[]).await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "degraded", "{}", health.text());
    assert_eq!(health.json()["checks"]["hit_rate"]["status"], "warning");
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_body_frees_the_client_and_the_connection() {
    // Four bytes of a hundred, then nothing, the connection held open.
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&closed);
    let (uri, origin) = scripted_origin(move |mut stream| {
        let seen = Arc::clone(&seen);
        async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: 100\r\n\r\n{\"a\"";
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await;
            let mut buffer = [0u8; 1024];
            let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer);
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(60), read).await {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    let mut settings = settings(uri);
    settings.upstream_read_timeout = Duration::from_secs(1);
    let folio = Folio::start_with(settings, POLICIES).await;
    let get = format!(
        "GET /api/v1/products/1 HTTP/1.1\r\nHost: {}\r\nX-Tenant-ID: acme\r\nConnection: close\r\n\r\n",
        host(&folio)
    );
    let post = format!(
        "POST /api/v1/export HTTP/1.1\r\nHost: {}\r\nX-Tenant-ID: acme\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}",
        host(&folio)
    );
    for request in [get, post] {
        let mut client = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes())
            .await
            .unwrap();
        let mut received = Vec::new();
        let read_all = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received);
        let ended = tokio::time::timeout(Duration::from_secs(15), read_all).await;
        let received = String::from_utf8_lossy(&received);
        assert!(ended.is_ok(), "the client still waits: {received}");
        assert!(received.starts_with("HTTP/1.1 200"), "{received}");
        assert!(
            received.ends_with("{\"a\""),
            "cut short, never padded: {received}"
        );
    }
    eventually(
        Duration::from_secs(15),
        "both upstream connections closed",
        || {
            let closed = Arc::clone(&closed);
            async move { closed.load(Ordering::SeqCst) == 2 }
        },
    )
    .await;
    origin.abort();
}

#[tokio::test]
async fn a_read_timeout_past_what_the_clock_holds_streams_as_usual() {
    let upstream = TestUpstream::start(|_| {
        Reply::json(r#"{"streamed":true}"#).header("cache-control", "no-store")
    })
    .await;
    let mut settings = settings(upstream.uri());
    settings.upstream_read_timeout = Duration::MAX;
    let folio = Folio::start_with(settings, POLICIES).await;
    let got = get(&folio.url("/api/v1/products/1"), ACME).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), r#"{"streamed":true}"#);
}
