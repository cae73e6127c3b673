//! Hits and misses as a client sees them: MISS then HIT with the upstream
//! asked once, 304s, tenants, single flight, HEAD, Vary, what is not stored.

use std::time::Duration;

use crate::support::{Folio, Reply, TestUpstream, get};

const PRODUCTS: &str = r#"
"/api/v1/products/{id}":
  cache_ttl: 1h
  cache_key: "tenant_id + product_id"
  cache_control: "public, max-age=60"
"/api/v1/products":
  cache_ttl: 5m
  cache_key: "tenant_id + query_params"
"#;

#[tokio::test]
async fn miss_then_hit_asks_the_upstream_once() {
    let upstream = TestUpstream::json(r#"{"id":42,"name":"Dune"}"#).await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    let url = folio.url("/api/v1/products/42");

    let first = get(&url, &[("x-tenant-id", "acme")]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.header("x-cache-layer"), "UPSTREAM");
    assert!(
        first
            .header("cache-status")
            .starts_with("folio; fwd=uri-miss; stored"),
        "{}",
        first.header("cache-status")
    );

    let second = get(&url, &[("x-tenant-id", "acme")]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(second.header("x-cache-layer"), "L1");
    assert!(
        second
            .header("cache-status")
            .starts_with("folio; hit; detail=L1; ttl="),
        "{}",
        second.header("cache-status")
    );
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("content-type"), "application/json");
    assert_eq!(
        second.header("cache-control"),
        "public, max-age=60",
        "the policy's Cache-Control"
    );
    assert!(second.header("age").parse::<u64>().is_ok(), "Age on a hit");
    let etag = second.header("etag");
    assert!(
        etag.starts_with('"') && etag.len() > 10,
        "a strong ETag from the body: {etag}"
    );
    assert_eq!(etag, first.header("etag"));
    assert_eq!(upstream.hits("/api/v1/products/42"), 1);
}

#[tokio::test]
async fn if_none_match_is_answered_304_from_the_cache() {
    let upstream =
        TestUpstream::start(|_| Reply::json(r#"{"id":7}"#).header("etag", "\"v7\"")).await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    let url = folio.url("/api/v1/products/7");

    let first = get(&url, &[]).await;
    assert_eq!(
        first.header("etag"),
        "\"v7\"",
        "the upstream's ETag is kept"
    );
    let revalidated = get(&url, &[("if-none-match", "\"v7\"")]).await;
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
    assert_eq!(revalidated.header("etag"), "\"v7\"");
    assert_eq!(revalidated.x_cache(), "HIT");
    let weak = get(&url, &[("if-none-match", "\"other\", W/\"v7\"")]).await;
    assert_eq!(weak.status, 304, "weak comparison");
    let changed = get(&url, &[("if-none-match", "\"v6\"")]).await;
    assert_eq!(changed.status, 200);
    assert_eq!(
        upstream.total_hits(),
        1,
        "no conditional reached the upstream"
    );
}

#[tokio::test]
async fn a_conditional_miss_is_stored_and_then_answered_304() {
    let upstream = TestUpstream::start(|_| Reply::json("{}").header("etag", "\"e1\"")).await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    let url = folio.url("/api/v1/products/1");
    let first = get(&url, &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(first.status, 304);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(
        upstream.last().header("if-none-match"),
        "",
        "the fill asks for a full response"
    );
    assert_eq!(get(&url, &[]).await.status, 200);
    assert_eq!(upstream.total_hits(), 1);
}

#[tokio::test]
async fn tenants_never_share_an_entry() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(r#"{{"tenant":"{}"}}"#, seen.header("x-tenant-id")))
    })
    .await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    let url = folio.url("/api/v1/products/1");

    assert_eq!(
        get(&url, &[("x-tenant-id", "acme")]).await.json()["tenant"],
        "acme"
    );
    let globex = get(&url, &[("x-tenant-id", "globex")]).await;
    assert_eq!(globex.x_cache(), "MISS");
    assert_eq!(globex.json()["tenant"], "globex");
    let acme = get(&url, &[("x-tenant-id", "acme")]).await;
    assert_eq!(acme.x_cache(), "HIT");
    assert_eq!(acme.json()["tenant"], "acme");
    let anonymous = get(&url, &[]).await;
    assert_eq!(
        anonymous.x_cache(),
        "MISS",
        "no tenant is a tenant of its own"
    );
    assert_eq!(upstream.hits("/api/v1/products/1"), 3);
}

#[tokio::test]
async fn fifty_concurrent_misses_make_one_upstream_request() {
    let upstream =
        TestUpstream::start(|_| Reply::json(r#"{"slow":true}"#).delay(Duration::from_millis(400)))
            .await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    let url = folio.url("/api/v1/products/99");

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let url = url.clone();
        requests.spawn(async move { get(&url, &[("x-tenant-id", "acme")]).await });
    }
    let mut collapsed = 0;
    while let Some(got) = requests.join_next().await {
        let got = got.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), r#"{"slow":true}"#);
        if got.header("cache-status").contains("collapsed") {
            collapsed += 1;
        }
    }
    assert_eq!(
        upstream.hits("/api/v1/products/99"),
        1,
        "one fetch for fifty waiting clients"
    );
    assert!(
        collapsed >= 40,
        "most requests waited for the one fetch ({collapsed})"
    );
}

#[tokio::test]
async fn head_is_answered_from_the_stored_get() {
    let upstream = TestUpstream::json(r#"{"id":3,"title":"Emma"}"#).await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    let url = folio.url("/api/v1/products/3");
    get(&url, &[]).await;
    let head = crate::support::send("HEAD", &url, &[], "").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.x_cache(), "HIT");
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), "23");
    assert_eq!(upstream.total_hits(), 1);
    assert_eq!(upstream.last().method, "GET");
}

#[tokio::test]
async fn query_parameters_in_any_order_share_an_entry() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(r#"{{"q":"{}"}}"#, seen.uri.query().unwrap_or("")))
    })
    .await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    assert_eq!(
        get(&folio.url("/api/v1/products?page=2&category=fiction"), &[])
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&folio.url("/api/v1/products?category=fiction&page=2"), &[])
            .await
            .x_cache(),
        "HIT"
    );
    assert_eq!(
        get(&folio.url("/api/v1/products?category=science&page=2"), &[])
            .await
            .x_cache(),
        "MISS"
    );
    // The product policy keys on the id only: a stray query does not split it.
    assert_eq!(
        get(&folio.url("/api/v1/products/5"), &[]).await.x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&folio.url("/api/v1/products/5?utm_source=mail"), &[])
            .await
            .x_cache(),
        "HIT"
    );
}

#[tokio::test]
async fn upstream_vary_keeps_variants_apart() {
    let upstream = TestUpstream::varied_by_language().await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    let url = folio.url("/api/v1/products/1");
    assert_eq!(
        get(&url, &[("accept-language", "en")]).await.json()["lang"],
        "en"
    );
    let fr = get(&url, &[("accept-language", "fr")]).await;
    assert_eq!(fr.json()["lang"], "fr", "never the English variant");
    assert!(
        fr.header("cache-status").contains("fwd=vary-miss"),
        "{}",
        fr.header("cache-status")
    );
    let again = get(&url, &[("accept-language", "fr")]).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(again.json()["lang"], "fr");
}

#[tokio::test]
async fn policy_varied_headers_split_the_key() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(
            r#"{{"lang":"{}"}}"#,
            seen.header("accept-language")
        ))
    })
    .await;
    let folio = Folio::start(
        &upstream,
        "\"/s\":\n  cache_ttl: 1m\n  key:\n    headers: [Accept-Language]\n",
    )
    .await;
    let url = folio.url("/s");
    assert_eq!(
        get(&url, &[("accept-language", "en-US, fr")])
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&url, &[("accept-language", "en-us,fr")])
            .await
            .x_cache(),
        "HIT",
        "normalized"
    );
    assert_eq!(
        get(&url, &[("accept-language", "de")]).await.json()["lang"],
        "de"
    );
}

#[tokio::test]
async fn responses_the_upstream_forbids_are_not_stored() {
    let upstream = TestUpstream::start(|seen| match seen.uri.path() {
        "/api/v1/products/1" => Reply::json("{}").header("cache-control", "no-store"),
        "/api/v1/products/2" => Reply::json("{}").header("cache-control", "private"),
        "/api/v1/products/3" => Reply::json("{}").header("set-cookie", "session=abc"),
        _ => Reply::json(r#"{"error":"boom"}"#).status(500),
    })
    .await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    for (id, detail) in [
        (1, "upstream-no-store"),
        (2, "upstream-private"),
        (3, "set-cookie"),
        (4, "status-not-cacheable"),
    ] {
        let url = folio.url(&format!("/api/v1/products/{id}"));
        let first = get(&url, &[]).await;
        assert_eq!(first.x_cache(), "MISS");
        assert!(
            first
                .header("cache-status")
                .contains(&format!("detail={detail}")),
            "{}",
            first.header("cache-status")
        );
        assert_eq!(get(&url, &[]).await.x_cache(), "MISS");
    }
    assert_eq!(upstream.total_hits(), 8);
    let cookie = get(&folio.url("/api/v1/products/3"), &[]).await;
    assert_eq!(
        cookie.header("set-cookie"),
        "session=abc",
        "uncached answers pass unchanged"
    );
}

#[tokio::test]
async fn bodies_over_max_body_are_streamed_whole_but_not_stored() {
    let big = "x".repeat(200_000);
    let body = format!(r#"{{"blob":"{big}"}}"#);
    let expected = body.clone();
    let upstream = TestUpstream::start(move |_| Reply::json(body.clone())).await;
    let folio = Folio::start(&upstream, "\"/big\":\n  cache_ttl: 1m\n  max_body: 64KB\n").await;
    let first = get(&folio.url("/big"), &[]).await;
    assert_eq!(first.text(), expected);
    assert!(
        first.header("cache-status").contains("detail=too-large"),
        "{}",
        first.header("cache-status")
    );
    let second = get(&folio.url("/big"), &[]).await;
    assert_eq!(second.text(), expected);
    assert_eq!(second.x_cache(), "MISS");
}

#[tokio::test]
async fn l1_capacity_zero_means_every_request_goes_upstream_without_l2() {
    let upstream = TestUpstream::json("{}").await;
    let mut settings = crate::support::settings(upstream.uri());
    settings.l1_capacity = 0;
    let folio = Folio::start_with(settings, PRODUCTS).await;
    get(&folio.url("/api/v1/products/1"), &[]).await;
    assert_eq!(
        get(&folio.url("/api/v1/products/1"), &[]).await.x_cache(),
        "MISS"
    );
}
