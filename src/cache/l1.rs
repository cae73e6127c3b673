//! L1: the in-process tier (moka), bounded in bytes, TinyLFU admission.
//!
//! moka's expiry only reclaims memory: whether an entry may answer a request
//! is decided on read from the entry's own timestamps, so L1 and L2 agree.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::future::Cache;

use super::entry::Entry;
use crate::key::CacheKey;
use crate::metrics::Metrics;
use moka::notification::RemovalCause;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone)]
pub(crate) struct L1 {
    cache: Cache<CacheKey, Arc<Entry>>,
    capacity: u64,
}

/// Keeps each entry until its last stale window closes.
struct UntilUseless;

impl Expiry<CacheKey, Arc<Entry>> for UntilUseless {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(entry.retain_for(SystemTime::now()))
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.retain_for(SystemTime::now()))
    }
}

impl L1 {
    /// An L1 holding at most `capacity` bytes of entries.
    pub(crate) fn new(capacity: u64, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .weigher(|_: &CacheKey, entry: &Arc<Entry>| entry.weight())
            .expire_after(UntilUseless)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    metrics.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self { cache, capacity }
    }

    /// Bytes in use, entries, and the byte budget (after moka's pending
    /// bookkeeping, so the figures are current).
    pub(crate) async fn usage(&self) -> (u64, u64, u64) {
        self.cache.run_pending_tasks().await;
        (
            self.cache.weighted_size(),
            self.cache.entry_count(),
            self.capacity,
        )
    }

    pub(crate) async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.cache.get(key).await
    }

    pub(crate) async fn insert(&self, key: CacheKey, entry: Arc<Entry>) {
        self.cache.insert(key, entry).await;
    }

    /// Removes `key`; whether it was there.
    pub(crate) async fn remove(&self, key: &CacheKey) -> bool {
        self.cache.remove(key).await.is_some()
    }
}
