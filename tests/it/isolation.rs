//! Tenant isolation, as a property: thousands of random requests from
//! several tenants, each with a random mix of hostile headers, spread over
//! two folio instances that share Redis, in front of an origin that stamps
//! every answer with the tenant it served (the last `X-Tenant-ID`, reading
//! `_` as `-`, as many servers do) and reads bodies after answering. No
//! client may ever receive another tenant's stamp, or another path's.
//!
//! `FOLIO_ISOLATION_REQUESTS` sets the count (the bench runs more);
//! `FOLIO_ISOLATION_SEED` replays a failing run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::support::raw::{RawGot, RawOrigin, raw_request};
use crate::support::{Folio, TestRedis, settings};

const POLICIES: &str = r#"
"/api/v1/products/{id}":
  cache_ttl: 1h
  tags: ["product:{id}"]
"/api/v1/search":
  cache_ttl: 5m
  key:
    query: [q]
"PUT /api/v1/products/{id}":
  events: [product_update]
"/api/v1/products/{id}/reviews":
  cache_ttl: 1m
  invalidate_on: [product_update]
"#;

const TENANTS: [&str; 4] = ["acme", "globex", "initech", ""];

/// A request path as sent, and the path the origin must answer for.
const PATHS: [(&str, &str); 10] = [
    ("/api/v1/products/1", "/api/v1/products/1"),
    ("/api/v1/products/2", "/api/v1/products/2"),
    ("/api/v1/products/%31", "/api/v1/products/1"),
    ("/api/v1/products/x/../2", "/api/v1/products/2"),
    ("/api/v1//products/3", "/api/v1/products/3"),
    ("/api/v1/products/1/reviews", "/api/v1/products/1/reviews"),
    ("/api/v1/search?q=a&utm=1", "/api/v1/search"),
    ("/api/v1/search?q=a;q=b", "/api/v1/search"),
    ("/elsewhere?x=1", "/elsewhere"),
    ("/api/v1/products/%2e%2e/1", "-"),
];

/// xorshift64*: reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One random request: its raw head and body, the tenant it speaks for
/// (the first tenant header, trimmed), and the path it names.
struct Attempt {
    head: String,
    body: Vec<u8>,
    tenant: &'static str,
    expected_path: &'static str,
}

/// Adds header lines (and maybe body bytes) to a request.
type AddHeaders<'a> = dyn Fn(&mut Vec<String>, &mut Vec<u8>) + 'a;

fn attempt(rng: &mut Rng, host: &str) -> Attempt {
    let tenant = *rng.pick(&TENANTS);
    let other = *rng.pick(&TENANTS);
    let (path, expected_path) = *rng.pick(&PATHS);
    let write = rng.chance(8) && path.starts_with("/api/v1/products/");
    let method = if write { "PUT" } else { "GET" };
    let mut lines = vec![format!("{method} {path} HTTP/1.1"), format!("Host: {host}")];
    if !tenant.is_empty() {
        let name = rng.pick(&["X-Tenant-ID", "x-tenant-id", "X-TENANT-ID"]);
        let spaced = rng.pick(&["", " ", "\t"]);
        lines.push(format!("{name}:{spaced}{tenant}{spaced}"));
    }
    let mut body = Vec::new();
    let hostile: [&AddHeaders<'_>; 14] = [
        &|l, _| l.push("Connection: keep-alive, X-Tenant-ID".into()),
        &|l, _| l.push(format!("X-Tenant-ID: {other}")),
        &|l, _| l.push(format!("X_Tenant_ID: {other}")),
        &|l, _| l.push(format!("X-Tenant-ID: {tenant}, {other}")),
        &|l, _| l.push("Connection: close, X-Forwarded-Host".into()),
        &|l, _| l.push("X-Forwarded-Host: evil.example".into()),
        &|l, _| l.push("X-HTTP-Method-Override: PUT".into()),
        &|l, b| {
            l.push("Content-Length: 23".into());
            b.extend_from_slice(b"GET /poison HTTP/1.1\r\n\r");
        },
        &|l, _| l.push("Range: bytes=0-40".into()),
        &|l, _| l.push("If-None-Match: \"nope\"".into()),
        &|l, _| l.push("Authorization: Bearer someone".into()),
        &|l, _| l.push("Cache-Control: no-cache".into()),
        &|l, _| l.push("Cookie: session=1".into()),
        &|l, _| l.push("Via: 1.1 cdn".into()),
    ];
    for add in hostile {
        if rng.chance(9) {
            add(&mut lines, &mut body);
        }
    }
    if write && !lines.iter().any(|l| l.starts_with("Content-Length")) {
        lines.push("Content-Length: 2".into());
        body.extend_from_slice(b"{}");
    }
    // The client speaks for the first tenant header it sends.
    let speaks_for = lines
        .iter()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("x-tenant-id"))
        .map_or("", |(_, value)| value.trim());
    let tenant = TENANTS
        .iter()
        .find(|t| **t == speaks_for)
        .copied()
        .unwrap_or("(invalid)");
    Attempt {
        head: lines.join("\n"),
        body,
        tenant,
        expected_path,
    }
}

/// Whether `got` shows another tenant's data, or another path's.
fn leaked(attempt: &Attempt, got: &RawGot) -> Option<String> {
    if !(200..300).contains(&got.status) || got.body.is_empty() {
        return None;
    }
    let body = String::from_utf8_lossy(&got.body);
    let stamp = format!(r#"{{"tenant":{}"#, serde_json::Value::from(attempt.tenant));
    // A range answer holds a prefix of the stamp; a whole one all of it.
    let comparable = stamp.len().min(body.len());
    if body[..comparable] != stamp[..comparable] {
        return Some(format!("another tenant's answer: {body}"));
    }
    if got.status == 200 {
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let target = json["target"].as_str().unwrap_or("");
        let path = target.split('?').next().unwrap_or("");
        if path != attempt.expected_path {
            return Some(format!("another path's answer: {body}"));
        }
    }
    None
}

#[tokio::test]
async fn no_client_ever_receives_another_tenants_answer() {
    let requests: usize = std::env::var("FOLIO_ISOLATION_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("FOLIO_ISOLATION_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let origin = RawOrigin::start().await;
    let redis = TestRedis::start().await;
    let instance = || {
        let mut settings = settings(origin.uri());
        settings.redis = Some(redis.url.clone());
        settings
    };
    let folios = Arc::new([
        Folio::start_with(instance(), POLICIES).await,
        Folio::start_with(instance(), POLICIES).await,
    ]);

    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..16u64 {
        let (folios, next) = (Arc::clone(&folios), Arc::clone(&next));
        workers.spawn(async move {
            let mut rng = Rng(seed ^ (worker + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < requests {
                let folio = &folios[rng.below(2)];
                let attempt = attempt(&mut rng, &folio.addr.to_string());
                let got = raw_request(folio.addr, &attempt.head, &attempt.body).await;
                *statuses.entry(got.status).or_default() += 1;
                if let Some(leak) = leaked(&attempt, &got) {
                    panic!(
                        "seed {seed}: {leak}\nrequest:\n{}\nstatus {}",
                        attempt.head, got.status
                    );
                }
                assert!(
                    got.status < 500,
                    "seed {seed}: {} for\n{}\n{}",
                    got.status,
                    attempt.head,
                    String::from_utf8_lossy(&got.body)
                );
            }
            statuses
        });
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(done) = workers.join_next().await {
        for (status, count) in done.unwrap() {
            *statuses.entry(status).or_default() += count;
        }
    }
    println!("seed {seed}: {requests} requests, statuses {statuses:?}");
    assert!(statuses.get(&200).copied().unwrap_or(0) > requests / 4);
    assert!(statuses.get(&400).copied().unwrap_or(0) > 0);
    for seen in origin.seen() {
        assert!(
            matches!(seen.method.as_str(), "GET" | "PUT"),
            "seed {seed}: the origin read a smuggled request: {seen:?}"
        );
        assert!(!seen.target.contains("poison"), "seed {seed}: {seen:?}");
    }
}
