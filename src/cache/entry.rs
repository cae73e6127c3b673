//! The stored entry: one response as every tier keeps it, and its compact
//! binary encoding for Redis.
//!
//! Layout (all integers little-endian), version 1:
//! `u8 version | u16 status | u8 flags | u64 requested_at_us | u64 stored_at_ms |
//!  u64 fresh_until_ms | u32 initial_age_s | u32 swr_s | u32 sie_s |
//!  str etag | str tenant | str path |
//!  u16 n, str × n tags | u16 n, (str name, u8 present, str value) × n vary |
//!  u16 n, (str name, bytes value) × n headers | rest: body`
//! where `str` is `u16 length + bytes` and `bytes` is `u32 length + bytes`.
//! Decoding never panics: anything short, long or unknown is `None`, which
//! the caller treats as a miss. The body is a slice of the value read from
//! Redis, not a copy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

const VERSION: u8 = 1;

/// How long past its freshness an entry is kept: to be revalidated with a
/// conditional request rather than fetched again, or served to clients that
/// accept stale answers (`max-stale`). Memory is still bounded by L1's
/// capacity and Redis by `PX`.
const STALE_RETENTION: Duration = Duration::from_secs(600);

/// Flag bits of the encoding.
const REVALIDATE: u8 = 1;
const NO_STALE: u8 = 2;
const SHARED_OK: u8 = 4;
const UPSTREAM_ETAG: u8 = 8;
const VARY_INDEX: u8 = 16;
const IMMUTABLE: u8 = 32;

/// Overhead of one entry beyond its body and headers, for L1 weighing.
const ENTRY_OVERHEAD: usize = 256;

/// One cached response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    /// End-to-end headers worth replaying (no hop-by-hop, no `Set-Cookie`,
    /// no `Age`/`Date`, which are computed per answer).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) etag: HeaderValue,
    /// When the fill that produced the entry asked the upstream, on the
    /// shared clock: purge marks at or after it cover the entry.
    pub(crate) requested_at: SystemTime,
    pub(crate) stored_at: SystemTime,
    pub(crate) fresh_until: SystemTime,
    /// The upstream's `Age` when it answered.
    pub(crate) initial_age: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) tenant: Box<str>,
    /// The normalized request path, for path and prefix purges.
    pub(crate) path: Box<str>,
    /// The policy's tags, rendered, plus `route:<policy>`.
    pub(crate) tags: Vec<Box<str>>,
    /// Request header values the upstream's `Vary` named, beyond those the
    /// policy keys on: the entry only answers requests with the same values.
    pub(crate) vary: Vec<(HeaderName, Option<HeaderValue>)>,
    /// `no-cache`: validate with the upstream before every use.
    pub(crate) revalidate: bool,
    /// Never served stale (must-revalidate, proxy-revalidate, s-maxage).
    pub(crate) no_stale: bool,
    /// May answer requests carrying `Authorization` (RFC 9111 §3.5).
    pub(crate) shared_ok: bool,
    /// The ETag is the upstream's, so it can be sent back as a validator.
    pub(crate) upstream_etag: bool,
    /// Not a response: the names in `vary` say which request headers pick
    /// the variant, stored under its own key.
    pub(crate) vary_index: bool,
    /// `immutable`: while fresh, client reloads are answered from here.
    pub(crate) immutable: bool,
}

impl Entry {
    /// How long a tier should keep the entry from `now`: until every window
    /// that could still use it has closed (and at least [`STALE_RETENTION`]
    /// past freshness), never past the longest entry lifetime.
    pub(crate) fn retain_for(&self, now: SystemTime) -> Duration {
        let window = self
            .stale_while_revalidate
            .max(self.stale_if_error)
            .max(STALE_RETENTION);
        let end = (self.fresh_until + window)
            .min(self.stored_at + crate::invalidation::MAX_ENTRY_LIFETIME);
        end.duration_since(now).unwrap_or(Duration::ZERO)
    }

    /// Whether a conditional request can revalidate the entry.
    pub(crate) fn has_validators(&self) -> bool {
        self.upstream_etag || self.headers.contains_key(http::header::LAST_MODIFIED)
    }

    /// The age at which the entry stops being fresh (its freshness lifetime).
    pub(crate) fn lifetime(&self) -> Duration {
        self.initial_age
            + self
                .fresh_until
                .duration_since(self.stored_at)
                .unwrap_or(Duration::ZERO)
    }

    /// Whether `stale-if-error` still allows serving it at `now`.
    pub(crate) fn may_serve_on_error(&self, now: SystemTime) -> bool {
        !self.no_stale && now < self.fresh_until + self.stale_if_error
    }

    /// `Age` at `now` (RFC 9111 §4.2.3: the upstream's age plus our residence).
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.stored_at).unwrap_or(Duration::ZERO)
    }

    /// Seconds of freshness left at `now`; negative once stale (`Cache-Status: ttl`).
    pub(crate) fn ttl_secs(&self, now: SystemTime) -> i64 {
        match self.fresh_until.duration_since(now) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => -(past.duration().as_secs() as i64) - 1,
        }
    }

    /// Whether this entry may answer a request carrying `headers`: every
    /// header its `Vary` named has the same normalized value (or is absent
    /// in both).
    pub(crate) fn vary_matches(&self, headers: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, stored)| {
            match (stored, crate::key::vary_value(headers, name)) {
                (None, None) => true,
                (Some(stored), Some(asked)) => stored.as_bytes() == asked.as_bytes(),
                _ => false,
            }
        })
    }

    /// The header names of a vary index (or of a response's `Vary`).
    pub(crate) fn vary_names(&self) -> Vec<HeaderName> {
        self.vary.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The index stored under the primary key of a response with `Vary`:
    /// which request headers pick the variant. Kept as long as the variant.
    pub(crate) fn index(&self) -> Self {
        let window = self
            .stale_while_revalidate
            .max(self.stale_if_error)
            .max(STALE_RETENTION);
        Self {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            etag: HeaderValue::from_static("\"\""),
            requested_at: self.requested_at,
            stored_at: self.stored_at,
            fresh_until: self.fresh_until,
            initial_age: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: window,
            tenant: self.tenant.clone(),
            path: self.path.clone(),
            tags: self.tags.clone(),
            vary: self
                .vary
                .iter()
                .map(|(name, _)| (name.clone(), None))
                .collect(),
            revalidate: false,
            no_stale: false,
            shared_ok: false,
            upstream_etag: false,
            vary_index: true,
            immutable: false,
        }
    }

    /// `requested_at` in microseconds since the epoch, as purge marks count.
    pub(crate) fn requested_at_us(&self) -> u64 {
        unix_us(self.requested_at)
    }

    /// Bytes the entry occupies in memory, roughly; L1's weigher.
    pub(crate) fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let total = ENTRY_OVERHEAD
            + self.body.len()
            + headers
            + self.tags.iter().map(|t| t.len() + 16).sum::<usize>();
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// The same entry with its body and every header value in one buffer
    /// (an encode and a zero-copy decode): one allocation where there were
    /// one per value, which is most of an entry's overhead in L1.
    pub(crate) fn compact(self) -> Self {
        Self::decode(self.encode()).unwrap_or(self)
    }

    /// The exact size of [`Self::encode`]'s output: the buffer is kept whole
    /// by every entry decoded from it, so slack would be kept too.
    fn encoded_len(&self) -> usize {
        let str_len = |len: usize| 2 + len.min(usize::from(u16::MAX));
        let fixed = 1 + 2 + 1 + 8 * 3 + 4 * 3;
        let tags: usize = self.tags.iter().map(|t| str_len(t.len())).sum();
        let vary: usize = self
            .vary
            .iter()
            .map(|(n, v)| {
                str_len(n.as_str().len()) + 1 + str_len(v.as_ref().map_or(0, HeaderValue::len))
            })
            .sum();
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| str_len(n.as_str().len()) + 4 + v.len())
            .sum();
        fixed
            + str_len(self.etag.len())
            + str_len(self.tenant.len())
            + str_len(self.path.len())
            + 2
            + tags
            + 2
            + vary
            + 2
            + headers
            + self.body.len()
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        out.put_u8(VERSION);
        out.put_u16_le(self.status.as_u16());
        let flags = [
            (self.revalidate, REVALIDATE),
            (self.no_stale, NO_STALE),
            (self.shared_ok, SHARED_OK),
            (self.upstream_etag, UPSTREAM_ETAG),
            (self.vary_index, VARY_INDEX),
            (self.immutable, IMMUTABLE),
        ];
        out.put_u8(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .fold(0, |acc, (_, bit)| acc | bit),
        );
        out.put_u64_le(unix_us(self.requested_at));
        out.put_u64_le(unix_ms(self.stored_at));
        out.put_u64_le(unix_ms(self.fresh_until));
        out.put_u32_le(secs32(self.initial_age));
        out.put_u32_le(secs32(self.stale_while_revalidate));
        out.put_u32_le(secs32(self.stale_if_error));
        put_str(&mut out, self.etag.as_bytes());
        put_str(&mut out, self.tenant.as_bytes());
        put_str(&mut out, self.path.as_bytes());
        out.put_u16_le(count16(self.tags.len()));
        for tag in self.tags.iter().take(usize::from(u16::MAX)) {
            put_str(&mut out, tag.as_bytes());
        }
        out.put_u16_le(count16(self.vary.len()));
        for (name, value) in self.vary.iter().take(usize::from(u16::MAX)) {
            put_str(&mut out, name.as_str().as_bytes());
            out.put_u8(u8::from(value.is_some()));
            put_str(
                &mut out,
                value.as_ref().map_or(&[][..], HeaderValue::as_bytes),
            );
        }
        out.put_u16_le(count16(self.headers.len()));
        for (name, value) in self.headers.iter().take(usize::from(u16::MAX)) {
            put_str(&mut out, name.as_str().as_bytes());
            out.put_u32_le(u32::try_from(value.len()).unwrap_or(0));
            out.put_slice(value.as_bytes());
        }
        out.put_slice(&self.body);
        out.freeze()
    }

    pub(crate) fn decode(mut buf: Bytes) -> Option<Self> {
        if take_u8(&mut buf)? != VERSION {
            return None;
        }
        let status = StatusCode::from_u16(take_u16(&mut buf)?).ok()?;
        let flags = take_u8(&mut buf)?;
        let requested_at = UNIX_EPOCH + Duration::from_micros(take_u64(&mut buf)?);
        let stored_at = from_unix_ms(take_u64(&mut buf)?);
        let fresh_until = from_unix_ms(take_u64(&mut buf)?);
        let initial_age = Duration::from_secs(take_u32(&mut buf)?.into());
        let stale_while_revalidate = Duration::from_secs(take_u32(&mut buf)?.into());
        let stale_if_error = Duration::from_secs(take_u32(&mut buf)?.into());
        let etag = HeaderValue::from_maybe_shared(take_str(&mut buf)?).ok()?;
        let tenant = std::str::from_utf8(&take_str(&mut buf)?).ok()?.into();
        let path = std::str::from_utf8(&take_str(&mut buf)?).ok()?.into();
        let mut tags = Vec::new();
        for _ in 0..take_u16(&mut buf)? {
            tags.push(std::str::from_utf8(&take_str(&mut buf)?).ok()?.into());
        }
        let mut vary = Vec::new();
        for _ in 0..take_u16(&mut buf)? {
            let name = HeaderName::from_bytes(&take_str(&mut buf)?).ok()?;
            let present = take_u8(&mut buf)? == 1;
            let value = take_str(&mut buf)?;
            let value = if present {
                Some(HeaderValue::from_maybe_shared(value).ok()?)
            } else {
                None
            };
            vary.push((name, value));
        }
        let count = take_u16(&mut buf)?;
        let mut headers = HeaderMap::with_capacity(usize::from(count));
        for _ in 0..count {
            let name = HeaderName::from_bytes(&take_str(&mut buf)?).ok()?;
            let len = usize::try_from(take_u32(&mut buf)?).ok()?;
            let value = take_bytes(&mut buf, len)?;
            headers.append(name, HeaderValue::from_maybe_shared(value).ok()?);
        }
        Some(Self {
            status,
            headers,
            body: buf,
            etag,
            requested_at,
            stored_at,
            fresh_until,
            initial_age,
            stale_while_revalidate,
            stale_if_error,
            tenant,
            path,
            tags,
            vary,
            revalidate: flags & REVALIDATE != 0,
            no_stale: flags & NO_STALE != 0,
            shared_ok: flags & SHARED_OK != 0,
            upstream_etag: flags & UPSTREAM_ETAG != 0,
            vary_index: flags & VARY_INDEX != 0,
            immutable: flags & IMMUTABLE != 0,
        })
    }
}

pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Microseconds since the epoch: purge marks and request times must order
/// events a millisecond apart.
pub(crate) fn unix_us(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn secs32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn count16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn put_str(out: &mut BytesMut, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    out.put_u16_le(count16(len));
    out.put_slice(&bytes[..len]);
}

fn take_u8(buf: &mut Bytes) -> Option<u8> {
    (buf.remaining() >= 1).then(|| buf.get_u8())
}

fn take_u16(buf: &mut Bytes) -> Option<u16> {
    (buf.remaining() >= 2).then(|| buf.get_u16_le())
}

fn take_u32(buf: &mut Bytes) -> Option<u32> {
    (buf.remaining() >= 4).then(|| buf.get_u32_le())
}

fn take_u64(buf: &mut Bytes) -> Option<u64> {
    (buf.remaining() >= 8).then(|| buf.get_u64_le())
}

fn take_bytes(buf: &mut Bytes, len: usize) -> Option<Bytes> {
    (buf.remaining() >= len).then(|| buf.split_to(len))
}

fn take_str(buf: &mut Bytes) -> Option<Bytes> {
    let len = usize::from(take_u16(buf)?);
    take_bytes(buf, len)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(body: &'static [u8]) -> Entry {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        Entry {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(body),
            etag: HeaderValue::from_static("\"abc\""),
            requested_at: now - Duration::from_millis(20),
            stored_at: now,
            fresh_until: now + Duration::from_secs(60),
            initial_age: Duration::from_secs(3),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(300),
            tenant: "acme".into(),
            path: "/api/v1/products/42".into(),
            tags: vec!["product:42".into(), "products".into()],
            vary: vec![
                (
                    HeaderName::from_static("accept-encoding"),
                    Some(HeaderValue::from_static("gzip")),
                ),
                (HeaderName::from_static("x-absent"), None),
            ],
            revalidate: false,
            no_stale: false,
            shared_ok: true,
            upstream_etag: true,
            vary_index: false,
            immutable: false,
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let entry = sample(b"{\"id\":42}");
        assert_eq!(Entry::decode(entry.encode()), Some(entry));
        let empty = sample(b"");
        assert_eq!(Entry::decode(empty.encode()), Some(empty));
    }

    #[test]
    fn the_encoding_is_exactly_as_long_as_announced() {
        let entry = sample(b"{\"id\":42}");
        assert_eq!(entry.encode().len(), entry.encoded_len());
    }

    #[test]
    fn compacting_keeps_everything() {
        let entry = sample(b"{\"id\":42}");
        assert_eq!(entry.clone().compact(), entry);
    }

    #[test]
    fn damaged_or_foreign_values_decode_to_none() {
        let encoded = sample(b"body").encode();
        for cut in [0, 1, 5, 30, 60] {
            assert_eq!(Entry::decode(encoded.slice(..cut)), None, "cut at {cut}");
        }
        let mut wrong_version = encoded.to_vec();
        wrong_version[0] = 99;
        assert_eq!(Entry::decode(Bytes::from(wrong_version)), None);
        assert_eq!(Entry::decode(Bytes::from_static(b"{\"json\":true}")), None);
    }

    #[test]
    fn lifetimes_ages_and_windows() {
        let entry = sample(b"");
        let at = |secs| entry.stored_at + Duration::from_secs(secs);
        assert_eq!(
            entry.lifetime(),
            Duration::from_secs(63),
            "fresh for 60 s after arriving 3 s old"
        );
        assert_eq!(entry.age(at(10)), Duration::from_secs(13));
        assert_eq!(entry.ttl_secs(at(10)), 50);
        assert!(entry.ttl_secs(at(70)) < 0);
        assert!(entry.may_serve_on_error(at(100)));
        assert!(!entry.may_serve_on_error(at(400)));
        assert_eq!(
            entry.retain_for(at(0)),
            Duration::from_secs(660),
            "validators: kept to revalidate"
        );
        assert_eq!(entry.retain_for(at(1000)), Duration::ZERO);
        let mut strict = sample(b"");
        strict.no_stale = true;
        assert!(!strict.may_serve_on_error(at(100)));
    }

    #[test]
    fn vary_values_must_match() {
        let entry = sample(b"");
        let mut headers = HeaderMap::new();
        assert!(!entry.vary_matches(&headers));
        headers.insert("accept-encoding", HeaderValue::from_static("gzip"));
        assert!(entry.vary_matches(&headers));
        headers.insert("x-absent", HeaderValue::from_static("now present"));
        assert!(!entry.vary_matches(&headers));
    }
}
