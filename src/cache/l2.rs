//! L2 in one file: every Redis call goes through one timeout and breaker.
//!
//! The Redis tier shared by every folio instance, on one Redis or a
//! Redis Cluster through the same code (keys carry no hash tag, so entries
//! spread over every master).
//!
//! L2 fails open. Every call is bounded by a short timeout; an error or a
//! timeout is a miss, never a failed request. After a few failures in a row a
//! breaker stops calling Redis for a moment, so a dead Redis costs requests
//! nothing. The connection is lazy and reconnects by itself, so folio starts
//! and serves while Redis is down and picks it up when it returns.
//!
//! `rediss://` nodes are reached over TLS, verified against folio's
//! [`Trust`]; with a [`Keyring`], every entry is sealed before it is written
//! and opened after it is read (see `encryption`), and a value that does not
//! open is a miss, counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult};
use tokio::sync::{Notify, OnceCell};
use tracing::{debug, warn};

use super::encryption::{self, Keyring};
use super::entry::Entry;
use crate::key::CacheKey;
use crate::metrics::Metrics;
use crate::tls::Trust;

/// Failures in a row that open the breaker.
const BREAKER_THRESHOLD: u32 = 3;
/// How long an open breaker skips Redis before trying again.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(1);
/// How long giving a lease back may wait for Redis.
const RELEASE_WAIT: Duration = Duration::from_secs(30);
/// Deletes a lease only while it holds the value it was taken with.
const RELEASE_IF_OURS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Whether this instance took the lease to fetch a key for every instance.
#[derive(Debug)]
pub(crate) enum LeaseTaken {
    Ours(Ticket),
    /// Another instance holds it.
    Theirs,
    /// Redis cannot say.
    Unknown,
}

/// A lease's value: this attempt's alone, so that giving it back removes
/// only the lease it took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl Ticket {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let mut hasher = SEED.get_or_init(Default::default).build_hasher();
        hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
        Self(hasher.finish())
    }
}

/// Where L2 lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedisTarget {
    /// One Redis: `redis://host:port/db` or `redis+unix:///path`.
    Single(String),
    /// A Redis Cluster, given by some of its nodes.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The node URLs, for connections that must go to one node (pub/sub).
    pub(crate) fn urls(&self) -> &[String] {
        match self {
            Self::Single(url) => std::slice::from_ref(url),
            Self::Cluster(urls) => urls,
        }
    }
}

/// How L2 protects what it sends to Redis and what it leaves there.
#[derive(Debug, Clone, Default)]
pub(crate) struct Protection {
    /// The roots `rediss://` nodes are verified against; required for them.
    pub(crate) trust: Option<Trust>,
    /// Seals entries at rest (`--encryption-keys`).
    pub(crate) keyring: Option<Arc<Keyring>>,
}

/// Whether a Redis URL asks for TLS.
fn is_tls(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
}

/// A client for one node: over TLS, verified against `trust`, when the URL
/// says `rediss://`.
fn node_client(url: &str, trust: Option<&Trust>) -> RedisResult<redis::Client> {
    if !is_tls(url) {
        return redis::Client::open(url);
    }
    let Some(trust) = trust else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "a rediss:// URL needs TLS roots, and none were loaded",
        )));
    };
    redis::Client::build_with_tls(url, trust.redis_certificates())
}

#[derive(Clone)]
enum Backend {
    /// Multiplexed, lazy, reconnecting by itself.
    Single(ConnectionManager),
    /// Connected on first use; the connection then follows slot moves and
    /// reconnects by itself.
    Cluster(Box<ClusterBackend>),
}

#[derive(Clone)]
struct ClusterBackend {
    client: ClusterClient,
    conn: Arc<OnceCell<ClusterConnection>>,
    /// Whether a task is connecting now (one at a time).
    connecting: Arc<AtomicBool>,
    /// Woken when a connect attempt ends, made or failed.
    attempted: Arc<Notify>,
}

impl ClusterBackend {
    /// The connection, once made. Connecting takes a handshake with each
    /// node (several over TLS), longer than one command may wait, so it
    /// runs in a task of its own, one attempt at a time, which finishes
    /// even when the command that started it has given up.
    async fn connection(&self) -> RedisResult<ClusterConnection> {
        let attempted = self.attempted.notified();
        tokio::pin!(attempted);
        attempted.as_mut().enable();
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        if !self.connecting.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            tokio::spawn(async move {
                match this.client.get_async_connection().await {
                    Ok(conn) => {
                        let _ = this.conn.set(conn);
                    }
                    Err(error) => debug!(%error, "cannot connect to the Redis Cluster"),
                }
                this.connecting.store(false, Ordering::Release);
                this.attempted.notify_waiters();
            });
        }
        attempted.await;
        self.conn.get().cloned().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Io, "cannot connect to the Redis Cluster"))
        })
    }
}

#[derive(Clone)]
pub(crate) struct L2 {
    backend: Backend,
    target: RedisTarget,
    /// `folio:v1:` — changes whenever the entry encoding does.
    prefix: Arc<str>,
    timeout: Duration,
    breaker: Arc<Breaker>,
    metrics: Arc<Metrics>,
    protection: Protection,
}

impl std::fmt::Debug for L2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("protection", &self.protection)
            .finish()
    }
}

impl L2 {
    /// Prepares the connection; nothing is sent until the first request, so
    /// folio starts whether or not Redis is up.
    pub(crate) fn new(
        target: &RedisTarget,
        timeout: Duration,
        metrics: Arc<Metrics>,
        protection: Protection,
    ) -> Result<Self, redis::RedisError> {
        let connect_timeout = Duration::from_secs(1).max(timeout);
        let backend = match target {
            RedisTarget::Single(url) => {
                let client = node_client(url, protection.trust.as_ref())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                Backend::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            RedisTarget::Cluster(urls) => {
                let mut builder = ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .response_timeout(timeout)
                    .retries(1);
                let tls = urls.iter().filter(|url| is_tls(url)).count();
                if tls > 0 && tls < urls.len() {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "the cluster's nodes are given partly as rediss:// and partly as redis://: give them all one way",
                    )));
                }
                if tls > 0 {
                    let Some(trust) = &protection.trust else {
                        return Err(redis::RedisError::from((
                            redis::ErrorKind::InvalidClientConfig,
                            "rediss:// URLs need TLS roots, and none were loaded",
                        )));
                    };
                    builder = builder.certs(trust.redis_certificates());
                }
                let client = builder.build()?;
                Backend::Cluster(Box::new(ClusterBackend {
                    client,
                    conn: Arc::default(),
                    connecting: Arc::default(),
                    attempted: Arc::default(),
                }))
            }
        };
        Ok(Self {
            backend,
            target: target.clone(),
            prefix: "folio:v1:".into(),
            timeout,
            breaker: Arc::default(),
            metrics,
            protection,
        })
    }

    /// A client of its own for one node (a pub/sub connection), reached the
    /// way L2 reaches it.
    pub(crate) fn node_client(&self, url: &str) -> RedisResult<redis::Client> {
        node_client(url, self.protection.trust.as_ref())
    }

    pub(crate) fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The name of a folio key in Redis beyond entries (e.g. the purge log).
    pub(crate) fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Runs one command on whichever backend, without timeout or breaker.
    pub(crate) async fn command<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let started = std::time::Instant::now();
        let result = self.command_untimed(cmd).await;
        self.metrics.redis_latency.observe(started.elapsed());
        result
    }

    async fn command_untimed<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match &self.backend {
            Backend::Single(conn) => cmd.query_async(&mut conn.clone()).await,
            Backend::Cluster(cluster) => {
                let mut conn = cluster.connection().await?;
                cmd.query_async(&mut conn).await
            }
        }
    }

    /// Runs one command bounded by the L2 timeout.
    pub(crate) async fn bounded<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match tokio::time::timeout(self.timeout, self.command(cmd)).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis timed out",
            ))),
        }
    }

    fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, key.hex())
    }

    /// The entry stored under `key`, or `None` on a miss, an error, a timeout,
    /// a value that does not open, or an undecodable value.
    pub(crate) async fn get(&self, key: &CacheKey) -> Option<Entry> {
        let name = self.redis_key(key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&name);
        let value = self.guarded::<Option<Vec<u8>>>(&cmd, "GET").await??;
        let sealed = encryption::is_sealed(&value);
        let plain = match &self.protection.keyring {
            Some(keyring) if sealed => keyring.open(name.as_bytes(), value),
            None if !sealed => Some(Bytes::from(value)),
            // Sealed and no keys, or plain where every entry must be
            // sealed (whoever wrote it could not seal it).
            _ => None,
        };
        let Some(plain) = plain else {
            self.metrics
                .l2_decrypt_failures
                .fetch_add(1, Ordering::Relaxed);
            debug!(key = %key.short(), sealed, "L2 value did not open; treated as a miss");
            return None;
        };
        let entry = Entry::decode(plain);
        if entry.is_none() {
            debug!(key = %key.short(), "L2 value could not be decoded; treated as a miss");
        }
        entry
    }

    /// Stores `entry` for `ttl` in the background, sealed when there are
    /// keys: the response never waits for Redis or the cipher.
    pub(crate) fn put(&self, key: &CacheKey, entry: &Entry, ttl: Duration) {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 || !self.breaker.allows() {
            return;
        }
        let this = self.clone();
        let name = self.redis_key(key);
        let entry = entry.clone();
        tokio::spawn(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&name);
            match &this.protection.keyring {
                Some(keyring) => match keyring.seal(name.as_bytes(), entry.encoded()) {
                    Some(sealed) => cmd.arg(sealed),
                    None => {
                        warn!("the system's random source failed; the entry is not stored in L2");
                        return;
                    }
                },
                None => cmd.arg(entry.encoded().as_ref()),
            };
            cmd.arg("PX").arg(ttl_ms);
            this.guarded::<()>(&cmd, "SET").await;
        });
    }

    fn lease_key(&self, key: &CacheKey) -> String {
        format!("{}lease:{}", self.prefix, key.hex())
    }

    /// Takes the lease to fetch `key` from the upstream for `ttl`, unless
    /// another instance holds it.
    pub(crate) async fn take_lease(&self, key: &CacheKey, ttl: Duration) -> LeaseTaken {
        if !self.breaker.allows() {
            return LeaseTaken::Unknown;
        }
        let ticket = Ticket::new();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.lease_key(key))
            .arg(ticket.0)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let reply = tokio::time::timeout(self.timeout, self.command::<Option<String>>(&cmd)).await;
        match self.settle(reply, "SET") {
            Some(Some(_)) => LeaseTaken::Ours(ticket),
            Some(None) => LeaseTaken::Theirs,
            // A stalled Redis still runs the command once it wakes: the
            // lease would then hold the key for every instance, for nobody.
            None => {
                self.release_lease(key, ticket);
                LeaseTaken::Unknown
            }
        }
    }

    /// Whether another instance still holds the lease of `key`.
    pub(crate) async fn leased(&self, key: &CacheKey) -> Option<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.lease_key(key));
        self.guarded::<u64>(&cmd, "EXISTS").await.map(|n| n > 0)
    }

    /// Gives the lease of `key` back if it is still `ticket`'s (not one
    /// another instance took since), in the background: after the command
    /// that took it, however long Redis takes, within [`RELEASE_WAIT`].
    pub(crate) fn release_lease(&self, key: &CacheKey, ticket: Ticket) {
        let this = self.clone();
        let lease = self.lease_key(key);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE_IF_OURS).arg(1).arg(&lease).arg(ticket.0);
        tokio::spawn(async move {
            let released = tokio::time::timeout(RELEASE_WAIT, this.command::<u64>(&cmd)).await;
            // A server that refuses scripts (an ACL without EVAL) still
            // gets the lease back, unconditionally.
            if let Ok(Err(error)) = released
                && !error.is_io_error()
            {
                debug!(%error, "Redis refused the lease script; giving the lease back with DEL");
                let mut del = redis::cmd("DEL");
                del.arg(&lease);
                let _ = tokio::time::timeout(RELEASE_WAIT, this.command::<u64>(&del)).await;
            }
        });
    }

    /// Deletes `key`; waits, bounded by the timeout. Whether it was there.
    pub(crate) async fn remove(&self, key: &CacheKey) -> bool {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.redis_key(key));
        self.guarded::<u64>(&cmd, "DEL")
            .await
            .is_some_and(|n| n > 0)
    }

    /// Runs one command unless the breaker is open, bounded by the timeout,
    /// and records the outcome in the breaker; errors become `None`.
    async fn guarded<T: FromRedisValue>(&self, cmd: &Cmd, command: &str) -> Option<T> {
        if !self.breaker.allows() {
            return None;
        }
        let reply = tokio::time::timeout(self.timeout, self.command::<T>(cmd)).await;
        self.settle(reply, command)
    }

    /// Records the outcome of one call in the breaker; errors become `None`.
    fn settle<T>(
        &self,
        reply: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
        command: &str,
    ) -> Option<T> {
        match reply {
            Ok(Ok(value)) => {
                self.breaker.success();
                Some(value)
            }
            Ok(Err(error)) => {
                self.metrics.l2_errors.fetch_add(1, Ordering::Relaxed);
                if self.breaker.failure() {
                    warn!(%error, command, "Redis (L2) failing; skipping it for {BREAKER_COOLDOWN:?} at a time");
                }
                None
            }
            Err(_) => {
                self.metrics.l2_errors.fetch_add(1, Ordering::Relaxed);
                if self.breaker.failure() {
                    warn!(command, timeout = ?self.timeout, "Redis (L2) timing out; skipping it for {BREAKER_COOLDOWN:?} at a time");
                }
                None
            }
        }
    }
}

/// Consecutive failures, and until when Redis is skipped.
#[derive(Debug, Default)]
struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicU64,
}

impl Breaker {
    fn allows(&self) -> bool {
        now_ms() >= self.open_until_ms.load(Ordering::Relaxed)
    }

    fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; true when this one opened the breaker.
    fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= BREAKER_THRESHOLD {
            self.failures.store(0, Ordering::Relaxed);
            let until = now_ms() + u64::try_from(BREAKER_COOLDOWN.as_millis()).unwrap_or(1000);
            self.open_until_ms.store(until, Ordering::Relaxed);
            return true;
        }
        false
    }
}

fn now_ms() -> u64 {
    super::entry::unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_resets_on_success() {
        let breaker = Breaker::default();
        assert!(breaker.allows());
        assert!(!breaker.failure());
        breaker.success();
        assert!(!breaker.failure());
        assert!(!breaker.failure());
        assert!(breaker.failure(), "third failure in a row opens it");
        assert!(!breaker.allows());
    }
}
