//! Rewarming after a purge, for policies that say `rewarm: true`.
//!
//! folio counts requests to such policies' entries (at most [`TRACKED`]
//! entries in [`TRACKED_BYTES`], a rarely requested one forgotten first).
//! Of each it keeps only what its key is made of, never the requester's
//! other headers, address or credentials. After a purge
//! made on this instance, the most requested entries it covered (at most
//! [`REWARM_MAX`]) are fetched again, [`REWARM_CONCURRENCY`] at a time, and
//! stored, so the next user does not pay the miss. Other instances find the
//! new entries in L2.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::info;

use super::State;
use super::fill::{Fill, refetch};
use crate::invalidation::{Covered, Mark, Tags};
use crate::key::CacheKey;

/// Entries remembered across all rewarm policies.
pub(crate) const TRACKED: usize = 1024;
/// Bytes the remembered fills may hold together.
pub(crate) const TRACKED_BYTES: usize = 1 << 20;
/// Entries refetched after one purge.
pub(crate) const REWARM_MAX: usize = 32;
/// Refetches under way at once.
pub(crate) const REWARM_CONCURRENCY: usize = 4;
/// Remembered entries compared to pick one to forget: the least requested
/// of a few at random, so remembering costs the same however many there are.
const EVICTION_SAMPLE: usize = 8;

/// The most requested entries of rewarm policies.
#[derive(Debug, Default)]
pub(crate) struct Hot {
    set: Mutex<HotSet>,
}

#[derive(Debug, Default)]
struct HotSet {
    /// Where each key's slot is in `slots`.
    index: HashMap<CacheKey, usize>,
    slots: Vec<Slot>,
    bytes: usize,
    /// xorshift state for sampling.
    seed: u64,
}

#[derive(Debug)]
struct Slot {
    key: CacheKey,
    hits: u64,
    fill: Arc<Fill>,
    bytes: usize,
}

impl HotSet {
    fn random(&mut self, below: usize) -> usize {
        let mut x = self.seed.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        usize::try_from(x % below.max(1) as u64).unwrap_or(0)
    }

    /// Forgets the least requested of a few slots taken at random.
    fn evict_one(&mut self) {
        if self.slots.is_empty() {
            return;
        }
        let mut coldest = self.random(self.slots.len());
        for _ in 1..EVICTION_SAMPLE.min(self.slots.len()) {
            let other = self.random(self.slots.len());
            if self.slots[other].hits < self.slots[coldest].hits {
                coldest = other;
            }
        }
        let gone = self.slots.swap_remove(coldest);
        self.index.remove(&gone.key);
        self.bytes = self.bytes.saturating_sub(gone.bytes);
        if let Some(moved) = self.slots.get(coldest) {
            self.index.insert(moved.key, coldest);
        }
    }
}

impl Hot {
    /// Counts one request for `key`; `fill` describes how to fetch it again.
    /// Constant time: a known key is counted, a new one may forget one.
    pub(crate) fn touch(&self, key: CacheKey, fill: impl FnOnce() -> Fill) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&at) = set.index.get(&key) {
            set.slots[at].hits = set.slots[at].hits.saturating_add(1);
            return;
        }
        let fill = fill();
        let bytes = fill.weight();
        if bytes > TRACKED_BYTES / 16 {
            return; // one fill may not crowd out the rest
        }
        while !set.slots.is_empty()
            && (set.slots.len() >= TRACKED || set.bytes + bytes > TRACKED_BYTES)
        {
            set.evict_one();
        }
        let at = set.slots.len();
        set.slots.push(Slot {
            key,
            hits: 1,
            fill: Arc::new(fill),
            bytes,
        });
        set.index.insert(key, at);
        set.bytes += bytes;
    }

    /// How many entries, and how many bytes of fills, are remembered.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        let set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        (set.slots.len(), set.bytes)
    }

    /// The most requested tracked entries any of `marks` covers.
    fn covered_by(&self, marks: &[Mark]) -> Vec<Arc<Fill>> {
        let set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        let mut covered: Vec<(u64, Arc<Fill>)> = set
            .slots
            .iter()
            .filter(|slot| {
                let what = Covered {
                    tags: Tags::Listed(&slot.fill.tags),
                    path: &slot.fill.path,
                    key: &slot.key,
                };
                marks
                    .iter()
                    .any(|mark| mark.covers(&slot.fill.tenant, &what))
            })
            .map(|slot| (slot.hits, Arc::clone(&slot.fill)))
            .collect();
        covered.sort_by_key(|(hits, _)| std::cmp::Reverse(*hits));
        covered
            .into_iter()
            .take(REWARM_MAX)
            .map(|(_, fill)| fill)
            .collect()
    }
}

/// Refetches, in the background, what a purge just made on this instance
/// took from the rewarm policies.
pub(crate) fn after_purge(state: &Arc<State>, marks: &[Mark]) {
    let fills = state.hot.covered_by(marks);
    if fills.is_empty() {
        return;
    }
    let state = Arc::clone(state);
    tokio::spawn(async move {
        // A fill must start after the purge's microsecond, or it would be purged too.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let count = fills.len();
        let permits = Arc::new(Semaphore::new(REWARM_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for fill in fills {
            let (state, permits) = (Arc::clone(&state), Arc::clone(&permits));
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                refetch(&state, &fill).await
            });
        }
        let mut stored = 0;
        while let Some(done) = tasks.join_next().await {
            stored += usize::from(done.unwrap_or(false));
        }
        info!(count, stored, "rewarmed entries after a purge");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembering_is_bounded_in_entries_and_bytes() {
        let hot = Hot::default();
        for i in 0..3 * TRACKED {
            let path = format!("/p/{i}");
            let fill = Fill::for_test(&path, 0);
            hot.touch(fill.primary_key(), || fill);
        }
        let (entries, bytes) = hot.size();
        assert!(entries <= TRACKED, "{entries}");
        assert!(bytes <= TRACKED_BYTES, "{bytes}");

        let big = Hot::default();
        for i in 0..TRACKED {
            let fill = Fill::for_test(&format!("/p/{i}"), 8 << 10);
            big.touch(fill.primary_key(), || fill);
        }
        let (entries, bytes) = big.size();
        assert!(bytes <= TRACKED_BYTES, "{bytes}");
        assert!(entries < TRACKED, "8 KiB fills fill the byte budget first");
    }

    #[test]
    fn a_requested_entry_outlives_rarely_requested_ones() {
        let hot = Hot::default();
        let popular = Fill::for_test("/popular", 0);
        let key = popular.primary_key();
        hot.touch(key, || popular);
        for _ in 0..100 {
            hot.touch(key, || unreachable!("known keys are only counted"));
        }
        for i in 0..4 * TRACKED {
            let fill = Fill::for_test(&format!("/p/{i}"), 0);
            hot.touch(fill.primary_key(), || fill);
        }
        let set = hot.set.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(set.index.contains_key(&key));
    }
}
