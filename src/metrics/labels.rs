//! Tenant labels: which tenants have a label of their own, for how long,
//! and where the counts of one that loses its label go.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;

use super::{Metrics, SeriesKey};

/// How long a tenant holding a label slot may go unseen before the slot can
/// go to another tenant.
pub(crate) const LABEL_IDLE: Duration = Duration::from_secs(10 * 60);
/// Longest tenant that gets a label of its own.
pub(crate) const MAX_LABEL_LEN: usize = 64;

/// The tenants that have a label of their own.
#[derive(Debug, Default)]
pub(super) struct Labels {
    /// Named in `--tenant-token`: always their own label, never recycled.
    known: HashMap<Box<str>, Arc<str>>,
    /// Any other tenant, at most `tenant_limit` of them at a time.
    slots: HashMap<Box<str>, Slot>,
}

/// A label slot held by a tenant nobody configured.
#[derive(Debug)]
pub(super) struct Slot {
    label: Arc<str>,
    /// When the tenant was last seen, in seconds on [`Metrics::clock`].
    seen: AtomicU64,
}

impl Metrics {
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
    pub(super) fn tenant_label_at(&self, tenant: &str, now: u64) -> Arc<str> {
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
        if !gone.is_empty() {
            // Threads forget the series they counted into lately.
            self.series_generation.fetch_add(1, Ordering::Release);
        }
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
    pub(super) fn is_live(&self, label: &str) -> bool {
        if label == &*self.other || label == &*self.anonymous {
            return true;
        }
        let labels = self.labels.read().unwrap_or_else(|e| e.into_inner());
        labels.known.contains_key(label) || labels.slots.contains_key(label)
    }
}

impl Labels {
    /// The label of a known tenant or of one holding a slot (noting that it
    /// was seen).
    pub(super) fn label(&self, tenant: &str, now: u64) -> Option<Arc<str>> {
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
pub(super) fn is_label(tenant: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The labels folio uses itself: a tenant with that name counts as `other`.
pub(crate) fn is_reserved(tenant: &str) -> bool {
    matches!(tenant, "other" | "-")
}
