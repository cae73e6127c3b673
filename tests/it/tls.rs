//! Transport security and encryption at rest: TLS clients, an `https://`
//! upstream, Redis over TLS with an ACL user, entries sealed in Redis, key
//! rotation, and the hostile cases (an untrusted upstream, a tampered entry,
//! a handshake that never completes). Certificates come from a CA each test
//! makes for itself.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use http::Version;
use tokio::io::AsyncReadExt as _;

use crate::support::tls::{TestCa, connect, tls_get};
use crate::support::{
    ACME, Folio, FolioProcess, Reply, ScratchDir, TestCluster, TestRedis, TestUpstream, eventually,
    get, settings,
};

/// Tags the policy gives entries: they must not be readable in Redis.
const POLICY: &str = "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n  tags: [\"sku-tag-{id}\"]\n";
/// Bytes of the answer that must not be readable in Redis.
const ANSWER: &str = r#"{"id":42,"name":"Confidential Widget","price":1999}"#;
const SECRET_HEADER: &str = "zebra-header-value";

fn product_upstream_reply() -> Reply {
    Reply::json(ANSWER)
        .header("cache-control", "max-age=3600")
        .header("x-internal-note", SECRET_HEADER)
}

/// A key file of `(id, fill byte)` keys.
fn write_keys(dir: &Path, name: &str, keys: &[(&str, u8)]) -> std::path::PathBuf {
    let text: String = keys
        .iter()
        .map(|(id, byte)| {
            format!(
                "{id} {}\n",
                base64::engine::general_purpose::STANDARD.encode([*byte; 32])
            )
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, format!("# test keys\n\n{text}")).unwrap();
    path
}

/// The Redis keys of entries (`folio:v1:<64 hex>`).
async fn entry_keys(redis: &TestRedis) -> Vec<String> {
    redis
        .keys()
        .await
        .into_iter()
        .filter(|k| {
            k.strip_prefix("folio:v1:")
                .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect()
}

/// One counter from folio's metrics.
async fn metric(folio: &Folio, name: &str) -> u64 {
    let text = get(&format!("http://{}/_folio/metrics", folio.admin), &[])
        .await
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn clients_get_h2_or_http1_by_alpn_and_a_miss_then_a_hit() {
    let ca = TestCa::new("clients CA");
    let leaf = ca.leaf("folio", &["localhost", "127.0.0.1"]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let mut settings = settings(upstream.uri());
    settings.tls_cert = Some(leaf.cert_path.clone());
    settings.tls_key = Some(leaf.key_path.clone());
    let folio = Folio::start_with(settings, POLICY).await;

    let h2 = tls_get(
        folio.addr,
        ca.client_config(&[b"h2", b"http/1.1"]),
        "/api/v1/products/42",
        ACME,
    )
    .await;
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h2.version, Version::HTTP_2);
    assert_eq!(h2.got.status, 200);
    assert_eq!(h2.got.x_cache(), "MISS");
    assert_eq!(h2.got.text(), ANSWER);
    assert_eq!(h2.certificate, leaf.der());

    let h1 = tls_get(
        folio.addr,
        ca.client_config(&[b"http/1.1"]),
        "/api/v1/products/42",
        ACME,
    )
    .await;
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(h1.version, Version::HTTP_11);
    assert_eq!(h1.got.x_cache(), "HIT");
    assert_eq!(h1.got.text(), ANSWER);
    // A client offering no ALPN speaks HTTP/1.1.
    let plain_alpn = tls_get(
        folio.addr,
        ca.client_config(&[]),
        "/api/v1/products/42",
        ACME,
    )
    .await;
    assert_eq!(plain_alpn.version, Version::HTTP_11);
    assert_eq!(plain_alpn.got.x_cache(), "HIT");
    assert_eq!(upstream.hits("/api/v1/products/42"), 1);

    // Nothing is served in clear on a TLS listener.
    let mut tcp = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut tcp,
        b"GET /api/v1/products/42 HTTP/1.1\r\nhost: x\r\nx-tenant-id: acme\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    assert!(!contains(&answer, "Confidential"), "served in clear");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    folio.stop().await;
}

#[tokio::test]
async fn an_https_upstream_is_verified_and_spoken_to_in_h2_when_it_offers_it() {
    let ca = TestCa::new("upstream CA");
    let leaf = ca.leaf("upstream", &["localhost"]);
    let upstream = TestUpstream::start_tls(leaf.server_config(&[b"h2", b"http/1.1"]), |_| {
        product_upstream_reply()
    })
    .await;
    assert!(upstream.uri().to_string().starts_with("https://localhost:"));
    let mut settings = settings(upstream.uri());
    settings.ca_file = Some(ca.ca_path());
    let folio = Folio::start_with(settings, POLICY).await;

    let miss = get(&folio.url("/api/v1/products/42"), ACME).await;
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert_eq!(miss.x_cache(), "MISS");
    assert_eq!(miss.text(), ANSWER);
    assert_eq!(upstream.last().version, Version::HTTP_2, "h2 by ALPN");
    let hit = get(&folio.url("/api/v1/products/42"), ACME).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(upstream.hits("/api/v1/products/42"), 1);
    folio.stop().await;

    // An upstream offering HTTP/1.1 only is spoken to in HTTP/1.1.
    let h1_upstream = TestUpstream::start_tls(leaf.server_config(&[b"http/1.1"]), |_| {
        product_upstream_reply()
    })
    .await;
    let mut settings = crate::support::settings(h1_upstream.uri());
    settings.ca_file = Some(ca.ca_path());
    let folio = Folio::start_with(settings, POLICY).await;
    let miss = get(&folio.url("/api/v1/products/7"), ACME).await;
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert_eq!(h1_upstream.last().version, Version::HTTP_11);
    folio.stop().await;
}

#[tokio::test]
async fn an_upstream_certificate_that_does_not_verify_is_a_502_that_says_so() {
    let trusted = TestCa::new("trusted CA");
    let untrusted = TestCa::new("someone else's CA");
    // Signed by a CA folio does not trust.
    let stranger = untrusted.leaf("upstream", &["localhost"]);
    let upstream = TestUpstream::start_tls(stranger.server_config(&[b"h2", b"http/1.1"]), |_| {
        product_upstream_reply()
    })
    .await;
    let mut settings = settings(upstream.uri());
    settings.ca_file = Some(trusted.ca_path());
    let folio = Folio::start_with(settings, POLICY).await;
    let refused = get(&folio.url("/api/v1/products/42"), ACME).await;
    assert_eq!(refused.status, 502);
    let body = refused.json();
    assert_eq!(body["error"], "upstream_tls", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert_eq!(upstream.total_hits(), 0, "nothing was sent");
    folio.stop().await;

    // Trusted, but for another name.
    let misnamed = trusted.leaf("misnamed", &["api.other.example"]);
    let upstream = TestUpstream::start_tls(misnamed.server_config(&[b"http/1.1"]), |_| {
        product_upstream_reply()
    })
    .await;
    let mut settings = crate::support::settings(upstream.uri());
    settings.ca_file = Some(trusted.ca_path());
    let folio = Folio::start_with(settings, POLICY).await;
    let refused = get(&folio.url("/api/v1/products/42"), ACME).await;
    assert_eq!(refused.status, 502);
    assert_eq!(refused.json()["error"], "upstream_tls");
    assert!(
        refused.text().contains("not valid for name"),
        "{}",
        refused.text()
    );
    assert_eq!(upstream.total_hits(), 0);
    folio.stop().await;
}

#[tokio::test]
async fn redis_over_tls_with_an_acl_user_gives_a_miss_then_an_l2_hit_over_tls_clients() {
    let ca = TestCa::new("redis CA");
    let redis = TestRedis::start_tls(&ca, Some(("folio", "acl-pass-77"))).await;
    let leaf = ca.leaf("folio", &["localhost"]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let start = || {
        let mut settings = settings(upstream.uri());
        settings.redis = Some(redis.url.clone());
        settings.ca_file = Some(ca.ca_path());
        settings.tls_cert = Some(leaf.cert_path.clone());
        settings.tls_key = Some(leaf.key_path.clone());
        Folio::start_with(settings, POLICY)
    };
    let a = start().await;
    let b = start().await;
    b.replayed_purges().await;
    let client = ca.client_config(&[b"h2", b"http/1.1"]);

    let miss = tls_get(a.addr, client.clone(), "/api/v1/products/42", ACME).await;
    assert_eq!(miss.got.x_cache(), "MISS");
    eventually(
        Duration::from_secs(5),
        "entry written to Redis over TLS",
        || async { !entry_keys(&redis).await.is_empty() },
    )
    .await;
    let hit = tls_get(b.addr, client, "/api/v1/products/42", ACME).await;
    assert_eq!(hit.got.x_cache(), "HIT");
    assert_eq!(hit.got.header("x-cache-layer"), "L2");
    assert_eq!(hit.got.text(), ANSWER);
    assert_eq!(upstream.hits("/api/v1/products/42"), 1);
    let health = get(&format!("http://{}/_folio/health", b.admin), &[]).await;
    assert_eq!(
        health.json()["checks"]["redis"]["reachable"],
        true,
        "{}",
        health.text()
    );
    // The invalidation subscription logs in as the ACL user over TLS too.
    eventually(Duration::from_secs(10), "B subscribed", || async {
        let health = get(&format!("http://{}/_folio/health", b.admin), &[]).await;
        health.json()["checks"]["invalidation"]["subscribed"] == true
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_redis_password_is_never_printed() {
    let ca = TestCa::new("redis CA");
    let password = "never-print-me-31337";
    let redis = TestRedis::start_tls(&ca, Some(("folio", password))).await;
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let policies = ScratchDir::new("policies", "tls-password");
    std::fs::write(policies.join("p.yaml"), POLICY).unwrap();
    let ca_path = ca.ca_path();
    let process = FolioProcess::start_with_env(
        &upstream.uri().to_string(),
        &policies,
        &[
            "--redis",
            &redis.url,
            "--ca-file",
            ca_path.to_str().unwrap(),
        ],
        &[("RUST_LOG", "debug")],
    );
    assert_eq!(
        get(&process.url("/api/v1/products/1"), ACME).await.status,
        200
    );
    let health = get(&format!("http://{}/_folio/health", process.admin), &[]).await;
    let stats = get(&format!("http://{}/_folio/stats", process.admin), &[]).await;
    let metrics = get(&format!("http://{}/_folio/metrics", process.admin), &[]).await;
    // A bad password is an error that is logged: it must not carry the URL.
    let wrong = FolioProcess::start_with_env(
        &upstream.uri().to_string(),
        &policies,
        &[
            "--redis",
            &redis.url.replace(password, "wrong-pass-4242"),
            "--ca-file",
            ca_path.to_str().unwrap(),
        ],
        &[("RUST_LOG", "debug")],
    );
    get(&wrong.url("/api/v1/products/2"), ACME).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (what, text) in [
        ("health", health.text()),
        ("stats", stats.text()),
        ("metrics", metrics.text()),
        ("log", process.lines().join("\n")),
        ("log with a wrong password", wrong.lines().join("\n")),
    ] {
        assert!(
            !text.contains(password),
            "{what} shows the password:\n{text}"
        );
        assert!(
            !text.contains("wrong-pass-4242"),
            "{what} shows a password:\n{text}"
        );
    }
    assert!(
        process.lines().iter().any(|l| l.contains("folio started")),
        "the log was read: {:?}",
        process.lines()
    );
    // `folio --help` shows where each flag's variable is, not its value.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_folio"))
        .arg("--help")
        .env("FOLIO_REDIS", &redis.url)
        .env("FOLIO_ADMIN_TOKEN", "operator-secret-55")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("FOLIO_REDIS"), "{help}");
    assert!(!help.contains(password), "{help}");
    assert!(!help.contains("operator-secret-55"), "{help}");
}

#[tokio::test]
async fn entries_are_sealed_in_redis_and_open_only_with_the_key() {
    let redis = TestRedis::start().await;
    let dir = ScratchDir::new("keys", "sealed");
    let keys = write_keys(&dir, "keys", &[("k1", 1)]);
    let other_keys = write_keys(&dir, "other", &[("k1", 9)]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let start = |keys: Option<&Path>| {
        let mut settings = settings(upstream.uri());
        settings.redis = Some(redis.url.clone());
        settings.encryption_keys = keys.map(Path::to_path_buf);
        Folio::start_with(settings, POLICY)
    };
    let a = start(Some(&keys)).await;
    assert_eq!(
        get(&a.url("/api/v1/products/42"), ACME).await.x_cache(),
        "MISS"
    );
    eventually(Duration::from_secs(5), "entry written to Redis", || async {
        !entry_keys(&redis).await.is_empty()
    })
    .await;
    let key = entry_keys(&redis).await.remove(0);
    let raw = redis.get_raw(&key).await.unwrap();
    for readable in [
        "Confidential Widget",
        "1999",
        SECRET_HEADER,
        "x-internal-note",
        "application/json",
        "sku-tag-42",
        "/api/v1/products/42",
        "acme",
    ] {
        assert!(
            !contains(&raw, readable),
            "'{readable}' is readable in Redis"
        );
    }
    assert_eq!(raw[0], 0xA1, "a sealed value, version 1");

    // The same key file: an L2 hit.
    let b = start(Some(&keys)).await;
    b.replayed_purges().await;
    let hit = get(&b.url("/api/v1/products/42"), ACME).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("x-cache-layer"), "L2");
    assert_eq!(hit.text(), ANSWER);
    assert_eq!(hit.header("x-internal-note"), SECRET_HEADER);
    assert_eq!(metric(&b, "folio_l2_decrypt_failures_total").await, 0);

    // No key file, or another key under the same id: a miss, counted.
    for keys in [None, Some(other_keys.as_path())] {
        let stranger = start(keys).await;
        stranger.replayed_purges().await;
        let miss = get(&stranger.url("/api/v1/products/42"), ACME).await;
        assert_eq!(miss.status, 200);
        assert_eq!(miss.x_cache(), "MISS", "keys {keys:?}");
        assert_eq!(miss.text(), ANSWER);
        assert_eq!(
            metric(&stranger, "folio_l2_decrypt_failures_total").await,
            1,
            "keys {keys:?}"
        );
        stranger.stop().await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_rotated_key_file_reads_entries_sealed_with_the_old_key() {
    let redis = TestRedis::start().await;
    let dir = ScratchDir::new("keys", "rotated");
    let old = write_keys(&dir, "old", &[("2026-10", 1)]);
    let rotated = write_keys(&dir, "rotated", &[("2026-11", 2), ("2026-10", 1)]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let start = |keys: &Path| {
        let mut settings = settings(upstream.uri());
        settings.redis = Some(redis.url.clone());
        settings.encryption_keys = Some(keys.to_path_buf());
        Folio::start_with(settings, POLICY)
    };
    let before = start(&old).await;
    get(&before.url("/api/v1/products/1"), ACME).await;
    eventually(Duration::from_secs(5), "entry written", || async {
        entry_keys(&redis).await.len() == 1
    })
    .await;
    let after = start(&rotated).await;
    after.replayed_purges().await;
    let hit = get(&after.url("/api/v1/products/1"), ACME).await;
    assert_eq!(hit.header("x-cache-layer"), "L2", "sealed with the old key");
    assert_eq!(hit.text(), ANSWER);
    // What the rotated instance writes is sealed with the new key, which
    // an instance still on the old file cannot open.
    get(&after.url("/api/v1/products/2"), ACME).await;
    eventually(Duration::from_secs(5), "second entry written", || async {
        entry_keys(&redis).await.len() == 2
    })
    .await;
    let old_only = start(&old).await;
    old_only.replayed_purges().await;
    assert_eq!(
        get(&old_only.url("/api/v1/products/2"), ACME)
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        metric(&old_only, "folio_l2_decrypt_failures_total").await,
        1
    );
    assert_eq!(upstream.hits("/api/v1/products/1"), 1);
    before.stop().await;
    after.stop().await;
    old_only.stop().await;
}

#[tokio::test]
async fn a_tampered_or_moved_entry_is_a_miss_never_an_error() {
    let redis = TestRedis::start().await;
    let dir = ScratchDir::new("keys", "tampered");
    let keys = write_keys(&dir, "keys", &[("k1", 1)]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let start = || {
        let mut settings = settings(upstream.uri());
        settings.redis = Some(redis.url.clone());
        settings.encryption_keys = Some(keys.clone());
        Folio::start_with(settings, POLICY)
    };
    let writer = start().await;
    get(&writer.url("/api/v1/products/1"), ACME).await;
    get(&writer.url("/api/v1/products/2"), ACME).await;
    eventually(Duration::from_secs(5), "entries written", || async {
        entry_keys(&redis).await.len() == 2
    })
    .await;
    let names = entry_keys(&redis).await;
    // Flip one bit of the ciphertext of one, and copy it over the other.
    let mut raw = redis.get_raw(&names[0]).await.unwrap();
    let original = raw.clone();
    let last = raw.len() - 20;
    raw[last] ^= 0x01;
    redis.set_raw(&names[0], &raw).await;
    redis.set_raw(&names[1], &original).await;

    // A plain entry, as an instance without keys (or anyone who can write
    // to Redis) leaves it: not served where entries must be sealed.
    let mut plain_settings = settings(upstream.uri());
    plain_settings.redis = Some(redis.url.clone());
    let plain_writer = Folio::start_with(plain_settings, POLICY).await;
    get(&plain_writer.url("/api/v1/products/3"), ACME).await;
    eventually(Duration::from_secs(5), "plain entry written", || async {
        entry_keys(&redis).await.len() == 3
    })
    .await;

    let reader = start().await;
    reader.replayed_purges().await;
    for path in [
        "/api/v1/products/1",
        "/api/v1/products/2",
        "/api/v1/products/3",
    ] {
        let got = get(&reader.url(path), ACME).await;
        assert_eq!(got.status, 200, "{path}");
        assert_eq!(got.x_cache(), "MISS", "{path}");
    }
    assert_eq!(metric(&reader, "folio_l2_decrypt_failures_total").await, 3);
    for path in [
        "/api/v1/products/1",
        "/api/v1/products/2",
        "/api/v1/products/3",
    ] {
        assert_eq!(upstream.hits(path), 2, "{path}");
    }
    writer.stop().await;
    plain_writer.stop().await;
    reader.stop().await;
}

#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_closed() {
    let ca = TestCa::new("clients CA");
    let leaf = ca.leaf("folio", &["localhost"]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let mut settings = settings(upstream.uri());
    settings.tls_cert = Some(leaf.cert_path.clone());
    settings.tls_key = Some(leaf.key_path.clone());
    settings.idle_timeout = Duration::from_secs(1);
    let folio = Folio::start_with(settings, POLICY).await;

    // One client opens TCP and says nothing; another sends half a
    // ClientHello and stops.
    let mut silent = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
    let mut halfway = tokio::net::TcpStream::connect(folio.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut halfway, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    // Meanwhile others are served.
    let served = tls_get(
        folio.addr,
        ca.client_config(&[b"h2"]),
        "/api/v1/products/1",
        ACME,
    )
    .await;
    assert_eq!(served.got.status, 200);
    for (what, stream) in [("silent", &mut silent), ("half a hello", &mut halfway)] {
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("{what}: still open after 15 s"));
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "{what}: expected the connection closed, got {read:?}"
        );
    }
    folio.stop().await;
}

#[tokio::test]
async fn sighup_rereads_the_served_certificate() {
    let ca = TestCa::new("clients CA");
    let first = ca.leaf("folio", &["localhost"]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let policies = ScratchDir::new("policies", "tls-sighup");
    std::fs::write(policies.join("p.yaml"), POLICY).unwrap();
    let process = FolioProcess::start(
        &upstream.uri().to_string(),
        &policies,
        &[
            "--tls-cert",
            first.cert_path.to_str().unwrap(),
            "--tls-key",
            first.key_path.to_str().unwrap(),
        ],
    );
    let before = tls_get(
        process.addr,
        ca.client_config(&[b"h2"]),
        "/api/v1/products/1",
        ACME,
    )
    .await;
    assert_eq!(before.certificate, first.der());
    assert_eq!(before.got.status, 200);

    // A broken pair is refused and the running certificate stays.
    std::fs::write(&first.cert_path, "not a certificate").unwrap();
    process.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kept = tls_get(
        process.addr,
        ca.client_config(&[b"h2"]),
        "/api/v1/products/1",
        ACME,
    )
    .await;
    assert_eq!(kept.certificate, first.der());

    // The renewed certificate is written over the same files.
    let renewed = ca.leaf("folio", &["localhost"]);
    assert_ne!(renewed.der(), first.der());
    process.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the renewed certificate served",
        || async {
            let now = tls_get(
                process.addr,
                ca.client_config(&[b"h2"]),
                "/api/v1/products/1",
                ACME,
            )
            .await;
            now.certificate == renewed.der()
        },
    )
    .await;
    assert!(
        process
            .lines()
            .iter()
            .any(|l| l.contains("TLS certificate was reloaded")),
        "{:?}",
        process.lines()
    );
    // A client trusting only the old certificate's CA still connects (same
    // CA); one trusting nothing of it does not.
    let stranger = TestCa::new("stranger");
    assert!(
        connect(process.addr, "localhost", stranger.client_config(&[]))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn warming_goes_through_a_tls_listener() {
    let ca = TestCa::new("clients CA");
    // Not made for 127.0.0.1, which warming connects to: it trusts the
    // certificate the listener serves, not a name.
    let leaf = ca.leaf("folio", &["folio.internal", "localhost"]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let mut settings = settings(upstream.uri());
    settings.tls_cert = Some(leaf.cert_path.clone());
    settings.tls_key = Some(leaf.key_path.clone());
    settings.config.warm = Some(folio::config::WarmPlan {
        every: None,
        concurrency: 1,
        urls: vec![folio::config::WarmUrl {
            url: "/api/v1/products/9".into(),
            tenant: Some("acme".into()),
            headers: Default::default(),
        }],
    });
    let folio = Folio::start_with(settings, POLICY).await;
    eventually(Duration::from_secs(10), "warmed over TLS", || async {
        upstream.hits("/api/v1/products/9") == 1
    })
    .await;
    let warmed = tls_get(
        folio.addr,
        ca.client_config(&[b"h2"]),
        "/api/v1/products/9",
        ACME,
    )
    .await;
    assert_eq!(warmed.got.x_cache(), "HIT");
    folio.stop().await;
}

#[tokio::test]
async fn a_redis_cluster_over_tls_shares_sealed_entries_and_purges() {
    let ca = TestCa::new("cluster CA");
    let cluster = TestCluster::start_tls(&ca).await;
    assert!(cluster.urls()[0].starts_with("rediss://"));
    let dir = ScratchDir::new("keys", "cluster");
    let keys = write_keys(&dir, "keys", &[("k1", 1)]);
    let upstream = TestUpstream::start(|_| product_upstream_reply()).await;
    let start = || {
        let mut settings = settings(upstream.uri());
        settings.redis_cluster = cluster.urls();
        settings.ca_file = Some(ca.ca_path());
        settings.encryption_keys = Some(keys.clone());
        // What is tried here is sharing over TLS, not Redis latency: the
        // first commands open TLS connections to every master, slow in a
        // debug build on a machine busy with every other test. With the
        // default 50 ms they could time out, open the breaker, and skip
        // every store this test waits for.
        settings.l2_timeout = Duration::from_secs(2);
        Folio::start_with(settings, POLICY)
    };
    let a = start().await;
    let b = start().await;
    b.replayed_purges().await;
    for id in 0..20 {
        let got = get(&a.url(&format!("/api/v1/products/{id}")), ACME).await;
        assert_eq!(got.x_cache(), "MISS");
    }
    eventually(
        Duration::from_secs(10),
        "entries on every master",
        || async { cluster.key_counts().iter().all(|n| *n > 0) },
    )
    .await;
    eventually(Duration::from_secs(10), "all 20 entries in L2", || async {
        cluster.key_counts().iter().sum::<u64>() >= 20
    })
    .await;
    let hit = get(&b.url("/api/v1/products/3"), ACME).await;
    assert_eq!(hit.header("x-cache-layer"), "L2");
    assert_eq!(hit.text(), ANSWER);
    assert_eq!(
        get(&b.url("/api/v1/products/3"), ACME)
            .await
            .header("x-cache-layer"),
        "L1"
    );

    // A purge on A reaches B's L1 through Redis, over TLS.
    let purge = a
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["sku-tag-3"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    eventually(Duration::from_secs(5), "the purge reached B", || async {
        get(&b.url("/api/v1/products/3"), ACME).await.x_cache() == "MISS"
    })
    .await;
    let health = get(&format!("http://{}/_folio/health", b.admin), &[]).await;
    let checks = &health.json()["checks"];
    assert_eq!(checks["redis"]["reachable"], true, "{}", health.text());
    assert_eq!(
        checks["invalidation"]["subscribed"],
        true,
        "{}",
        health.text()
    );
    assert_eq!(metric(&b, "folio_l2_decrypt_failures_total").await, 0);
    a.stop().await;
    b.stop().await;
}
