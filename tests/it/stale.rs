//! Stale windows: serve stale while refreshing, or when the upstream fails.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::raw::closing_origin;
use crate::support::{Folio, Reply, TestUpstream, eventually, get};

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let (upstream, version) = TestUpstream::versioned().await;
    let folio = Folio::start(
        &upstream,
        // Two seconds, so the refreshed entry is still fresh when asked
        // again even if its `Date` fell in the second before it was stored.
        "\"/s\":\n  cache_ttl: 2s\n  stale_while_revalidate: 1m\n",
    )
    .await;
    assert_eq!(get(&folio.url("/s"), &[]).await.json()["v"], 1);
    version.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let stale = get(&folio.url("/s"), &[]).await;
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(stale.json()["v"], 1, "the stale answer, without waiting");
    assert!(
        stale
            .header("cache-status")
            .contains("stale-while-revalidate")
    );
    eventually(
        Duration::from_secs(5),
        "background refresh stored v2",
        || async {
            let got = get(&folio.url("/s"), &[]).await;
            got.x_cache() == "HIT" && got.json()["v"] == 2
        },
    )
    .await;
    assert_eq!(upstream.hits("/s"), 2, "one refresh");
}

#[tokio::test]
async fn stale_if_error_answers_when_the_upstream_fails() {
    let upstream = TestUpstream::json(r#"{"v":"good"}"#).await;
    let folio = Folio::start(
        &upstream,
        "\"/s\":\n  cache_ttl: 1s\n  stale_if_error: 1m\n\"/t\":\n  cache_ttl: 1s\n",
    )
    .await;
    get(&folio.url("/s"), &[]).await;
    get(&folio.url("/t"), &[]).await;
    upstream.answer(|_| Reply::json(r#"{"error":"db down"}"#).status(503));
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let stale = get(&folio.url("/s"), &[]).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(stale.json()["v"], "good");
    assert!(stale.header("cache-status").contains("stale-if-error"));

    let no_window = get(&folio.url("/t"), &[]).await;
    assert_eq!(
        no_window.status, 503,
        "without stale_if_error the failure passes through"
    );
    assert_eq!(
        no_window.x_cache(),
        "EXPIRED",
        "a stale entry was found and the upstream asked again"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_is_covered_by_stale_entries_unless_forbidden() {
    for (cache_control, policy, serves_stale) in [
        ("max-age=1", "", true),
        ("max-age=1, must-revalidate", "", false),
        ("max-age=1, proxy-revalidate", "", false),
        ("max-age=1, s-maxage=1", "", false),
        ("max-age=1", "  stale_if_error: 0s\n", false),
    ] {
        let (uri, down) = closing_origin(cache_control).await;
        let folio = Folio::start_with(
            crate::support::settings(uri),
            &format!("\"/s\":\n  methods: [GET]\n{policy}"),
        )
        .await;
        assert_eq!(get(&folio.url("/s"), &[]).await.status, 200);
        down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let got = get(&folio.url("/s"), &[]).await;
        if serves_stale {
            assert_eq!(got.status, 200, "{cache_control} {policy}");
            assert_eq!(got.x_cache(), "STALE");
            assert_eq!(got.json()["v"], "good");
        } else {
            assert_eq!(got.status, 502, "{cache_control} {policy}: {}", got.text());
        }
    }
}
