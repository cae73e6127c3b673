//! The upstream failing: clear JSON errors, never a hang; and shutdown.

use std::time::Duration;

use crate::support::upstream::closed_port;
use crate::support::{Folio, Reply, TestUpstream, get, settings};

const POLICY: &str = "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n";

#[tokio::test]
async fn upstream_down_is_a_502_with_a_json_body() {
    let down = closed_port().await;
    let folio =
        Folio::start_with(settings(format!("http://{down}").parse().unwrap()), POLICY).await;
    for path in ["/api/v1/products/1", "/not/cached"] {
        let got = get(&folio.url(path), &[]).await;
        assert_eq!(got.status, 502, "{path}");
        assert_eq!(got.header("content-type"), "application/json");
        let body = got.json();
        assert_eq!(body["error"], "upstream_unavailable");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("could not be reached"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn upstream_slower_than_its_timeout_is_a_504() {
    let upstream = TestUpstream::start(|_| Reply::json("{}").delay(Duration::from_secs(3))).await;
    let mut settings = settings(upstream.uri());
    settings.upstream_timeout = Duration::from_millis(300);
    let folio = Folio::start_with(settings, POLICY).await;
    let started = std::time::Instant::now();
    let got = get(&folio.url("/api/v1/products/1"), &[]).await;
    assert_eq!(got.status, 504);
    assert_eq!(got.json()["error"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the timeout, not when the upstream woke"
    );
    let passed = get(&folio.url("/uncached"), &[]).await;
    assert_eq!(passed.status, 504);
}

#[tokio::test]
async fn errors_are_not_cached_and_waiting_clients_share_the_failure() {
    let upstream = TestUpstream::start(|_| Reply::json("{}").delay(Duration::from_secs(3))).await;
    let mut settings = settings(upstream.uri());
    settings.upstream_timeout = Duration::from_millis(300);
    let folio = Folio::start_with(settings, POLICY).await;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let url = folio.url("/api/v1/products/2");
        clients.spawn(async move { get(&url, &[]).await.status });
    }
    while let Some(status) = clients.join_next().await {
        assert_eq!(status.unwrap(), 504);
    }
    assert_eq!(
        upstream.hits("/api/v1/products/2"),
        1,
        "one timed-out fetch, shared"
    );
    upstream.answer(|_| Reply::json(r#"{"back":true}"#));
    assert_eq!(
        get(&folio.url("/api/v1/products/2"), &[]).await.status,
        200,
        "the failure was not stored"
    );
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let upstream =
        TestUpstream::start(|_| Reply::json(r#"{"late":true}"#).delay(Duration::from_millis(500)))
            .await;
    let mut folio = Folio::start(&upstream, POLICY).await;
    let url = folio.url("/api/v1/products/1");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    folio.begin_stop();
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), r#"{"late":true}"#);
    let addr = folio.addr;
    folio.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
