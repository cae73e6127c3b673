//! The stored entry: one response as every tier keeps it.
//!
//! An [`Entry`] *is* its encoding, the exact bytes L2 stores, plus the
//! offsets of its variable parts, found once when it is sealed or decoded.
//! Fields, headers, tags and body share that one buffer, an entry is cheap
//! to clone (a reference count), an entry in L1 costs its bytes and about
//! 150 more, and moving it between tiers converts nothing. [`EntryParts`] is the same response field by field, to
//! build one.
//!
//! Layout (all integers little-endian), version 1:
//! `u8 version | u16 status | u8 flags | u64 requested_at_us | u64 stored_at_ms |
//!  u64 fresh_until_ms | u32 initial_age_s | u32 swr_s | u32 sie_s |
//!  str etag | str tenant | str path |
//!  u16 n, str × n tags | u16 n, (str name, u8 present, str value) × n vary |
//!  u16 n, (str name, bytes value) × n headers | rest: body`
//! where `str` is `u16 length + bytes` and `bytes` is `u32 length + bytes`.
//! Decoding checks everything (lengths, UTF-8, header names and values) and
//! never panics: a damaged or foreign value is `None`, which the caller
//! treats as a miss. Accessors then read what decoding already checked.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::compression::Coding;

const VERSION: u8 = 1;

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
/// [`Entry`] in its slot in L1's table, the buffer's shared count and the
/// allocator's headers.
const ENTRY_OVERHEAD: usize = 160;

/// One response to store, field by field; [`EntryParts::seal`] makes the
/// [`Entry`] the tiers keep.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EntryParts {
    pub(crate) status: StatusCode,
    /// End-to-end headers worth replaying (no hop-by-hop, no `Set-Cookie`,
    /// no `Age`, which is computed per answer; `Date` is the upstream's).
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
    /// May answer stale for [`UNREACHABLE_GRACE`] while the upstream
    /// cannot be reached.
    pub(crate) grace: bool,
    /// The body is folio's compressed form, named by the stored
    /// `Content-Encoding`: it may be decoded for clients that do not take it.
    pub(crate) compressed: bool,
}

impl EntryParts {
    /// The entry, encoded into one exact-size buffer; `None` when a field
    /// is too long for the encoding (a tag, name, ETag, tenant or path over
    /// 64 KiB, or over 65,535 of a kind), which is then not stored.
    /// The fields are typed (valid names, values and UTF-8), so nothing is
    /// checked again: the offsets are noted as the encoding is written.
    pub(crate) fn seal(&self) -> Option<Entry> {
        let offset = |out: &BytesMut| u32::try_from(out.len()).ok();
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
            (self.grace, GRACE),
            (self.compressed, COMPRESSED),
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
        put_str(&mut out, self.etag.as_bytes())?;
        put_str(&mut out, self.tenant.as_bytes())?;
        put_str(&mut out, self.path.as_bytes())?;
        let tags_at = offset(&out)?;
        out.put_u16_le(u16::try_from(self.tags.len()).ok()?);
        for tag in &self.tags {
            put_str(&mut out, tag.as_bytes())?;
        }
        let vary_at = offset(&out)?;
        out.put_u16_le(u16::try_from(self.vary.len()).ok()?);
        for (name, value) in &self.vary {
            put_str(&mut out, name.as_str().as_bytes())?;
            out.put_u8(u8::from(value.is_some()));
            put_str(
                &mut out,
                value.as_ref().map_or(&[][..], HeaderValue::as_bytes),
            )?;
        }
        let headers_at = offset(&out)?;
        out.put_u16_le(u16::try_from(self.headers.len()).ok()?);
        for (name, value) in &self.headers {
            put_str(&mut out, name.as_str().as_bytes())?;
            out.put_u32_le(u32::try_from(value.len()).ok()?);
            out.put_slice(value.as_bytes());
        }
        let body_at = offset(&out)?;
        out.put_slice(&self.body);
        Some(Entry {
            encoded: out.freeze(),
            tags_at,
            vary_at,
            headers_at,
            body_at,
        })
    }

    /// The encoding (see the module's documentation).
    pub(crate) fn encode(&self) -> Option<Bytes> {
        self.seal().map(|entry| entry.encoded)
    }

    /// The size of the encoding: the buffer is kept whole by
    /// the entry, so slack would be kept too.
    fn encoded_len(&self) -> usize {
        let tags: usize = self.tags.iter().map(|t| 2 + t.len()).sum();
        let vary: usize = self
            .vary
            .iter()
            .map(|(n, v)| 2 + n.as_str().len() + 1 + 2 + v.as_ref().map_or(0, HeaderValue::len))
            .sum();
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| 2 + n.as_str().len() + 4 + v.len())
            .sum();
        ETAG_AT
            + 2
            + self.etag.len()
            + 2
            + self.tenant.len()
            + 2
            + self.path.len()
            + 2
            + tags
            + 2
            + vary
            + 2
            + headers
            + self.body.len()
    }
}

/// One cached response, as every tier keeps it: its encoding, and where
/// the variable parts start. Cloning shares the buffer.
#[derive(Clone)]
pub(crate) struct Entry {
    encoded: Bytes,
    tags_at: u32,
    vary_at: u32,
    headers_at: u32,
    body_at: u32,
}

impl Entry {
    /// Reads an encoded entry, checking every part of it; `None` when
    /// anything is short, long, unknown or invalid.
    pub(crate) fn decode(encoded: Bytes) -> Option<Self> {
        let mut r = Reader::new(&encoded, 0);
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
            HeaderName::from_bytes(r.str()?).ok()?;
            HeaderValue::from_bytes(r.bytes()?).ok()?;
        }
        let body_at = r.offset()?;
        Some(Self {
            encoded,
            tags_at,
            vary_at,
            headers_at,
            body_at,
        })
    }

    /// Whether both share one buffer (the same stored entry).
    pub(crate) fn shares_buffer_with(&self, other: &Self) -> bool {
        self.encoded.as_ptr() == other.encoded.as_ptr() && self.encoded.len() == other.encoded.len()
    }

    /// The encoding, as L2 stores it.
    pub(crate) fn encoded(&self) -> &Bytes {
        &self.encoded
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
        HeaderValue::from_maybe_shared(self.encoded.slice(self.etag_range()))
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
    fn stored_headers(&self) -> impl Iterator<Item = (&[u8], Range<usize>)> {
        let mut r = self.reader(self.headers_at);
        let count = r.u16().unwrap_or(0);
        (0..count).map_while(move |_| Some((r.str()?, r.bytes_range()?)))
    }

    /// The first stored value of the header `name`.
    pub(crate) fn header(&self, name: &HeaderName) -> Option<HeaderValue> {
        let (_, value) = self
            .stored_headers()
            .find(|(stored, _)| *stored == name.as_str().as_bytes())?;
        HeaderValue::from_maybe_shared(self.encoded.slice(value)).ok()
    }

    /// The stored headers as a map with room for `more`; the values share
    /// the entry's buffer.
    pub(crate) fn headers(&self, more: usize) -> HeaderMap {
        let count = self.reader(self.headers_at).u16().unwrap_or(0);
        let mut map = HeaderMap::with_capacity(usize::from(count) + more);
        for (name, value) in self.stored_headers() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(self.encoded.slice(value)),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    pub(crate) fn body(&self) -> Bytes {
        self.encoded.slice(self.body_start()..)
    }

    pub(crate) fn body_len(&self) -> usize {
        self.encoded.len() - self.body_start()
    }

    fn body_start(&self) -> usize {
        usize::try_from(self.body_at)
            .unwrap_or(usize::MAX)
            .min(self.encoded.len())
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
        Coding::from_content_encoding(self.header(&http::header::CONTENT_ENCODING)?.as_bytes())
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
        self.upstream_etag() || self.header(&http::header::LAST_MODIFIED).is_some()
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

    fn reader(&self, at: u32) -> Reader<'_> {
        Reader::new(&self.encoded, usize::try_from(at).unwrap_or(usize::MAX))
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

/// A cursor over an encoded entry; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], at: usize) -> Self {
        Self { buf, at }
    }

    /// Where the next read starts, as an entry keeps it.
    fn offset(&self) -> Option<u32> {
        u32::try_from(self.at).ok()
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let taken = self.buf.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array().map(u8::from_le_bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A `u16`-prefixed string.
    fn str(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(len.into())
    }

    /// Where the next `u16`-prefixed string lies, past it.
    fn str_range(&mut self) -> Option<Range<usize>> {
        let len = self.u16()?;
        let start = self.at;
        self.take(len.into())?;
        Some(start..self.at)
    }

    /// A `u32`-prefixed value.
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    /// Where the next `u32`-prefixed value lies, past it.
    fn bytes_range(&mut self) -> Option<Range<usize>> {
        let len = usize::try_from(self.u32()?).ok()?;
        let start = self.at;
        self.take(len)?;
        Some(start..self.at)
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
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

pub(crate) fn from_unix_us(us: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_micros(us))
        .unwrap_or(UNIX_EPOCH)
}

fn secs32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Writes a `u16`-prefixed string; `None` when it is too long for one.
fn put_str(out: &mut BytesMut, bytes: &[u8]) -> Option<()> {
    out.put_u16_le(u16::try_from(bytes.len()).ok()?);
    out.put_slice(bytes);
    Some(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_parts(body: &'static [u8]) -> EntryParts {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "last-modified",
            HeaderValue::from_static("Tue, 14 Nov 2023 22:13:20 GMT"),
        );
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        EntryParts {
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
            grace: false,
            compressed: false,
        }
    }

    pub(crate) fn sample(body: &'static [u8]) -> Entry {
        sample_parts(body)
            .seal()
            .unwrap_or_else(|| panic!("the sample seals"))
    }

    #[test]
    fn every_field_reads_back_as_sealed() {
        let parts = sample_parts(b"{\"id\":42}");
        let entry = sample(b"{\"id\":42}");
        assert_eq!(entry.status(), StatusCode::OK);
        assert_eq!(entry.etag(), parts.etag);
        assert_eq!(entry.etag_bytes(), b"\"abc\"");
        assert_eq!(entry.tenant(), "acme");
        assert_eq!(entry.path(), "/api/v1/products/42");
        assert_eq!(entry.tags().collect::<Vec<_>>(), ["product:42", "products"]);
        assert_eq!(entry.headers(0), parts.headers);
        assert_eq!(
            entry.header(&http::header::CONTENT_TYPE),
            Some(HeaderValue::from_static("application/json"))
        );
        assert_eq!(entry.header(&http::header::ETAG), None);
        assert_eq!(entry.body(), Bytes::from_static(b"{\"id\":42}"));
        assert_eq!(entry.body_len(), 9);
        assert_eq!(entry.requested_at_us(), unix_us(parts.requested_at));
        assert_eq!(entry.stale_while_revalidate(), Duration::from_secs(10));
        assert_eq!(
            entry.vary_names(),
            [
                HeaderName::from_static("accept-encoding"),
                HeaderName::from_static("x-absent")
            ]
        );
        assert!(entry.has_vary() && entry.has_validators());
        assert!(entry.shared_ok() && entry.upstream_etag());
        assert!(!entry.revalidate() && !entry.no_stale() && !entry.immutable());
    }

    #[test]
    fn the_encoding_is_exactly_as_long_as_announced_and_decodes_to_the_same() {
        let parts = sample_parts(b"{\"id\":42}");
        let encoded = parts.encode().unwrap_or_default();
        assert_eq!(encoded.len(), parts.encoded_len());
        let (decoded, sealed) = (Entry::decode(encoded), parts.seal());
        assert_eq!(decoded, sealed);
        let (decoded, sealed) = (decoded.unwrap(), sealed.unwrap());
        // The offsets sealing notes are the ones decoding finds.
        assert_eq!(
            decoded.tags().collect::<Vec<_>>(),
            sealed.tags().collect::<Vec<_>>()
        );
        assert_eq!(decoded.vary_names(), sealed.vary_names());
        assert_eq!(decoded.headers(0), sealed.headers(0));
        assert_eq!(decoded.body(), sealed.body());
        let empty = sample_parts(b"");
        assert_eq!(empty.seal().map(|e| e.body_len()), Some(0));
    }

    #[test]
    fn a_field_too_long_for_the_encoding_is_not_sealed() {
        let mut parts = sample_parts(b"");
        parts.tags.push("t".repeat(70_000).into());
        assert_eq!(parts.seal(), None);
    }

    #[test]
    fn damaged_or_foreign_values_decode_to_none() {
        let encoded = sample_parts(b"body").encode().unwrap_or_default();
        for cut in [0, 1, 5, 30, 60] {
            assert_eq!(Entry::decode(encoded.slice(..cut)), None, "cut at {cut}");
        }
        let mut wrong_version = encoded.to_vec();
        wrong_version[0] = 99;
        assert_eq!(Entry::decode(Bytes::from(wrong_version)), None);
        let mut bad_tenant = encoded.to_vec();
        let tenant = ETAG_AT + 2 + 5 + 2;
        bad_tenant[tenant] = 0xff;
        assert_eq!(Entry::decode(Bytes::from(bad_tenant)), None, "not UTF-8");
        assert_eq!(Entry::decode(Bytes::from_static(b"{\"json\":true}")), None);
    }

    #[test]
    fn far_future_or_past_times_do_not_overflow() {
        let mut encoded = sample_parts(b"").encode().unwrap_or_default().to_vec();
        encoded[4..28].fill(0xff);
        let entry = Entry::decode(Bytes::from(encoded)).unwrap_or_else(|| panic!("decodes"));
        let now = SystemTime::now();
        assert!(entry.retain_for(now) > Duration::ZERO);
        assert!(entry.ttl_secs(now) > 0);
        let _ = (entry.age(now), entry.lifetime(), entry.index());
    }

    #[test]
    fn lifetimes_ages_and_windows() {
        let entry = sample(b"");
        let stored_at = sample_parts(b"").stored_at;
        let at = |secs| stored_at + Duration::from_secs(secs);
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
        let mut strict = sample_parts(b"");
        strict.no_stale = true;
        let strict = strict.seal().unwrap_or_else(|| panic!("seals"));
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

    #[test]
    fn the_vary_index_names_the_headers_and_keeps_the_tags() {
        let index = sample(b"body").index().unwrap_or_else(|| panic!("seals"));
        assert_eq!(index.vary_names(), sample(b"").vary_names());
        assert!(index.vary_matches(&HeaderMap::new()), "values are not kept");
        assert_eq!(index.tags().count(), 2);
        assert_eq!(index.body_len(), 0);
    }
}
