//! The cache tiers behind one face: look up in L1 then L2 (filling L1 from an
//! L2 hit), store in both, remove from both.

pub(crate) mod encryption;
pub(crate) mod entry;
pub(crate) mod forms;
pub(crate) mod l1;
pub(crate) mod l2;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use entry::Entry;
use forms::Forms;
use l1::L1;
use l2::L2;
pub(crate) use l2::{Protection, RedisTarget};

use crate::key::CacheKey;
use crate::metrics::Metrics;

/// The tier that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    L1,
    L2,
}

impl Layer {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "L1",
            Self::L2 => "L2",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Cache {
    l1: Option<L1>,
    l2: Option<L2>,
    forms: Option<Forms>,
    /// Whether this instance holds every purge logged in Redis: until it
    /// has replayed the log, an entry in L2 may be one purged while it was
    /// not listening (purges leave marks, they do not delete), so L2 is
    /// not read (see `invalidation`).
    shared_current: Arc<AtomicBool>,
}

/// The share (1/n) of L1's budget given to decoded forms of compressed entries.
const FORMS_SHARE: u64 = 16;

impl Cache {
    /// `l1_capacity` 0 turns L1 off; `redis` `None` turns L2 off.
    pub(crate) fn new(
        l1_capacity: u64,
        redis: Option<&RedisTarget>,
        l2_timeout: Duration,
        metrics: &Arc<Metrics>,
        protection: Protection,
    ) -> Result<Self, redis::RedisError> {
        let l1 = (l1_capacity > 0).then(|| L1::new(l1_capacity, Arc::clone(metrics)));
        let l2 = redis
            .map(|target| L2::new(target, l2_timeout, Arc::clone(metrics), protection))
            .transpose()?;
        let forms = (l1_capacity > 0).then(|| Forms::new(l1_capacity / FORMS_SHARE));
        Ok(Self {
            l1,
            l2,
            forms,
            shared_current: Arc::default(),
        })
    }

    /// The entry for `key`, whether fresh or not (the caller decides), and the
    /// tier it came from. Entries past every window are not returned.
    pub(crate) async fn lookup(&self, key: &CacheKey, now: SystemTime) -> Option<(Entry, Layer)> {
        if let Some(l1) = &self.l1
            && let Some(entry) = l1.get(key, now)
        {
            return Some((entry, Layer::L1));
        }
        self.lookup_shared(key, now).await
    }

    /// The entry for `key` in L2 (filling L1 from it), for a key L1 was
    /// just asked for and did not hold: asking L1 again would count the
    /// key twice in its admission.
    pub(crate) async fn lookup_shared(
        &self,
        key: &CacheKey,
        now: SystemTime,
    ) -> Option<(Entry, Layer)> {
        let l2 = self.shared()?;
        // Boxed: a round trip's state would otherwise be carried (and
        // copied as the future moves) by every L1 hit too.
        let entry = Box::pin(l2.get(key)).await?;
        if entry.retain_for(now).is_zero() {
            return None;
        }
        if let Some(l1) = &self.l1 {
            l1.insert(*key, entry.clone());
        }
        Some((entry, Layer::L2))
    }

    /// L2 when it may be read: this instance has applied every logged purge.
    pub(crate) fn shared(&self) -> Option<&L2> {
        self.l2
            .as_ref()
            .filter(|_| self.shared_current.load(Ordering::Acquire))
    }

    /// Whether this instance holds every purge logged in Redis (the
    /// invalidation listener says so after each replay of the whole log,
    /// and takes it back when its subscription drops).
    pub(crate) fn set_shared_current(&self, current: bool) {
        self.shared_current.store(current, Ordering::Release);
    }

    /// The entry for `key` in L1 only (no Redis round trip).
    pub(crate) fn lookup_local(&self, key: &CacheKey, now: SystemTime) -> Option<Entry> {
        self.l1.as_ref()?.get(key, now)
    }

    /// Stores `entry` in L1 now and in L2 in the background.
    pub(crate) fn store(&self, key: CacheKey, entry: Entry, now: SystemTime) {
        let ttl = entry.retain_for(now);
        if ttl.is_zero() {
            return;
        }
        if let Some(l2) = &self.l2 {
            l2.put(&key, &entry, ttl);
        }
        if let Some(l1) = &self.l1 {
            l1.insert(key, entry);
        }
    }

    /// Removes `key` from this instance's L1 only (another instance told us).
    pub(crate) fn remove_local(&self, key: &CacheKey) -> bool {
        match &self.l1 {
            Some(l1) => l1.remove(key),
            None => false,
        }
    }

    /// Removes `key` from L1 and L2; whether any tier held it.
    pub(crate) async fn remove(&self, key: &CacheKey) -> bool {
        let local = self.remove_local(key);
        let shared = match &self.l2 {
            Some(l2) => l2.remove(key).await,
            None => false,
        };
        local || shared
    }

    /// L1's bytes in use, entries and capacity, when L1 is on.
    pub(crate) fn l1_usage(&self) -> Option<(u64, u64, u64)> {
        self.l1.as_ref().map(L1::usage)
    }

    /// Decoded and gzip forms of compressed entries, when L1 is on.
    pub(crate) fn forms(&self) -> Option<&Forms> {
        self.forms.as_ref()
    }

    /// The shared tier, for the invalidation bus.
    pub(crate) fn l2(&self) -> Option<&L2> {
        self.l2.as_ref()
    }

    pub(crate) fn describe(&self) -> String {
        match (&self.l1, &self.l2) {
            (Some(_), Some(_)) => "L1 + L2 (Redis)".into(),
            (Some(_), None) => "L1 only".into(),
            (None, Some(_)) => "L2 (Redis) only".into(),
            (None, None) => "no cache tiers".into(),
        }
    }
}
