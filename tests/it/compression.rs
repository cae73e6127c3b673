//! Compressed entries: an answer worth compressing is stored once in
//! brotli, and each client gets the form its `Accept-Encoding` takes.

use std::io::Read;
use std::time::Duration;

use crate::support::{
    Folio, Got, Reply, TestRedis, TestUpstream, eventually, get, settings_with_redis,
};

const POLICY: &str = "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n";
const ACME: (&str, &str) = ("x-tenant-id", "acme");

/// A product as the bookstore answers it: about 1 KB of JSON.
fn product() -> String {
    let reviews: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"user":"reader{i}","stars":{},"text":"A fine book, review number {i}."}}"#,
                i % 5 + 1
            )
        })
        .collect();
    format!(
        r#"{{"id":42,"title":"The Name of the Rose","author":"Umberto Eco","price":14.99,"currency":"EUR","in_stock":true,"categories":["fiction","mystery","historical"],"reviews":[{}]}}"#,
        reviews.join(",")
    )
}

fn unbrotli(bytes: &[u8]) -> String {
    let mut out = String::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("not brotli: {e}"));
    out
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("not gzip: {e}"));
    out
}

async fn product_from(folio: &Folio, accept_encoding: Option<&str>) -> Got {
    let mut headers = vec![ACME];
    if let Some(value) = accept_encoding {
        headers.push(("accept-encoding", value));
    }
    get(&folio.url("/api/v1/products/42"), &headers).await
}

fn varies_on_accept_encoding(got: &Got) -> bool {
    got.headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("accept-encoding"))
}

#[tokio::test]
async fn each_client_gets_the_form_it_accepts_of_one_stored_entry() {
    let body = product();
    let upstream = TestUpstream::start({
        let body = body.clone();
        move |_| Reply::json(body.clone())
    })
    .await;
    let folio = Folio::start(&upstream, POLICY).await;

    let identity = product_from(&folio, None).await;
    assert_eq!(identity.x_cache(), "MISS");
    assert_eq!(
        identity.text(),
        body,
        "no Accept-Encoding: the decoded body"
    );
    assert_eq!(identity.header("content-encoding"), "");
    assert!(varies_on_accept_encoding(&identity));

    let br = product_from(&folio, Some("gzip, deflate, br")).await;
    assert_eq!(br.x_cache(), "HIT");
    assert_eq!(br.header("content-encoding"), "br");
    assert!(br.body.len() < body.len() / 2, "{} bytes", br.body.len());
    assert_eq!(unbrotli(&br.body), body);
    assert!(varies_on_accept_encoding(&br));

    let gzip = product_from(&folio, Some("gzip")).await;
    assert_eq!(gzip.x_cache(), "HIT");
    assert_eq!(gzip.header("content-encoding"), "gzip");
    assert_eq!(gunzip(&gzip.body), body);

    let refused = product_from(&folio, Some("br;q=0, gzip;q=0")).await;
    assert_eq!(refused.text(), body);
    assert_eq!(refused.header("content-encoding"), "");

    // One representation each: three ETags, all from one stored entry.
    let tags = [
        identity.header("etag"),
        br.header("etag"),
        gzip.header("etag"),
    ];
    assert!(
        tags[1].ends_with("-br\"") && tags[2].ends_with("-gzip\""),
        "{tags:?}"
    );
    assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);
    assert_eq!(upstream.hits("/api/v1/products/42"), 1);
}

#[tokio::test]
async fn a_conditional_request_matches_the_etag_of_the_form_it_would_get() {
    let upstream = TestUpstream::json(Box::leak(product().into_boxed_str())).await;
    let folio = Folio::start(&upstream, POLICY).await;
    let br = product_from(&folio, Some("br")).await;
    let identity = product_from(&folio, None).await;

    let url = folio.url("/api/v1/products/42");
    let same = get(
        &url,
        &[
            ACME,
            ("accept-encoding", "br"),
            ("if-none-match", br.header("etag")),
        ],
    )
    .await;
    assert_eq!(same.status, 304);
    assert_eq!(same.header("etag"), br.header("etag"));
    assert!(same.body.is_empty());

    let plain = get(&url, &[ACME, ("if-none-match", identity.header("etag"))]).await;
    assert_eq!(plain.status, 304);

    // The decoded body's ETag does not validate the brotli bytes.
    let other = get(
        &url,
        &[
            ACME,
            ("accept-encoding", "br"),
            ("if-none-match", identity.header("etag")),
        ],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("content-encoding"), "br");
}

#[tokio::test]
async fn a_range_of_a_compressed_entry_is_a_range_of_the_decoded_body() {
    let body = product();
    let upstream = TestUpstream::json(Box::leak(body.clone().into_boxed_str())).await;
    let folio = Folio::start(&upstream, POLICY).await;
    product_from(&folio, None).await;

    let got = get(
        &folio.url("/api/v1/products/42"),
        &[ACME, ("accept-encoding", "br"), ("range", "bytes=10-29")],
    )
    .await;
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-encoding"), "");
    assert_eq!(got.text(), body[10..30]);
    assert_eq!(
        got.header("content-range"),
        format!("bytes 10-29/{}", body.len())
    );
}

#[tokio::test]
async fn an_upstreams_own_content_encoding_is_kept_as_it_came() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, product().as_bytes()).unwrap();
    let gzipped = encoder.finish().unwrap();
    let upstream = TestUpstream::start({
        let gzipped = gzipped.clone();
        move |_| {
            let mut reply = Reply::json("").header("content-encoding", "gzip");
            reply.body = gzipped.clone().into();
            reply
        }
    })
    .await;
    let folio = Folio::start(&upstream, POLICY).await;
    for accept in [Some("gzip"), Some("br"), None] {
        let got = product_from(&folio, accept).await;
        assert_eq!(got.header("content-encoding"), "gzip", "{accept:?}");
        assert_eq!(got.body, gzipped, "{accept:?}: the upstream's bytes");
    }
    assert_eq!(upstream.hits("/api/v1/products/42"), 1);
}

#[tokio::test]
async fn compress_false_stores_and_sends_the_body_as_it_came() {
    let body = product();
    let upstream = TestUpstream::json(Box::leak(body.clone().into_boxed_str())).await;
    let folio = Folio::start(
        &upstream,
        "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n  compress: false\n",
    )
    .await;
    product_from(&folio, None).await;
    let got = product_from(&folio, Some("br, gzip")).await;
    assert_eq!(got.x_cache(), "HIT");
    assert_eq!(got.header("content-encoding"), "");
    assert_eq!(got.text(), body);
    assert!(!varies_on_accept_encoding(&got));
}

#[tokio::test]
async fn small_or_binary_answers_are_not_compressed() {
    let upstream = TestUpstream::start(|seen| {
        if seen.uri.path().ends_with("/1") {
            Reply::json(r#"{"id":1}"#)
        } else {
            let mut reply = Reply::json("x".repeat(2000));
            reply.headers = vec![("content-type".into(), "image/png".into())];
            reply
        }
    })
    .await;
    let folio = Folio::start(&upstream, POLICY).await;
    for id in [1, 2] {
        let url = folio.url(&format!("/api/v1/products/{id}"));
        get(&url, &[ACME]).await;
        let got = get(&url, &[ACME, ("accept-encoding", "br")]).await;
        assert_eq!(got.x_cache(), "HIT");
        assert_eq!(got.header("content-encoding"), "", "/{id}");
    }
}

#[tokio::test]
async fn a_compressed_entry_goes_through_redis_unreadable_and_comes_back_whole() {
    let body = product();
    let redis = TestRedis::start().await;
    let upstream = TestUpstream::json(Box::leak(body.clone().into_boxed_str())).await;
    let a = Folio::start_with(settings_with_redis(&upstream, &redis), POLICY).await;
    let b = Folio::start_with(settings_with_redis(&upstream, &redis), POLICY).await;
    b.replayed_purges().await;
    product_from(&a, Some("br")).await;
    eventually(Duration::from_secs(5), "entry written to Redis", || async {
        !redis.entry_values().await.is_empty()
    })
    .await;
    let stored = redis.entry_values().await.remove(0);
    assert!(
        !stored.windows(20).any(|w| w == &body.as_bytes()[..20]),
        "the JSON is stored compressed"
    );
    assert!(stored.len() < body.len(), "{} bytes stored", stored.len());

    let plain = product_from(&b, None).await;
    assert_eq!(plain.header("x-cache-layer"), "L2");
    assert_eq!(plain.text(), body);
    let br = product_from(&b, Some("br")).await;
    assert_eq!(unbrotli(&br.body), body);
    assert_eq!(upstream.hits("/api/v1/products/42"), 1);
}

#[tokio::test]
async fn a_revalidated_compressed_entry_keeps_its_form_and_etags() {
    let body = product();
    let upstream = TestUpstream::start({
        let body = body.clone();
        move |seen| {
            if seen.header("if-none-match") == "\"v1\"" {
                Reply::json("").status(304).header("etag", "\"v1\"")
            } else {
                Reply::json(body.clone()).header("etag", "\"v1\"")
            }
        }
    })
    .await;
    let folio = Folio::start(&upstream, "\"/api/v1/products/{id}\":\n  cache_ttl: 1s\n").await;
    let first = product_from(&folio, Some("br")).await;
    assert_eq!(first.header("etag"), "\"v1-br\"");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let revalidated = product_from(&folio, Some("br")).await;
    assert_eq!(
        upstream.last().header("if-none-match"),
        "\"v1\"",
        "the upstream's own ETag"
    );
    assert_eq!(revalidated.header("etag"), "\"v1-br\"");
    assert_eq!(unbrotli(&revalidated.body), body);
    let plain = product_from(&folio, None).await;
    assert_eq!(plain.x_cache(), "HIT");
    assert_eq!(plain.header("etag"), "\"v1\"");
    assert_eq!(plain.text(), body);
}

#[tokio::test]
async fn an_answer_too_large_to_store_reaches_its_client_in_a_form_it_takes() {
    // 70 KB of headers before the body: the entry's encoding cannot hold
    // it, so the answer goes to this client alone, never as brotli to a
    // client that did not ask for it.
    let body = product();
    let upstream = TestUpstream::start({
        let body = body.clone();
        move |_| Reply::json(body.clone()).header("link", &"x".repeat(70_000))
    })
    .await;
    let folio = Folio::start(&upstream, POLICY).await;
    for _ in 0..2 {
        let identity = product_from(&folio, None).await;
        assert_eq!(identity.status, 200);
        assert_eq!(identity.header("content-encoding"), "");
        assert_eq!(identity.text(), body);
    }
    assert_eq!(upstream.hits("/api/v1/products/42"), 2, "not stored");
}
