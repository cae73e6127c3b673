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

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, HeaderName, header};
use sha2::{Digest, Sha256};

use crate::policy::{Policy, QueryKey};

mod language;

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

/// The query pairs a policy keys on, decoded and sorted by name (only by
/// name: the order of repeated values, `?tag=a&tag=b`, may matter).
pub(crate) fn kept_query<'a>(
    policy: &Policy,
    query: Option<&'a str>,
) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = match &policy.key_query {
        QueryKey::Ignore => Vec::new(),
        QueryKey::All => query_pairs(query).collect(),
        QueryKey::Only(names) => query_pairs(query)
            .filter(|(name, _)| names.iter().any(|n| **n == **name))
            .collect(),
    };
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// RFC 3986 §6.2.2 normalization: percent-encodings of unreserved characters
/// decoded, the remaining ones upper-cased, dot segments removed. These never
/// change what a path means, so equivalent spellings share one entry.
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    let has_dots = path.split('/').any(|s| s == "." || s == "..");
    if !path.contains('%') && !has_dots {
        return Cow::Borrowed(path);
    }
    let mut decoded = String::with_capacity(path.len());
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = bytes.get(i + 1..i + 3).and_then(hex_byte)
        {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                decoded.push(char::from(byte));
            } else {
                decoded.push('%');
                decoded.push_str(&path[i + 1..i + 3].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        // Multi-byte characters are copied whole.
        let len = utf8_len(bytes[i]);
        decoded.push_str(&path[i..(i + len).min(path.len())]);
        i += len;
    }
    Cow::Owned(remove_dot_segments(&decoded))
}

/// Why a path has no one meaning: the upstream, a framework or a file
/// server in front of it may decode it differently from folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AmbiguousPath {
    #[error("a '%' that is not followed by two hex digits")]
    BadEscape,
    #[error("an encoded '/', '\\' or control character")]
    EncodedSeparator,
    #[error("an encoded dot segment ('%2e')")]
    EncodedDot,
    #[error("a backslash")]
    Backslash,
    #[error("a path parameter (';')")]
    PathParameter,
}

/// The one spelling of a path that folio matches, keys, tags and forwards
/// (so the upstream never sees a path the cache did not): RFC 3986
/// normalization ([`normalize_path`]) with empty segments collapsed. Paths
/// whose meaning depends on the decoder are refused instead.
pub(crate) fn canonical_path(path: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(AmbiguousPath::Backslash),
            b';' => return Err(AmbiguousPath::PathParameter),
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(hex_byte)
                    .ok_or(AmbiguousPath::BadEscape)?;
                if byte == b'/' || byte == b'\\' || byte.is_ascii_control() {
                    return Err(AmbiguousPath::EncodedSeparator);
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    for segment in path.split('/').filter(|s| s.contains('%')) {
        let dots = segment.replace("%2e", ".").replace("%2E", ".");
        if dots == "." || dots == ".." {
            return Err(AmbiguousPath::EncodedDot);
        }
    }
    let normalized = normalize_path(path);
    if !normalized.contains("//") {
        return Ok(normalized);
    }
    let mut collapsed = String::with_capacity(normalized.len());
    for c in normalized.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    Ok(Cow::Owned(collapsed))
}

/// The query string to forward for a request keyed by `policy`: exactly the
/// pairs the key holds, in the key's order (by name; repeated names as
/// sent), each percent-encoded one way (so `;`, `+` and stray `%` cannot be
/// read otherwise upstream); `None` when the key holds no pair. Borrowed
/// when the client's query already is that string.
pub(crate) fn canonical_query<'a>(policy: &Policy, query: Option<&'a str>) -> Option<Cow<'a, str>> {
    if query.is_none() || matches!(policy.key_query, QueryKey::Ignore) {
        return None;
    }
    let mut out = String::new();
    for (name, value) in kept_query(policy, query) {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode(&name, &mut out);
        out.push('=');
        percent_encode(&value, &mut out);
    }
    match query {
        _ if out.is_empty() => None,
        Some(raw) if raw == out => Some(Cow::Borrowed(raw)),
        _ => Some(Cow::Owned(out)),
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 15)]));
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// The byte two hex digits spell (`%2F`); `None` for anything else (a sign
/// is not a digit: `%+1` stays as written).
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let mut byte = [0u8; 1];
    hex::decode_to_slice(digits, &mut byte).ok()?;
    Some(byte[0])
}

/// `name=value` pairs of a query string, form-decoded (`+` is a space), empty
/// pairs dropped.
pub(crate) fn query_pairs(
    query: Option<&str>,
) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
}

fn form_decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let Some(byte) = bytes.get(i + 1..i + 3).and_then(hex_byte) {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            other => out.push(other),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A request header's value as `Vary` selection compares it: the
/// content-negotiation headers (`Accept*`) normalized, any other header the
/// bytes as sent (several lines joined by `, `), credentials by their
/// digest; `None` when absent.
pub(crate) fn vary_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    if !headers.contains_key(name) {
        return None;
    }
    // Content negotiation has one syntax and meaning (RFC 9110 §12.5):
    // spellings of the same preferences share a variant.
    if case_insensitive(name) {
        let value = normalized_header(headers, name);
        if *name == header::ACCEPT_ENCODING {
            let mut codings: Vec<String> = value.split(',').map(|c| c.replace(' ', "")).collect();
            codings.sort();
            codings.dedup();
            return Some(codings.join(","));
        }
        return Some(value);
    }
    // Any other header exactly as sent: the upstream read these bytes, so
    // two spellings may have had two answers (`,EUR` is not `EUR` to every
    // server).
    let mut raw = Vec::new();
    for (i, value) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            raw.extend_from_slice(b", ");
        }
        raw.extend_from_slice(value.as_bytes());
    }
    // Credentials select a variant by their digest: an entry (and Redis)
    // never holds them.
    if [
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
    ]
    .contains(name)
    {
        return Some(format!("sha256:{}", hex::encode(Sha256::digest(&raw))));
    }
    Some(match String::from_utf8(raw) {
        Ok(text) => text,
        Err(error) => format!("bytes:{}", hex::encode(error.as_bytes())),
    })
}

/// Request headers whose values are compared without case (language tags,
/// media types, codings, charsets); other values keep their case, since an
/// upstream may tell `USD` from `usd`.
fn case_insensitive(name: &HeaderName) -> bool {
    *name == header::ACCEPT
        || *name == header::ACCEPT_LANGUAGE
        || *name == header::ACCEPT_ENCODING
        || *name == header::ACCEPT_CHARSET
}

/// A header's values as one string that ignores harmless differences:
/// surrounding and repeated whitespace, empty list items, the split into
/// several lines, and case where the header's values ignore it; for
/// `Accept-Language`, also the order of the preferences and how their
/// weights are spelled. folio forwards this value for the headers it keys
/// on, so the upstream reads exactly what the key holds.
pub(crate) fn normalized_header(headers: &HeaderMap, name: &HeaderName) -> String {
    let fold = case_insensitive(name);
    // One pass, straight into `out`: this runs for every keyed header of
    // every request.
    let mut out = String::new();
    for value in headers.get_all(name) {
        for item in String::from_utf8_lossy(value.as_bytes()).split(',') {
            let mut words = item.split_whitespace().peekable();
            if words.peek().is_none() {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            for (i, word) in words.enumerate() {
                // Words are joined by one space, none after a `;`.
                if i > 0 && !out.ends_with(';') {
                    out.push(' ');
                }
                if fold {
                    out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
                } else {
                    out.push_str(word);
                }
            }
        }
    }
    if *name == header::ACCEPT_LANGUAGE
        && let Some(preferences) = language::canonical(&out)
    {
        return preferences;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_normalize_case_spaces_and_lines() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-v",
            HeaderValue::from_static("  Text/HTML ;  q=0.9 ,, en  US"),
        );
        headers.append("x-v", HeaderValue::from_static("a; ; b,  "));
        let name = HeaderName::from_static("x-v");
        assert_eq!(
            normalized_header(&headers, &name),
            "Text/HTML ;q=0.9,en US,a;;b",
            "case is kept where the header's values may depend on it"
        );
        let accept = HeaderName::from_static("accept");
        let mut folded = HeaderMap::new();
        folded.insert(
            "accept",
            HeaderValue::from_static("Text/HTML,  Application/JSON"),
        );
        assert_eq!(
            normalized_header(&folded, &accept),
            "text/html,application/json"
        );
        let mut spaced = HeaderMap::new();
        spaced.insert("x-v", HeaderValue::from_static("a;   B"));
        assert_eq!(normalized_header(&spaced, &name), "a;B");
    }
    use crate::policy::PolicySet;
    use http::{HeaderValue, Method};

    fn policy(yaml_fields: &str) -> PolicySet {
        PolicySet::from_yaml(
            "k.yaml",
            &format!("\"/p/{{id}}\":\n  cache_ttl: 1m\n{yaml_fields}"),
        )
        .unwrap()
    }

    fn key(
        set: &PolicySet,
        tenant: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> CacheKey {
        let m = set.match_request(&Method::GET, "/p/1").unwrap();
        CacheKey::new(tenant, path, query, headers, m.policy)
    }

    #[test]
    fn tenants_never_share_a_key() {
        let set = policy("");
        let h = HeaderMap::new();
        assert_ne!(
            key(&set, "acme", "/p/1", None, &h),
            key(&set, "globex", "/p/1", None, &h)
        );
        // Length prefixes keep tenant and path apart.
        assert_ne!(
            key(&set, "a", "/bp/1", None, &h),
            key(&set, "a/b", "/p/1", None, &h)
        );
    }

    #[test]
    fn query_order_and_encoding_do_not_split_entries() {
        let set = policy("");
        let h = HeaderMap::new();
        let k = |q| key(&set, "t", "/p/1", Some(q), &h);
        assert_eq!(k("a=1&b=2"), k("b=2&a=1"));
        assert_eq!(k("q=hello+world"), k("q=hello%20world"));
        assert_eq!(k("a=1&&b=2"), k("b=2&a=1"));
        assert_ne!(k("a=1"), k("a=2"));
        assert_ne!(k("q=%+1"), k("q=%01"), "a sign is not a hex digit");
        assert_ne!(
            k("tag=x&tag=y"),
            k("tag=y&tag=x"),
            "order of repeated values is kept"
        );
    }

    #[test]
    fn only_kept_query_params_count() {
        let set = policy("  key:\n    query: [page]\n");
        let h = HeaderMap::new();
        let k = |q| key(&set, "t", "/p/1", Some(q), &h);
        assert_eq!(k("page=2&utm_source=x"), k("page=2"));
        assert_ne!(k("page=2"), k("page=3"));
        let ignore = policy("  cache_key: \"tenant_id + id\"\n");
        let k = |q| key(&ignore, "t", "/p/1", Some(q), &h);
        assert_eq!(k("x=1"), k("y=2"));
    }

    #[test]
    fn varied_headers_are_normalized() {
        let set = policy("  key:\n    headers: [Accept-Language]\n");
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("accept-language", HeaderValue::from_static(v));
            key(&set, "t", "/p/1", None, &h)
        };
        assert_eq!(with("en-US, fr"), with("en-us,fr"));
        assert_eq!(with(" en-us ,  fr "), with("en-us,fr"));
        assert_ne!(with("en-us"), with("fr"));
        assert_ne!(
            with("en-us"),
            key(&set, "t", "/p/1", None, &HeaderMap::new())
        );
    }

    #[test]
    fn private_policies_key_on_the_caller() {
        let set = policy("  private: true\n");
        let as_user = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            key(&set, "t", "/p/1", None, &h)
        };
        assert_ne!(as_user("Bearer alice"), as_user("Bearer bob"));
        assert_eq!(as_user("Bearer alice"), as_user("Bearer alice"));
        let shared = policy("");
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer alice"),
        );
        assert_eq!(
            key(&shared, "t", "/p/1", None, &h),
            key(&shared, "t", "/p/1", None, &HeaderMap::new())
        );
    }

    #[test]
    fn vary_values_are_the_bytes_sent() {
        let of = |name: &'static str, v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(v));
            vary_value(&h, &HeaderName::from_static(name))
        };
        // The upstream read these bytes: another spelling may have had
        // another answer.
        assert_ne!(of("x-currency", ",EUR"), of("x-currency", "EUR"));
        assert_ne!(of("x-currency", "usd"), of("x-currency", "USD"));
        assert_eq!(
            of("accept-encoding", "gzip, br"),
            of("accept-encoding", "br,gzip"),
            "content negotiation has one meaning"
        );
        assert_eq!(
            of("accept-language", "en-US, fr;q=0.5"),
            of("accept-language", "en-us,fr; q=0.5")
        );
        assert_eq!(
            of("accept-language", "en, fr;q=0.8"),
            of("accept-language", "fr;q=0.8, en"),
            "the same preferences, in another order"
        );
        assert_eq!(
            of("accept-language", "en;q=1.0, fr;q=0.80"),
            of("accept-language", "fr;q=0.8, en")
        );
        assert_ne!(
            of("accept-language", "en, fr;q=0.8"),
            of("accept-language", "fr, en;q=0.8"),
            "other preferences"
        );
        assert_eq!(of("x-currency", "EUR"), Some("EUR".into()));
        let secret = of("authorization", "Bearer alice").unwrap();
        assert!(secret.starts_with("sha256:") && !secret.contains("alice"));
        assert_ne!(Some(secret), of("authorization", "Bearer bob"));
        assert_eq!(vary_value(&HeaderMap::new(), &header::ACCEPT), None);
        let set = policy("");
        let key = key(&set, "t", "/p/1", None, &HeaderMap::new());
        let names = [header::ACCEPT_ENCODING];
        let mut gzip = HeaderMap::new();
        gzip.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_ne!(
            key.variant(&names, &gzip),
            key.variant(&names, &HeaderMap::new())
        );
        assert_eq!(key.variant(&names, &gzip), key.variant(&names, &gzip));
    }

    #[test]
    fn paths_are_normalized_per_rfc3986() {
        assert_eq!(normalize_path("/api/v1/products/42"), "/api/v1/products/42");
        assert_eq!(normalize_path("/api/%761/products"), "/api/v1/products");
        assert_eq!(normalize_path("/a/%2f/b"), "/a/%2F/b");
        assert_eq!(normalize_path("/a/./b/../c"), "/a/c");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
        assert_eq!(normalize_path("/../a"), "/a");
        assert_eq!(normalize_path("/caf%C3%A9/é"), "/caf%C3%A9/é");
        let set = policy("");
        let h = HeaderMap::new();
        assert_eq!(
            key(&set, "t", "/p/%31", None, &h),
            key(&set, "t", "/p/1", None, &h)
        );
    }

    #[test]
    fn canonical_paths_have_one_spelling_or_none() {
        assert_eq!(
            canonical_path("/api/v1/products/42").unwrap(),
            "/api/v1/products/42"
        );
        assert_eq!(
            canonical_path("/api//v1/./x/../products/%34%32").unwrap(),
            "/api/v1/products/42"
        );
        assert_eq!(canonical_path("/a/%c3%a9").unwrap(), "/a/%C3%A9");
        for (path, why) in [
            ("/a/%2F/b", AmbiguousPath::EncodedSeparator),
            ("/a/%5c", AmbiguousPath::EncodedSeparator),
            ("/a/%00", AmbiguousPath::EncodedSeparator),
            ("/a/%2e%2E/b", AmbiguousPath::EncodedDot),
            ("/a/.%2e", AmbiguousPath::EncodedDot),
            ("/a/%2e", AmbiguousPath::EncodedDot),
            ("/a/%zz", AmbiguousPath::BadEscape),
            ("/a/%4", AmbiguousPath::BadEscape),
            ("/a\\b", AmbiguousPath::Backslash),
            ("/a;b", AmbiguousPath::PathParameter),
        ] {
            assert_eq!(canonical_path(path), Err(why), "{path}");
        }
    }

    #[test]
    fn the_forwarded_query_is_what_the_key_holds() {
        let all = policy("");
        let q = |set: &PolicySet, query| {
            let m = set.match_request(&Method::GET, "/p/1").unwrap();
            canonical_query(m.policy, query).map(|q| q.into_owned())
        };
        assert_eq!(q(&all, Some("a=1&b=2")).as_deref(), Some("a=1&b=2"));
        assert_eq!(q(&all, Some("b=x+y&a=%7e")).as_deref(), Some("a=~&b=x%20y"));
        assert_eq!(q(&all, Some("a=1;b=2")).as_deref(), Some("a=1%3Bb%3D2"));
        assert_eq!(q(&all, None), None);
        let page = policy("  key:\n    query: [page]\n");
        assert_eq!(
            q(&page, Some("utm=1&page=2&x=3")).as_deref(),
            Some("page=2")
        );
        let none = policy("  cache_key: \"tenant_id + id\"\n");
        assert_eq!(q(&none, Some("x=1")), None);
    }
}
