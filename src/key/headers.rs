//! Request header values as the key reads them: normalized where the
//! header's syntax allows, the bytes as sent otherwise, credentials by their
//! digest.

use http::{HeaderMap, HeaderName, header};
use sha2::{Digest, Sha256};

use super::language;

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
