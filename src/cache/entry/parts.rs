//! [`EntryParts`]: one response to store, field by field, and its sealing
//! into the encoding the tiers keep.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::wire::{put_str, secs32, unix_ms, unix_us};
use super::{
    COMPRESSED, ETAG_AT, Entry, GRACE, IMMUTABLE, NO_STALE, REVALIDATE, SHARED_OK, UPSTREAM_ETAG,
    VARY_INDEX, VERSION, known_code,
};

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
    /// May answer stale for [`UNREACHABLE_GRACE`](super::UNREACHABLE_GRACE) while the upstream
    /// cannot be reached.
    pub(crate) grace: bool,
    /// The body is folio's compressed form, named by the stored
    /// `Content-Encoding`: it may be decoded for clients that do not take it.
    pub(crate) compressed: bool,
}

impl EntryParts {
    /// The entry, encoded into one exact-size buffer; `None` when a field
    /// is too long for the encoding (a tag, name, header value, ETag, tenant or path over
    /// 64 KiB, over 65,535 of a kind, or over 64 KiB before the body),
    /// which is then not stored.
    /// The fields are typed (valid names, values and UTF-8), so nothing is
    /// checked again: the offsets are noted as the encoding is written.
    pub(crate) fn seal(&self) -> Option<Entry> {
        let offset = |out: &BytesMut| u16::try_from(out.len()).ok();
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
            match known_code(name) {
                Some(code) => out.put_u8(code),
                None => {
                    out.put_u8(0);
                    put_str(&mut out, name.as_str().as_bytes())?;
                }
            }
            put_str(&mut out, value.as_bytes())?;
        }
        let body_at = offset(&out)?;
        out.put_slice(&self.body);
        Some(Entry {
            // One copy into the `Arc`'s block, once per store.
            encoded: Arc::from(&out[..]),
            tags_at,
            vary_at,
            headers_at,
            body_at,
        })
    }

    /// The encoding (see the module's documentation).
    pub(crate) fn encode(&self) -> Option<Bytes> {
        self.seal()
            .map(|entry| Bytes::copy_from_slice(&entry.encoded))
    }

    /// The size of the encoding: the buffer is kept whole by
    /// the entry, so slack would be kept too.
    pub(super) fn encoded_len(&self) -> usize {
        let tags: usize = self.tags.iter().map(|t| 2 + t.len()).sum();
        let vary: usize = self
            .vary
            .iter()
            .map(|(n, v)| 2 + n.as_str().len() + 1 + 2 + v.as_ref().map_or(0, HeaderValue::len))
            .sum();
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| {
                let name = known_code(n).map_or(1 + 2 + n.as_str().len(), |_| 1);
                name + 2 + v.len()
            })
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
