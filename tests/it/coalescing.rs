//! One upstream fetch per key, whatever the timing: with Redis in the way
//! of every miss, and for answers that cannot be stored (hit-for-pass).

use std::time::Duration;

use crate::support::{ACME, Folio, Reply, TestRedis, TestUpstream, get, settings_with_redis};

const PRODUCTS: &str = "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n";

#[tokio::test]
async fn concurrent_misses_fetch_once_even_when_redis_sits_in_between() {
    // Requests keep arriving while the leader fetches: some are still
    // waiting on Redis when it finishes, and must find its entry rather
    // than lead a second fetch.
    let upstream =
        TestUpstream::start(|_| Reply::json(r#"{"ok":true}"#).delay(Duration::from_millis(10)))
            .await;
    let redis = TestRedis::start().await;
    let folio = Folio::start_with(settings_with_redis(&upstream, &redis), PRODUCTS).await;
    for id in 0..20 {
        let url = folio.url(&format!("/api/v1/products/{id}"));
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..50 {
            let url = url.clone();
            requests.spawn(async move {
                tokio::time::sleep(Duration::from_micros(400 * i)).await;
                get(&url, ACME).await
            });
        }
        while let Some(got) = requests.join_next().await {
            assert_eq!(got.unwrap().status, 200);
        }
        assert_eq!(
            upstream.hits(&format!("/api/v1/products/{id}")),
            1,
            "key {id}: one fetch for fifty concurrent misses"
        );
    }
}

#[tokio::test]
async fn an_answer_that_cannot_be_stored_sends_its_key_straight_upstream() {
    let upstream = TestUpstream::start(|_| {
        Reply::json(r#"{"mine":true}"#)
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(200))
    })
    .await;
    let folio = Folio::start(&upstream, PRODUCTS).await;
    let url = folio.url("/api/v1/products/1");
    let first = get(&url, ACME).await;
    assert!(
        first
            .header("cache-status")
            .contains("detail=upstream-no-store")
    );

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let url = url.clone();
        requests.spawn(async move { get(&url, ACME).await });
    }
    while let Some(got) = requests.join_next().await {
        let got = got.unwrap();
        assert_eq!(got.status, 200);
        let status = got.header("cache-status");
        assert!(status.contains("detail=hit-for-pass"), "{status}");
        assert!(!status.contains("collapsed"), "{status}");
    }
    assert_eq!(upstream.hits("/api/v1/products/1"), 11);
}

#[tokio::test]
async fn a_cold_key_on_four_instances_reaches_the_upstream_once() {
    let upstream =
        TestUpstream::start(|_| Reply::json(r#"{"ok":true}"#).delay(Duration::from_millis(300)))
            .await;
    let redis = TestRedis::start().await;
    let mut instances = Vec::new();
    for _ in 0..4 {
        let mut settings = settings_with_redis(&upstream, &redis);
        // A Redis command slower than the L2 timeout makes an instance
        // fetch by itself, by design; on a busy test machine 50 ms is
        // sometimes missed, and this test is about the lease.
        settings.l2_timeout = Duration::from_secs(1);
        instances.push(Folio::start_with(settings, PRODUCTS).await);
    }
    for folio in &instances {
        folio.replayed_purges().await;
    }
    for id in 0..3 {
        let path = format!("/api/v1/products/{id}");
        let mut requests = tokio::task::JoinSet::new();
        for folio in &instances {
            for _ in 0..5 {
                let url = folio.url(&path);
                requests.spawn(async move { get(&url, ACME).await });
            }
        }
        let mut waited_on_l2 = 0;
        while let Some(got) = requests.join_next().await {
            let got = got.unwrap();
            assert_eq!(got.status, 200);
            assert_eq!(got.text(), r#"{"ok":true}"#);
            if got.header("cache-status").contains("collapsed-L2") {
                waited_on_l2 += 1;
            }
        }
        assert_eq!(
            upstream.hits(&path),
            1,
            "{path}: one fetch for four instances"
        );
        assert!(
            waited_on_l2 >= 3,
            "the other instances waited on L2 ({waited_on_l2})"
        );
    }
}

#[tokio::test]
async fn an_instance_whose_lease_holder_cannot_store_fetches_for_itself() {
    let upstream = TestUpstream::start(|_| {
        Reply::json(r#"{"private":true}"#)
            .header("cache-control", "private")
            .delay(Duration::from_millis(200))
    })
    .await;
    let redis = TestRedis::start().await;
    let a = Folio::start_with(settings_with_redis(&upstream, &redis), PRODUCTS).await;
    let b = Folio::start_with(settings_with_redis(&upstream, &redis), PRODUCTS).await;
    let started = std::time::Instant::now();
    let (url_a, url_b) = (a.url("/api/v1/products/1"), b.url("/api/v1/products/1"));
    let (x, y) = tokio::join!(get(&url_a, ACME), get(&url_b, ACME));
    assert_eq!((x.status.as_u16(), y.status.as_u16()), (200, 200));
    assert_eq!(upstream.hits("/api/v1/products/1"), 2);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the waiter did not wait out the whole lease"
    );
}
