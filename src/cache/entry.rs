//! The stored entry, one file because every accessor reads the layout below.
//!
//! One response as every tier keeps it.
//! An [`Entry`] *is* its encoding, the exact bytes L2 stores, plus the
//! offsets of its variable parts, found once when it is sealed or decoded.
//! Fields, headers, tags and body share that one buffer, an entry is cheap
//! to clone (a reference count), an entry in L1 costs its bytes and about
//! 400 more (most of it moka's records), and moving it between tiers converts nothing. [`EntryParts`]
//! is the same response field by field, to build one (`entry/parts.rs`).
//!
//! Layout (all integers little-endian), version 2:
//! `u8 version | u16 status | u8 flags | u64 requested_at_us | u64 stored_at_ms |
//!  u64 fresh_until_ms | u32 initial_age_s | u32 swr_s | u32 sie_s |
//!  str etag | str tenant | str path |
//!  u16 n, str × n tags | u16 n, (str name, u8 present, str value) × n vary |
//!  u16 n, (name, str value) × n headers | rest: body`
//! where `str` is `u16 length + bytes`, and a header's `name` is one byte,
//! its place in [`KNOWN_HEADERS`] counted from 1, or `0` and a `str`: the
//! headers nearly every answer has cost one byte of name, not a dozen.
//! Decoding checks everything (lengths, UTF-8, header names and values) and
//! never panics: a damaged or foreign value is `None`, which the caller
//! treats as a miss. Accessors then read what decoding already checked.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::compression::Coding;

mod parts;
mod wire;

pub(crate) use parts::EntryParts;
use wire::{Reader, from_unix_ms, secs32};
pub(crate) use wire::{from_unix_us, unix_ms, unix_us};

const VERSION: u8 = 2;

/// Header names stored as one byte (their place, from 1). Appending is
/// safe; reordering or removing needs a new [`VERSION`].
const KNOWN_HEADERS: [HeaderName; 16] = [
    http::header::CONTENT_TYPE,
    http::header::DATE,
    http::header::CONTENT_ENCODING,
    http::header::LAST_MODIFIED,
    http::header::CACHE_CONTROL,
    http::header::EXPIRES,
    http::header::CONTENT_LANGUAGE,
    http::header::CONTENT_DISPOSITION,
    http::header::LINK,
    http::header::LOCATION,
    http::header::SERVER,
    http::header::X_CONTENT_TYPE_OPTIONS,
    http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
    http::header::STRICT_TRANSPORT_SECURITY,
    http::header::CONTENT_SECURITY_POLICY,
    http::header::X_FRAME_OPTIONS,
];

/// A stored header's name: one of [`KNOWN_HEADERS`], or spelled out.
enum StoredName<'a> {
    Known(&'static HeaderName),
    Spelled(&'a [u8]),
}

impl StoredName<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Known(name) => name.as_str().as_bytes(),
            Self::Spelled(name) => name,
        }
    }

    fn to_header_name(&self) -> Option<HeaderName> {
        match self {
            Self::Known(name) => Some((*name).clone()),
            Self::Spelled(name) => HeaderName::from_bytes(name).ok(),
        }
    }
}

/// The header name at the cursor.
fn read_name<'a>(r: &mut Reader<'a>) -> Option<StoredName<'a>> {
    match r.u8()? {
        0 => r.str().map(StoredName::Spelled),
        n => KNOWN_HEADERS.get(usize::from(n) - 1).map(StoredName::Known),
    }
}

/// The one-byte code of `name`, when it is one of [`KNOWN_HEADERS`].
fn known_code(name: &HeaderName) -> Option<u8> {
    let at = KNOWN_HEADERS.iter().position(|known| known == name)?;
    u8::try_from(at + 1).ok()
}

/// Where each fixed-size field lies in the encoding, and the ETag after them.
const STATUS_AT: usize = 1;
const FLAGS_AT: usize = 3;
const REQUESTED_AT_AT: usize = 4;
const STORED_AT_AT: usize = 12;
const FRESH_UNTIL_AT: usize = 20;
const INITIAL_AGE_AT: usize = 28;
const SWR_AT: usize = 32;
const SIE_AT: usize = 36;
const ETAG_AT: usize = 40;

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
const GRACE: u8 = 64;
const COMPRESSED: u8 = 128;

/// How long past freshness an entry with the grace flag may answer while
/// the upstream cannot be reached (RFC 9111 §4.2.4); within
/// [`STALE_RETENTION`], so no tier drops it sooner.
pub(crate) const UNREACHABLE_GRACE: Duration = Duration::from_secs(300);

/// Memory an entry costs beyond its encoding, for L1's weigher: the
/// `Arc`'s counts before it, and the allocator rounding the block up to
/// its size class (about 60 bytes on average, measured at 1 KB).
const ENTRY_OVERHEAD: usize = 80;

/// One cached response, as every tier keeps it: its encoding, and where
/// the variable parts start. Cloning shares the buffer.
#[derive(Clone)]
pub(crate) struct Entry {
    // An `Arc`, not `Bytes`: `Bytes` would add a 32-byte shared count of
    // its own to every entry, and its 32 bytes here would make moka's
    // record of the entry one size class larger (measured: 1,216 bytes
    // against 1,280 per 1 KB product). Answers view it as `Bytes` (one small
    // allocation per answer made, none per answer the memo repeats).
    encoded: Arc<[u8]>,
    // u16 for the same reason; what precedes the body is under 64 KiB or
    // not stored.
    tags_at: u16,
    vary_at: u16,
    headers_at: u16,
    body_at: u16,
}

impl Entry {
    /// Reads an encoded entry, checking every part of it; `None` when
    /// anything is short, long, unknown or invalid.
    pub(crate) fn decode(encoded: impl AsRef<[u8]>) -> Option<Self> {
        let encoded = encoded.as_ref();
        let mut r = Reader::new(encoded, 0);
        if r.u8()? != VERSION {
            return None;
        }
        StatusCode::from_u16(r.u16()?).ok()?;
        r.take(ETAG_AT - FLAGS_AT)?;
        HeaderValue::from_bytes(r.str()?).ok()?;
        std::str::from_utf8(r.str()?).ok()?; // tenant
        std::str::from_utf8(r.str()?).ok()?; // path
        let tags_at = r.offset()?;
        for _ in 0..r.u16()? {
            std::str::from_utf8(r.str()?).ok()?;
        }
        let vary_at = r.offset()?;
        for _ in 0..r.u16()? {
            HeaderName::from_bytes(r.str()?).ok()?;
            let present = r.u8()? == 1;
            let value = r.str()?;
            if present {
                HeaderValue::from_bytes(value).ok()?;
            }
        }
        let headers_at = r.offset()?;
        for _ in 0..r.u16()? {
            read_name(&mut r)?.to_header_name()?;
            HeaderValue::from_bytes(r.str()?).ok()?;
        }
        let body_at = r.offset()?;
        Some(Self {
            encoded: Arc::from(encoded),
            tags_at,
            vary_at,
            headers_at,
            body_at,
        })
    }

    /// Whether both share one buffer (the same stored entry).
    pub(crate) fn shares_buffer_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.encoded, &other.encoded)
    }

    /// The encoding, as L2 stores it.
    pub(crate) fn encoded(&self) -> &Arc<[u8]> {
        &self.encoded
    }

    /// The encoding as `Bytes`, to slice header values and the body from
    /// without copying them; it keeps the buffer alive.
    fn shared(&self) -> Bytes {
        Bytes::from_owner(Arc::clone(&self.encoded))
    }

    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(u16::from_le_bytes(self.fixed(STATUS_AT))).unwrap_or(StatusCode::OK)
    }

    fn flag(&self, bit: u8) -> bool {
        u8::from_le_bytes(self.fixed(FLAGS_AT)) & bit != 0
    }

    fn stored_at_ms(&self) -> u64 {
        u64::from_le_bytes(self.fixed(STORED_AT_AT))
    }

    fn fresh_until_ms(&self) -> u64 {
        u64::from_le_bytes(self.fixed(FRESH_UNTIL_AT))
    }

    fn initial_age_s(&self) -> u32 {
        u32::from_le_bytes(self.fixed(INITIAL_AGE_AT))
    }

    fn stale_while_revalidate_s(&self) -> u32 {
        u32::from_le_bytes(self.fixed(SWR_AT))
    }

    fn stale_if_error_s(&self) -> u32 {
        u32::from_le_bytes(self.fixed(SIE_AT))
    }

    /// The fixed-size field at `at` (checked present by `decode`).
    fn fixed<const N: usize>(&self, at: usize) -> [u8; N] {
        Reader::new(&self.encoded, at).array().unwrap_or([0; N])
    }

    /// The entry's ETag: the upstream's, or one computed from the body.
    pub(crate) fn etag(&self) -> HeaderValue {
        HeaderValue::from_maybe_shared(self.shared().slice(self.etag_range()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }

    pub(crate) fn etag_bytes(&self) -> &[u8] {
        self.encoded.get(self.etag_range()).unwrap_or_default()
    }

    fn etag_range(&self) -> Range<usize> {
        Reader::new(&self.encoded, ETAG_AT)
            .str_range()
            .unwrap_or(0..0)
    }

    pub(crate) fn tenant(&self) -> &str {
        self.text(1)
    }

    /// The normalized request path, for path and prefix purges.
    pub(crate) fn path(&self) -> &str {
        self.text(2)
    }

    /// Whether the entry was stored for `tenant`'s `path`: compared as the
    /// bytes they are, not read as text again on every hit.
    pub(crate) fn is_for(&self, tenant: &str, path: &str) -> bool {
        let mut r = Reader::new(&self.encoded, ETAG_AT);
        r.str().is_some() && r.str() == Some(tenant.as_bytes()) && r.str() == Some(path.as_bytes())
    }

    /// The policy's tags, rendered, plus `route:<policy>` and the
    /// upstream's own.
    pub(crate) fn tags(&self) -> impl Iterator<Item = &str> {
        let mut r = self.reader(self.tags_at);
        let count = r.u16().unwrap_or(0);
        (0..count).map_while(move |_| r.str().map(|tag| std::str::from_utf8(tag).unwrap_or("")))
    }

    /// Request headers the upstream's `Vary` named (beyond the policy's
    /// key), with the values this entry was fetched with (`None`: absent).
    fn vary(&self) -> impl Iterator<Item = (HeaderName, Option<&[u8]>)> {
        let mut r = self.reader(self.vary_at);
        let count = r.u16().unwrap_or(0);
        (0..count)
            .map_while(move |_| {
                let name = r.str()?;
                let present = r.u8()? == 1;
                let value = r.str()?;
                Some((name, present.then_some(value)))
            })
            .filter_map(|(name, value)| Some((HeaderName::from_bytes(name).ok()?, value)))
    }

    /// Whether the upstream's answer had a `Vary` beyond the policy's key.
    pub(crate) fn has_vary(&self) -> bool {
        self.reader(self.vary_at).u16().unwrap_or(0) > 0
    }

    /// Whether this entry may answer a request carrying `headers`: every
    /// header its `Vary` named has the same normalized value (or is absent
    /// in both).
    pub(crate) fn vary_matches(&self, headers: &HeaderMap) -> bool {
        self.vary().all(
            |(name, stored)| match (stored, crate::key::vary_value(headers, &name)) {
                (None, None) => true,
                (Some(stored), Some(asked)) => stored == asked.as_bytes(),
                _ => false,
            },
        )
    }

    /// The header names of a vary index (or of a response's `Vary`).
    pub(crate) fn vary_names(&self) -> Vec<HeaderName> {
        self.vary().map(|(name, _)| name).collect()
    }

    /// The stored headers: names, and where each value lies in `encoded`.
    fn stored_headers(&self) -> impl Iterator<Item = (StoredName<'_>, Range<usize>)> {
        let mut r = self.reader(self.headers_at);
        let count = r.u16().unwrap_or(0);
        (0..count).map_while(move |_| Some((read_name(&mut r)?, r.str_range()?)))
    }

    /// The first stored value of the header `name`.
    pub(crate) fn header(&self, name: &HeaderName) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(self.shared().slice(self.header_range(name)?)).ok()
    }

    /// The first stored value of `name` as bytes, for checks that need no
    /// `HeaderValue` (and so no view of the buffer to make).
    fn header_bytes(&self, name: &HeaderName) -> Option<&[u8]> {
        self.encoded.get(self.header_range(name)?)
    }

    fn header_range(&self, name: &HeaderName) -> Option<Range<usize>> {
        let (_, value) = self
            .stored_headers()
            .find(|(stored, _)| stored.as_bytes() == name.as_str().as_bytes())?;
        Some(value)
    }

    /// The stored headers as a map with room for `more`; the values share
    /// the entry's buffer.
    pub(crate) fn headers(&self, more: usize) -> HeaderMap {
        let count = self.reader(self.headers_at).u16().unwrap_or(0);
        let mut map = HeaderMap::with_capacity(usize::from(count) + more);
        let shared = self.shared();
        for (name, value) in self.stored_headers() {
            if let (Some(name), Ok(value)) = (
                name.to_header_name(),
                HeaderValue::from_maybe_shared(shared.slice(value)),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    pub(crate) fn body(&self) -> Bytes {
        self.shared().slice(self.body_start()..)
    }

    pub(crate) fn body_len(&self) -> usize {
        self.encoded.len() - self.body_start()
    }

    fn body_start(&self) -> usize {
        usize::from(self.body_at).min(self.encoded.len())
    }

    /// `requested_at` in microseconds since the epoch, as purge marks count.
    pub(crate) fn requested_at_us(&self) -> u64 {
        u64::from_le_bytes(self.fixed(REQUESTED_AT_AT))
    }

    pub(crate) fn stale_while_revalidate(&self) -> Duration {
        Duration::from_secs(self.stale_while_revalidate_s().into())
    }

    /// `no-cache`: validate with the upstream before every use.
    pub(crate) fn revalidate(&self) -> bool {
        self.flag(REVALIDATE)
    }

    /// Never served stale (must-revalidate, proxy-revalidate, s-maxage).
    pub(crate) fn no_stale(&self) -> bool {
        self.flag(NO_STALE)
    }

    /// May answer requests carrying `Authorization` (RFC 9111 §3.5).
    pub(crate) fn shared_ok(&self) -> bool {
        self.flag(SHARED_OK)
    }

    /// The ETag is the upstream's, so it can be sent back as a validator.
    pub(crate) fn upstream_etag(&self) -> bool {
        self.flag(UPSTREAM_ETAG)
    }

    /// Not a response: the `Vary` names say which request headers pick the
    /// variant, stored under its own key.
    pub(crate) fn vary_index(&self) -> bool {
        self.flag(VARY_INDEX)
    }

    /// `immutable`: while fresh, client reloads are answered from here.
    /// The coding folio stored the body in, when it compressed it.
    pub(crate) fn compressed(&self) -> Option<Coding> {
        if !self.flag(COMPRESSED) {
            return None;
        }
        Coding::from_content_encoding(self.header_bytes(&http::header::CONTENT_ENCODING)?)
    }

    pub(crate) fn immutable(&self) -> bool {
        self.flag(IMMUTABLE)
    }

    /// Whether it may answer at `now`, stale, because the upstream cannot
    /// be reached: within `stale-if-error`, or within the grace.
    pub(crate) fn may_serve_when_unreachable(&self, now: SystemTime) -> bool {
        let grace = if self.flag(GRACE) {
            u64::try_from(UNREACHABLE_GRACE.as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        };
        let until = self.fresh_until_ms().saturating_add(grace);
        self.may_serve_on_error(now) || (!self.no_stale() && unix_ms(now) < until)
    }

    /// How long a tier should keep the entry from `now`: until every window
    /// that could still use it has closed (and at least [`STALE_RETENTION`]
    /// past freshness), never past the longest entry lifetime.
    pub(crate) fn retain_for(&self, now: SystemTime) -> Duration {
        let window = self
            .stale_while_revalidate_s()
            .max(self.stale_if_error_s())
            .max(secs32(STALE_RETENTION));
        let lifetime =
            u64::try_from(crate::policy::MAX_ENTRY_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        let end = self
            .fresh_until_ms()
            .saturating_add(u64::from(window) * 1000)
            .min(self.stored_at_ms().saturating_add(lifetime));
        Duration::from_millis(end.saturating_sub(unix_ms(now)))
    }

    /// Whether a conditional request can revalidate the entry.
    pub(crate) fn has_validators(&self) -> bool {
        self.upstream_etag() || self.header_bytes(&http::header::LAST_MODIFIED).is_some()
    }

    /// The age at which the entry stops being fresh (its freshness lifetime).
    pub(crate) fn lifetime(&self) -> Duration {
        Duration::from_secs(self.initial_age_s().into()).saturating_add(Duration::from_millis(
            self.fresh_until_ms().saturating_sub(self.stored_at_ms()),
        ))
    }

    /// Whether `stale-if-error` still allows serving it at `now`.
    pub(crate) fn may_serve_on_error(&self, now: SystemTime) -> bool {
        let until = self
            .fresh_until_ms()
            .saturating_add(u64::from(self.stale_if_error_s()) * 1000);
        !self.no_stale() && unix_ms(now) < until
    }

    /// `Age` at `now` (RFC 9111 §4.2.3: the upstream's age plus our residence).
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        Duration::from_secs(self.initial_age_s().into()).saturating_add(Duration::from_millis(
            unix_ms(now).saturating_sub(self.stored_at_ms()),
        ))
    }

    /// Seconds of freshness left at `now`; negative once stale (`Cache-Status: ttl`).
    pub(crate) fn ttl_secs(&self, now: SystemTime) -> i64 {
        let now = unix_ms(now);
        let secs = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
        if self.fresh_until_ms() >= now {
            secs(self.fresh_until_ms() - now)
        } else {
            -secs(now - self.fresh_until_ms()) - 1
        }
    }

    /// The index stored under the primary key of a response with `Vary`:
    /// which request headers pick the variant. Kept as long as the variant.
    pub(crate) fn index(&self) -> Option<Self> {
        let window = Duration::from_secs(
            self.stale_while_revalidate_s()
                .max(self.stale_if_error_s())
                .into(),
        )
        .max(STALE_RETENTION);
        EntryParts {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            etag: HeaderValue::from_static("\"\""),
            requested_at: from_unix_us(self.requested_at_us()),
            stored_at: from_unix_ms(self.stored_at_ms()),
            fresh_until: from_unix_ms(self.fresh_until_ms()),
            initial_age: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: window,
            tenant: self.tenant().into(),
            path: self.path().into(),
            tags: self.tags().map(Into::into).collect(),
            vary: self.vary().map(|(name, _)| (name, None)).collect(),
            revalidate: false,
            no_stale: false,
            shared_ok: false,
            upstream_etag: false,
            vary_index: true,
            immutable: false,
            grace: false,
            compressed: false,
        }
        .seal()
    }

    /// Bytes the entry occupies in memory; L1's weigher.
    pub(crate) fn weight(&self) -> u32 {
        u32::try_from(self.encoded.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
    }

    fn reader(&self, at: u16) -> Reader<'_> {
        Reader::new(&self.encoded, usize::from(at))
    }

    /// The `nth` string after the ETag (1: tenant, 2: path).
    fn text(&self, nth: usize) -> &str {
        let mut r = Reader::new(&self.encoded, ETAG_AT);
        (0..nth)
            .try_for_each(|_| r.str().map(drop))
            .and_then(|()| std::str::from_utf8(r.str()?).ok())
            .unwrap_or("")
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("status", &self.status())
            .field("tenant", &self.tenant())
            .field("path", &self.path())
            .field("body_len", &self.body_len())
            .field("stored_at_ms", &self.stored_at_ms())
            .field("fresh_until_ms", &self.fresh_until_ms())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests;
