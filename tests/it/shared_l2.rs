//! L2: several folio instances share one Redis; Redis failing costs nothing
//! but the hits it would have given.

use std::time::{Duration, Instant};

use crate::support::{Folio, TestRedis, TestUpstream, eventually, get, settings_with_redis};

const POLICY: &str = "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n";

async fn folio_with_redis(upstream: &TestUpstream, redis: &TestRedis) -> Folio {
    Folio::start_with(settings_with_redis(upstream, redis), POLICY).await
}

#[tokio::test]
async fn an_entry_stored_by_one_instance_is_an_l2_hit_on_another() {
    let redis = TestRedis::start().await;
    let upstream = TestUpstream::json(r#"{"id":1,"shared":true}"#).await;
    let a = folio_with_redis(&upstream, &redis).await;
    let b = folio_with_redis(&upstream, &redis).await;
    b.replayed_purges().await;

    assert_eq!(
        get(&a.url("/api/v1/products/1"), &[("x-tenant-id", "acme")])
            .await
            .x_cache(),
        "MISS"
    );
    // The L2 write happens after the response, in the background.
    eventually(Duration::from_secs(5), "entry written to Redis", || async {
        !redis.keys().await.is_empty()
    })
    .await;
    let keys = redis.keys().await;
    assert!(
        keys[0].starts_with("folio:v1:") && keys[0].len() == "folio:v1:".len() + 64,
        "{keys:?}"
    );

    let from_l2 = get(&b.url("/api/v1/products/1"), &[("x-tenant-id", "acme")]).await;
    assert_eq!(from_l2.x_cache(), "HIT");
    assert_eq!(from_l2.header("x-cache-layer"), "L2");
    assert_eq!(from_l2.text(), r#"{"id":1,"shared":true}"#);
    let promoted = get(&b.url("/api/v1/products/1"), &[("x-tenant-id", "acme")]).await;
    assert_eq!(promoted.header("x-cache-layer"), "L1", "an L2 hit fills L1");
    let other_tenant = get(&b.url("/api/v1/products/1"), &[("x-tenant-id", "globex")]).await;
    assert_eq!(other_tenant.x_cache(), "MISS", "L2 is tenant-keyed too");
    assert_eq!(upstream.hits("/api/v1/products/1"), 2);
}

#[tokio::test]
async fn variants_stored_by_one_instance_are_l2_hits_on_another_each_its_own() {
    let redis = TestRedis::start().await;
    let upstream = TestUpstream::varied_by_language().await;
    let a = folio_with_redis(&upstream, &redis).await;
    let b = folio_with_redis(&upstream, &redis).await;
    b.replayed_purges().await;
    let (url_a, url_b) = (a.url("/api/v1/products/1"), b.url("/api/v1/products/1"));
    let (en, fr) = ([("accept-language", "en")], [("accept-language", "fr")]);
    assert_eq!(get(&url_a, &en).await.json()["lang"], "en");
    assert_eq!(get(&url_a, &fr).await.json()["lang"], "fr");
    // The vary index and both variants reach Redis in the background.
    eventually(
        Duration::from_secs(5),
        "index and variants in Redis",
        || async { redis.keys().await.len() >= 3 },
    )
    .await;

    // b's memory holds nothing: the index and the variant come from L2.
    let fr_on_b = get(&url_b, &fr).await;
    assert_eq!(
        fr_on_b.x_cache(),
        "HIT",
        "{}",
        fr_on_b.header("cache-status")
    );
    assert_eq!(fr_on_b.header("x-cache-layer"), "L2");
    assert_eq!(fr_on_b.json()["lang"], "fr");
    // Now b holds the index, but not the English variant: that is L2's.
    let en_on_b = get(&url_b, &en).await;
    assert_eq!(
        en_on_b.x_cache(),
        "HIT",
        "{}",
        en_on_b.header("cache-status")
    );
    assert_eq!(en_on_b.header("x-cache-layer"), "L2");
    assert_eq!(en_on_b.json()["lang"], "en", "never the French variant");
    let en_again = get(&url_b, &en).await;
    assert_eq!(en_again.header("x-cache-layer"), "L1");
    assert_eq!(en_again.json()["lang"], "en");
    assert_eq!(upstream.hits("/api/v1/products/1"), 2);
}

#[tokio::test]
async fn redis_killed_mid_run_requests_still_succeed_and_l2_comes_back() {
    let mut redis = TestRedis::start().await;
    let upstream = TestUpstream::json(r#"{"ok":true}"#).await;
    let folio = folio_with_redis(&upstream, &redis).await;
    for id in 0..5 {
        assert_eq!(
            get(&folio.url(&format!("/api/v1/products/{id}")), &[])
                .await
                .status,
            200
        );
    }
    redis.kill();
    let started = Instant::now();
    for round in 0..3 {
        for id in 0..10 {
            let got = get(&folio.url(&format!("/api/v1/products/{id}")), &[]).await;
            assert_eq!(got.status, 200, "round {round}, id {id}, with Redis down");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a dead Redis must not slow requests to a crawl"
    );
    assert_eq!(
        get(&folio.url("/api/v1/products/3"), &[]).await.x_cache(),
        "HIT",
        "L1 keeps serving"
    );

    redis.restart().await;
    // folio reconnects by itself: new entries reach the new Redis.
    let mut id = 100;
    eventually(
        Duration::from_secs(10),
        "L2 written again after Redis restarted",
        || {
            id += 1;
            let url = folio.url(&format!("/api/v1/products/{id}"));
            let redis = &redis;
            async move {
                get(&url, &[]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                !redis.keys().await.is_empty()
            }
        },
    )
    .await;
}

#[tokio::test]
async fn folio_starts_and_serves_when_redis_is_down_from_the_start() {
    let mut redis = TestRedis::start().await;
    redis.kill();
    let upstream = TestUpstream::json("{}").await;
    let folio = folio_with_redis(&upstream, &redis).await;
    let got = get(&folio.url("/api/v1/products/1"), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        get(&folio.url("/api/v1/products/1"), &[]).await.x_cache(),
        "HIT"
    );
}

/// Has `folio` store `/api/v1/products/1` for acme in Redis: its
/// connection is up (it connects on first use).
async fn connected(folio: &Folio, redis: &TestRedis) {
    get(&folio.url("/api/v1/products/1"), &[("x-tenant-id", "acme")]).await;
    eventually(Duration::from_secs(5), "connected to Redis", || async {
        redis.keys().await.iter().any(|key| !key.contains("lease:"))
    })
    .await;
}

#[tokio::test]
async fn a_lease_taken_while_redis_stalled_does_not_hold_the_key_for_every_instance() {
    let redis = TestRedis::start().await;
    let upstream = TestUpstream::json(r#"{"id":7}"#).await;
    let a = folio_with_redis(&upstream, &redis).await;
    let b = folio_with_redis(&upstream, &redis).await;
    b.replayed_purges().await;
    let acme = [("x-tenant-id", "acme")];
    connected(&a, &redis).await;
    // Redis freezes while A misses: A's lease command times out on A's
    // side, and Redis runs it when it wakes.
    redis.pause();
    assert_eq!(get(&a.url("/api/v1/products/7"), &acme).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.resume();
    tokio::time::sleep(Duration::from_millis(300)).await;
    eprintln!("KEYS {:?}", redis.keys().await);
    eventually(Duration::from_secs(5), "no lease left behind", || async {
        !redis.keys().await.iter().any(|key| key.contains("lease:"))
    })
    .await;
    // B has the key fetched at once, not after a lease held for nobody
    // runs out (the upstream timeout and more).
    let started = Instant::now();
    let got = get(&b.url("/api/v1/products/7"), &acme).await;
    assert_eq!(got.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_entry_copied_onto_another_key_in_redis_is_not_served_for_it() {
    let redis = TestRedis::start().await;
    let upstream = TestUpstream::start(|seen| {
        crate::support::Reply::json(format!(r#"{{"path":"{}"}}"#, seen.uri.path()))
    })
    .await;
    let a = folio_with_redis(&upstream, &redis).await;
    let acme = [("x-tenant-id", "acme")];
    for id in [1, 2] {
        get(&a.url(&format!("/api/v1/products/{id}")), &acme).await;
    }
    let entry_keys = || async {
        let mut entries = Vec::new();
        for key in redis.keys().await {
            if let Some(value) = redis.get_raw(&key).await {
                entries.push((key, value));
            }
        }
        entries
    };
    eventually(Duration::from_secs(5), "both entries in Redis", || async {
        entry_keys().await.len() == 2
    })
    .await;
    let holding = |entries: &[(String, Vec<u8>)], path: &str| {
        entries
            .iter()
            .find(|(_, value)| value.windows(path.len()).any(|w| w == path.as_bytes()))
            .cloned()
            .unwrap_or_else(|| panic!("no entry holds {path}"))
    };
    let entries = entry_keys().await;
    let (key_of_1, _) = holding(&entries, "/api/v1/products/1");
    let (_, value_of_2) = holding(&entries, "/api/v1/products/2");
    redis.set_raw(&key_of_1, &value_of_2).await;

    let b = folio_with_redis(&upstream, &redis).await;
    b.replayed_purges().await;
    let got = get(&b.url("/api/v1/products/1"), &acme).await;
    assert_eq!(got.json()["path"], "/api/v1/products/1", "{}", got.text());
    assert_eq!(got.x_cache(), "MISS");
}

#[tokio::test]
async fn a_lease_is_given_back_where_redis_runs_no_scripts() {
    let redis = TestRedis::start().await;
    redis.restrict("-@scripting").await;
    let upstream = TestUpstream::start(|seen| {
        let reply = crate::support::Reply::json(r#"{"id":1}"#);
        match seen.uri.path() {
            "/api/v1/products/1" => reply,
            _ => reply.header("cache-control", "no-store"),
        }
    })
    .await;
    let a = folio_with_redis(&upstream, &redis).await;
    let acme = [("x-tenant-id", "acme")];
    connected(&a, &redis).await;
    let got = get(&a.url("/api/v1/products/9"), &acme).await;
    assert_eq!(got.status, 200);
    // Not stored, so the lease is all that tells other instances to wait:
    // it must go now, not when it runs out (the upstream timeout and more).
    eventually(Duration::from_secs(2), "the lease given back", || async {
        !redis.keys().await.iter().any(|key| key.contains("lease:"))
    })
    .await;
}
