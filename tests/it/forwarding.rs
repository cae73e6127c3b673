//! What passes through untouched by the cache: unsafe methods, unmatched
//! routes, `cache: false`, requests with credentials; and how it is forwarded.

use crate::support::{Folio, Reply, TestUpstream, get, send};

const POLICIES: &str = r#"
"/api/v1/products/{id}":
  cache_ttl: 1h
"GET|POST /api/v1/cart":
  cache: false
"/api/v1/users/{id}":
  cache_ttl: 1m
  private: true
  override_upstream: true
"#;

#[tokio::test]
async fn unmatched_requests_are_forwarded_unchanged_with_forwarding_headers() {
    let upstream = TestUpstream::start(|_| {
        Reply::json(r#"{"ok":true}"#)
            .status(201)
            .header("x-upstream", "yes")
    })
    .await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let got = send(
        "POST",
        &folio.url("/api/v1/orders?express=1"),
        &[
            ("content-type", "application/json"),
            ("x-tenant-id", "acme"),
            ("connection", "x-hop"),
            ("x-hop", "secret"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
        r#"{"items":[1,2]}"#,
    )
    .await;
    assert_eq!(got.status, 201);
    assert_eq!(got.header("x-upstream"), "yes");
    assert_eq!(got.x_cache(), "BYPASS");
    assert_eq!(
        got.header("cache-status"),
        "folio; fwd=method; fwd-status=201"
    );

    let seen = upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri.path(), "/api/v1/orders");
    assert_eq!(seen.uri.query(), Some("express=1"));
    assert_eq!(&seen.body[..], br#"{"items":[1,2]}"#);
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header("x-tenant-id"), "acme");
    assert_eq!(
        seen.header("x-hop"),
        "",
        "headers named by Connection are hop-by-hop"
    );
    assert_eq!(
        seen.header("x-forwarded-for"),
        "127.0.0.1",
        "a client's own X-Forwarded-For is not believed"
    );
    assert_eq!(seen.header("via"), "1.1 folio");
    assert_eq!(
        seen.header("host"),
        folio.addr.ip().to_string(),
        "the client's Host is kept, as a host name without its port"
    );

    // No policy: plain RFC 9111, and this answer carries no freshness.
    let unmatched = get(&folio.url("/elsewhere"), &[]).await;
    assert_eq!(unmatched.x_cache(), "MISS");
    let status = unmatched.header("cache-status");
    assert!(
        status.contains("fwd=uri-miss; detail=status-not-cacheable"),
        "{status}"
    );
    let options = send("OPTIONS", &folio.url("/elsewhere"), &[], "").await;
    assert_eq!(options.x_cache(), "BYPASS");
    assert!(options.header("cache-status").contains("detail=no-policy"));
}

#[tokio::test]
async fn a_successful_write_drops_the_cached_get_of_its_uri() {
    let upstream =
        TestUpstream::start(|seen| Reply::json(format!(r#"{{"n":{}}}"#, seen.body.len()))).await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let url = folio.url("/api/v1/products/42");
    get(&url, &[("x-tenant-id", "acme")]).await;
    get(&url, &[("x-tenant-id", "globex")]).await;
    assert_eq!(get(&url, &[("x-tenant-id", "acme")]).await.x_cache(), "HIT");
    let put = send("PUT", &url, &[("x-tenant-id", "acme")], r#"{"name":"new"}"#).await;
    assert_eq!(put.x_cache(), "BYPASS");
    assert_eq!(
        get(&url, &[("x-tenant-id", "acme")]).await.x_cache(),
        "MISS",
        "dropped by the write"
    );
    assert_eq!(
        get(&url, &[("x-tenant-id", "globex")]).await.x_cache(),
        "HIT",
        "another tenant's entry stays"
    );
}

#[tokio::test]
async fn cache_false_and_credentials_bypass_the_cache() {
    let upstream = TestUpstream::json(r#"{"items":[]}"#).await;
    let folio = Folio::start(&upstream, POLICIES).await;
    for _ in 0..2 {
        let cart = get(
            &folio.url("/api/v1/cart"),
            &[("authorization", "Bearer alice")],
        )
        .await;
        assert_eq!(cart.x_cache(), "BYPASS");
        assert!(cart.header("cache-status").contains("detail=cache-off"));
        let with_auth = get(
            &folio.url("/api/v1/products/1"),
            &[("authorization", "Bearer alice")],
        )
        .await;
        // RFC 9111 §3.5: forwarded, and without `public` not stored.
        assert_eq!(with_auth.x_cache(), "MISS");
        let status = with_auth.header("cache-status");
        assert!(status.contains("detail=authorization"), "{status}");
        let with_cookie = get(&folio.url("/api/v1/products/1"), &[("cookie", "session=1")]).await;
        assert_eq!(with_cookie.x_cache(), "BYPASS");
    }
    assert_eq!(upstream.total_hits(), 6);
}

#[tokio::test]
async fn private_policies_cache_per_caller() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(
            r#"{{"caller":"{}"}}"#,
            seen.header("authorization")
        ))
        .header("cache-control", "private")
    })
    .await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let url = folio.url("/api/v1/users/1");
    assert_eq!(
        get(&url, &[("authorization", "Bearer alice")]).await.json()["caller"],
        "Bearer alice"
    );
    let bob = get(&url, &[("authorization", "Bearer bob")]).await;
    assert_eq!(bob.x_cache(), "MISS");
    assert_eq!(bob.json()["caller"], "Bearer bob");
    let alice = get(&url, &[("authorization", "Bearer alice")]).await;
    assert_eq!(alice.x_cache(), "HIT");
    assert_eq!(alice.json()["caller"], "Bearer alice");
}

#[tokio::test]
async fn a_tenant_header_that_is_not_text_is_a_400() {
    let upstream = TestUpstream::json("{}").await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let long = "t".repeat(300);
    let got = get(&folio.url("/api/v1/products/1"), &[("x-tenant-id", &long)]).await;
    assert_eq!(got.status, 400);
    assert_eq!(got.json()["error"], "bad_request");
    assert_eq!(upstream.total_hits(), 0);
}

#[tokio::test]
async fn forwarding_headers_are_believed_from_trusted_proxies_only() {
    let upstream = TestUpstream::json("{}").await;
    let mut settings = crate::support::settings(upstream.uri());
    settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let folio = Folio::start_with(settings, POLICIES).await;
    let headers = [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
    ];
    send("POST", &folio.url("/api/v1/orders"), &headers, "{}").await;
    let seen = upstream.last();
    assert_eq!(seen.header("x-forwarded-for"), "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.header("forwarded"), "for=203.0.113.9");
}
