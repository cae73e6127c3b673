//! L1: the in-process tier, bounded in bytes: moka, as the design names it.
//!
//! `moka::sync`, not `moka::future`: a lookup never waits on anything, so a
//! hit stays a plain function call with no future to poll. Entries are
//! weighed by the memory they hold (their encoding plus what moka and the
//! allocator add per entry), and moka's TinyLFU admission keeps a scan of
//! one-off keys from flushing the hot ones.
//! moka is given no expiry: whether an entry may answer a request is
//! decided on read from the entry's own timestamps (so L1 and L2 agree),
//! and an entry past every window is dropped when read or evicted for room.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::sync::Cache;

use super::entry::Entry;
use crate::key::CacheKey;
use crate::metrics::Metrics;

/// What moka keeps beside each entry (its hash-table slot, the `Arc`'d key
/// and value records, the access-order node, its share of the frequency
/// sketch), measured at 100,000 entries (RSS growth with
/// `benches/compare.py --only memory`, less the entries' own blocks):
/// weighed with the entry so the byte budget is a budget of memory, not of
/// payload.
const MOKA_OVERHEAD: u32 = 340;

/// What L1 files an entry under: the first 16 bytes of its [`CacheKey`].
/// moka keeps each key in an `Arc` of its own, which for 32 bytes is a
/// 48-byte block and for 16 a 32-byte one: 31 bytes less per entry,
/// measured. 128 bits of SHA-256 still take 2^128 tries to match a given
/// key (and the entry's tenant is checked on read besides).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct L1Key([u8; 16]);

impl From<&CacheKey> for L1Key {
    fn from(key: &CacheKey) -> Self {
        let mut half = [0u8; 16];
        half.copy_from_slice(&key.bytes()[..16]);
        Self(half)
    }
}

/// Hashes an [`L1Key`] for moka from 8 of its bytes: a key is a SHA-256
/// digest, already uniform, so SipHashing all 16 again (moka's default)
/// would cost every lookup a second hash. The 8 bytes are mixed with a
/// per-process seed through a full-avalanche finalizer: a client who grinds
/// paths until their digests share low bits (which pick the table's slot)
/// does not share low bits of the hash, since it cannot know the seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHash {
    seed: u64,
}

impl KeyHash {
    /// A hasher with a seed of this process's own.
    pub(crate) fn random() -> Self {
        Self {
            seed: std::hash::RandomState::new().hash_one(0u64),
        }
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: self.seed,
            word: 0,
        }
    }
}

/// See [`KeyHash`]. A key hashes as its length, then its bytes; each
/// write is folded in, so the length is a constant and the first 8 bytes
/// of the digest decide the hash.
#[derive(Debug)]
pub(crate) struct KeyHasher {
    seed: u64,
    word: u64,
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.word = self.word.rotate_left(17) ^ u64::from_le_bytes(word);
    }

    /// splitmix64's finalizer: every output bit depends on every input bit.
    fn finish(&self) -> u64 {
        let mut z = self.word ^ self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[derive(Clone)]
pub(crate) struct L1 {
    cache: Cache<L1Key, Entry, KeyHash>,
    capacity: u64,
}

impl std::fmt::Debug for L1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1")
            .field("entries", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl L1 {
    /// An L1 holding at most `capacity` bytes of entries.
    pub(crate) fn new(capacity: u64, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .weigher(|_: &L1Key, entry: &Entry| entry.weight().saturating_add(MOKA_OVERHEAD))
            .eviction_listener(move |_, _, cause| {
                // Replaced and explicitly removed entries are not evictions.
                if cause == RemovalCause::Size {
                    metrics.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build_with_hasher(KeyHash::random());
        Self { cache, capacity }
    }

    /// Bytes in use, entries, and the byte budget. moka counts lazily:
    /// pending inserts and removals are applied first, so the figures are
    /// those of the entries held now.
    pub(crate) fn usage(&self) -> (u64, u64, u64) {
        self.cache.run_pending_tasks();
        (
            self.cache.weighted_size(),
            self.cache.entry_count(),
            self.capacity,
        )
    }

    /// The entry under `key`, unless it is past every window at `now`
    /// (then it is dropped).
    pub(crate) fn get(&self, key: &CacheKey, now: SystemTime) -> Option<Entry> {
        let key = L1Key::from(key);
        let entry = self.cache.get(&key)?;
        if entry.retain_for(now).is_zero() {
            // Only the entry read: one stored meanwhile stays.
            self.cache.entry(key).and_compute_with(|held| match held {
                Some(held) if held.value().shares_buffer_with(&entry) => Op::Remove,
                _ => Op::Nop,
            });
            return None;
        }
        Some(entry)
    }

    pub(crate) fn insert(&self, key: CacheKey, entry: Entry) {
        self.cache.insert(L1Key::from(&key), entry);
    }

    /// Removes `key`; whether it was there.
    pub(crate) fn remove(&self, key: &CacheKey) -> bool {
        self.cache.remove(&L1Key::from(key)).is_some()
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
    fn a_key_hashes_as_its_leading_bytes() {
        let hasher = KeyHash::random();
        let hash = |key: CacheKey| hasher.hash_one(L1Key::from(&key));
        assert_eq!(hash(key(1)), hash(key(1)));
        assert_ne!(hash(key(1)), hash(key(2)));
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        a[0] = 1;
        b[0] = 2;
        assert_ne!(
            hash(CacheKey::from_bytes(a)),
            hash(CacheKey::from_bytes(b)),
            "the first byte counts"
        );
    }

    #[test]
    fn digests_ground_to_share_low_bits_spread_over_the_table() {
        // Keys a client could grind for: the same low 7 bytes, so the same
        // low bits of the word moka would index its table with.
        let hasher = KeyHash::random();
        let slots: std::collections::HashSet<u64> = (0..=255u8)
            .map(|top| {
                let mut bytes = [0u8; 32];
                bytes[7] = top;
                hasher.hash_one(L1Key::from(&CacheKey::from_bytes(bytes))) & 0xffff
            })
            .collect();
        assert!(
            slots.len() > 200,
            "256 keys in {} of 65,536 slots",
            slots.len()
        );
    }

    #[test]
    fn what_moka_keeps_per_entry_stays_in_the_small_size_classes() {
        // moka wraps the key in an `Arc` (32 bytes with 16 of key, 48 with
        // 32) and the value in a record with three words (48 bytes with a
        // value of 24 or less, 64 above): 1 KB products cost 64 bytes more
        // each with the 32-byte key and a `Bytes` entry.
        assert!(std::mem::size_of::<L1Key>() <= 16);
        assert!(std::mem::size_of::<Entry>() <= 24);
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
