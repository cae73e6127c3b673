//! Operating folio: metrics (each counter moves when its event happens),
//! stats, health, the dashboard in a real browser, hot reload (admin and
//! SIGHUP), explain, warming, access logs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use folio::config::{Config, WarmPlan, WarmUrl};
use folio::{PolicySet, Settings};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::upstream::closed_port;
use crate::support::{
    ACME, Folio, FolioProcess, GLOBEX, REPO_POLICIES, Reply, ScratchDir, TestRedis, TestUpstream,
    eventually, get, send, settings,
};

const POLICIES: &str = r#"
"/api/v1/products/{id}":
  cache_ttl: 1h
  tags: ["product:{id}"]
"/swr":
  cache_ttl: 1s
  stale_while_revalidate: 1m
"/slow":
  cache_ttl: 1h
"GET|POST /api/v1/cart":
  cache: false
"#;

async fn scrape(folio: &Folio) -> String {
    get(&format!("http://{}/_folio/metrics", folio.admin), &[])
        .await
        .text()
}

/// The value of the first metric line starting with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{text}"))
}

fn temp_dir(name: &str) -> ScratchDir {
    ScratchDir::new("ops", name)
}

async fn upstream() -> TestUpstream {
    TestUpstream::start(|seen| match seen.uri.path() {
        "/slow" => Reply::json("{}").delay(Duration::from_secs(2)),
        path => Reply::json(format!(
            r#"{{"path":"{path}","pad":"{}"}}"#,
            "x".repeat(900)
        )),
    })
    .await
}

async fn folio_for(upstream: &TestUpstream, tweak: impl FnOnce(&mut Settings)) -> Folio {
    let mut settings = settings(upstream.uri());
    settings.upstream_timeout = Duration::from_millis(500);
    tweak(&mut settings);
    Folio::start_with(settings, POLICIES).await
}

mod metrics {
    use super::*;

    #[tokio::test]
    async fn requests_are_counted_by_endpoint_tenant_result_and_layer() {
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |_| {}).await;
        get(&folio.url("/api/v1/products/1"), ACME).await;
        get(&folio.url("/api/v1/products/1"), ACME).await;
        get(&folio.url("/api/v1/cart"), ACME).await;
        get(&folio.url("/slow"), ACME).await; // times out: an error
        get(&folio.url("/swr"), ACME).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        get(&folio.url("/swr"), ACME).await;
        let text = scrape(&folio).await;
        let series = |endpoint: &str, result: &str, layer: &str| {
            value(
                &text,
                &format!(
                    "folio_requests_total{{endpoint=\"{endpoint}\",tenant=\"acme\",result=\"{result}\",layer=\"{layer}\"}}"
                ),
            )
        };
        assert_eq!(series("/api/v1/products/{id}", "miss", "upstream"), 1.0);
        assert_eq!(series("/api/v1/products/{id}", "hit", "l1"), 1.0);
        assert_eq!(series("GET|POST /api/v1/cart", "bypass", "upstream"), 1.0);
        assert_eq!(series("/slow", "error", "upstream"), 1.0);
        assert_eq!(series("/swr", "stale", "l1"), 1.0);
        assert!(
            !text.contains("endpoint=\"/api/v1/products/1\""),
            "the endpoint label is the policy, never the path"
        );
        assert_eq!(
            value(
                &text,
                "folio_request_duration_seconds_count{result=\"hit\"}"
            ),
            1.0
        );
        assert!(value(&text, "folio_upstream_duration_seconds_count") >= 3.0);
        assert_eq!(
            value(&text, "folio_upstream_errors_total{kind=\"timeout\"}"),
            1.0
        );
    }

    #[tokio::test]
    async fn tenants_beyond_the_limit_fold_into_other() {
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |s| s.metrics_tenants = 2).await;
        for tenant in ["t1", "t2", "t3", "t4"] {
            get(&folio.url("/api/v1/products/1"), &[("x-tenant-id", tenant)]).await;
        }
        let text = scrape(&folio).await;
        assert!(text.contains("tenant=\"t1\""));
        assert!(text.contains("tenant=\"other\""));
        assert!(!text.contains("tenant=\"t4\""));
    }

    #[tokio::test]
    async fn strangers_cannot_squat_the_tenant_labels_of_known_tenants() {
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |s| {
            s.metrics_tenants = 2;
            s.admin.tenant_tokens = vec![
                ("acme".into(), "acme-secret".into()),
                ("globex".into(), "globex-secret".into()),
            ];
        })
        .await;
        for i in 0..10 {
            let squatter = format!("squatter{i}");
            get(
                &folio.url("/api/v1/products/1"),
                &[("x-tenant-id", &squatter)],
            )
            .await;
        }
        get(&folio.url("/api/v1/products/1"), ACME).await;
        get(&folio.url("/api/v1/products/1"), GLOBEX).await;
        let text = scrape(&folio).await;
        assert!(text.contains("tenant=\"acme\""), "{text}");
        assert!(text.contains("tenant=\"globex\""), "{text}");
        assert!(
            text.contains("tenant=\"squatter1\""),
            "slots are still given out"
        );
        assert!(!text.contains("tenant=\"squatter2\""), "but only two");
        assert!(text.contains("tenant=\"other\""));
    }

    #[tokio::test]
    async fn tenant_values_that_are_no_plain_name_never_become_labels() {
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |_| {}).await;
        let long = "x".repeat(100);
        for hostile in [
            "<img src=x onerror=alert(1)>",
            "a\"b",
            "a\\b",
            "sp ace",
            long.as_str(),
        ] {
            get(
                &folio.url("/api/v1/products/1"),
                &[("x-tenant-id", hostile)],
            )
            .await;
        }
        let text = scrape(&folio).await;
        for fragment in ["<img", "a\\\"b", "a\\\\b", "sp ace", "xxxxxxxxxx"] {
            assert!(!text.contains(fragment), "{fragment:?} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn l1_gauges_and_evictions_move() {
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |s| s.l1_capacity = 16 << 10).await;
        for id in 0..200 {
            get(&folio.url(&format!("/api/v1/products/{id}")), ACME).await;
        }
        let text = scrape(&folio).await;
        assert!(value(&text, "folio_l1_bytes") > 0.0);
        assert!(value(&text, "folio_l1_entries") > 0.0);
        assert!(
            value(&text, "folio_l1_bytes") <= 16.0 * 1024.0 * 1.1,
            "bounded by the budget"
        );
        assert!(
            value(&text, "folio_evictions_total") > 0.0,
            "evicted for room"
        );
    }

    #[tokio::test]
    async fn purges_coalesced_requests_and_upstream_failures_are_counted() {
        let slow =
            TestUpstream::start(|_| Reply::json("{}").delay(Duration::from_millis(300))).await;
        let folio = folio_for(&slow, |_| {}).await;
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let url = folio.url("/api/v1/products/5");
            clients.spawn(async move { get(&url, ACME).await });
        }
        while clients.join_next().await.is_some() {}
        folio
            .admin_post(
                "/_folio/purge",
                &[],
                r#"{"tags":["product:5"],"tenant":"acme"}"#,
            )
            .await;
        let text = scrape(&folio).await;
        assert!(value(&text, "folio_coalesced_total") >= 5.0);
        assert_eq!(value(&text, "folio_purges_total{scope=\"tag\"}"), 1.0);

        let down = Folio::start_with(
            settings(format!("http://{}", closed_port().await).parse().unwrap()),
            POLICIES,
        )
        .await;
        get(&down.url("/api/v1/products/1"), ACME).await;
        assert_eq!(
            value(
                &scrape(&down).await,
                "folio_upstream_errors_total{kind=\"unreachable\"}"
            ),
            1.0
        );
    }

    #[tokio::test]
    async fn redis_latency_and_l2_errors_are_counted() {
        let mut redis = TestRedis::start().await;
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |s| s.redis = Some(redis.url.clone())).await;
        folio.replayed_purges().await;
        get(&folio.url("/api/v1/products/1"), ACME).await;
        assert!(value(&scrape(&folio).await, "folio_redis_duration_seconds_count") >= 1.0);
        redis.kill();
        get(&folio.url("/api/v1/products/2"), ACME).await;
        eventually(Duration::from_secs(5), "an L2 error counted", || async {
            value(&scrape(&folio).await, "folio_l2_errors_total") >= 1.0
        })
        .await;
    }
}

#[tokio::test]
async fn stats_give_the_figures_per_endpoint_and_tenant() {
    let upstream = upstream().await;
    let folio = folio_for(&upstream, |_| {}).await;
    for _ in 0..3 {
        get(&folio.url("/api/v1/products/1"), ACME).await;
    }
    get(
        &folio.url("/api/v1/products/1"),
        &[("x-tenant-id", "globex")],
    )
    .await;
    let stats = get(&format!("http://{}/_folio/stats", folio.admin), &[])
        .await
        .json();
    let acme = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tenant"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(acme["endpoint"], "/api/v1/products/{id}");
    assert_eq!(
        (acme["hit"].as_u64(), acme["miss"].as_u64()),
        (Some(2), Some(1))
    );
    assert!((acme["hit_ratio"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(stats["totals"]["hit"], 2);
    assert!(stats["l1"]["entries"].as_u64().unwrap() >= 2);
    assert_eq!(stats["redis"]["configured"], false);
}

#[tokio::test]
async fn health_moves_from_healthy_to_degraded_to_unhealthy() {
    let upstream = upstream().await;
    let config = Config::parse(
        std::path::Path::new("folio.yaml"),
        "health:\n  hit_rate: {warning: 0.6, critical: 0.0}\n  min_requests: 4\n",
    )
    .unwrap();
    let folio = folio_for(&upstream, |s| s.config = config.clone()).await;
    let health = || async { get(&format!("http://{}/_folio/health", folio.admin), &[]).await };
    let first = health().await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["status"], "healthy");
    for id in 0..4 {
        get(&folio.url(&format!("/api/v1/products/{id}")), ACME).await; // all misses
    }
    let degraded = health().await;
    assert_eq!(degraded.status, 200, "degraded still serves");
    assert_eq!(degraded.json()["status"], "degraded");
    assert_eq!(degraded.json()["checks"]["hit_rate"]["status"], "warning");

    let mut down = settings(format!("http://{}", closed_port().await).parse().unwrap());
    down.config = config;
    let lost = Folio::start_with(down, POLICIES).await;
    let unhealthy = get(&format!("http://{}/_folio/health", lost.admin), &[]).await;
    assert_eq!(unhealthy.status, 503, "a load balancer takes it out");
    assert_eq!(unhealthy.json()["status"], "unhealthy");
    assert_eq!(unhealthy.json()["checks"]["upstream"]["reachable"], false);
}

#[tokio::test]
async fn the_dashboard_shows_live_numbers_in_a_real_browser() {
    let upstream = upstream().await;
    let folio = folio_for(&upstream, |_| {}).await;
    let page = get(&format!("http://{}/_folio/", folio.admin), &[]).await;
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(
        !page.text().contains("http://") && !page.text().contains("https://"),
        "self-contained: no CDN"
    );
    in_a_browser(&folio, "dashboard", &[]).await;
}

#[tokio::test]
async fn admin_pages_allow_no_inline_script_and_no_html_from_data() {
    let upstream = upstream().await;
    let folio = folio_for(&upstream, |_| {}).await;
    let admin = |path: &str| format!("http://{}{path}", folio.admin);
    let page = get(&admin("/_folio/"), &[]).await;
    let csp = page.header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp:?}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = page.text();
    assert!(
        html.match_indices("<script")
            .all(|(at, _)| html[at..].starts_with("<script src=")),
        "no inline script: {html}"
    );
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "no inline style"
    );
    assert!(!html.contains(" on"), "no event handler attributes");

    let script = get(&admin("/_folio/dashboard.js"), &[]).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        "text/javascript; charset=utf-8"
    );
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.text().contains(sink), "the dashboard uses {sink}");
    }
    let style = get(&admin("/_folio/dashboard.css"), &[]).await;
    assert_eq!(style.status, 200);
    assert_eq!(style.header("content-type"), "text/css; charset=utf-8");

    for path in [
        "/_folio/",
        "/_folio/dashboard.js",
        "/_folio/stats",
        "/_folio/metrics",
        "/_folio/nope",
    ] {
        let got = get(&admin(path), &[]).await;
        assert_eq!(got.header("content-security-policy"), csp, "{path}");
        assert_eq!(got.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(got.header("referrer-policy"), "no-referrer", "{path}");
    }
}

#[tokio::test]
async fn with_a_token_configured_the_dashboard_asks_for_it() {
    let upstream = upstream().await;
    let folio = folio_for(&upstream, |s| {
        s.admin.operator_token = Some("op-secret".into())
    })
    .await;
    let stats = get(&format!("http://{}/_folio/stats", folio.admin), &[]).await;
    assert_eq!(stats.status, 401, "the figures need the token");
    in_a_browser(&folio, "dashboard-token", &[("FOLIO_TOKEN", "op-secret")]).await;
}

/// What clients of the proxy can put in the dashboard's data: tenant values
/// (a header anyone sets) and paths.
const HOSTILE_TENANTS: [&str; 2] = [
    r#"<img src=x onerror="window.__pwned=1;console.log('PWNED tenant')">"#,
    r#""><svg onload="window.__pwned=2;console.log('PWNED tenant')">"#,
];
const HOSTILE_PATH: &str =
    "/api/v1/products/%3Cimg%20src%3Dx%20onerror%3D%22window.__pwned%3D3%22%3E";

#[tokio::test]
async fn hostile_names_show_as_text_in_the_dashboard_and_run_nothing() {
    let upstream = upstream().await;
    let folio = folio_for(&upstream, |_| {}).await;
    // Eight of each, so the sampled top paths count every one.
    for tenant in HOSTILE_TENANTS {
        for _ in 0..8 {
            get(&folio.url("/api/v1/products/1"), &[("x-tenant-id", tenant)]).await;
        }
    }
    for path in [HOSTILE_PATH, "/api/v1/products/\"'(x)=:"] {
        for _ in 0..8 {
            get(&folio.url(path), ACME).await;
        }
    }
    // Markup in a raw request line never gets past the HTTP parser.
    let mut raw = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
    raw.write_all(
        b"GET /\"><svg/onload=window.__pwned=4> HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let expect = serde_json::to_string(&[HOSTILE_PATH, "/api/v1/products/\"'(x)=:"]).unwrap();
    in_a_browser(
        &folio,
        "dashboard-hostile",
        &[("FOLIO_HOSTILE", "1"), ("FOLIO_EXPECT_TEXT", &expect)],
    )
    .await;
}

/// Runs `tests/dashboard/check.mjs` against `folio`'s dashboard in headless
/// Chromium with `env`, drives traffic once the page shows numbers, and
/// fails with the script's complaint unless it passed. The screenshot is
/// `target/<name>.png`.
async fn in_a_browser(folio: &Folio, name: &str, env: &[(&str, &str)]) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/playwright-core")
            .exists(),
        "run `npm ci --prefix tests/dashboard` (scripts/test.sh does) to install the browser driver"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "install Chromium: apt-get install -y chromium (scripts/test.sh does)"
    );
    let screenshot = format!("{}/target/{name}.png", env!("CARGO_MANIFEST_DIR"));
    let mut browser = tokio::process::Command::new("node")
        .arg(format!("{dir}/check.mjs"))
        .arg(format!("http://{}/_folio/", folio.admin))
        .arg(&screenshot)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut out = BufReader::new(browser.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), out.next_line())
        .await
        .expect("the page loaded in time");
    let mut errors = String::new();
    let mut stderr = browser.stderr.take().unwrap();
    if !ready.unwrap().unwrap_or_default().starts_with("READY") {
        stderr.read_to_string(&mut errors).await.unwrap();
        panic!("the dashboard did not show numbers: {errors}");
    }
    for round in 0..4 {
        for id in 0..5 {
            get(&folio.url(&format!("/api/v1/products/{id}")), ACME).await;
        }
        get(
            &folio.url(&format!("/api/v1/products/{}", 100 + round)),
            &[("x-tenant-id", "globex")],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(60), browser.wait())
        .await
        .expect("the check ends")
        .unwrap();
    stderr.read_to_string(&mut errors).await.unwrap();
    assert!(status.success(), "the dashboard check failed: {errors}");
    assert!(
        std::path::Path::new(&screenshot).exists(),
        "a screenshot is saved as a test artifact"
    );
}

mod reload {
    use super::*;

    const BEFORE: &str = "\"/a\":\n  cache_ttl: 1h\n\"/b\":\n  cache_ttl: 1h\n";
    const AFTER: &str =
        "\"/a\":\n  cache_ttl: 1h\n\"/b\":\n  cache_ttl: 2h\n\"/c\":\n  cache_ttl: 1h\n";

    #[tokio::test]
    async fn a_valid_set_takes_effect_without_dropping_connections_or_the_cache() {
        let upstream = TestUpstream::json("{}").await;
        let dir = temp_dir("reload-ok");
        std::fs::write(dir.join("p.yaml"), BEFORE).unwrap();
        let mut settings = settings(upstream.uri());
        settings.policies_dir = Some(dir.to_path_buf());
        let folio = Folio::start_with_set(settings, PolicySet::load_dir(&dir).unwrap()).await;
        for path in ["/a", "/b", "/c"] {
            get(&folio.url(path), &[]).await;
        }
        // A connection held open across the reload.
        let mut held = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
        assert!(raw_get(&mut held, "/a").await.contains("x-cache: hit"));

        std::fs::write(dir.join("p.yaml"), AFTER).unwrap();
        let reloaded = folio.admin_post("/_folio/reload", &[], "").await;
        assert_eq!(reloaded.status, 200, "{}", reloaded.text());
        assert_eq!(reloaded.json()["changed"], serde_json::json!(["/b"]));
        assert_eq!(reloaded.json()["added"], serde_json::json!(["/c"]));

        assert!(
            raw_get(&mut held, "/a").await.contains("x-cache: hit"),
            "the open connection still serves, from the kept cache"
        );
        assert_eq!(
            get(&folio.url("/b"), &[]).await.x_cache(),
            "MISS",
            "a changed policy's entries are dropped"
        );
        assert_eq!(get(&folio.url("/c"), &[]).await.x_cache(), "MISS");
        assert_eq!(
            get(&folio.url("/c"), &[]).await.x_cache(),
            "HIT",
            "the new policy is live"
        );
    }

    #[tokio::test]
    async fn an_invalid_set_is_refused_and_the_old_one_stays() {
        let upstream = TestUpstream::json("{}").await;
        let dir = temp_dir("reload-bad");
        std::fs::write(dir.join("p.yaml"), BEFORE).unwrap();
        let mut settings = settings(upstream.uri());
        settings.policies_dir = Some(dir.to_path_buf());
        let folio = Folio::start_with_set(settings, PolicySet::load_dir(&dir).unwrap()).await;
        get(&folio.url("/a"), &[]).await;
        std::fs::write(dir.join("p.yaml"), "\"/a\":\n  cache_ttl: soon\n").unwrap();
        let refused = folio.admin_post("/_folio/reload", &[], "").await;
        assert_eq!(refused.status, 422);
        assert_eq!(refused.json()["error"], "invalid_policies");
        assert!(
            refused.json()["message"]
                .as_str()
                .unwrap()
                .contains("p.yaml:2: cache_ttl: bad duration 'soon'")
        );
        assert_eq!(
            get(&folio.url("/a"), &[]).await.x_cache(),
            "HIT",
            "the running set and its cache stay"
        );
    }

    #[tokio::test]
    async fn reload_needs_the_operator_token() {
        let upstream = TestUpstream::json("{}").await;
        let mut settings = settings(upstream.uri());
        settings.admin.operator_token = Some("op".into());
        settings.admin.tenant_tokens = vec![("acme".into(), "t".into())];
        let folio = Folio::start_with(settings, "").await;
        assert_eq!(
            folio.admin_post("/_folio/reload", &[], "").await.status,
            401
        );
        assert_eq!(
            folio
                .admin_post("/_folio/reload", &[("authorization", "Bearer t")], "")
                .await
                .status,
            403
        );
        assert_eq!(
            folio
                .admin_post("/_folio/reload", &[("authorization", "Bearer op")], "")
                .await
                .status,
            409,
            "no directory to read"
        );
    }

    #[tokio::test]
    async fn sighup_reloads_the_policies_of_a_running_process() {
        let upstream = TestUpstream::json("{}").await;
        let dir = temp_dir("sighup");
        std::fs::write(dir.join("p.yaml"), BEFORE).unwrap();
        let folio = FolioProcess::start(&format!("http://{}", upstream.addr), &dir, &[]);
        assert_eq!(get(&folio.url("/c"), &[]).await.x_cache(), "MISS");
        assert_eq!(
            get(&folio.url("/c"), &[]).await.x_cache(),
            "MISS",
            "no policy, no freshness: not stored"
        );
        std::fs::write(dir.join("p.yaml"), AFTER).unwrap();
        folio.signal("HUP");
        eventually(
            Duration::from_secs(10),
            "the new /c policy is live",
            || async { get(&folio.url("/c"), &[]).await.x_cache() == "HIT" },
        )
        .await;
    }

    /// One HTTP/1.1 GET on an open connection; the response head, lower-cased.
    async fn raw_get(stream: &mut tokio::net::TcpStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = vec![0u8; 8192];
        let mut read = 0;
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer[read..]))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "the connection was closed");
            read += n;
            let text = String::from_utf8_lossy(&buffer[..read]).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if read >= end + 4 + length {
                    break text[..end].to_owned();
                }
            }
        }
    }
}

mod explain {
    use super::*;

    #[tokio::test]
    async fn explain_over_the_admin_api() {
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |_| {}).await;
        let url = format!(
            "http://{}/_folio/explain?method=GET&url=/api/v1/products/42%3Fx%3D1&header=X-Tenant-ID:%20acme",
            folio.admin
        );
        let explained = get(&url, &[]).await.json();
        assert_eq!(explained["policy"], "/api/v1/products/{id}");
        assert_eq!(explained["cacheable"], true);
        assert_eq!(explained["tenant"], "acme");
        assert_eq!(explained["ttl_s"], 3600);
        assert_eq!(
            explained["tags"],
            serde_json::json!(["product:42", "route:/api/v1/products/{id}"])
        );
        assert_eq!(explained["key"].as_str().unwrap().len(), 64);
        let cart = get(
            &format!("http://{}/_folio/explain?url=/api/v1/cart", folio.admin),
            &[],
        )
        .await
        .json();
        assert_eq!(cart["cacheable"], false);
        assert!(cart["reason"].as_str().unwrap().contains("cache: false"));
        let bad = get(
            &format!("http://{}/_folio/explain?nope=1", folio.admin),
            &[],
        )
        .await;
        assert_eq!(bad.status, 400);
    }

    #[test]
    fn explain_on_the_command_line() {
        let out = Command::new(env!("CARGO_BIN_EXE_folio"))
            .args([
                "explain",
                "GET",
                "http://host/api/v1/products/42?x=1",
                "-H",
                "X-Tenant-ID: acme",
            ])
            .args(["--policies", REPO_POLICIES])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for expected in [
            "policy      /api/v1/products/{id}",
            "bookstore.yaml:15",
            "tenant      acme",
            "decision    CACHED",
            "ttl         3600s",
            "purged by   events product_update",
            "path          /api/v1/products/42",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}

mod warming {
    use super::*;

    fn plan(every: Option<Duration>) -> WarmPlan {
        WarmPlan {
            every,
            concurrency: 2,
            urls: vec![
                WarmUrl {
                    url: "/api/v1/products/7".into(),
                    tenant: Some("acme".into()),
                    headers: Default::default(),
                },
                WarmUrl {
                    url: "/api/v1/products/8".into(),
                    tenant: Some("acme".into()),
                    headers: Default::default(),
                },
            ],
        }
    }

    #[tokio::test]
    async fn warming_at_start_up_and_on_a_schedule_fills_the_cache() {
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |s| {
            s.config.warm = Some(plan(Some(Duration::from_secs(1))))
        })
        .await;
        eventually(Duration::from_secs(5), "warmed at start-up", || async {
            upstream.hits("/api/v1/products/7") == 1 && upstream.hits("/api/v1/products/8") == 1
        })
        .await;
        assert_eq!(
            get(&folio.url("/api/v1/products/7"), ACME).await.x_cache(),
            "HIT",
            "the first user finds it cached"
        );
    }

    #[tokio::test]
    async fn warming_retries_while_the_upstream_is_not_up_yet() {
        let later = closed_port().await;
        let mut settings = settings(format!("http://{later}").parse().unwrap());
        settings.config.warm = Some(plan(None));
        let _folio = Folio::start_with(settings, POLICIES).await;
        tokio::time::sleep(Duration::from_millis(800)).await; // the first attempt has failed
        let upstream = TestUpstream::start_on(later, |_| Reply::json("{}")).await;
        eventually(
            Duration::from_secs(8),
            "warmed once the upstream came up",
            || async { upstream.hits("/api/v1/products/7") == 1 },
        )
        .await;
    }

    #[tokio::test]
    async fn folio_warm_runs_the_list_once_with_a_progress_bar() {
        let upstream = upstream().await;
        let folio = folio_for(&upstream, |_| {}).await;
        let dir = temp_dir("warm-cli");
        let config = dir.join("folio.yaml");
        std::fs::write(&config, "warm:\n  urls:\n    - {url: /api/v1/products/7, tenant: acme}\n    - {url: /api/v1/products/8, tenant: acme}\n").unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_folio"))
            .args(["warm", "--config"])
            .arg(&config)
            .args(["--target", &format!("http://{}", folio.addr)])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("warmed 2 of 2 URLs (0 failed)"));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("warming [##############################] 2/2")
        );
        assert_eq!(
            get(&folio.url("/api/v1/products/8"), ACME).await.x_cache(),
            "HIT"
        );
    }
}

#[tokio::test]
async fn one_access_line_per_request_human_or_json() {
    let upstream = upstream().await;
    let policies = PathBuf::from(REPO_POLICIES);
    let upstream_url = format!("http://{}", upstream.addr);
    let json = FolioProcess::start(&upstream_url, &policies, &["--log-format", "json"]);
    get(&json.url("/api/v1/products/3"), ACME).await;
    send("POST", &json.url("/api/v1/cart"), ACME, "{}").await;
    eventually(Duration::from_secs(5), "two access lines", || async {
        json.lines()
            .iter()
            .filter(|l| l.contains("\"target\":\"folio::access\""))
            .count()
            == 2
    })
    .await;
    let line = json
        .lines()
        .into_iter()
        .find(|l| l.contains("folio::access"))
        .unwrap();
    let fields: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/api/v1/products/3");
    assert_eq!(fields["tenant"], "acme");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["result"], "miss");
    assert_eq!(fields["layer"], "upstream");
    assert!(fields["ms"].as_f64().is_some() && fields["upstream_ms"].as_f64().unwrap() > 0.0);

    let human = FolioProcess::start(&upstream_url, &policies, &[]);
    get(&human.url("/api/v1/products/3"), ACME).await;
    eventually(Duration::from_secs(5), "a human access line", || async {
        human.lines().iter().any(|l| {
            l.contains("\"GET /api/v1/products/3\" 200 miss upstream tenant=acme")
                && !l.contains('\u{1b}')
        })
    })
    .await;
    let quiet = FolioProcess::start(&upstream_url, &policies, &["--access-log", "off"]);
    get(&quiet.url("/api/v1/products/3"), ACME).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !quiet
            .lines()
            .iter()
            .any(|l| l.contains("/api/v1/products/3"))
    );
}
