//! One spelling of a host, a path and a query: what the key, the policy
//! match, the tenant and the upstream all read, so equivalent spellings
//! share one entry.

use std::borrow::Cow;

use crate::policy::{Policy, QueryKey};

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
    if !path.as_bytes().contains(&b'%') && !has_dot_segment(path) {
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

/// Whether a segment of `path` is `.` or `..`.
fn has_dot_segment(path: &str) -> bool {
    // Most paths have no dot at all: one fast scan says so.
    if !path.contains('.') {
        return false;
    }
    path.as_bytes()
        .split(|&b| b == b'/')
        .any(|segment| segment == b"." || segment == b"..")
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
    // Nearly every path is already canonical: no escape, no empty or dot
    // segment. Those are seen in this one pass and returned as they are.
    let (mut escaped, mut empty_segment) = (false, false);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(AmbiguousPath::Backslash),
            b';' => return Err(AmbiguousPath::PathParameter),
            b'/' if i > 0 && bytes[i - 1] == b'/' => empty_segment = true,
            b'%' => {
                escaped = true;
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
    if !escaped && !empty_segment && !has_dot_segment(path) {
        return Ok(Cow::Borrowed(path));
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

/// The one spelling of the host of `host[:port]`, if it is one: lower-case,
/// without its port or a trailing dot (`shop.example.` is `shop.example` to
/// DNS), an IPv6 address in its shortest form (`[0:0::1]` is `[::1]`).
/// Two spellings of one host would be two keys, and two tenants. Borrowed
/// when `host` is already that spelling, as nearly every request's is.
pub(crate) fn canonical_host_name(host: &[u8]) -> Option<Cow<'_, str>> {
    let name = host_name(host)?;
    if let Some(address) = name.strip_prefix('[') {
        let address: std::net::Ipv6Addr = address.strip_suffix(']')?.parse().ok()?;
        let canonical = format!("[{address}]");
        return Some(if canonical == name {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(canonical)
        });
    }
    let name = match name.strip_suffix('.') {
        Some(stem) if !stem.is_empty() && !stem.ends_with('.') => stem,
        _ => name,
    };
    Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

/// The host of `host[:port]` (IPv6 in brackets), if it is one.
fn host_name(host: &[u8]) -> Option<&str> {
    let host = std::str::from_utf8(host).ok()?;
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        (&host[..=end], &host[end + 1..])
    } else {
        host.split_at(host.find(':').unwrap_or(host.len()))
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    (port_ok && name_ok).then_some(name)
}
