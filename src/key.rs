//! Cache keys: SHA-256 over everything that makes two requests different to
//! the upstream, and nothing else.
//!
//! The key covers, in this order and each length-prefixed so no two inputs
//! run together: a format version, the tenant, the method class (HEAD is
//! answered from GET), the `Host` (as forwarded), the normalized path, the policy's query parameters
//! (sorted by name), the policy's varied request headers (normalized), and —
//! for `private` policies only — the caller's credentials. SHA-256 rather than
//! a process-random hasher because L2 entries are shared by every instance and
//! must be found again after restarts.

use std::fmt;

use http::{HeaderMap, HeaderName, header};
use sha2::{Digest, Sha256};

use crate::policy::Policy;

mod headers;
mod language;
mod uri;

pub(crate) use headers::{normalized_header, vary_value};
pub(crate) use uri::{
    canonical_host_name, canonical_path, canonical_query, kept_query, normalize_path, query_pairs,
};

/// Bumped whenever what goes into a key, or the entry encoding, changes.
const KEY_VERSION: &[u8] = b"folio-key-v2";

/// A 32-byte cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey([u8; 32]);

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.short())
    }
}

impl CacheKey {
    /// Builds the key of a request to `path?query` governed by `policy`.
    pub(crate) fn new(
        tenant: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        policy: &Policy,
    ) -> Self {
        let mut hasher = Hasher(Sha256::new());
        hasher.field(KEY_VERSION);
        hasher.field(tenant.as_bytes());
        hasher.field(b"GET"); // the method class: only GET and HEAD are cached
        // The upstream may build links from the Host it is sent.
        hasher.field(headers.get(header::HOST).map_or(&[][..], |h| h.as_bytes()));
        hasher.field(normalize_path(path).as_bytes());

        let pairs = kept_query(policy, query);
        hasher.count(pairs.len());
        for (name, value) in &pairs {
            hasher.field(name.as_bytes());
            hasher.field(value.as_bytes());
        }

        hasher.count(policy.key_headers.len());
        for name in &policy.key_headers {
            hasher.field(name.as_str().as_bytes());
            hasher.field(normalized_header(headers, name).as_bytes());
        }

        if policy.private {
            for name in [header::AUTHORIZATION, header::COOKIE] {
                for value in headers.get_all(&name) {
                    hasher.field(name.as_str().as_bytes());
                    hasher.field(value.as_bytes());
                }
            }
        }
        Self(hasher.0.finalize().into())
    }

    /// The key of one variant of this key's response: the upstream's
    /// `Vary` named these request headers, and this request sent these
    /// (normalized) values.
    pub(crate) fn variant(&self, names: &[HeaderName], headers: &HeaderMap) -> Self {
        let mut hasher = Hasher(Sha256::new());
        hasher.field(b"variant");
        hasher.field(&self.0);
        for name in names {
            hasher.field(name.as_str().as_bytes());
            match vary_value(headers, name) {
                Some(value) => hasher.field(value.as_bytes()),
                None => hasher.count(usize::MAX), // absent differs from empty
            }
        }
        Self(hasher.0.finalize().into())
    }

    /// Where a part of this key's response is stored (a `206` kept for
    /// the ranges it covers), apart from the whole response, so nothing
    /// that reads the whole one ever finds a part.
    pub(crate) fn part(&self) -> Self {
        let mut hasher = Hasher(Sha256::new());
        hasher.field(b"part");
        hasher.field(&self.0);
        Self(hasher.0.finalize().into())
    }

    /// The key as 64 hex digits (the Redis key suffix).
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key's 32 bytes.
    pub(crate) fn bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A key from its 32 bytes.
    pub(crate) const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits, as `hex` writes them.
    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The first 12 hex digits, for logs.
    pub(crate) fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

struct Hasher(Sha256);

impl Hasher {
    fn field(&mut self, bytes: &[u8]) {
        self.count(bytes.len());
        self.0.update(bytes);
    }

    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }
}

#[cfg(test)]
mod tests;
