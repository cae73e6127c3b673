//! Counters and histograms, rendered in the Prometheus text format.
//!
//! Hand-rolled rather than a registry crate because the label sets are
//! fixed and small: a request touches one read-locked map lookup and a few
//! atomic adds, and allocates nothing. Label cardinality is bounded: the
//! endpoint label is the policy's name (never the raw path), and the tenant
//! label is one of a bounded set (see [`Metrics::tenant_label`]).
//!
//! Tenant values come from clients, so nobody may claim a label for good:
//! tenants named in `--tenant-token` always have theirs; any other tenant
//! gets one of `--metrics-tenants` slots while one is free, and a slot whose
//! tenant has not been seen for [`LABEL_IDLE`] goes to the next newcomer
//! (its counts move to `other`). Values outside `[A-Za-z0-9._-]`, or longer
//! than [`MAX_LABEL_LEN`], are never a label: they count as `other`.

use rustc_hash::FxHashMap as HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What a request came to, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Result {
    Hit,
    Miss,
    Stale,
    Bypass,
    Error,
}

impl Result {
    const ALL: [Self; 5] = [
        Self::Hit,
        Self::Miss,
        Self::Stale,
        Self::Bypass,
        Self::Error,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Bypass => "bypass",
            Self::Error => "error",
        }
    }
}

/// Where the answer came from, as the `layer` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    L1,
    L2,
    Upstream,
}

impl Layer {
    const ALL: [Self; 3] = [Self::L1, Self::L2, Self::Upstream];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::Upstream => "upstream",
        }
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The upper bound of the bucket holding quantile `q` (0..1), in seconds.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let target = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= target {
                return BUCKETS[i];
            }
        }
        f64::INFINITY
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Requests of one endpoint and tenant, by result and layer.
#[derive(Debug, Default)]
pub(crate) struct Series {
    counts: [[AtomicU64; 3]; 5],
}

impl Series {
    pub(crate) fn get(&self, result: Result, layer: Layer) -> u64 {
        self.counts[result as usize][layer as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn total(&self, result: Result) -> u64 {
        Layer::ALL.iter().map(|l| self.get(result, *l)).sum()
    }
}

type SeriesKey = (Arc<str>, Arc<str>);
/// `(tenant, path)` of the top-paths tracker.
type PathKey = (Arc<str>, Box<str>);

/// Totals at one moment, for rates over the last minute.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Totals {
    pub(crate) at: Option<std::time::Instant>,
    pub(crate) by_result: [u64; 5],
}

impl Totals {
    pub(crate) fn requests(&self) -> u64 {
        self.by_result.iter().sum()
    }

    pub(crate) fn get(&self, result: Result) -> u64 {
        self.by_result[result as usize]
    }
}

/// Samples kept for rates: one every [`SAMPLE_EVERY`], a minute's worth.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const SAMPLES: usize = 13;
/// One request in this many is counted in the top paths.
const PATH_SAMPLING: u64 = 8;
/// Paths remembered for the top list.
const TOP_PATHS: usize = 256;

/// How long a tenant holding a label slot may go unseen before the slot can
/// go to another tenant.
pub(crate) const LABEL_IDLE: Duration = Duration::from_secs(10 * 60);
/// Longest tenant that gets a label of its own.
pub(crate) const MAX_LABEL_LEN: usize = 64;

/// The tenants that have a label of their own.
#[derive(Debug, Default)]
struct Labels {
    /// Named in `--tenant-token`: always their own label, never recycled.
    known: HashMap<Box<str>, Arc<str>>,
    /// Any other tenant, at most `tenant_limit` of them at a time.
    slots: HashMap<Box<str>, Slot>,
}

/// A label slot held by a tenant nobody configured.
#[derive(Debug)]
struct Slot {
    label: Arc<str>,
    /// When the tenant was last seen, in seconds on [`Metrics::clock`].
    seen: AtomicU64,
}

/// Every metric folio keeps.
#[derive(Debug)]
pub(crate) struct Metrics {
    series: RwLock<HashMap<SeriesKey, Arc<Series>>>,
    labels: RwLock<Labels>,
    other: Arc<str>,
    anonymous: Arc<str>,
    tenant_limit: usize,
    /// Where label slots' times count from.
    clock: std::time::Instant,
    /// Seconds on `clock` at the last sample.
    coarse_secs: AtomicU64,
    /// No slot can be idle before then (seconds on `clock`): spares a flood
    /// of new tenants the write lock while every slot is busy.
    next_recycle: AtomicU64,
    /// Request duration by result.
    pub(crate) durations: [Histogram; 5],
    pub(crate) upstream_latency: Histogram,
    pub(crate) redis_latency: Histogram,
    pub(crate) evictions: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    /// Requests whose handling panicked (each answered with a 500).
    pub(crate) panics: AtomicU64,
    /// Access lines dropped because the log's writer fell behind.
    pub(crate) access_log_dropped: AtomicU64,
    pub(crate) l2_errors: AtomicU64,
    /// L2 values that did not open (sealed with a key not held, altered,
    /// moved, or plain where entries must be sealed): each was a miss.
    pub(crate) l2_decrypt_failures: AtomicU64,
    /// Upstream failures: unreachable, timeout, broken body.
    pub(crate) upstream_errors: [AtomicU64; 3],
    /// Purge marks made on this instance, by scope: tag, path, prefix, all, key.
    pub(crate) purges: [AtomicU64; 5],
    samples: std::sync::Mutex<std::collections::VecDeque<Totals>>,
    path_tick: AtomicU64,
    paths: std::sync::Mutex<HashMap<PathKey, u64>>,
}

/// The names of `upstream_errors`' kinds and `purges`' scopes, in order.
pub(crate) const UPSTREAM_ERROR_KINDS: [&str; 3] = ["unreachable", "timeout", "body"];
pub(crate) const PURGE_SCOPES: [&str; 5] = ["tag", "path", "prefix", "all", "key"];

impl Metrics {
    /// Metrics with `tenant_limit` label slots for tenants nobody configured.
    pub(crate) fn new(tenant_limit: usize) -> Self {
        Self {
            series: RwLock::default(),
            labels: RwLock::default(),
            other: Arc::from("other"),
            anonymous: Arc::from("-"),
            tenant_limit,
            clock: std::time::Instant::now(),
            coarse_secs: AtomicU64::new(0),
            next_recycle: AtomicU64::new(0),
            durations: Default::default(),
            upstream_latency: Histogram::default(),
            redis_latency: Histogram::default(),
            evictions: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            access_log_dropped: AtomicU64::new(0),
            l2_errors: AtomicU64::new(0),
            l2_decrypt_failures: AtomicU64::new(0),
            upstream_errors: Default::default(),
            purges: Default::default(),
            samples: Default::default(),
            path_tick: AtomicU64::new(0),
            paths: Default::default(),
        }
    }

    /// Totals over every series now.
    pub(crate) fn totals(&self) -> Totals {
        let mut totals = Totals {
            at: Some(std::time::Instant::now()),
            by_result: [0; 5],
        };
        for (_, series) in self.series() {
            for result in Result::ALL {
                totals.by_result[result as usize] += series.total(result);
            }
        }
        totals
    }

    /// Records the totals now; called every [`SAMPLE_EVERY`].
    pub(crate) fn sample(&self) {
        self.coarse_secs
            .store(self.clock.elapsed().as_secs(), Ordering::Relaxed);
        let totals = self.totals();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(totals);
    }

    /// The oldest sample of the last minute (or `None` before the first).
    pub(crate) fn minute_ago(&self) -> Option<Totals> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .front()
            .copied()
    }

    /// Counts one request in `PATH_SAMPLING` towards the top paths.
    pub(crate) fn sample_path(&self, tenant: &Arc<str>, path: &str) {
        if !self
            .path_tick
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PATH_SAMPLING)
        {
            return;
        }
        let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = paths.get_mut(&(Arc::clone(tenant), path.into())) {
            *count += PATH_SAMPLING;
            return;
        }
        if paths.len() >= TOP_PATHS
            && let Some(coldest) = paths
                .iter()
                .min_by_key(|(_, n)| **n)
                .map(|(k, _)| k.clone())
        {
            paths.remove(&coldest);
        }
        paths.insert((Arc::clone(tenant), path.into()), PATH_SAMPLING);
    }

    /// The most requested paths (estimated from a sample), most first; of
    /// one tenant label only, or of all.
    pub(crate) fn top_paths(
        &self,
        n: usize,
        tenant: Option<&str>,
    ) -> Vec<(Arc<str>, Box<str>, u64)> {
        let paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        let mut top: Vec<_> = paths
            .iter()
            .filter(|((t, _), _)| tenant.is_none_or(|only| **t == *only))
            .map(|((t, p), n)| (Arc::clone(t), p.clone(), *n))
            .collect();
        top.sort_by_key(|(_, _, n)| std::cmp::Reverse(*n));
        top.truncate(n);
        top
    }

    /// The quantile `q` of every request's duration, in seconds.
    pub(crate) fn latency_quantile(&self, q: f64) -> f64 {
        let merged = Histogram::default();
        for h in &self.durations {
            for (i, bucket) in h.buckets.iter().enumerate() {
                merged.buckets[i].fetch_add(bucket.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            merged.count.fetch_add(h.count(), Ordering::Relaxed);
        }
        merged.quantile(q)
    }

    /// Gives these tenants (the ones with a token) a label of their own for
    /// good, outside the slots. Names that are no valid label are skipped:
    /// they count as `other` like any other.
    pub(crate) fn with_known_tenants<'a>(self, tenants: impl IntoIterator<Item = &'a str>) -> Self {
        {
            let mut labels = self.labels.write().unwrap_or_else(|e| e.into_inner());
            for tenant in tenants {
                if is_label(tenant) && !is_reserved(tenant) {
                    labels.known.insert(tenant.into(), Arc::from(tenant));
                } else {
                    tracing::warn!(
                        tenant,
                        "this tenant's metrics count as \"other\": a label is 1 to {MAX_LABEL_LEN} of A-Z a-z 0-9 . _ -"
                    );
                }
            }
        }
        self
    }

    /// The tenant label for `tenant`: `-` for none; its own for a known
    /// tenant or one holding a slot; a free or idle slot for a newcomer;
    /// else `other`.
    pub(crate) fn tenant_label(&self, tenant: &str) -> Arc<str> {
        // A coarse clock, advanced by the sampler: labels idle for minutes
        // are recycled, so a request need not read the time.
        self.tenant_label_at(tenant, self.coarse_secs.load(Ordering::Relaxed))
    }

    /// [`Self::tenant_label`] at `now` (seconds on `clock`).
    fn tenant_label_at(&self, tenant: &str, now: u64) -> Arc<str> {
        if tenant.is_empty() {
            return Arc::clone(&self.anonymous);
        }
        if !is_label(tenant) || is_reserved(tenant) {
            return Arc::clone(&self.other);
        }
        {
            let labels = self.labels.read().unwrap_or_else(|e| e.into_inner());
            if let Some(label) = labels.label(tenant, now) {
                return label;
            }
            // Every slot busy, and none can be idle yet: no write lock.
            if labels.slots.len() >= self.tenant_limit
                && now < self.next_recycle.load(Ordering::Relaxed)
            {
                return Arc::clone(&self.other);
            }
        }
        let mut labels = self.labels.write().unwrap_or_else(|e| e.into_inner());
        if let Some(label) = labels.label(tenant, now) {
            return label;
        }
        if labels.slots.len() >= self.tenant_limit {
            let idle = LABEL_IDLE.as_secs();
            let idlest = labels
                .slots
                .iter()
                .map(|(name, slot)| (slot.seen.load(Ordering::Relaxed), name))
                .min();
            match idlest {
                Some((seen, name)) if now.saturating_sub(seen) >= idle => {
                    let name = name.clone();
                    if let Some(slot) = labels.slots.remove(&name) {
                        self.fold_into_other(&slot.label);
                    }
                }
                idlest => {
                    let free_at = idlest.map_or(u64::MAX, |(seen, _)| seen.saturating_add(idle));
                    self.next_recycle.store(free_at, Ordering::Relaxed);
                    return Arc::clone(&self.other);
                }
            }
        }
        let label: Arc<str> = Arc::from(tenant);
        labels.slots.insert(
            tenant.into(),
            Slot {
                label: Arc::clone(&label),
                seen: AtomicU64::new(now),
            },
        );
        label
    }

    /// Moves the counts of a tenant losing its label to `other`, so totals
    /// never go down. Called with the labels' write lock held (labels, then
    /// series: the one lock order).
    fn fold_into_other(&self, label: &Arc<str>) {
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<SeriesKey> = series
            .keys()
            .filter(|(_, tenant)| tenant == label)
            .cloned()
            .collect();
        for key in gone {
            let Some(old) = series.remove(&key) else {
                continue;
            };
            let into = series.entry((key.0, Arc::clone(&self.other))).or_default();
            for (into, old) in into
                .counts
                .iter()
                .flatten()
                .zip(old.counts.iter().flatten())
            {
                into.fetch_add(old.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    /// Whether `label` is still a tenant label (a slot may have been
    /// recycled while a request of its tenant was in flight).
    fn is_live(&self, label: &str) -> bool {
        if label == &*self.other || label == &*self.anonymous {
            return true;
        }
        let labels = self.labels.read().unwrap_or_else(|e| e.into_inner());
        labels.known.contains_key(label) || labels.slots.contains_key(label)
    }

    /// Counts one request of `endpoint` (a policy name) and `tenant` (a
    /// label from [`Self::tenant_label`]).
    pub(crate) fn request(
        &self,
        endpoint: &Arc<str>,
        tenant: &Arc<str>,
        result: Result,
        layer: Layer,
        took: Duration,
    ) {
        let key = (Arc::clone(endpoint), Arc::clone(tenant));
        let series = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let series = match series {
            Some(series) => series,
            None => {
                // A new series: never for a label that has just been recycled,
                // or the series of departed tenants would pile up.
                let key = if self.is_live(&key.1) {
                    key
                } else {
                    (key.0, Arc::clone(&self.other))
                };
                Arc::clone(
                    self.series
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(key)
                        .or_default(),
                )
            }
        };
        series.counts[result as usize][layer as usize].fetch_add(1, Ordering::Relaxed);
        self.durations[result as usize].observe(took);
    }

    /// Every series, for stats and rendering.
    pub(crate) fn series(&self) -> Vec<(SeriesKey, Arc<Series>)> {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = series
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The Prometheus text exposition; `gauges` are read at scrape time.
    pub(crate) fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP folio_requests_total Requests by endpoint (policy), tenant, result and layer.\n");
        out.push_str("# TYPE folio_requests_total counter\n");
        for ((endpoint, tenant), series) in self.series() {
            for result in Result::ALL {
                for layer in Layer::ALL {
                    let n = series.get(result, layer);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "folio_requests_total{{endpoint=\"{}\",tenant=\"{}\",result=\"{}\",layer=\"{}\"}} {n}",
                            escape(&endpoint),
                            escape(&tenant),
                            result.as_str(),
                            layer.as_str()
                        );
                    }
                }
            }
        }
        out.push_str("# HELP folio_request_duration_seconds Time to answer, by result.\n");
        out.push_str("# TYPE folio_request_duration_seconds histogram\n");
        for result in Result::ALL {
            let labels = format!("result=\"{}\"", result.as_str());
            self.durations[result as usize].render(
                &mut out,
                "folio_request_duration_seconds",
                &labels,
            );
        }
        out.push_str(
            "# HELP folio_upstream_duration_seconds Time to the upstream's response headers.\n",
        );
        out.push_str("# TYPE folio_upstream_duration_seconds histogram\n");
        self.upstream_latency
            .render(&mut out, "folio_upstream_duration_seconds", "");
        out.push_str("# HELP folio_redis_duration_seconds Time of one Redis (L2) command.\n");
        out.push_str("# TYPE folio_redis_duration_seconds histogram\n");
        self.redis_latency
            .render(&mut out, "folio_redis_duration_seconds", "");
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "folio_evictions_total",
            "L1 entries evicted for room.",
            self.evictions.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_coalesced_total",
            "Requests answered by another request's fetch.",
            self.coalesced.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_panics_total",
            "Requests whose handling panicked (a bug; each got a 500).",
            self.panics.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_access_log_dropped_total",
            "Access lines dropped because the log's output could not keep up.",
            self.access_log_dropped.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_l2_errors_total",
            "Redis (L2) commands that failed or timed out.",
            self.l2_errors.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_l2_decrypt_failures_total",
            "Redis (L2) values that did not open with the encryption keys (each was a miss).",
            self.l2_decrypt_failures.load(Ordering::Relaxed),
        );
        out.push_str("# HELP folio_upstream_errors_total Upstream failures by kind.\n# TYPE folio_upstream_errors_total counter\n");
        for (i, kind) in UPSTREAM_ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "folio_upstream_errors_total{{kind=\"{kind}\"}} {}",
                self.upstream_errors[i].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP folio_purges_total Purge marks made on this instance, by scope.\n# TYPE folio_purges_total counter\n");
        for (i, scope) in PURGE_SCOPES.iter().enumerate() {
            let _ = writeln!(
                out,
                "folio_purges_total{{scope=\"{scope}\"}} {}",
                self.purges[i].load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

impl Labels {
    /// The label of a known tenant or of one holding a slot (noting that it
    /// was seen).
    fn label(&self, tenant: &str, now: u64) -> Option<Arc<str>> {
        if let Some(label) = self.known.get(tenant) {
            return Some(Arc::clone(label));
        }
        let slot = self.slots.get(tenant)?;
        // Most requests find it already noted this second: no shared write.
        if slot.seen.load(Ordering::Relaxed) != now {
            slot.seen.store(now, Ordering::Relaxed);
        }
        Some(Arc::clone(&slot.label))
    }
}

/// Whether a tenant may be a label as it is: 1 to [`MAX_LABEL_LEN`] of
/// `A-Z a-z 0-9 . _ -`, so a label is never markup, quotes or escapes.
fn is_label(tenant: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The labels folio uses itself: a tenant with that name counts as `other`.
fn is_reserved(tenant: &str) -> bool {
    matches!(tenant, "other" | "-")
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(metrics: &Metrics, tenant: &str) {
        let endpoint: Arc<str> = Arc::from("/p/{id}");
        let label = metrics.tenant_label(tenant);
        metrics.request(&endpoint, &label, Result::Hit, Layer::L1, Duration::ZERO);
    }

    #[test]
    fn the_anonymous_tenant_has_its_own_label_outside_the_slots() {
        let metrics = Metrics::new(1);
        for tenant in ["", "", "a", "b"] {
            count(&metrics, tenant);
        }
        let text = metrics.render(&[]);
        assert!(
            text.contains("tenant=\"-\",result=\"hit\",layer=\"l1\"} 2"),
            "{text}"
        );
        assert!(text.contains("tenant=\"a\""), "{text}");
        assert!(text.contains("tenant=\"other\""), "{text}");
    }

    #[test]
    fn known_tenants_keep_their_label_when_strangers_took_every_slot() {
        let metrics = Metrics::new(2).with_known_tenants(["acme", "globex"]);
        for i in 0..50 {
            count(&metrics, &format!("squatter{i}"));
        }
        assert_eq!(&*metrics.tenant_label("acme"), "acme");
        assert_eq!(&*metrics.tenant_label("globex"), "globex");
        assert_eq!(&*metrics.tenant_label("squatter1"), "squatter1");
        assert_eq!(&*metrics.tenant_label("squatter2"), "other");
    }

    #[test]
    fn only_plain_names_become_labels() {
        let metrics = Metrics::new(100).with_known_tenants(["<b>known</b>"]);
        let long = "x".repeat(MAX_LABEL_LEN + 1);
        for hostile in [
            "<img src=x onerror=alert(1)>",
            "a\"b",
            "a\\b",
            "a b",
            "caf\u{e9}",
            "other",
            "-",
            "<b>known</b>",
            long.as_str(),
        ] {
            assert_eq!(&*metrics.tenant_label(hostile), "other", "{hostile:?}");
        }
        let longest = "x".repeat(MAX_LABEL_LEN);
        for plain in ["acme", "acme.example.com", "t_1-2", longest.as_str()] {
            assert_eq!(&*metrics.tenant_label(plain), plain);
        }
    }

    #[test]
    fn an_idle_slot_goes_to_a_newcomer_and_its_counts_to_other() {
        let metrics = Metrics::new(2);
        let endpoint: Arc<str> = Arc::from("/p/{id}");
        let idle = LABEL_IDLE.as_secs();
        let at = |tenant: &str, now: u64| {
            let label = metrics.tenant_label_at(tenant, now);
            metrics.request(&endpoint, &label, Result::Hit, Layer::L1, Duration::ZERO);
            label
        };
        assert_eq!(&*at("quiet", 0), "quiet");
        assert_eq!(&*at("busy", 0), "busy");
        assert_eq!(&*at("late", 10), "other", "every slot is held");
        assert_eq!(&*at("busy", idle - 1), "busy");
        assert_eq!(&*at("late", idle - 1), "other", "nobody is idle yet");
        assert_eq!(&*at("late", idle), "late", "quiet's slot was idle");
        assert_eq!(&*at("quiet", idle), "other", "and quiet lost it");
        assert_eq!(&*at("busy", idle), "busy", "the busy tenant kept its own");

        let text = metrics.render(&[]);
        assert!(!text.contains("tenant=\"quiet\""), "{text}");
        assert!(
            text.contains("tenant=\"other\",result=\"hit\",layer=\"l1\"} 4"),
            "quiet's count moved to other: {text}"
        );
        assert_eq!(metrics.totals().requests(), 8, "nothing lost");
    }

    #[test]
    fn a_request_finishing_after_its_label_was_recycled_counts_as_other() {
        let metrics = Metrics::new(1);
        let endpoint: Arc<str> = Arc::from("/p/{id}");
        let first = metrics.tenant_label_at("first", 0);
        assert_eq!(
            &*metrics.tenant_label_at("second", LABEL_IDLE.as_secs()),
            "second"
        );
        metrics.request(&endpoint, &first, Result::Hit, Layer::L1, Duration::ZERO);
        let text = metrics.render(&[]);
        assert!(!text.contains("tenant=\"first\""), "{text}");
        assert!(text.contains("tenant=\"other\""), "{text}");
    }

    #[test]
    fn tenants_beyond_the_limit_fold_into_other() {
        let metrics = Metrics::new(2);
        let endpoint: Arc<str> = Arc::from("/p/{id}");
        for tenant in ["a", "b", "c", "d", "a"] {
            metrics.request(
                &endpoint,
                &metrics.tenant_label(tenant),
                Result::Hit,
                Layer::L1,
                Duration::from_millis(1),
            );
        }
        let text = metrics.render(&[]);
        assert!(
            text.contains("tenant=\"a\",result=\"hit\",layer=\"l1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tenant=\"other\",result=\"hit\",layer=\"l1\"} 2"),
            "{text}"
        );
        assert!(!text.contains("tenant=\"c\""));
    }

    #[test]
    fn histograms_are_cumulative_and_quantiles_pick_buckets() {
        let h = Histogram::default();
        for ms in [1, 1, 1, 30] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.001\"} 3"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4"), "{out}");
        assert!(out.contains("x_count 4"));
        assert_eq!(h.quantile(0.5), 0.001);
        assert_eq!(h.quantile(0.99), 0.05);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
