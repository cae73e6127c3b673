//! L1: the in-process tier, bounded in bytes.
//!
//! quick_cache (sharded S3-FIFO, scan resistant like moka's TinyLFU) keeps
//! an entry in a 96-byte slot of a slab, the `Entry` (a buffer and four
//! offsets) inline, where moka kept about 500 bytes per entry (an `Arc`'d
//! key, deque and timer-wheel nodes); and a hit takes a shard's read lock
//! instead of queueing a record for batched housekeeping. With 1 KB answers
//! that was a third of the memory.
//! It has no expiry of its own: whether an entry may answer a request is
//! decided on read from the entry's own timestamps (so L1 and L2 agree),
//! and an entry past every window is dropped when read or evicted for room.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use super::entry::Entry;
use crate::key::CacheKey;
use crate::metrics::Metrics;

/// Shards never smaller than this: an entry larger than its shard's share
/// of the budget cannot be kept. That covers the default `max_body` (8 MiB)
/// eight times over; a body over 64 MiB (a policy may allow up to 1 GB)
/// fits L1 only with a budget that leaves a shard room for it, and is
/// otherwise kept in L2 alone (counted as an eviction).
const MIN_SHARD_BYTES: u64 = 64 << 20;
/// What an average entry weighs, to size quick_cache's tables up front.
const TYPICAL_ENTRY_BYTES: u64 = 4 << 10;

#[derive(Clone)]
pub(crate) struct L1 {
    cache: Arc<Cache<CacheKey, Entry, ByWeight, DefaultHashBuilder, CountEvictions>>,
    capacity: u64,
}

impl std::fmt::Debug for L1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1")
            .field("entries", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// Weighs an entry by the memory it holds.
#[derive(Clone)]
struct ByWeight;

impl Weighter<CacheKey, Entry> for ByWeight {
    fn weight(&self, _: &CacheKey, entry: &Entry) -> u64 {
        entry.weight().into()
    }
}

/// Counts entries evicted for room (`folio_evictions_total`).
#[derive(Clone)]
struct CountEvictions(Arc<Metrics>);

impl Lifecycle<CacheKey, Entry> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, (): &mut (), _: CacheKey, _: Entry) {
        self.0.evictions.fetch_add(1, Ordering::Relaxed);
    }
}

impl L1 {
    /// An L1 holding at most `capacity` bytes of entries.
    pub(crate) fn new(capacity: u64, metrics: Arc<Metrics>) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
        let shards = usize::try_from(capacity / MIN_SHARD_BYTES)
            .unwrap_or(usize::MAX)
            .clamp(1, parallelism * 4);
        let items = usize::try_from((capacity / TYPICAL_ENTRY_BYTES).max(16)).unwrap_or(usize::MAX);
        let lifecycle = CountEvictions(metrics);
        let hasher = DefaultHashBuilder::default();
        let cache = match OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(capacity)
            .estimated_items_capacity(items)
            .build()
        {
            Ok(options) => Cache::with_options(options, ByWeight, hasher, lifecycle),
            // Not reached (both required settings are given): the defaults.
            Err(_) => Cache::with(items, capacity, ByWeight, hasher, lifecycle),
        };
        // Room for the expected entries up front: growing the tables by
        // doubling would copy them and leave half of each copy unused.
        cache.reserve(items);
        Self {
            cache: Arc::new(cache),
            capacity,
        }
    }

    /// Bytes in use, entries, and the byte budget.
    pub(crate) fn usage(&self) -> (u64, u64, u64) {
        let entries = u64::try_from(self.cache.len()).unwrap_or(u64::MAX);
        (self.cache.weight(), entries, self.capacity)
    }

    /// The entry under `key`, unless it is past every window at `now`
    /// (then it is dropped).
    pub(crate) fn get(&self, key: &CacheKey, now: SystemTime) -> Option<Entry> {
        let entry = self.cache.get(key)?;
        if entry.retain_for(now).is_zero() {
            self.cache
                .remove_if(key, |held| held.shares_buffer_with(&entry));
            return None;
        }
        Some(entry)
    }

    pub(crate) fn insert(&self, key: CacheKey, entry: Entry) {
        self.cache.insert(key, entry);
    }

    /// Removes `key`; whether it was there.
    pub(crate) fn remove(&self, key: &CacheKey) -> bool {
        self.cache.remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::entry::tests::{sample, sample_parts};

    static KILOBYTE: [u8; 1024] = [b'x'; 1024];

    fn key(n: u8) -> CacheKey {
        CacheKey::from_bytes([n; 32])
    }

    #[test]
    fn an_entry_past_every_window_is_not_returned_and_is_dropped() {
        let l1 = L1::new(1 << 20, Arc::new(Metrics::new(1)));
        let entry = sample(b"body");
        l1.insert(key(1), entry.clone());
        let stored_at = sample_parts(b"body").stored_at;
        assert_eq!(
            l1.get(&key(1), stored_at + Duration::from_secs(30)),
            Some(entry),
            "fresh"
        );
        assert!(
            l1.get(&key(1), stored_at + Duration::from_secs(500))
                .is_some(),
            "stale, kept to revalidate"
        );
        assert_eq!(
            l1.get(&key(1), SystemTime::now()),
            None,
            "past every window"
        );
        assert_eq!(l1.usage().1, 0, "and gone");
    }

    #[test]
    fn the_byte_budget_holds_and_evictions_are_counted() {
        let metrics = Arc::new(Metrics::new(1));
        let l1 = L1::new(64 << 10, Arc::clone(&metrics));
        for n in 0..200 {
            l1.insert(key(n), sample(&KILOBYTE));
        }
        let (bytes, entries, capacity) = l1.usage();
        assert!(bytes <= capacity, "{bytes} bytes in a budget of {capacity}");
        assert!(entries > 0 && entries < 200, "{entries} entries");
        assert!(metrics.evictions.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn remove_says_whether_the_key_was_there() {
        let l1 = L1::new(1 << 20, Arc::new(Metrics::new(1)));
        l1.insert(key(3), sample(b"x"));
        assert!(l1.remove(&key(3)));
        assert!(!l1.remove(&key(3)));
    }

    #[test]
    fn a_body_of_half_the_budget_fits_however_many_cores() {
        // Split in one shard per core (or more), 16 MiB would not hold 8.
        let l1 = L1::new(16 << 20, Arc::new(Metrics::new(1)));
        let mut parts = sample_parts(b"");
        parts.body = bytes::Bytes::from(vec![b'x'; 8 << 20]); // the default max_body
        let entry = parts.seal().unwrap_or_else(|| panic!("seals"));
        l1.insert(key(7), entry);
        let stored_at = sample_parts(b"").stored_at;
        assert!(l1.get(&key(7), stored_at).is_some());
    }
}
