//! What operators look at: `/_folio/metrics` (Prometheus text),
//! `/_folio/stats` (the same figures as JSON, per endpoint and tenant, for
//! the dashboard) and `/_folio/health` (checks against thresholds).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::{HealthThresholds, Threshold};
use crate::metrics::{self, Result as Outcome};
use crate::proxy::State;

/// The Prometheus text exposition, with gauges read now.
pub(crate) async fn metrics_text(state: &State) -> String {
    let (bytes, entries, capacity) = state.cache.l1_usage().unwrap_or((0, 0, 0));
    state.metrics.render(&[
        ("folio_l1_bytes", "Bytes of entries in L1.", bytes as f64),
        ("folio_l1_entries", "Entries in L1.", entries as f64),
        (
            "folio_l1_capacity_bytes",
            "L1's byte budget.",
            capacity as f64,
        ),
        (
            "folio_purge_marks",
            "Purge marks held (bounded by the entry lifetime).",
            state.invalidator.marks.len() as f64,
        ),
    ])
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Ok,
    Warning,
    Critical,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// Worse above: critical past the critical level (strictly).
    fn above(value: f64, t: Threshold) -> Self {
        if value > t.critical {
            Self::Critical
        } else if value > t.warning {
            Self::Warning
        } else {
            Self::Ok
        }
    }

    /// Worse below: critical under the critical level (strictly).
    fn below(value: f64, t: Threshold) -> Self {
        if value < t.critical {
            Self::Critical
        } else if value < t.warning {
            Self::Warning
        } else {
            Self::Ok
        }
    }
}

/// Every outcome, in the order of [`metrics::Totals::by_result`].
const OUTCOMES: [Outcome; 6] = [
    Outcome::Hit,
    Outcome::Miss,
    Outcome::Stale,
    Outcome::Bypass,
    Outcome::Error,
    Outcome::Refused,
];

/// Request figures over the last minute (or since start).
struct Window {
    /// Requests folio served (not refused).
    requests: u64,
    hits: u64,
    cacheable: u64,
    errors: u64,
    seconds: f64,
    by_result: [u64; 6],
}

fn last_minute(state: &State) -> Window {
    let now = state.metrics.totals();
    let before = state.metrics.minute_ago().unwrap_or_default();
    let delta = |r: Outcome| now.get(r).saturating_sub(before.get(r));
    let by_result = OUTCOMES.map(delta);
    let seconds = match (before.at, now.at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => state.started.elapsed().as_secs_f64(),
    };
    Window {
        // What clients get refused for asking says nothing of folio's
        // health, and must not dilute its errors either.
        requests: now
            .requests()
            .saturating_sub(before.requests())
            .saturating_sub(delta(Outcome::Refused)),
        hits: delta(Outcome::Hit) + delta(Outcome::Stale),
        cacheable: delta(Outcome::Hit) + delta(Outcome::Stale) + delta(Outcome::Miss),
        errors: delta(Outcome::Error),
        seconds: seconds.max(0.001),
        by_result,
    }
}

/// A health body with its levels alone: the overall status and each
/// check's, none of the figures.
pub(crate) fn levels_only(health: &Value) -> Value {
    let checks: serde_json::Map<String, Value> = health["checks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, check)| (name.clone(), json!({ "status": check["status"] })))
        .collect();
    json!({ "status": health["status"], "checks": checks })
}

/// Redis reachability and the latency of one PING, when L2 is on.
async fn redis_ping(state: &State) -> Option<(bool, f64)> {
    let l2 = state.cache.l2()?;
    let started = Instant::now();
    let ok = l2.bounded::<String>(&redis::cmd("PING")).await.is_ok();
    Some((ok, started.elapsed().as_secs_f64() * 1000.0))
}

/// `(healthy|degraded|unhealthy, body)`: 200 for the first two, 503 for the last.
pub(crate) async fn health(state: &State, t: &HealthThresholds) -> (Level, Value) {
    let window = last_minute(state);
    let mut checks = serde_json::Map::new();
    let mut worst = Level::Ok;
    let mut check = |name: &str, level: Level, detail: Value| {
        worst = worst.max(level);
        let mut detail = detail;
        if let Value::Object(map) = &mut detail {
            map.insert("status".into(), Value::from(level.as_str()));
        }
        checks.insert(name.into(), detail);
    };

    // A rate is judged once it rests on enough requests.
    let mut rate_check =
        |name: &str, part: u64, whole: u64, judge: fn(f64, Threshold) -> Level, limit| {
            let value = ratio(part, whole);
            let judged = whole >= t.min_requests;
            let level = if judged {
                judge(value, limit)
            } else {
                Level::Ok
            };
            check(
                name,
                level,
                json!({ "value": value, "requests": whole, "judged": judged }),
            );
        };
    rate_check(
        "hit_rate",
        window.hits,
        window.cacheable,
        Level::below,
        t.hit_rate,
    );
    rate_check(
        "error_rate",
        window.errors,
        window.requests,
        Level::above,
        t.error_rate,
    );

    match redis_ping(state).await {
        None => check("redis", Level::Ok, json!({ "configured": false })),
        Some((reachable, latency_ms)) => {
            // L2 fails open: without Redis folio still serves, so at worst degraded.
            let level = if reachable {
                Level::above(latency_ms, t.redis_latency_ms)
            } else {
                Level::Warning
            };
            check(
                "redis",
                level,
                json!({ "configured": true, "reachable": reachable, "latency_ms": latency_ms }),
            );
        }
    }

    match state.invalidator.listener_status() {
        None => check("invalidation", Level::Ok, json!({ "configured": false })),
        Some(listener) => {
            // Not subscribed: purges made on other instances may not reach
            // this one, which may then serve purged entries.
            let level = if listener.current() {
                Level::Ok
            } else {
                Level::Warning
            };
            check(
                "invalidation",
                level,
                json!({
                    "configured": true,
                    "subscribed": listener.subscribed,
                    "lag_ms": listener.lag.map(|lag| lag.as_millis() as u64),
                    "last_full_replay": {
                        "marks": listener.full_replay_marks,
                        "ms": listener.full_replay_ms,
                    },
                }),
            );
        }
    }

    let upstream = state.upstream.reachable(Duration::from_secs(1)).await;
    let level = if upstream { Level::Ok } else { Level::Critical };
    check("upstream", level, json!({ "reachable": upstream }));

    match state.cache.l1_usage() {
        Some((bytes, entries, capacity)) => {
            let fill = ratio(bytes, capacity);
            check(
                "l1",
                Level::above(fill, t.l1_fill),
                json!({ "fill": fill, "bytes": bytes, "entries": entries }),
            );
        }
        None => check("l1", Level::Ok, json!({ "enabled": false })),
    }

    let status = match worst {
        Level::Ok => "healthy",
        Level::Warning => "degraded",
        Level::Critical => "unhealthy",
    };
    (worst, json!({ "status": status, "checks": checks }))
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The figures the dashboard shows, per endpoint and tenant: of every
/// tenant, or of `tenant` only (a tenant token's view: its own rows and
/// totals; the latency, L1 and per-second rates, which count every
/// tenant's requests and entries, are left out; Redis is the instance's).
pub(crate) async fn stats(state: &State, tenant: Option<&str>) -> Value {
    let window = last_minute(state);
    let results = ["hit", "miss", "stale", "bypass", "error", "refused"];
    let series: Vec<_> = state
        .metrics
        .series()
        .into_iter()
        .filter(|((_, label), _)| tenant.is_none_or(|only| **label == *only))
        .collect();
    let endpoints: Vec<Value> = series
        .iter()
        .map(|((endpoint, tenant), series)| {
            let count = |r| series.total(r);
            let cacheable = count(Outcome::Hit) + count(Outcome::Stale) + count(Outcome::Miss);
            json!({
                "endpoint": &**endpoint,
                "tenant": &**tenant,
                "hit": count(Outcome::Hit),
                "miss": count(Outcome::Miss),
                "stale": count(Outcome::Stale),
                "bypass": count(Outcome::Bypass),
                "error": count(Outcome::Error),
                "refused": count(Outcome::Refused),
                "hit_ratio": ratio(count(Outcome::Hit) + count(Outcome::Stale), cacheable),
            })
        })
        .collect();
    let totals = match tenant {
        None => state.metrics.totals(),
        Some(_) => {
            let mut totals = metrics::Totals::default();
            for (_, series) in &series {
                for (i, total) in totals.by_result.iter_mut().enumerate() {
                    *total += series.total(OUTCOMES[i]);
                }
            }
            totals
        }
    };
    let mut by_result = serde_json::Map::new();
    let mut rates = serde_json::Map::new();
    for (i, name) in results.iter().enumerate() {
        by_result.insert((*name).into(), Value::from(totals.by_result[i]));
        rates.insert(
            (*name).into(),
            Value::from(window.by_result[i] as f64 / window.seconds),
        );
    }
    let (bytes, entries, capacity) = state.cache.l1_usage().unwrap_or((0, 0, 0));
    let redis = match redis_ping(state).await {
        None => json!({ "configured": false }),
        Some((reachable, latency_ms)) => {
            json!({ "configured": true, "reachable": reachable, "latency_ms": latency_ms })
        }
    };
    let top: Vec<Value> = state
        .metrics
        .top_paths(10, tenant)
        .into_iter()
        .map(|(tenant, path, n)| json!({ "tenant": &*tenant, "path": &*path, "requests": n }))
        .collect();
    json!({
        "tenant": tenant,
        "uptime_s": state.started.elapsed().as_secs(),
        "totals": by_result,
        "hit_ratio": ratio(totals.get(Outcome::Hit) + totals.get(Outcome::Stale),
            totals.get(Outcome::Hit) + totals.get(Outcome::Stale) + totals.get(Outcome::Miss)),
        "rates_per_s": if tenant.is_none() { Value::Object(rates) } else { Value::Null },
        // The instance's figures count every tenant's requests and entries:
        // a tenant's view leaves them out.
        "latency_ms": if tenant.is_none() { json!({
            "p50": state.metrics.latency_quantile(0.5) * 1000.0,
            "p99": state.metrics.latency_quantile(0.99) * 1000.0,
        }) } else { Value::Null },
        "l1": if tenant.is_none() {
            json!({ "bytes": bytes, "entries": entries, "capacity": capacity })
        } else { Value::Null },
        "redis": redis,
        "endpoints": endpoints,
        "top_paths": top,
        "sample_every_s": metrics::SAMPLE_EVERY.as_secs(),
    })
}
