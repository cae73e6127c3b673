//! Invalidation across instances: writes, tag purges, tenants, tokens,
//! events, the fill/purge race, Redis restarts, Redis Cluster, rewarm.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use folio::PolicySet;

use crate::support::{
    ACME, Folio, FolioProcess, GLOBEX, REPO_POLICIES, Reply, TestCluster, TestRedis, TestUpstream,
    eventually, get, send, settings, settings_with_redis, start_bookstore,
};

/// The bound within which every instance must stop serving a purged entry.
const PROPAGATION: Duration = Duration::from_secs(1);

const POLICIES: &str = r#"
"/api/v1/products":
  cache_ttl: 5m
  cache_key: "tenant_id + query_params"
  invalidate_on: ["product_update", "inventory_change"]
"/api/v1/products/{id}":
  cache_ttl: 1h
  cache_key: "tenant_id + product_id"
  tags: ["product:{id}", "products"]
  invalidate_on: ["product_update"]
"/api/v1/categories":
  cache_ttl: 1h
  tags: ["categories"]
"PUT|PATCH|DELETE /api/v1/products/{id}":
  events: ["product_update"]
"#;

/// Polls until `url` is answered with `x_cache`; returns how long it took.
async fn until_cache(
    url: &str,
    headers: &[(&str, &str)],
    x_cache: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    eventually(limit, &format!("{url} answered {x_cache}"), || async {
        get(url, headers).await.x_cache() == x_cache
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn a_put_through_one_process_purges_the_product_and_its_lists_on_another() {
    let redis = TestRedis::start().await;
    let (origin, _stop) = start_bookstore().await;
    let policies = std::path::Path::new(REPO_POLICIES);
    let upstream = format!("http://{origin}");
    let a = FolioProcess::start(&upstream, policies, &["--redis", &redis.url]);
    let b = FolioProcess::start(&upstream, policies, &["--redis", &redis.url]);

    let product = b.url("/api/v1/products/7");
    let list = b.url("/api/v1/products?category=fiction");
    for url in [&product, &list] {
        get(url, ACME).await;
        assert_eq!(get(url, ACME).await.x_cache(), "HIT");
    }
    let put = send(
        "PUT",
        &a.url("/api/v1/products/7"),
        ACME,
        r#"{"name":"Renamed on A"}"#,
    )
    .await;
    assert_eq!(put.status, 200);

    let took = until_cache(&product, ACME, "MISS", PROPAGATION).await;
    let fresh = get(&product, ACME).await;
    assert_eq!(
        fresh.json()["name"],
        "Renamed on A",
        "B serves the new data"
    );
    assert_eq!(
        get(&list, ACME).await.x_cache(),
        "MISS",
        "and drops the lists"
    );
    println!("a PUT on A reached B's L1 in {took:?}");
}

#[tokio::test]
async fn a_tag_purge_on_one_instance_empties_another_and_spares_other_tenants() {
    let redis = TestRedis::start().await;
    let (upstream, _) = TestUpstream::versioned().await;
    let a = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    let b = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    for id in 1..=3 {
        for tenant in [ACME, GLOBEX] {
            get(&b.url(&format!("/api/v1/products/{id}")), tenant).await;
        }
    }
    get(&b.url("/api/v1/categories"), ACME).await;

    let purge = a
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["products"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    assert_eq!(purge.json()["tenant"], "acme");

    until_cache(&b.url("/api/v1/products/1"), ACME, "MISS", PROPAGATION).await;
    for id in 2..=3 {
        assert_eq!(
            get(&b.url(&format!("/api/v1/products/{id}")), ACME)
                .await
                .x_cache(),
            "MISS"
        );
        assert_eq!(
            get(&b.url(&format!("/api/v1/products/{id}")), GLOBEX)
                .await
                .x_cache(),
            "HIT",
            "globex untouched"
        );
    }
    assert_eq!(
        get(&b.url("/api/v1/categories"), ACME).await.x_cache(),
        "HIT",
        "other tags untouched"
    );
}

#[tokio::test]
async fn purges_by_url_prefix_tenant_and_every_tenant() {
    let (upstream, _) = TestUpstream::versioned().await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let warm = |paths: &'static [&'static str]| {
        let folio = &folio;
        async move {
            for path in paths {
                for tenant in [ACME, GLOBEX] {
                    get(&folio.url(path), tenant).await;
                }
            }
        }
    };
    let paths = &[
        "/api/v1/products/1",
        "/api/v1/products/2",
        "/api/v1/categories",
    ];
    warm(paths).await;
    let by_url = folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"urls":["/api/v1/products/1"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(by_url.status, 200);
    assert_eq!(
        get(&folio.url("/api/v1/products/1"), ACME).await.x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&folio.url("/api/v1/products/2"), ACME).await.x_cache(),
        "HIT"
    );
    // Any spelling the proxy serves as that path purges it; a spelling no
    // request can have is refused, not accepted as a purge of nothing.
    let spelled = folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"urls":["/api//v1/./products//2"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(spelled.status, 200, "{}", spelled.text());
    assert_eq!(
        get(&folio.url("/api/v1/products/2"), ACME).await.x_cache(),
        "MISS"
    );
    let ambiguous = folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"urls":["/api/v1/products/2;v=1"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(ambiguous.status, 400, "{}", ambiguous.text());
    assert!(ambiguous.text().contains("bad_url"), "{}", ambiguous.text());

    folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"prefix":"/api/v1/products","tenant":"acme"}"#,
        )
        .await;
    assert_eq!(
        get(&folio.url("/api/v1/products/2"), ACME).await.x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&folio.url("/api/v1/categories"), ACME).await.x_cache(),
        "HIT"
    );

    folio
        .admin_post("/_folio/purge", &[], r#"{"all":true,"tenant":"globex"}"#)
        .await;
    assert_eq!(
        get(&folio.url("/api/v1/categories"), GLOBEX)
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&folio.url("/api/v1/categories"), ACME).await.x_cache(),
        "HIT"
    );

    let everyone = folio
        .admin_post("/_folio/purge", &[], r#"{"tags":["categories"]}"#)
        .await;
    assert_eq!(
        everyone.json()["tenant"],
        serde_json::Value::Null,
        "an operator purge of every tenant"
    );
    assert_eq!(
        get(&folio.url("/api/v1/categories"), ACME).await.x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&folio.url("/api/v1/categories"), GLOBEX)
            .await
            .x_cache(),
        "MISS"
    );
}

#[tokio::test]
async fn purges_need_the_right_token_and_a_refused_one_changes_nothing() {
    let (upstream, _) = TestUpstream::versioned().await;
    let mut settings = settings(upstream.uri());
    settings.admin.operator_token = Some("operator-secret".into());
    settings.admin.tenant_tokens = vec![("acme".into(), "acme-secret".into())];
    let folio = Folio::start_with(settings, POLICIES).await;
    get(&folio.url("/api/v1/products/1"), ACME).await;
    get(&folio.url("/api/v1/products/1"), GLOBEX).await;
    let body = r#"{"tags":["products"],"tenant":"globex"}"#;

    let none = folio.admin_post("/_folio/purge", &[], body).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"], "unauthorized");
    let wrong = folio
        .admin_post("/_folio/purge", &[("authorization", "Bearer guess")], body)
        .await;
    assert_eq!(wrong.status, 403);
    let other_tenant = folio
        .admin_post(
            "/_folio/purge",
            &[("authorization", "Bearer acme-secret")],
            body,
        )
        .await;
    assert_eq!(other_tenant.status, 403, "acme's token cannot purge globex");
    assert_eq!(
        get(&folio.url("/api/v1/products/1"), GLOBEX)
            .await
            .x_cache(),
        "HIT",
        "nothing changed"
    );
    assert_eq!(
        get(&folio.url("/api/v1/products/1"), ACME).await.x_cache(),
        "HIT"
    );

    let own = folio
        .admin_post(
            "/_folio/purge",
            &[("authorization", "Bearer acme-secret")],
            r#"{"tags":["products"]}"#,
        )
        .await;
    assert_eq!(own.status, 200);
    assert_eq!(
        own.json()["tenant"],
        "acme",
        "a tenant token acts for its tenant"
    );
    assert_eq!(
        get(&folio.url("/api/v1/products/1"), ACME).await.x_cache(),
        "MISS"
    );
    let operator = folio
        .admin_post(
            "/_folio/purge",
            &[("authorization", "Bearer operator-secret")],
            body,
        )
        .await;
    assert_eq!(operator.status, 200);
    assert_eq!(
        get(&folio.url("/api/v1/products/1"), GLOBEX)
            .await
            .x_cache(),
        "MISS"
    );
}

#[tokio::test]
async fn bad_admin_requests_get_clear_errors() {
    let (upstream, _) = TestUpstream::versioned().await;
    let folio = Folio::start(&upstream, POLICIES).await;
    for (body, error) in [
        ("not json", "bad_json"),
        (r#"{"tenant":"acme"}"#, "nothing_to_purge"),
        (r#"{"tags":["x"],"colour":"red"}"#, "bad_json"),
        (r#"{"keys":["zz"]}"#, "bad_key"),
        (r#"{"prefix":"no-slash"}"#, "bad_prefix"),
    ] {
        let got = folio.admin_post("/_folio/purge", &[], body).await;
        assert_eq!(got.status, 400, "{body}");
        assert_eq!(got.json()["error"], error, "{body}");
    }
    assert_eq!(
        get(&format!("http://{}/_folio/purge", folio.admin), &[])
            .await
            .status,
        405
    );
    assert_eq!(
        get(&format!("http://{}/_folio/nope", folio.admin), &[])
            .await
            .status,
        404
    );
    assert_eq!(
        get(&format!("http://{}/_folio/health", folio.admin), &[])
            .await
            .json()["status"],
        "healthy"
    );
}

#[tokio::test]
async fn an_event_posted_to_one_instance_drops_entries_on_another() {
    let redis = TestRedis::start().await;
    let (upstream, version) = TestUpstream::versioned().await;
    let a = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    let b = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    for path in [
        "/api/v1/products/42",
        "/api/v1/products/43",
        "/api/v1/products?page=1",
        "/api/v1/categories",
    ] {
        get(&a.url(path), ACME).await;
    }
    version.store(2, Ordering::SeqCst);
    let event = b
        .admin_post(
            "/_folio/events",
            &[],
            r#"{"event":"product_update","tenant":"acme","params":{"id":42}}"#,
        )
        .await;
    assert_eq!(event.status, 200, "{}", event.text());
    let took = until_cache(&a.url("/api/v1/products/42"), ACME, "MISS", PROPAGATION).await;
    assert_eq!(
        get(&a.url("/api/v1/products/42"), ACME).await.json()["v"],
        2
    );
    assert_eq!(
        get(&a.url("/api/v1/products?page=1"), ACME).await.x_cache(),
        "MISS",
        "lists of the event"
    );
    assert_eq!(
        get(&a.url("/api/v1/products/43"), ACME).await.x_cache(),
        "HIT",
        "only the named product"
    );
    assert_eq!(
        get(&a.url("/api/v1/categories"), ACME).await.x_cache(),
        "HIT",
        "not listening to the event"
    );
    println!("an event on B reached A in {took:?}");
}

#[tokio::test]
async fn a_fill_that_started_before_a_purge_is_never_stored() {
    let slow = Arc::new(AtomicUsize::new(1));
    let delay = Arc::clone(&slow);
    let upstream = TestUpstream::start(move |_| {
        Reply::json(r#"{"v":"old"}"#).delay(Duration::from_millis(
            500 * delay.load(Ordering::SeqCst) as u64,
        ))
    })
    .await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let url = folio.url("/api/v1/products/5");
    let fill = tokio::spawn({
        let url = url.clone();
        async move { get(&url, ACME).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let purge = folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["product:5"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(purge.status, 200);
    let filled = fill.await.unwrap();
    assert_eq!(filled.status, 200);
    assert!(
        filled
            .header("cache-status")
            .contains("detail=purged-during-fill"),
        "{}",
        filled.header("cache-status")
    );
    slow.store(0, Ordering::SeqCst);
    assert_eq!(
        get(&url, ACME).await.x_cache(),
        "MISS",
        "the racing fill was not kept"
    );
    assert_eq!(get(&url, ACME).await.x_cache(), "HIT");
}

#[tokio::test]
async fn redis_restarted_mid_test_leaves_no_stale_l1_entry_past_the_bound() {
    let mut redis = TestRedis::start().await;
    let (upstream, _) = TestUpstream::versioned().await;
    let a = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    let b = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    get(&b.url("/api/v1/products/9"), ACME).await;
    assert_eq!(
        get(&b.url("/api/v1/products/9"), ACME).await.x_cache(),
        "HIT"
    );

    redis.restart().await;
    // Purge through A as soon as A can reach Redis again; B may not have
    // resubscribed yet, so the broadcast may never reach it.
    eventually(
        Duration::from_secs(10),
        "A's purge reaches Redis",
        || async {
            a.admin_post(
                "/_folio/purge",
                &[],
                r#"{"tags":["product:9"],"tenant":"acme"}"#,
            )
            .await
            .status
                == 200
        },
    )
    .await;
    let bound = Duration::from_secs(3);
    let took = until_cache(&b.url("/api/v1/products/9"), ACME, "MISS", bound).await;
    println!("after a Redis restart, B stopped serving the purged entry in {took:?}");
}

#[tokio::test]
async fn a_purge_while_redis_is_down_applies_here_and_reaches_the_others_when_it_is_back() {
    let mut redis = TestRedis::start().await;
    let (upstream, _) = TestUpstream::versioned().await;
    let folio = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    let other = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    get(&folio.url("/api/v1/products/1"), ACME).await;
    get(&folio.url("/api/v1/products/2"), ACME).await;
    assert_eq!(
        get(&folio.url("/api/v1/products/2"), ACME).await.x_cache(),
        "HIT"
    );
    get(&other.url("/api/v1/products/1"), ACME).await;
    assert_eq!(
        get(&other.url("/api/v1/products/1"), ACME).await.x_cache(),
        "HIT"
    );
    redis.kill();
    let purge = folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["product:1"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(purge.status, 503);
    assert_eq!(purge.json()["error"], "not_propagated");
    assert_eq!(
        get(&folio.url("/api/v1/products/1"), ACME).await.x_cache(),
        "MISS",
        "applied here all the same"
    );
    // Tags and keys in one purge: the keys apply here too.
    let explained = get(
        &format!(
            "http://{}/_folio/explain?url=http://{}/api/v1/products/2&header=X-Tenant-ID:%20acme",
            folio.admin, folio.addr
        ),
        &[],
    )
    .await
    .json();
    let key = explained["key"].as_str().unwrap_or_default().to_owned();
    let body = serde_json::json!({ "tags": ["product:3"], "tenant": "acme", "keys": [key] });
    let both = folio
        .admin_post("/_folio/purge", &[], &body.to_string())
        .await;
    assert_eq!(both.status, 503);
    assert_eq!(
        get(&folio.url("/api/v1/products/2"), ACME).await.x_cache(),
        "MISS",
        "a key named beside a tag is purged here too"
    );
    assert_eq!(
        get(&other.url("/api/v1/products/1"), ACME).await.x_cache(),
        "HIT",
        "not heard of elsewhere while Redis is down"
    );
    redis.restart().await;
    let took = until_cache(
        &other.url("/api/v1/products/1"),
        ACME,
        "MISS",
        Duration::from_secs(10),
    )
    .await;
    println!("the other instance stopped serving the purged entry {took:?} after Redis was back");
}

#[tokio::test]
async fn a_soft_purge_serves_stale_while_one_refresh_runs() {
    let (upstream, version) = TestUpstream::versioned().await;
    let folio = Folio::start(&upstream, POLICIES).await;
    let url = folio.url("/api/v1/products/3");
    assert_eq!(get(&url, ACME).await.json()["v"], 1);
    version.store(2, Ordering::SeqCst);
    folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["product:3"],"tenant":"acme","soft":true}"#,
        )
        .await;
    let stale = get(&url, ACME).await;
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(stale.json()["v"], 1);
    eventually(
        Duration::from_secs(5),
        "refreshed after the soft purge",
        || async {
            let got = get(&url, ACME).await;
            got.x_cache() == "HIT" && got.json()["v"] == 2
        },
    )
    .await;
    assert_eq!(upstream.hits("/api/v1/products/3"), 2, "one refresh");
}

#[tokio::test]
async fn a_soft_purge_revalidates_what_may_never_be_served_stale() {
    let version = Arc::new(AtomicU64::new(1));
    let current = Arc::clone(&version);
    let upstream = TestUpstream::start(move |_| {
        let v = current.load(Ordering::SeqCst);
        Reply::json(format!(r#"{{"v":{v}}}"#))
            .header("etag", &format!("\"{v}\""))
            .header("cache-control", "max-age=600, must-revalidate")
    })
    .await;
    let policies = "\"/api/v1/strict/{id}\":\n  tags: [\"strict:{id}\"]\n";
    let folio = Folio::start(&upstream, policies).await;
    let url = folio.url("/api/v1/strict/1");
    assert_eq!(get(&url, ACME).await.json()["v"], 1);
    version.store(2, Ordering::SeqCst);
    let purge = folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["strict:1"],"tenant":"acme","soft":true}"#,
        )
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    let after = get(&url, ACME).await;
    assert_ne!(
        after.x_cache(),
        "STALE",
        "must-revalidate: never served stale"
    );
    assert_eq!(after.json()["v"], 2);
    assert_eq!(upstream.total_hits(), 2);
}

#[tokio::test]
async fn rewarm_refetches_the_most_requested_entries_after_a_purge() {
    let (upstream, version) = TestUpstream::versioned().await;
    let policies =
        format!("{POLICIES}\"/hot/{{id}}\":\n  cache_ttl: 1h\n  tags: [hot]\n  rewarm: true\n");
    let folio = Folio::start(&upstream, &policies).await;
    for _ in 0..5 {
        get(&folio.url("/hot/1"), ACME).await;
    }
    get(&folio.url("/hot/2"), ACME).await;
    version.store(2, Ordering::SeqCst);
    folio
        .admin_post("/_folio/purge", &[], r#"{"tags":["hot"],"tenant":"acme"}"#)
        .await;
    eventually(Duration::from_secs(5), "rewarm refetched both", || async {
        upstream.hits("/hot/1") == 2 && upstream.hits("/hot/2") == 2
    })
    .await;
    let warmed = get(&folio.url("/hot/1"), ACME).await;
    assert_eq!(
        warmed.x_cache(),
        "HIT",
        "the next user does not pay the miss"
    );
    assert_eq!(warmed.json()["v"], 2);
}

#[tokio::test]
async fn rewarm_never_shares_an_answer_fetched_with_credentials() {
    let upstream = TestUpstream::start(|seen| {
        Reply::json(format!(r#"{{"user":"{}"}}"#, seen.header("authorization")))
    })
    .await;
    let policies =
        format!("{POLICIES}\"/hot/{{id}}\":\n  cache_ttl: 1h\n  tags: [hot]\n  rewarm: true\n");
    let folio = Folio::start(&upstream, &policies).await;
    let alice = [("x-tenant-id", "acme"), ("authorization", "Bearer alice")];
    get(&folio.url("/hot/9"), &alice).await;
    folio
        .admin_post("/_folio/purge", &[], r#"{"tags":["hot"],"tenant":"acme"}"#)
        .await;
    eventually(Duration::from_secs(5), "rewarm refetched", || async {
        upstream.hits("/hot/9") == 2
    })
    .await;
    let anonymous = get(&folio.url("/hot/9"), ACME).await;
    assert!(!anonymous.text().contains("alice"), "{}", anonymous.text());
}

#[tokio::test]
async fn the_same_holds_on_a_three_master_redis_cluster() {
    let cluster = TestCluster::start().await;
    let (upstream, _) = TestUpstream::versioned().await;
    let clustered = || {
        let mut settings = settings(upstream.uri());
        settings.redis_cluster = cluster.urls();
        settings
    };
    let a = Folio::start_with(clustered(), POLICIES).await;
    let b = Folio::start_with(clustered(), POLICIES).await;

    for id in 0..30 {
        get(&a.url(&format!("/api/v1/products/{id}")), ACME).await;
    }
    eventually(
        Duration::from_secs(5),
        "entries spread over every master",
        || async { cluster.key_counts().iter().all(|n| *n > 0) },
    )
    .await;
    eventually(Duration::from_secs(5), "all 30 entries in L2", || async {
        cluster.key_counts().iter().sum::<u64>() >= 30
    })
    .await;
    let from_l2 = get(&b.url("/api/v1/products/3"), ACME).await;
    assert_eq!(from_l2.x_cache(), "HIT");
    assert_eq!(from_l2.header("x-cache-layer"), "L2");
    get(&b.url("/api/v1/products/4"), ACME).await;

    let put = send("PUT", &a.url("/api/v1/products/3"), ACME, "{}").await;
    assert_eq!(put.status, 200);
    until_cache(&b.url("/api/v1/products/3"), ACME, "MISS", PROPAGATION).await;
    let purge = a
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["products"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    until_cache(&b.url("/api/v1/products/4"), ACME, "MISS", PROPAGATION).await;
}

#[tokio::test]
async fn purges_of_many_entries_stay_cheap() {
    let (upstream, _) = TestUpstream::versioned().await;
    let set = PolicySet::from_yaml("p.yaml", POLICIES).unwrap();
    let folio = Folio::start_with_set(settings(upstream.uri()), set).await;
    for id in 0..200 {
        get(&folio.url(&format!("/api/v1/products/{id}")), ACME).await;
    }
    let started = Instant::now();
    let purge = folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["products"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(purge.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a purge does not walk the entries"
    );
    for id in [0, 99, 199] {
        assert_eq!(
            get(&folio.url(&format!("/api/v1/products/{id}")), ACME)
                .await
                .x_cache(),
            "MISS"
        );
    }
}

#[tokio::test]
async fn the_upstreams_surrogate_keys_are_tags_too() {
    let upstream = TestUpstream::start(|seen| {
        let id = seen.uri.path().rsplit('/').next().unwrap_or("").to_owned();
        Reply::json("{}")
            .header("surrogate-key", &format!("item-{id} catalogue"))
            .header("cache-tag", "shelf-a,shelf-b")
            .header("xkey", &format!("x{id}"))
    })
    .await;
    let folio = Folio::start(&upstream, "\"/items/{id}\":\n  cache_ttl: 1h\n").await;
    for id in 1..=3 {
        get(&folio.url(&format!("/items/{id}")), ACME).await;
    }
    let hit = get(&folio.url("/items/1"), ACME).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(
        hit.header("surrogate-key"),
        "",
        "tags are for caches, not clients"
    );
    for (tag, gone) in [("item-1", 1), ("shelf-b", 2), ("x3", 3)] {
        folio
            .admin_post(
                "/_folio/purge",
                &[],
                &format!(r#"{{"tags":["{tag}"],"tenant":"acme"}}"#),
            )
            .await;
        assert_eq!(
            get(&folio.url(&format!("/items/{gone}")), ACME)
                .await
                .x_cache(),
            "MISS",
            "{tag}"
        );
    }
    get(&folio.url("/items/2"), GLOBEX).await;
    folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["catalogue"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(
        get(&folio.url("/items/2"), GLOBEX).await.x_cache(),
        "HIT",
        "upstream tags are tenant-scoped too"
    );
}

/// The invalidation check of an instance's health.
async fn invalidation_health(folio: &Folio) -> serde_json::Value {
    get(&format!("http://{}/_folio/health", folio.admin), &[])
        .await
        .json()["checks"]["invalidation"]
        .clone()
}

#[tokio::test]
async fn a_new_instance_replays_a_purge_log_of_300_000_marks_before_it_reads_redis() {
    let redis = TestRedis::start().await;
    let (upstream, _) = TestUpstream::versioned().await;
    // What is measured here is the replay at scale, not Redis latency on a
    // CI machine busy with every other test: a generous L2 timeout.
    let patient = || {
        let mut settings = settings_with_redis(&upstream, &redis);
        settings.l2_timeout = Duration::from_secs(2);
        settings
    };
    let a = Folio::start_with(patient(), POLICIES).await;
    let url = |folio: &Folio| folio.url("/api/v1/products/1");
    let spared = |folio: &Folio| folio.url("/api/v1/products/2");
    get(&url(&a), ACME).await;
    get(&spared(&a), GLOBEX).await;
    eventually(
        Duration::from_secs(5),
        "the entries reached Redis",
        || async {
            redis
                .keys()
                .await
                .iter()
                .filter(|k| !k.ends_with("purges"))
                .count()
                >= 2
        },
    )
    .await;
    // 60 operator purges of 5,000 tags each; the last names the entry's.
    for round in 0..60 {
        let mut tags: Vec<String> = (0..5000).map(|i| format!("t{round}x{i}")).collect();
        if round == 59 {
            tags[0] = "product:1".into();
        }
        let body = serde_json::json!({ "tags": tags, "tenant": "acme" }).to_string();
        let purged = a.admin_post("/_folio/purge", &[], &body).await;
        assert_eq!(purged.status, 200, "{}", purged.text());
    }
    assert_eq!(
        invalidation_health(&a).await["status"],
        "ok",
        "{}",
        invalidation_health(&a).await
    );

    // A new instance replays the whole log before it counts as current.
    // B reads the log with a timeout one read of all of it would not meet.
    let mut settings = settings_with_redis(&upstream, &redis);
    settings.l2_timeout = Duration::from_millis(200);
    let b = Folio::start_with(settings, POLICIES).await;
    // Asked while it replays: the entry Redis holds is the purged one.
    let first = get(&url(&b), ACME).await;
    assert_eq!(
        first.x_cache(),
        "MISS",
        "b served a purged entry before replaying the purges: {}",
        first.header("cache-status")
    );
    eventually(Duration::from_secs(60), "b subscribed", || async {
        invalidation_health(&b).await["subscribed"] == true
    })
    .await;
    let health = invalidation_health(&b).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        health["last_full_replay"]["marks"].as_u64().unwrap() >= 300_000,
        "{health}"
    );
    let got = get(&spared(&b), GLOBEX).await;
    assert_eq!(got.header("x-cache-layer"), "L2", "then b reads Redis");
}

#[tokio::test]
async fn health_says_degraded_while_the_listener_cannot_subscribe() {
    let mut redis = TestRedis::start().await;
    let upstream = TestUpstream::json("{}").await;
    let folio = Folio::start_with(settings_with_redis(&upstream, &redis), POLICIES).await;
    eventually(Duration::from_secs(10), "subscribed", || async {
        invalidation_health(&folio).await["subscribed"] == true
    })
    .await;
    redis.kill();
    eventually(Duration::from_secs(10), "degraded", || async {
        let health = invalidation_health(&folio).await;
        health["subscribed"] == false && health["status"] == "warning"
    })
    .await;
    redis.restart().await;
    eventually(Duration::from_secs(20), "current again", || async {
        invalidation_health(&folio).await["status"] == "ok"
    })
    .await;
}

#[tokio::test]
async fn with_tenants_from_the_host_a_purge_names_the_tenant_as_any_request_spells_it() {
    let (upstream, _) = TestUpstream::versioned().await;
    let mut settings = settings(upstream.uri());
    settings.tenant = folio::TenantSource::Host;
    let folio = Folio::start_with(settings, POLICIES).await;
    let shop = [("host", "Shop.Example:8080")];
    let url = folio.url("/api/v1/products/1");
    for spelling in ["Shop.Example", "SHOP.EXAMPLE:8080"] {
        get(&url, &shop).await;
        assert_eq!(get(&url, &shop).await.x_cache(), "HIT");
        let body = serde_json::json!({ "tags": ["product:1"], "tenant": spelling }).to_string();
        let purged = folio.admin_post("/_folio/purge", &[], &body).await;
        assert_eq!(purged.status, 200, "{}", purged.text());
        assert_eq!(purged.json()["tenant"], "shop.example");
        assert_eq!(get(&url, &shop).await.x_cache(), "MISS", "{spelling}");
    }
    // A name no request can have purges nothing, so it is refused.
    let refused = folio
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"all":true,"tenant":"shop example"}"#,
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "bad_tenant");
}
