//! Invalidation on every instance, one file: marks travel by one protocol.
//!
//! A purge becomes [`Mark`]s (see `marks`): applied here at once, appended
//! to a sorted set in Redis (`folio:v1:purges`, scored by time), and
//! published on `folio:v1:invalidate`. Every instance subscribes and applies
//! what it hears; after (re)subscribing it replays the whole log (in pages,
//! however long it is), and every second it replays the last few seconds of
//! it, so a message lost to a reconnect is applied within about a second of
//! Redis being reachable. Marks older than the longest entry lifetime are
//! trimmed from the log, a chunk at a time; marks dated in the future are
//! dated now. Health reports whether the listener is subscribed and current.
//!
//! A purge leaves a mark; it deletes nothing from Redis. So an instance
//! reads no entry from Redis until it has replayed the whole log: not when
//! it starts (a deploy, a scale-out), nor after its subscription dropped.
//!
//! Times come from a clock aligned to Redis `TIME`, so instances on
//! different machines agree on "before the purge" up to the round trip.

mod events;
mod marks;
mod pending;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt as _, StreamExt};
use tracing::{debug, info, warn};

use crate::cache::Cache;
use crate::cache::entry::Entry;
use crate::cache::l2::L2;
use crate::key::CacheKey;
use crate::metrics::Metrics;
use crate::policy::MAX_ENTRY_LIFETIME;
pub(crate) use events::{route_tag, scopes_for_event};
pub(crate) use marks::{Covered, Mark, Marks, Scope, Tags, Verdict};
use pending::Pending;

/// How often the log is replayed, bounding what a lost message can cost.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How far back each replay reaches (covers clock jitter and slow writes).
const POLL_OVERLAP: Duration = Duration::from_secs(5);
/// Marks read from the log per command: a log of any length is replayed in
/// pages, each well within the L2 timeout.
const REPLAY_PAGE: usize = 1000;
/// Tries of one page before the replay gives up (and resumes later).
const PAGE_TRIES: u32 = 3;
/// Log entries removed per command when trimming, so Redis is never
/// blocked by one long deletion.
const TRIM_CHUNK: isize = 1000;
/// A mark dated further ahead than this is dated this far ahead: a writer
/// with its clock in the future must not purge entries not yet fetched.
const MAX_FUTURE: Duration = Duration::from_secs(5);
/// The listener is behind when its last replay is older than this.
const MAX_LAG: Duration = Duration::from_secs(10);

/// What the invalidation listener is doing, for health.
#[derive(Debug, Default)]
struct Listening {
    subscribed: AtomicBool,
    /// When the log was last replayed successfully (µs, shared clock).
    replayed_at_us: AtomicU64,
    /// The newest mark any replay read (µs).
    polled_through_us: AtomicU64,
    /// The last full replay: marks read and how long it took.
    full_replay_marks: AtomicU64,
    full_replay_ms: AtomicU64,
}

/// The invalidation listener's state, as health reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenerStatus {
    pub(crate) subscribed: bool,
    /// Since the last successful replay; `None` before the first.
    pub(crate) lag: Option<Duration>,
    pub(crate) full_replay_marks: u64,
    pub(crate) full_replay_ms: u64,
}

impl ListenerStatus {
    /// Subscribed and replaying on time.
    pub(crate) fn current(&self) -> bool {
        self.subscribed && self.lag.is_some_and(|lag| lag <= MAX_LAG)
    }
}

/// The purges could not be told to the other instances.
#[derive(Debug, thiserror::Error)]
#[error(
    "applied on this instance, but Redis could not be told ({0}): other instances may still serve the purged entries until it is back, when it is told"
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
    listening: Listening,
    /// Marks Redis could not be told: the listener tells it once it can.
    pending: Pending,
}

impl Invalidator {
    /// `known_tenants`: those whose purge marks always keep a place of
    /// their own (see [`Marks::with_known_tenants`]).
    pub(crate) fn new<'a>(
        cache: Cache,
        metrics: Arc<Metrics>,
        known_tenants: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Self {
            marks: Marks::default().with_known_tenants(known_tenants),
            cache,
            metrics,
            offset_us: AtomicI64::new(0),
            listening: Listening::default(),
            pending: Pending::default(),
        }
    }

    /// The listener's state; `None` without L2 (nothing to listen to).
    pub(crate) fn listener_status(&self) -> Option<ListenerStatus> {
        self.cache.l2()?;
        let replayed = self.listening.replayed_at_us.load(Ordering::Relaxed);
        Some(ListenerStatus {
            subscribed: self.listening.subscribed.load(Ordering::Relaxed),
            lag: (replayed > 0)
                .then(|| Duration::from_micros(self.now_us().saturating_sub(replayed))),
            full_replay_marks: self.listening.full_replay_marks.load(Ordering::Relaxed),
            full_replay_ms: self.listening.full_replay_ms.load(Ordering::Relaxed),
        })
    }

    /// Applies a mark heard from another instance or read from the log,
    /// dated no later than [`MAX_FUTURE`] from now.
    fn apply_heard(&self, mark: &Mark) {
        let latest = self.now_us().saturating_add(duration_us(MAX_FUTURE));
        if mark.at > latest {
            let mut clamped = mark.clone();
            clamped.at = latest;
            self.marks.apply(&clamped);
        } else {
            self.marks.apply(mark);
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
        self.propagate(l2, marks, 0).await.map_err(|e| {
            // Other instances would serve what this purged for as long as
            // the entries live: they are told when Redis is back.
            self.keep_pending(marks);
            NotPropagated(e.to_string())
        })
    }

    fn keep_pending(&self, marks: &[Mark]) {
        self.pending
            .keep(marks, |tenant| self.marks.is_known(tenant));
    }

    /// Tells Redis the marks it could not be told before, logged as of now
    /// (so every instance's next poll reads them) under the time each purge
    /// was made (so what was fetched after it stays).
    async fn send_pending(&self, l2: &L2) {
        let marks = self.pending.take_due(self.now_us());
        if marks.is_empty() {
            return;
        }
        match self.propagate(l2, &marks, self.now_us()).await {
            Ok(()) => info!(
                marks = marks.len(),
                "purges Redis could not be told when they were made are told now"
            ),
            Err(_) => {
                self.keep_pending(&marks);
                self.pending.wait_from(self.now_us());
            }
        }
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

    /// Logs and publishes `marks`, a page at a time so that a purge of
    /// thousands of tags is as many commands that each fit the L2 timeout.
    /// Each is logged at its time, or at `logged_at` when that is later.
    async fn propagate(&self, l2: &L2, marks: &[Mark], logged_at: u64) -> redis::RedisResult<()> {
        let latest = self.now_us().saturating_add(duration_us(MAX_FUTURE));
        for page in marks.chunks(REPLAY_PAGE) {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(l2.name("purges"));
            for mark in page {
                // A clock ahead (not yet aligned to Redis) must not date
                // the log past what every poll reads.
                zadd.arg(mark.at.max(logged_at).min(latest))
                    .arg(serde_json::to_string(mark).unwrap_or_default());
            }
            let payload = serde_json::to_string(page).unwrap_or_default();
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(l2.name("invalidate")).arg(payload);
            // The message is what other instances act on within
            // milliseconds, the log is what they replay if they missed it:
            // neither waits for the other, and both are idempotent, so a
            // page that timed out is sent again.
            let (logged, published) = tokio::join!(Self::send(l2, &zadd), Self::send(l2, &publish));
            logged?;
            published?;
        }
        Ok(())
    }

    async fn send(l2: &L2, command: &redis::Cmd) -> redis::RedisResult<()> {
        let mut tries = 0;
        loop {
            match l2.bounded::<()>(command).await {
                Ok(()) => return Ok(()),
                Err(error) if tries + 1 >= PAGE_TRIES => return Err(error),
                Err(_) => tries += 1,
            }
        }
    }

    /// Starts listening to other instances' purges, for as long as folio runs.
    pub(crate) fn spawn_listener(self: &Arc<Self>) {
        let Some(l2) = self.cache.l2().cloned() else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut warned: Option<tokio::time::Instant> = None;
            loop {
                let listened = this.listen(&l2).await;
                this.listening.subscribed.store(false, Ordering::Relaxed);
                // Purges logged from now until the next full replay would
                // not be applied here: entries in Redis wait until then.
                this.cache.set_shared_current(false);
                match listened {
                    Ok(()) => backoff = Duration::from_millis(100),
                    // Redis reachable but refusing (an ACL without SUBSCRIBE,
                    // or channels): said aloud, once a minute, since this
                    // instance then reads nothing from Redis.
                    Err(error) if error.kind() != redis::ErrorKind::Io && !error.is_timeout() => {
                        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                            warned = Some(tokio::time::Instant::now());
                            warn!(%error, "the invalidation listener cannot subscribe: until it can, this instance reads no entry from Redis (it needs SUBSCRIBE, PUBLISH, ZADD and ZRANGEBYSCORE on folio's keys and channel)");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
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
    async fn listen(self: &Arc<Self>, l2: &L2) -> redis::RedisResult<()> {
        let mut pubsub = subscribe(l2).await?;
        self.align_clock(l2).await;
        let started = std::time::Instant::now();
        let replayed = self.replay(l2, 0).await?;
        let took = started.elapsed();
        self.listening
            .full_replay_marks
            .store(replayed as u64, Ordering::Relaxed);
        self.listening.full_replay_ms.store(
            u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.listening.subscribed.store(true, Ordering::Relaxed);
        let mut messages = pubsub.on_message();
        // Purges published while the log was read and already here: applied
        // before Redis is read (one logged just behind the replay's cursor
        // is missing from what it read).
        while let Some(Some(message)) = messages.next().now_or_never() {
            self.hear(message.get_payload_bytes());
        }
        self.cache.set_shared_current(true);
        info!(
            "invalidation listener subscribed; purge log replayed ({replayed} logged marks in {took:?}; {} scopes held)",
            self.marks.len()
        );
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.tick().await;
        let mut polls: u64 = 0;
        let mut polling: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscription closed")));
                    };
                    self.hear(message.get_payload_bytes());
                }
                _ = poll.tick() => {
                    // The safety net runs beside the messages, never in
                    // their way: a long replay must not delay a purge.
                    if polling.as_ref().is_some_and(|p| !p.is_finished()) {
                        continue;
                    }
                    polls += 1;
                    let (this, l2) = (Arc::clone(self), l2.clone());
                    let housekeeping = polls.is_multiple_of(30);
                    polling = Some(tokio::spawn(async move {
                        this.poll(&l2).await;
                        if housekeeping {
                            this.align_clock(&l2).await;
                            this.trim(&l2).await;
                        }
                    }));
                }
            }
        }
    }

    /// Replays the recent log: from [`POLL_OVERLAP`] ago, or from a second
    /// before the newest mark the last poll read, whichever is later (so a
    /// burst of purges is read once, not for five seconds).
    async fn poll(&self, l2: &L2) {
        self.send_pending(l2).await;
        let recent = self.now_us().saturating_sub(duration_us(POLL_OVERLAP));
        let read_through = self.listening.polled_through_us.load(Ordering::Relaxed);
        let since = recent.max(read_through.saturating_sub(duration_us(Duration::from_secs(1))));
        if let Err(error) = self.replay(l2, since).await {
            debug!(%error, "purge log replay failed");
        }
    }

    fn hear(&self, payload: &[u8]) {
        match serde_json::from_slice::<Vec<Mark>>(payload) {
            Ok(marks) => self.receive(&marks),
            Err(error) => warn!(%error, "unreadable invalidation message ignored"),
        }
    }

    fn receive(&self, marks: &[Mark]) {
        for mark in marks {
            self.apply_heard(mark);
            // Key purges also free the memory at once.
            if let Scope::Key(hex) = &mark.scope
                && let Some(key) = CacheKey::from_hex(hex)
            {
                self.cache.remove_local(&key);
            }
        }
    }

    /// Applies every logged mark at or after `since` (µs), a page at a time
    /// from a cursor (score, and how many entries at that score were read),
    /// so a log of any length is read in commands that each fit the L2
    /// timeout. Returns how many logged marks were read.
    async fn replay(&self, l2: &L2, since: u64) -> redis::RedisResult<usize> {
        let mut from = since;
        let mut seen_at_from = 0usize;
        let mut read = 0;
        loop {
            let mut tries = 0;
            let page: Vec<(String, f64)> = loop {
                let command = redis::cmd("ZRANGEBYSCORE")
                    .arg(l2.name("purges"))
                    .arg(from)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(seen_at_from)
                    .arg(REPLAY_PAGE)
                    .clone();
                match l2.bounded(&command).await {
                    Ok(page) => break page,
                    Err(error) if tries + 1 >= PAGE_TRIES => return Err(error),
                    Err(_) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            };
            for (text, score) in &page {
                if let Ok(mark) = serde_json::from_str::<Mark>(text) {
                    self.apply_heard(&mark);
                }
                // Scores are µs since the epoch: exact in an f64.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let score = *score as u64;
                if score == from {
                    seen_at_from += 1;
                } else {
                    from = score;
                    seen_at_from = 1;
                }
                self.listening
                    .polled_through_us
                    .fetch_max(score, Ordering::Relaxed);
            }
            read += page.len();
            if page.len() < REPLAY_PAGE {
                break;
            }
        }
        self.listening
            .replayed_at_us
            .store(self.now_us(), Ordering::Relaxed);
        Ok(read)
    }

    /// Drops marks nothing can still be covered by, here and in Redis; in
    /// Redis a chunk at a time, oldest first.
    async fn trim(&self, l2: &L2) {
        let before = self
            .now_us()
            .saturating_sub(duration_us(MAX_ENTRY_LIFETIME));
        self.marks.trim(before);
        let log = l2.name("purges");
        for _ in 0..1000 {
            let edge = redis::cmd("ZRANGE")
                .arg(&log)
                .arg(TRIM_CHUNK - 1)
                .arg(TRIM_CHUNK - 1)
                .arg("WITHSCORES")
                .clone();
            let whole_chunk_old = match l2.bounded::<Vec<(String, f64)>>(&edge).await {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(edge) => edge
                    .first()
                    .is_some_and(|(_, score)| (*score as u64) < before),
                Err(error) => {
                    debug!(%error, "purge log trim failed");
                    return;
                }
            };
            let command = if whole_chunk_old {
                redis::cmd("ZREMRANGEBYRANK")
                    .arg(&log)
                    .arg(0)
                    .arg(TRIM_CHUNK - 1)
                    .clone()
            } else {
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(&log)
                    .arg("-inf")
                    .arg(format!("({before}"))
                    .clone()
            };
            if let Err(error) = l2.bounded::<()>(&command).await {
                debug!(%error, "purge log trim failed");
                return;
            }
            if !whole_chunk_old {
                return;
            }
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
            let client = l2.node_client(url)?;
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
