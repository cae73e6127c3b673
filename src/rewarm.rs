//! Rewarming after a purge, for policies that say `rewarm: true`.
//!
//! folio counts requests to such policies' entries (at most
//! [`TRACKED`] entries, the least requested forgotten first). After a purge
//! made on this instance, the most requested entries it covered (at most
//! [`REWARM_MAX`]) are fetched again, [`REWARM_CONCURRENCY`] at a time, and
//! stored, so the next user does not pay the miss. Other instances find the
//! new entries in L2.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::info;

use crate::invalidation::{Covered, Mark, Tags};
use crate::key::CacheKey;
use crate::proxy::{self, Fill, State};

/// Entries remembered across all rewarm policies.
pub(crate) const TRACKED: usize = 1024;
/// Entries refetched after one purge.
pub(crate) const REWARM_MAX: usize = 32;
/// Refetches under way at once.
pub(crate) const REWARM_CONCURRENCY: usize = 4;

/// The most requested entries of rewarm policies.
#[derive(Debug, Default)]
pub(crate) struct Hot {
    entries: Mutex<HashMap<CacheKey, (u64, Arc<Fill>)>>,
}

impl Hot {
    /// Counts one request for `key`; `fill` describes how to fetch it again.
    pub(crate) fn touch(&self, key: CacheKey, fill: impl FnOnce() -> Fill) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((hits, _)) = entries.get_mut(&key) {
            *hits += 1;
            return;
        }
        if entries.len() >= TRACKED
            && let Some(coldest) = entries
                .iter()
                .min_by_key(|(_, (hits, _))| *hits)
                .map(|(k, _)| *k)
        {
            entries.remove(&coldest);
        }
        entries.insert(key, (1, Arc::new(fill())));
    }

    /// The most requested tracked entries any of `marks` covers.
    fn covered_by(&self, marks: &[Mark]) -> Vec<Arc<Fill>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut covered: Vec<(u64, Arc<Fill>)> = entries
            .iter()
            .filter(|(key, (_, fill))| {
                let what = Covered {
                    tags: Tags::Listed(&fill.tags),
                    path: &fill.path,
                    key,
                };
                marks.iter().any(|mark| mark.covers(&fill.tenant, &what))
            })
            .map(|(_, (hits, fill))| (*hits, Arc::clone(fill)))
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
                proxy::refetch(&state, &fill).await
            });
        }
        let mut stored = 0;
        while let Some(done) = tasks.join_next().await {
            stored += usize::from(done.unwrap_or(false));
        }
        info!(count, stored, "rewarmed entries after a purge");
    });
}
