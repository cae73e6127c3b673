//! Purge marks: "everything of tenant T matching S requested at or before
//! time A is purged". An entry is checked against the marks when it is read,
//! so a purge costs one map insert however many entries it covers, and a
//! fill that began before a purge can never be served after it: its entry
//! carries the older request time.
//!
//! Marks older than [`MAX_ENTRY_LIFETIME`](crate::policy::MAX_ENTRY_LIFETIME) cover nothing any tier can still
//! hold, so [`Marks::trim`] drops them. Within that window the marks are
//! bounded too: per tenant, in tenants, and in the length of a scope; what
//! outgrows a bound folds into a wider mark, so no purge is ever lost.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::cache::entry::Entry;
use crate::key::CacheKey;

/// Scopes one tenant may hold marks for. Past it, the tenant's marks fold
/// into one tenant-wide mark at the newest of their times: a wider purge,
/// never a lost one, and memory that writes to ever new paths cannot grow.
const MAX_SCOPES_PER_TENANT: usize = 50_000;
/// Scopes all tenants may hold marks for together; past it, the tenant
/// holding the most folds.
const MAX_SCOPES: usize = 500_000;
/// Prefix marks are checked one by one on a read: fewer of them.
const MAX_PREFIXES_PER_TENANT: usize = 256;
/// Tenants holding marks of their own. A newer tenant's marks go,
/// tenant-wide, into the [`Overflow`] buckets its name hashes to.
const MAX_TENANTS: usize = 10_000;
/// Buckets of the overflow (8 bytes each: 16 MiB, made on first use).
const OVERFLOW_BUCKETS: usize = 1 << 21;
/// Buckets each overflowing tenant is marked in; an entry is covered only
/// when every one of its tenant's buckets is.
const OVERFLOW_HASHES: u64 = 4;
/// Longest path or tag kept as it is; a longer one is kept as its SHA-256
/// (exact, and as long as any other), a longer prefix as its first bytes.
const MAX_SCOPE_LEN: usize = 1024;

/// What a purge covers, within a tenant (or every tenant).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "value", rename_all = "lowercase")]
pub(crate) enum Scope {
    /// Entries carrying this tag.
    Tag(Box<str>),
    /// Entries for exactly this (normalized) path, any query or variant.
    Path(Box<str>),
    /// Entries whose path starts with this.
    Prefix(Box<str>),
    /// Every entry.
    All,
    /// The entry stored under this key (64 hex digits).
    Key(Box<str>),
}

/// One purge, as applied everywhere and broadcast between instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    /// `None`: every tenant (operator purges only).
    pub(crate) tenant: Option<Box<str>>,
    #[serde(flatten)]
    pub(crate) scope: Scope,
    /// Microseconds since the Unix epoch on the shared clock.
    pub(crate) at: u64,
    /// Soft: covered entries become stale (served while one refresh runs)
    /// instead of gone.
    #[serde(default)]
    pub(crate) soft: bool,
}

impl Mark {
    /// Whether this mark covers an entry of `tenant` (whenever it was fetched).
    pub(crate) fn covers(&self, tenant: &str, entry: &Covered<'_>) -> bool {
        if self.tenant.as_deref().is_some_and(|t| t != tenant) {
            return false;
        }
        match &self.scope {
            Scope::All => true,
            Scope::Tag(tag) => entry.tags.iter().any(|t| t == &**tag),
            Scope::Path(path) => **path == *entry.path,
            Scope::Prefix(prefix) => entry.path.starts_with(&**prefix),
            Scope::Key(key) => **key == *entry.key.hex(),
        }
    }
}

/// What the marks say about one entry, from best to worst: the worst of
/// several marks is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    Valid,
    /// Soft-purged: treat as stale.
    Stale,
    Purged,
}

/// The latest hard and soft purge times of one scope.
#[derive(Debug, Default, Clone, Copy)]
struct Times {
    hard: u64,
    soft: u64,
}

impl Times {
    fn record(&mut self, at: u64, soft: bool) {
        let slot = if soft { &mut self.soft } else { &mut self.hard };
        *slot = (*slot).max(at);
    }

    fn verdict(self, requested_at: u64) -> Verdict {
        if self.hard >= requested_at {
            Verdict::Purged
        } else if self.soft >= requested_at {
            Verdict::Stale
        } else {
            Verdict::Valid
        }
    }

    fn newest(self) -> u64 {
        self.hard.max(self.soft)
    }
}

/// The marks of one tenant (or of all tenants).
#[derive(Debug, Default)]
struct TenantMarks {
    newest: u64,
    all: Times,
    tags: HashMap<Box<str>, Times>,
    paths: HashMap<Box<str>, Times>,
    prefixes: Vec<(Box<str>, Times)>,
    keys: HashMap<Box<str>, Times>,
}

/// How a path or tag is held: as it is, or past [`MAX_SCOPE_LEN`] as its
/// digest, behind a NUL no path or header-borne tag can hold.
fn held(scope: &str) -> std::borrow::Cow<'_, str> {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    if scope.len() <= MAX_SCOPE_LEN {
        return std::borrow::Cow::Borrowed(scope);
    }
    let digest = Sha256::digest(scope.as_bytes());
    let mut text = String::with_capacity(8 + 64);
    text.push_str("\0sha256:");
    for byte in digest {
        let _ = write!(text, "{byte:02x}");
    }
    std::borrow::Cow::Owned(text)
}

impl TenantMarks {
    fn record(&mut self, scope: &Scope, at: u64, soft: bool) {
        self.newest = self.newest.max(at);
        let widened;
        let scope = match scope {
            Scope::Path(path) if path.len() > MAX_SCOPE_LEN => {
                widened = Scope::Path(held(path).into());
                &widened
            }
            Scope::Tag(tag) if tag.len() > MAX_SCOPE_LEN => {
                widened = Scope::Tag(held(tag).into());
                &widened
            }
            Scope::Prefix(prefix) if prefix.len() > MAX_SCOPE_LEN => {
                // A shorter prefix covers all the longer one did, and more.
                let mut end = MAX_SCOPE_LEN;
                while !prefix.is_char_boundary(end) {
                    end -= 1;
                }
                widened = Scope::Prefix(prefix[..end].into());
                &widened
            }
            // No key is this long: a mark that names none is kept wide.
            Scope::Key(key) if key.len() > MAX_SCOPE_LEN => &Scope::All,
            scope => scope,
        };
        match scope {
            Scope::All => self.all.record(at, soft),
            Scope::Tag(tag) => self.tags.entry(tag.clone()).or_default().record(at, soft),
            Scope::Path(path) => self.paths.entry(path.clone()).or_default().record(at, soft),
            Scope::Key(key) => self.keys.entry(key.clone()).or_default().record(at, soft),
            Scope::Prefix(prefix) => match self.prefixes.iter_mut().find(|(p, _)| p == prefix) {
                Some((_, times)) => times.record(at, soft),
                None => {
                    let mut times = Times::default();
                    times.record(at, soft);
                    self.prefixes.push((prefix.clone(), times));
                }
            },
        }
    }

    /// How many scopes hold marks.
    fn scopes(&self) -> usize {
        self.tags.len() + self.paths.len() + self.prefixes.len() + self.keys.len()
    }

    /// Whether the marks outgrew their bounds and should be folded.
    fn overgrown(&self) -> bool {
        self.scopes() > MAX_SCOPES_PER_TENANT || self.prefixes.len() > MAX_PREFIXES_PER_TENANT
    }

    /// Replaces every scope by one tenant-wide mark at the newest hard and
    /// soft times among them: whatever any of them covered stays covered.
    fn fold(&mut self) {
        let mut all = self.all;
        let times = self
            .tags
            .values()
            .chain(self.paths.values())
            .chain(self.keys.values())
            .chain(self.prefixes.iter().map(|(_, t)| t));
        for times in times {
            all.hard = all.hard.max(times.hard);
            all.soft = all.soft.max(times.soft);
        }
        *self = Self {
            newest: self.newest,
            all,
            ..Self::default()
        };
    }

    fn verdict(&self, entry: &Covered<'_>, requested_at: u64) -> Verdict {
        let Covered { tags, path, key } = *entry;
        if self.newest < requested_at {
            return Verdict::Valid;
        }
        let mut worst = self.all.verdict(requested_at);
        let mut consider = |v: Verdict| worst = worst.max(v);
        for tag in tags.iter() {
            if let Some(times) = self.tags.get(held(tag).as_ref()) {
                consider(times.verdict(requested_at));
            }
        }
        if let Some(times) = self.paths.get(held(path).as_ref()) {
            consider(times.verdict(requested_at));
        }
        for (prefix, times) in &self.prefixes {
            if path.starts_with(&**prefix) {
                consider(times.verdict(requested_at));
            }
        }
        if !self.keys.is_empty()
            && let Some(times) = self.keys.get(key.hex().as_str())
        {
            consider(times.verdict(requested_at));
        }
        worst
    }

    fn trim(&mut self, before: u64) {
        if self.all.newest() < before {
            self.all = Times::default();
        }
        self.tags.retain(|_, t| t.newest() >= before);
        self.paths.retain(|_, t| t.newest() >= before);
        self.prefixes.retain(|(_, t)| t.newest() >= before);
        self.keys.retain(|_, t| t.newest() >= before);
    }

    fn is_empty(&self) -> bool {
        self.all.newest() == 0
            && self.tags.is_empty()
            && self.paths.is_empty()
            && self.prefixes.is_empty()
            && self.keys.is_empty()
    }
}

/// What an entry can be purged by, besides its tenant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Covered<'a> {
    pub(crate) tags: Tags<'a>,
    pub(crate) path: &'a str,
    pub(crate) key: &'a CacheKey,
}

/// An entry's tags, read where they are: nothing is collected per read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tags<'a> {
    /// Tags of a request about to be fetched (rewarm's tracked fills).
    Listed(&'a [Box<str>]),
    /// Tags of a stored entry, in its buffer.
    Stored(&'a Entry),
}

impl<'a> Tags<'a> {
    pub(crate) fn iter(self) -> impl Iterator<Item = &'a str> {
        let (listed, stored) = match self {
            Self::Listed(tags) => (Some(tags.iter().map(|t| &**t)), None),
            Self::Stored(entry) => (None, Some(entry.tags())),
        };
        listed
            .into_iter()
            .flatten()
            .chain(stored.into_iter().flatten())
    }
}

/// Every purge mark this instance knows of.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// The newest mark of any kind: entries requested after it are valid
    /// without looking further (the common case, lock-free).
    newest: AtomicU64,
    inner: RwLock<Inner>,
    /// Tenants the operator named (with a `--tenant-token`): their marks
    /// are always their own, however many invented tenants fill the rest.
    known: std::collections::HashSet<Box<str>>,
}

#[derive(Debug, Default)]
struct Inner {
    every_tenant: TenantMarks,
    tenants: HashMap<Box<str>, TenantMarks>,
    /// Marks of tenants that found no room in `tenants`.
    overflow: Option<Overflow>,
    /// Scopes held across every tenant.
    scopes: usize,
}

/// Tenant-wide marks of the tenants past [`MAX_TENANTS`], in fixed memory:
/// each is recorded in [`OVERFLOW_HASHES`] buckets picked by a hash keyed
/// at random per process, and covers an entry when all of its tenant's
/// buckets do (a Bloom filter of times). A tenant's own purges always
/// hold. Another tenant's entries are purged too only when every one of
/// their buckets was marked, which writes for invented tenants cannot aim
/// (the key is unknown) and make unlikely: after 25,000 of them one tenant
/// in 200,000 is caught, after 100,000 one in 1,100, after 500,000 one in 7.
#[derive(Debug)]
struct Overflow {
    hasher: std::hash::RandomState,
    buckets: Box<[Seconds]>,
    /// The newest mark, µs.
    newest: u64,
}

/// A bucket's latest hard and soft purge, in whole seconds rounded up: a
/// mark is never earlier than it was, so nothing it covered is missed.
#[derive(Debug, Default, Clone, Copy)]
struct Seconds {
    hard: u32,
    soft: u32,
}

fn seconds_up(us: u64) -> u32 {
    u32::try_from(us.div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

impl Overflow {
    fn new() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            buckets: vec![Seconds::default(); OVERFLOW_BUCKETS].into_boxed_slice(),
            newest: 0,
        }
    }

    /// The buckets of `tenant` (double hashing: `h1 + i * h2`).
    fn picks(hasher: &std::hash::RandomState, tenant: &str) -> impl Iterator<Item = usize> {
        use std::hash::BuildHasher;
        let hash = hasher.hash_one(tenant);
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        let size = OVERFLOW_BUCKETS as u64;
        (0..OVERFLOW_HASHES)
            .map(move |i| usize::try_from(h1.wrapping_add(i.wrapping_mul(h2)) % size).unwrap_or(0))
    }

    fn record(&mut self, tenant: &str, times: Times) {
        self.newest = self.newest.max(times.newest());
        let (hard, soft) = (seconds_up(times.hard), seconds_up(times.soft));
        for bucket in Self::picks(&self.hasher, tenant) {
            let held = &mut self.buckets[bucket];
            held.hard = held.hard.max(hard);
            held.soft = held.soft.max(soft);
        }
    }

    fn verdict(&self, tenant: &str, requested_at: u64) -> Verdict {
        if self.newest < requested_at {
            return Verdict::Valid;
        }
        let (mut hard, mut soft) = (u32::MAX, u32::MAX);
        for bucket in Self::picks(&self.hasher, tenant) {
            let held = self.buckets[bucket];
            hard = hard.min(held.hard);
            soft = soft.min(held.soft);
        }
        let us = |seconds: u32| u64::from(seconds).saturating_mul(1_000_000);
        Times {
            hard: us(hard),
            soft: us(soft),
        }
        .verdict(requested_at)
    }
}

impl Marks {
    pub(crate) fn with_known_tenants<'a>(
        mut self,
        tenants: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        self.known = tenants.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the operator named `tenant` (it has a `--tenant-token`).
    pub(crate) fn is_known(&self, tenant: &str) -> bool {
        self.known.contains(tenant)
    }

    /// Records a mark; applying the same mark twice changes nothing.
    pub(crate) fn apply(&self, mark: &Mark) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.newest.fetch_max(mark.at, Ordering::Release);
        if let Some(tenant) = &mark.tenant
            && !inner.tenants.contains_key(tenant)
            && inner.tenants.len() >= MAX_TENANTS
            && !self.known.contains(tenant)
        {
            // No room for one more tenant: this one's mark goes tenant-wide
            // into the overflow, never into a purge of other tenants.
            let mut wide = Times::default();
            wide.record(mark.at, mark.soft);
            let overflow = inner.overflow.get_or_insert_with(|| {
                tracing::warn!(
                    "purge marks of more than {MAX_TENANTS} tenants: newer tenants' marks are kept tenant-wide"
                );
                Overflow::new()
            });
            overflow.record(tenant, wide);
            return;
        }
        let marks = match &mark.tenant {
            None => &mut inner.every_tenant,
            Some(tenant) => inner.tenants.entry(tenant.clone()).or_default(),
        };
        let before = marks.scopes();
        marks.record(&mark.scope, mark.at, mark.soft);
        let overgrown = marks.overgrown();
        if overgrown {
            marks.fold();
        }
        let after = marks.scopes();
        inner.scopes = (inner.scopes + after).saturating_sub(before);
        if overgrown {
            tracing::warn!(
                tenant = mark.tenant.as_deref().unwrap_or("*"),
                "purge marks outgrew their bounds ({MAX_SCOPES_PER_TENANT} scopes a tenant): this tenant's folded into one tenant-wide purge"
            );
        }
        if inner.scopes > MAX_SCOPES {
            // Too many in all: the tenant holding the most folds, so one
            // that writes to ever new paths pays for it, not the others.
            let inner = &mut *inner;
            let largest = inner
                .tenants
                .iter_mut()
                .map(|(name, marks)| (&**name, marks))
                .chain(std::iter::once(("*", &mut inner.every_tenant)))
                .max_by_key(|(_, marks)| marks.scopes());
            if let Some((name, marks)) = largest {
                let held = marks.scopes();
                marks.fold();
                inner.scopes = inner.scopes.saturating_sub(held);
                tracing::warn!(
                    tenant = name,
                    "purge marks outgrew their bound ({MAX_SCOPES} scopes in all): the tenant holding the most folded into one tenant-wide purge"
                );
            }
        }
    }

    /// Whether an entry of `tenant`, requested from the upstream at
    /// `requested_at` (µs), may still be served.
    pub(crate) fn verdict(&self, tenant: &str, entry: &Covered<'_>, requested_at: u64) -> Verdict {
        if !self.may_cover(requested_at) {
            return Verdict::Valid;
        }
        let inner = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let everyone = inner.every_tenant.verdict(entry, requested_at);
        let own = inner
            .tenants
            .get(tenant)
            .map_or(Verdict::Valid, |m| m.verdict(entry, requested_at));
        let overflowed = inner
            .overflow
            .as_ref()
            .map_or(Verdict::Valid, |o| o.verdict(tenant, requested_at));
        everyone.max(own).max(overflowed)
    }

    /// False when no mark is as recent as `requested_at`: the lock-free
    /// answer for nearly every read.
    pub(crate) fn may_cover(&self, requested_at: u64) -> bool {
        self.newest.load(Ordering::Acquire) >= requested_at
    }

    /// Forgets marks older than `before` (µs): nothing they cover can exist.
    pub(crate) fn trim(&self, before: u64) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.every_tenant.trim(before);
        if inner.overflow.as_ref().is_some_and(|o| o.newest < before) {
            inner.overflow = None;
        }
        inner.tenants.retain(|_, marks| {
            marks.trim(before);
            !marks.is_empty()
        });
        inner.scopes = inner.every_tenant.scopes()
            + inner
                .tenants
                .values()
                .map(TenantMarks::scopes)
                .sum::<usize>();
    }

    /// How many scopes hold marks (for tests and stats).
    pub(crate) fn len(&self) -> usize {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = |m: &TenantMarks| m.scopes() + usize::from(m.all.newest() > 0);
        count(&inner.every_tenant) + inner.tenants.values().map(count).sum::<usize>()
    }
}

#[cfg(test)]
mod tests;
