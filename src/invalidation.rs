//! Invalidation on every instance.
//!
//! A purge becomes [`Mark`]s (see `marks`): applied here at once, appended
//! to a sorted set in Redis (`folio:v1:purges`, scored by time), and
//! published on `folio:v1:invalidate`. Every instance subscribes and applies
//! what it hears; after (re)subscribing it replays the whole log, and every
//! second it replays the last few seconds of it, so a message lost to a
//! reconnect is applied within about a second of Redis being reachable.
//! Marks older than the longest entry lifetime are trimmed from the log.
//!
//! Times come from a clock aligned to Redis `TIME`, so instances on
//! different machines agree on "before the purge" up to the round trip.

mod events;
mod marks;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::cache::Cache;
use crate::cache::entry::Entry;
use crate::cache::l2::L2;
use crate::key::CacheKey;
use crate::metrics::Metrics;
pub(crate) use events::{route_tag, scopes_for_event};
pub(crate) use marks::{Covered, MAX_ENTRY_LIFETIME, Mark, Marks, Scope, Tags, Verdict};

/// How often the log is replayed, bounding what a lost message can cost.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How far back each replay reaches (covers clock jitter and slow writes).
const POLL_OVERLAP: Duration = Duration::from_secs(5);

/// The purges could not be told to the other instances.
#[derive(Debug, thiserror::Error)]
#[error(
    "applied on this instance, but Redis could not be told ({0}): other instances may still serve the purged entries"
)]
pub(crate) struct NotPropagated(String);

/// Purges, here and everywhere.
#[derive(Debug)]
pub(crate) struct Invalidator {
    pub(crate) marks: Marks,
    cache: Cache,
    metrics: Arc<Metrics>,
    /// Redis time minus local time, in µs.
    offset_us: AtomicI64,
}

impl Invalidator {
    pub(crate) fn new(cache: Cache, metrics: Arc<Metrics>) -> Self {
        Self {
            marks: Marks::default(),
            cache,
            metrics,
            offset_us: AtomicI64::new(0),
        }
    }

    /// Now, on the clock every instance shares (µs since the epoch).
    pub(crate) fn now_us(&self) -> u64 {
        let local =
            i64::try_from(crate::cache::entry::unix_us(SystemTime::now())).unwrap_or(i64::MAX);
        u64::try_from(local.saturating_add(self.offset_us.load(Ordering::Relaxed))).unwrap_or(0)
    }

    /// [`Self::now_us`] as a time.
    pub(crate) fn now(&self) -> SystemTime {
        crate::cache::entry::from_unix_us(self.now_us())
    }

    /// Whether `entry`, stored under `key`, may still be served.
    pub(crate) fn verdict(&self, key: &CacheKey, entry: &Entry) -> Verdict {
        let requested_at = entry.requested_at_us();
        if !self.marks.may_cover(requested_at) {
            return Verdict::Valid; // nearly every read: no path or tags read
        }
        let covered = Covered {
            tags: Tags::Stored(entry),
            path: entry.path(),
            key,
        };
        self.marks.verdict(entry.tenant(), &covered, requested_at)
    }

    /// Applies `marks` here and tells every other instance.
    pub(crate) async fn purge(&self, marks: &[Mark]) -> Result<(), NotPropagated> {
        for mark in marks {
            self.marks.apply(mark);
            let scope = match mark.scope {
                Scope::Tag(_) => 0,
                Scope::Path(_) => 1,
                Scope::Prefix(_) => 2,
                Scope::All => 3,
                Scope::Key(_) => 4,
            };
            self.metrics.purges[scope].fetch_add(1, Ordering::Relaxed);
        }
        let Some(l2) = self.cache.l2() else {
            return Ok(());
        };
        self.propagate(l2, marks)
            .await
            .map_err(|e| NotPropagated(e.to_string()))
    }

    /// Deletes keys from every tier now (to count them) and marks them, so
    /// no instance serves them again. Returns how many entries were removed here and in Redis.
    pub(crate) async fn purge_keys(
        &self,
        keys: &[CacheKey],
        at: u64,
    ) -> Result<usize, NotPropagated> {
        let mut removed = 0;
        for key in keys {
            removed += usize::from(self.cache.remove(key).await);
        }
        let marks: Vec<Mark> = keys
            .iter()
            .map(|key| Mark {
                tenant: None,
                scope: Scope::Key(key.hex().into()),
                at,
                soft: false,
            })
            .collect();
        self.purge(&marks).await?;
        Ok(removed)
    }

    async fn propagate(&self, l2: &L2, marks: &[Mark]) -> redis::RedisResult<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(l2.name("purges"));
        for mark in marks {
            zadd.arg(mark.at)
                .arg(serde_json::to_string(mark).unwrap_or_default());
        }
        l2.bounded::<()>(&zadd).await?;
        let payload = serde_json::to_string(marks).unwrap_or_default();
        l2.bounded::<()>(
            redis::cmd("PUBLISH")
                .arg(l2.name("invalidate"))
                .arg(payload),
        )
        .await?;
        Ok(())
    }

    /// Starts listening to other instances' purges, for as long as folio runs.
    pub(crate) fn spawn_listener(self: &Arc<Self>) {
        let Some(l2) = self.cache.l2().cloned() else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match this.listen(&l2).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(error) => {
                        debug!(%error, "invalidation listener lost Redis; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }

    /// One subscription: subscribe, replay the log, then apply messages and
    /// replay the recent log every second until the connection drops.
    async fn listen(&self, l2: &L2) -> redis::RedisResult<()> {
        let mut pubsub = subscribe(l2).await?;
        self.align_clock(l2).await;
        self.replay(l2, 0).await?;
        info!(
            "invalidation listener subscribed; purge log replayed ({} marks)",
            self.marks.len()
        );
        let mut messages = pubsub.on_message();
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.tick().await;
        let mut polls: u64 = 0;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscription closed")));
                    };
                    match serde_json::from_slice::<Vec<Mark>>(message.get_payload_bytes()) {
                        Ok(marks) => self.receive(&marks),
                        Err(error) => warn!(%error, "unreadable invalidation message ignored"),
                    }
                }
                _ = poll.tick() => {
                    polls += 1;
                    let since = self.now_us().saturating_sub(duration_us(POLL_OVERLAP));
                    if let Err(error) = self.replay(l2, since).await {
                        debug!(%error, "purge log replay failed");
                    }
                    if polls.is_multiple_of(30) {
                        self.align_clock(l2).await;
                        self.trim(l2).await;
                    }
                }
            }
        }
    }

    fn receive(&self, marks: &[Mark]) {
        for mark in marks {
            self.marks.apply(mark);
            // Key purges also free the memory at once.
            if let Scope::Key(hex) = &mark.scope
                && let Some(key) = CacheKey::from_hex(hex)
            {
                self.cache.remove_local(&key);
            }
        }
    }

    /// Applies every logged mark at or after `since` (µs).
    async fn replay(&self, l2: &L2, since: u64) -> redis::RedisResult<()> {
        let logged: Vec<String> = l2
            .bounded(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(l2.name("purges"))
                    .arg(since)
                    .arg("+inf"),
            )
            .await?;
        for text in logged {
            if let Ok(mark) = serde_json::from_str::<Mark>(&text) {
                self.marks.apply(&mark);
            }
        }
        Ok(())
    }

    /// Drops marks nothing can still be covered by, here and in Redis.
    async fn trim(&self, l2: &L2) {
        let before = self
            .now_us()
            .saturating_sub(duration_us(MAX_ENTRY_LIFETIME));
        self.marks.trim(before);
        let cmd = redis::cmd("ZREMRANGEBYSCORE")
            .arg(l2.name("purges"))
            .arg("-inf")
            .arg(format!("({before}"))
            .clone();
        if let Err(error) = l2.bounded::<()>(&cmd).await {
            debug!(%error, "purge log trim failed");
        }
    }

    /// Sets the clock offset from Redis `TIME` (half the round trip counted).
    async fn align_clock(&self, l2: &L2) {
        let sent = SystemTime::now();
        let Ok((secs, micros)) = l2.bounded::<(u64, u64)>(&redis::cmd("TIME")).await else {
            return;
        };
        let received = SystemTime::now();
        let round_trip = received.duration_since(sent).unwrap_or_default();
        let redis_us = secs
            .saturating_mul(1_000_000)
            .saturating_add(micros)
            .saturating_add(duration_us(round_trip / 2));
        let local_us = crate::cache::entry::unix_us(received);
        let offset = i64::try_from(redis_us).unwrap_or(0) - i64::try_from(local_us).unwrap_or(0);
        self.offset_us.store(offset, Ordering::Relaxed);
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A dedicated pub/sub connection to the first reachable node (in a
/// cluster, classic PUBLISH reaches subscribers on every node).
async fn subscribe(l2: &L2) -> redis::RedisResult<redis::aio::PubSub> {
    let mut last_error = None;
    for url in l2.target().urls() {
        let attempt = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(l2.name("invalidate")).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(pubsub)) => return Ok(pubsub),
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => {
                last_error = Some(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "subscribe timed out",
                )))
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no Redis node given"))))
}
