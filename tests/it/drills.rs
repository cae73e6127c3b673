//! Fault drills: folio under a bounded load while Redis or the upstream
//! fails, checked as a user would see it. Every answer must be the body the
//! origin stamps for the tenant and path asked for; Redis failing must
//! never cost a user an error; the upstream failing may cost a 502/504 (or
//! its own 5xx) only where no stored entry can answer; nothing hangs, and
//! nothing broken is stored.
//!
//! Each drill prints one `DRILL name=… requests=… errors=… kinds=…
//! base_p99_ms=… fault_p99_ms=… recover_ms=…` line (docs/reliability.md
//! explains each figure and records a run). The drills take turns (one
//! lock), so their figures do not include each other's load:
//! `cargo test --test it drills:: -- --nocapture`.

mod load;
mod origin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use self::load::{Ask, Class, Figures, Load, Outcome, Sample};
use self::origin::{FaultyOrigin, Mode, stamp};
use crate::support::{Folio, TestCluster, TestRedis, eventually, get, settings};

/// One drill at a time: the figures are each drill's own.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Eight clients, a millisecond apart each, for at most 20 s or 40,000
/// requests; each drill stops its load well before either.
const LOAD: Load = Load {
    clients: 8,
    max_requests: 40_000,
    limit: Duration::from_secs(20),
    pause: Duration::from_millis(1),
};

const TENANTS: [&str; 2] = ["acme", "globex"];
/// Keys per tenant cached before the fault.
const WARM_KEYS: usize = 20;
/// Keys per tenant first asked for during the fault.
const COLD_KEYS: usize = 20;
/// Pass-through keys per tenant.
const LIVE_KEYS: usize = 10;

fn warm_path(k: usize) -> String {
    format!("/items/{k}")
}

fn cold_path(k: usize) -> String {
    format!("/items/c{k}")
}

fn live_path(k: usize) -> String {
    format!("/live/{k}")
}

/// Asks every instance for every warm key of every tenant, so that each
/// is cached (in L1, and in Redis when there is one).
async fn warm(addrs: &[SocketAddr]) {
    for addr in addrs {
        for tenant in TENANTS {
            for k in 0..WARM_KEYS {
                let path = warm_path(k);
                let got = get(&format!("http://{addr}{path}"), &[("x-tenant-id", tenant)]).await;
                assert_eq!(got.status, 200, "warming {path}: {}", got.text());
                assert_eq!(got.body, stamp(tenant, &path).as_bytes());
            }
        }
    }
}

/// Asks `addr` for `path` as `tenant`, and checks the answer is the right one.
async fn good(addr: SocketAddr, tenant: &str, path: &str) -> crate::support::Got {
    let got = get(&format!("http://{addr}{path}"), &[("x-tenant-id", tenant)]).await;
    assert_eq!(got.status, 200, "{tenant} {path}: {}", got.text());
    assert_eq!(got.body, stamp(tenant, path).as_bytes(), "{tenant} {path}");
    got
}

/// Panics, naming the first offending samples, if any sample fails `ok`.
fn assert_all(figures: &Figures, what: &str, ok: impl Fn(&Sample) -> bool) {
    let bad: Vec<&Sample> = figures.samples.iter().filter(|s| !ok(s)).collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} answers were not; first: {:?}\n{}",
        bad.len(),
        figures.samples.len(),
        &bad[..bad.len().min(5)],
        figures.line()
    );
}

// ===== Redis faults =====

/// An hour, whatever the origin's `max-age=1` says.
const REDIS_POLICY: &str = "\"/items/{id}\":\n  cache_ttl: 1h\n  override_upstream: true\n";

/// What happens to Redis during a drill.
#[derive(Debug, Clone, Copy)]
enum RedisFault {
    /// Killed, then started again (empty) after `down`.
    Killed { down: Duration },
    /// Frozen (`SIGSTOP`) for `frozen`, then let run (`SIGCONT`).
    Stopped { frozen: Duration },
    /// Killed and started again at once, empty.
    RestartedEmpty,
    /// `FLUSHALL`.
    Flushed,
}

/// Half the clients ask instance A, half B, for every warm key of both
/// tenants in turn.
fn shared_key(addrs: [SocketAddr; 2], c: usize, n: usize) -> Ask {
    Ask {
        instance: c % 2,
        addr: addrs[c % 2],
        tenant: TENANTS[(n / 3) % 2],
        path: warm_path((n * 7 + c) % WARM_KEYS),
        class: Class::Warm,
    }
}

/// The longest time B (no L1) went without an answer from Redis.
fn l2_gap(samples: &[Sample]) -> Duration {
    let mut hits: Vec<Duration> = samples
        .iter()
        .filter(|s| s.ask.instance == 1 && s.outcome.is_l2_hit())
        .map(Sample::end)
        .collect();
    hits.sort();
    hits.windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Load before the fault.
const REDIS_LEAD_IN: Duration = Duration::from_millis(500);
/// Load after the fault.
const REDIS_TAIL: Duration = Duration::from_millis(2500);

/// Two instances share a Redis: A with L1 (as deployed), B without (every
/// request of B asks Redis, so B shows what Redis failing costs). Half the
/// clients ask A, half B, for the warm keys of both tenants.
async fn redis_drill(name: &'static str, fault: RedisFault) -> Figures {
    let _turn = TURN.lock().await;
    let origin = FaultyOrigin::start().await;
    let mut redis = TestRedis::start().await;
    let with_l1 = |l1_capacity: u64| {
        let mut settings = settings(origin.uri());
        settings.redis = Some(redis.url.clone());
        settings.l1_capacity = l1_capacity;
        settings
    };
    let (a_settings, b_settings) = (with_l1(64 << 20), with_l1(0));
    let a = Folio::start_with(a_settings, REDIS_POLICY).await;
    let b = Folio::start_with(b_settings, REDIS_POLICY).await;
    warm(&[a.addr]).await;
    eventually(Duration::from_secs(5), "every entry in Redis", || async {
        redis.keys().await.len() >= TENANTS.len() * WARM_KEYS
    })
    .await;
    let first = good(b.addr, "acme", &warm_path(0)).await;
    assert_eq!(first.header("x-cache-layer"), "L2", "{:?}", first.headers);

    let addrs = [a.addr, b.addr];
    let t0 = Instant::now();
    let running = load::start(LOAD, t0, move |c, n| shared_key(addrs, c, n));
    tokio::time::sleep_until(t0 + REDIS_LEAD_IN).await;
    let fault_start = t0.elapsed();
    match fault {
        RedisFault::Killed { down } => {
            redis.kill();
            tokio::time::sleep(down).await;
            redis.restart().await;
        }
        RedisFault::Stopped { frozen } => {
            redis.pause();
            tokio::time::sleep(frozen).await;
            redis.resume();
        }
        RedisFault::RestartedEmpty => redis.restart().await,
        RedisFault::Flushed => redis.flushall().await,
    }
    let fault_end = t0.elapsed();
    tokio::time::sleep(REDIS_TAIL).await;
    let samples = running.stop().await;

    // Recovered: B answers from Redis again.
    let recover = samples
        .iter()
        .filter(|s| s.ask.instance == 1 && s.start >= fault_end && s.outcome.is_l2_hit())
        .map(|s| s.end() - fault_end)
        .min();
    let gap = l2_gap(&samples);
    let figures = Figures {
        name,
        samples,
        fault: (fault_start, fault_end),
        recover,
        extra: vec![("l2_gap_ms", gap.as_millis().to_string())],
    };
    println!("{}", figures.line());
    assert_all(
        &figures,
        "Redis failing: every answer a 200 with the right body",
        |s| s.outcome.is_good(),
    );
    assert!(
        figures.recover.is_some(),
        "B never answered from Redis again within {REDIS_TAIL:?}\n{}",
        figures.line()
    );
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_then_restarted() {
    redis_drill(
        "redis-killed",
        RedisFault::Killed {
            down: Duration::from_secs(1),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_for_three_seconds() {
    let figures = redis_drill(
        "redis-sigstop",
        RedisFault::Stopped {
            frozen: Duration::from_secs(3),
        },
    )
    .await;
    // A frozen Redis costs each request at most the L2 timeout (50 ms), and
    // the breaker skips it after three in a row: nothing waits for Redis.
    let slowest = figures.samples.iter().map(|s| s.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(2),
        "a request waited {slowest:?} for a frozen Redis\n{}",
        figures.line()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_mid_load() {
    redis_drill("redis-restarted-empty", RedisFault::RestartedEmpty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushed_mid_load() {
    redis_drill("redis-flushall", RedisFault::Flushed).await;
}

// ===== Upstream faults =====

/// Entries go stale after a second; a pass-through route streams.
const UPSTREAM_POLICY: &str =
    "\"/items/{id}\":\n  cache_ttl: 1s\n\"/live/{id}\":\n  cache: false\n";

/// The same, with `stale_if_error`, which lets a stale entry answer a 5xx.
const UPSTREAM_POLICY_5XX: &str =
    "\"/items/{id}\":\n  cache_ttl: 1s\n  stale_if_error: 1m\n\"/live/{id}\":\n  cache: false\n";

/// folio's upstream timeout in these drills.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(300);
/// Load before the fault: longer than the TTL, so warm entries are stale
/// (only a stale answer can cover for the upstream) when it begins.
const UPSTREAM_LEAD_IN: Duration = Duration::from_millis(1200);
const UPSTREAM_FAULT: Duration = Duration::from_millis(1500);
const UPSTREAM_TAIL: Duration = Duration::from_secs(2);
/// After the fault, a request may still share the failure of a fetch that
/// began during it (single flight): at most the upstream timeout plus the
/// followers' margin. Past this, every answer must be good.
const SETTLED: Duration = Duration::from_millis(1500);

/// What a drill allows besides a good answer.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    /// Statuses a cold or pass-through key may get during the fault.
    statuses: &'static [u16],
    /// Whether a streamed pass-through may break off (after its head, or
    /// by its connection closing before folio could flush the head).
    aborted: bool,
}

/// One folio (L1 only) in front of the faulty origin, with a 300 ms
/// upstream timeout. The clients ask for warm keys (cached, stale by the
/// time of the fault), cold keys (first asked for during the fault) and
/// pass-through keys.
async fn upstream_drill(name: &'static str, mode: Mode, policy: &str, allowed: Allowed) -> Figures {
    let _turn = TURN.lock().await;
    let origin = FaultyOrigin::start().await;
    let mut settings = settings(origin.uri());
    settings.upstream_timeout = UPSTREAM_TIMEOUT;
    let folio = Folio::start_with(settings, policy).await;
    warm(&[folio.addr]).await;

    let faulty = Arc::new(AtomicBool::new(false));
    let seen_fault = Arc::clone(&faulty);
    let addr = folio.addr;
    let t0 = Instant::now();
    let running = load::start(LOAD, t0, move |c, n| {
        let tenant = TENANTS[(n + c) % 2];
        let (path, class) = match (n + c) % 4 {
            2 if seen_fault.load(Ordering::SeqCst) => {
                (cold_path((n * 3 + c) % COLD_KEYS), Class::Cold)
            }
            3 => (live_path((n + c) % LIVE_KEYS), Class::Live),
            _ => (warm_path((n * 7 + c) % WARM_KEYS), Class::Warm),
        };
        Ask {
            instance: 0,
            addr,
            tenant,
            path,
            class,
        }
    });
    tokio::time::sleep_until(t0 + UPSTREAM_LEAD_IN).await;
    let fault_start = t0.elapsed();
    faulty.store(true, Ordering::SeqCst);
    origin.set(mode);
    tokio::time::sleep(UPSTREAM_FAULT).await;
    origin.set(Mode::Good);
    let fault_end = t0.elapsed();
    tokio::time::sleep(UPSTREAM_TAIL).await;
    let samples = running.stop().await;

    // Recovered: from then on, every answer is good.
    let recover = samples
        .iter()
        .filter(|s| !s.outcome.is_good())
        .map(|s| s.end().saturating_sub(fault_end))
        .max()
        .unwrap_or_default();
    let mut figures = Figures {
        name,
        samples,
        fault: (fault_start, fault_end),
        recover: Some(recover),
        extra: vec![("origin_requests", origin.requests().to_string())],
    };
    let cached_p99 = load::p99(
        figures
            .samples
            .iter()
            .filter(|s| s.ask.class != Class::Live && figures.during_fault(s)),
    );
    figures
        .extra
        .push(("fault_p99_cached_ms", cached_p99.as_millis().to_string()));
    println!("{}", figures.line());

    assert_all(&figures, "an allowed answer for its kind of key", |s| {
        match (&s.outcome, s.ask.class) {
            (Outcome::Good { .. }, _) => true,
            // A stored entry, stale or not, always answers for a warm key.
            (_, Class::Warm) => false,
            (Outcome::Status { status, .. }, Class::Cold | Class::Live) => {
                allowed.statuses.contains(status)
            }
            // A stream cut by the upstream is cut for the client: after
            // the head, or, when the cut comes before folio could flush
            // the head, by closing the connection without an answer.
            (Outcome::Aborted, Class::Live) => allowed.aborted,
            (Outcome::NoAnswer(why), Class::Live) => {
                allowed.aborted && why.contains("closed before message completed")
            }
            _ => false,
        }
    });
    assert_all(&figures, "good once the fault has passed", |s| {
        s.start < fault_end + SETTLED || s.outcome.is_good()
    });
    assert_all(&figures, "errors only while the fault lasts", |s| {
        s.outcome.is_good() || s.end() >= fault_start
    });
    let cold_failed = figures
        .samples
        .iter()
        .any(|s| s.ask.class == Class::Cold && !s.outcome.is_good());
    let stale_served = figures.samples.iter().any(|s| {
        matches!(&s.outcome, Outcome::Good { x_cache, .. } if x_cache == "STALE")
            && figures.during_fault(s)
    });
    assert!(
        cold_failed && stale_served,
        "the fault did not show (cold keys failed: {cold_failed}, stale served: {stale_served})\n{}",
        figures.line()
    );
    // Nothing broken was stored: every key answers well now, the cold
    // ones whose fetches failed included.
    for tenant in TENANTS {
        let paths = (0..COLD_KEYS)
            .map(cold_path)
            .chain((0..WARM_KEYS).map(warm_path))
            .chain((0..LIVE_KEYS).map(live_path));
        for path in paths {
            good(folio.addr, tenant, &path).await;
        }
    }
    figures
}

const GATEWAY_ERRORS: &[u16] = &[502, 504];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_resets_mid_body() {
    let allowed = Allowed {
        statuses: GATEWAY_ERRORS,
        aborted: true,
    };
    upstream_drill("upstream-reset", Mode::Reset, UPSTREAM_POLICY, allowed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_truncates_its_body() {
    let allowed = Allowed {
        statuses: GATEWAY_ERRORS,
        aborted: true,
    };
    upstream_drill(
        "upstream-truncated",
        Mode::Truncate,
        UPSTREAM_POLICY,
        allowed,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answers_garbage() {
    let allowed = Allowed {
        statuses: GATEWAY_ERRORS,
        aborted: false,
    };
    upstream_drill("upstream-garbage", Mode::Garbage, UPSTREAM_POLICY, allowed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_its_timeout() {
    let allowed = Allowed {
        statuses: &[504],
        aborted: false,
    };
    let figures = upstream_drill("upstream-slow", Mode::Slow, UPSTREAM_POLICY, allowed).await;
    // A cached route answers at the timeout (stale or 504), not when the
    // upstream wakes; a pass-through streams the late body as it comes.
    let slowest_cached = figures
        .samples
        .iter()
        .filter(|s| s.ask.class != Class::Live)
        .map(|s| s.took)
        .max()
        .unwrap();
    assert!(
        slowest_cached < UPSTREAM_TIMEOUT * 2 + Duration::from_secs(2),
        "a cached route took {slowest_cached:?}\n{}",
        figures.line()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_5xx_burst() {
    let allowed = Allowed {
        statuses: &[500, 503],
        aborted: false,
    };
    upstream_drill(
        "upstream-5xx",
        Mode::ServerErrors,
        UPSTREAM_POLICY_5XX,
        allowed,
    )
    .await;
}

// ===== Redis Cluster failover =====

const CLUSTER_POLICY: &str =
    "\"/items/{id}\":\n  cache_ttl: 1h\n  override_upstream: true\n  tags: [\"items\"]\n";

/// How long a cluster node may be silent before it is judged failed.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Three masters with a replica each. The master killed is the one that
/// holds the purge log, and it is listed first, so instance B's purge
/// subscription is on it too: its loss costs entries, purges and the
/// subscription at once. A (L1) and B (no L1) keep answering; the replica
/// takes over; B's answers come from Redis again, on every slot; a purge on
/// A reaches B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_master_killed_replica_takes_over() {
    let _turn = TURN.lock().await;
    let mut cluster = TestCluster::start_with_replicas(NODE_TIMEOUT).await;
    let victim = cluster.master_of("folio:v1:purges");
    let replica = cluster.replica_of(victim);
    let mut urls = cluster.urls();
    urls.sort_by_key(|url| !url.ends_with(&format!(":{victim}")));

    let origin = FaultyOrigin::start().await;
    let with_l1 = |l1_capacity: u64| {
        let mut settings = settings(origin.uri());
        settings.redis_cluster.clone_from(&urls);
        settings.l1_capacity = l1_capacity;
        settings
    };
    let a = Folio::start_with(with_l1(64 << 20), CLUSTER_POLICY).await;
    let b = Folio::start_with(with_l1(0), CLUSTER_POLICY).await;
    warm(&[a.addr]).await;
    eventually(
        Duration::from_secs(10),
        "B answers every key from Redis",
        || async {
            for tenant in TENANTS {
                for k in 0..WARM_KEYS {
                    let got = good(b.addr, tenant, &warm_path(k)).await;
                    if got.header("x-cache-layer") != "L2" {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await;
    let index = |port: u16| cluster.ports.iter().position(|p| *p == port).unwrap();
    let (victim_at, replica_at) = (index(victim), index(replica));
    assert!(
        cluster.key_counts()[victim_at] > 0,
        "the victim holds entries"
    );
    eventually(
        Duration::from_secs(5),
        "the replica has the entries",
        || {
            let counts = cluster.key_counts();
            async move { counts[victim_at] == counts[replica_at] }
        },
    )
    .await;
    let hits_before = cluster.keyspace_hits(replica);

    let addrs = [a.addr, b.addr];
    let t0 = Instant::now();
    let running = load::start(LOAD, t0, move |c, n| shared_key(addrs, c, n));
    tokio::time::sleep_until(t0 + Duration::from_secs(1)).await;
    let fault_start = t0.elapsed();
    cluster.kill(victim);
    // An operator purging while the purge log's master is gone.
    let during = a
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["unused"],"tenant":"acme"}"#,
        )
        .await;
    cluster
        .wait_for_promotion(replica, Duration::from_secs(20))
        .await;
    let fault_end = t0.elapsed();
    // Past the breaker's cooldown (1 s) and a slot refresh.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let samples = running.stop().await;

    // Recovered: from then on, every answer of B comes from Redis.
    let recover = samples
        .iter()
        .filter(|s| s.ask.instance == 1 && s.start >= fault_start && !s.outcome.is_l2_hit())
        .map(|s| s.end().saturating_sub(fault_end))
        .max()
        .unwrap_or_default();
    let gap = l2_gap(&samples);
    let mut figures = Figures {
        name: "redis-cluster-failover",
        samples,
        fault: (fault_start, fault_end),
        recover: Some(recover),
        extra: vec![
            ("l2_gap_ms", gap.as_millis().to_string()),
            ("purge_during", during.status.as_u16().to_string()),
        ],
    };

    // Every key of B is an L2 hit again: the promoted replica serves the
    // victim's slots, and folio found it there.
    for tenant in TENANTS {
        for k in 0..WARM_KEYS {
            let got = good(b.addr, tenant, &warm_path(k)).await;
            assert_eq!(
                got.header("x-cache-layer"),
                "L2",
                "{tenant} {} after the failover\n{}",
                warm_path(k),
                figures.line()
            );
        }
    }
    assert!(
        cluster.keyspace_hits(replica) > hits_before,
        "the promoted replica answered no GET"
    );

    // A purge on A reaches B (the log and B's subscription moved).
    let purge = a
        .admin_post(
            "/_folio/purge",
            &[],
            r#"{"tags":["items"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    let purged_at = std::time::Instant::now();
    eventually(
        Duration::from_secs(2),
        "B dropped the purged entry",
        || async { good(b.addr, "acme", &warm_path(1)).await.x_cache() == "MISS" },
    )
    .await;
    figures
        .extra
        .push(("purge_ms", purged_at.elapsed().as_millis().to_string()));
    let other = good(b.addr, "globex", &warm_path(1)).await;
    assert_eq!(
        other.header("x-cache-layer"),
        "L2",
        "another tenant's entry stays"
    );

    println!("{}", figures.line());
    assert_all(
        &figures,
        "a master failing: every answer a 200 with the right body",
        |s| s.outcome.is_good(),
    );
}
