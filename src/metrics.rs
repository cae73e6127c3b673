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
//! tenant has not been seen for [`LABEL_IDLE`](labels::LABEL_IDLE) goes to the next newcomer
//! (its counts move to `other`). Values outside `[A-Za-z0-9._-]`, or longer
//! than [`MAX_LABEL_LEN`](labels::MAX_LABEL_LEN), are never a label: they count as `other`.

use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

mod histogram;
mod labels;
mod lately;
mod render;

pub(crate) use histogram::Histogram;

use labels::Labels;
pub(crate) use labels::is_reserved as is_reserved_label;

/// What a request came to, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Result {
    Hit,
    Miss,
    Stale,
    Bypass,
    Error,
    /// folio answered itself because of what the client asked (a request
    /// it will not read, only-if-cached with nothing stored): neither a
    /// miss nor a failure, so clients cannot move the hit or error rates.
    Refused,
}

impl Result {
    const ALL: [Self; 6] = [
        Self::Hit,
        Self::Miss,
        Self::Stale,
        Self::Bypass,
        Self::Error,
        Self::Refused,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Bypass => "bypass",
            Self::Error => "error",
            Self::Refused => "refused",
        }
    }
}

/// Where the answer came from, as the `layer` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    L1,
    L2,
    Upstream,
    /// Neither a cache nor the upstream: folio's own refusal.
    None,
}

impl Layer {
    const ALL: [Self; 4] = [Self::L1, Self::L2, Self::Upstream, Self::None];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::Upstream => "upstream",
            Self::None => "none",
        }
    }
}

/// Requests of one endpoint and tenant, by result and layer.
#[derive(Debug, Default)]
pub(crate) struct Series {
    counts: [[AtomicU64; 4]; 6],
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
    pub(crate) by_result: [u64; 6],
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
/// The id of the next `Metrics` made.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

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
    pub(crate) durations: [Histogram; 6],
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
    /// This `Metrics` among all in the process, for `lately`.
    id: u64,
    /// Bumped whenever a series is folded away (see `lately`).
    series_generation: AtomicU64,
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
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            series_generation: AtomicU64::new(0),
            paths: Default::default(),
        }
    }

    /// Totals over every series now.
    pub(crate) fn totals(&self) -> Totals {
        let mut totals = Totals {
            at: Some(std::time::Instant::now()),
            by_result: [0; 6],
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

    /// The quantile `q` of the duration of every request folio served (not
    /// refused), in seconds.
    pub(crate) fn latency_quantile(&self, q: f64) -> f64 {
        let merged = Histogram::default();
        // Refusals take microseconds and are the clients' to send: a flood
        // of them would pull the latency of what folio serves down.
        let served = Result::ALL.iter().filter(|r| **r != Result::Refused);
        for h in served.map(|r| &self.durations[*r as usize]) {
            for (i, bucket) in h.buckets.iter().enumerate() {
                merged.buckets[i].fetch_add(bucket.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            merged.count.fetch_add(h.count(), Ordering::Relaxed);
        }
        merged.quantile(q)
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
        let count = |series: &Series| {
            series.counts[result as usize][layer as usize].fetch_add(1, Ordering::Relaxed);
        };
        let generation = self.series_generation.load(Ordering::Acquire);
        if !lately::count_into(self.id, generation, endpoint, tenant, count) {
            let series = self.series_of(endpoint, tenant);
            count(&series);
            lately::note(self.id, generation, endpoint, tenant, &series);
        }
        self.durations[result as usize].observe(took);
    }

    /// The series `endpoint` and `tenant` count into, made if new.
    fn series_of(&self, endpoint: &Arc<str>, tenant: &Arc<str>) -> Arc<Series> {
        let key = (Arc::clone(endpoint), Arc::clone(tenant));
        let series = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        match series {
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
        }
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
}

#[cfg(test)]
mod tests;
