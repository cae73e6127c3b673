//! Answers from a stored entry: the form the client takes (each coded form
//! with its own ETag), 304 for a matching conditional, 206 for a byte
//! range, and the headers that say what folio did; and the answers folio
//! makes up when something failed.

use std::time::SystemTime;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use tracing::warn;

use crate::body::Body;
use crate::cache::entry::Entry;
use crate::cache::forms::{Forms, Made};
use crate::compression::{self, Coding, Form};
use crate::error::ProxyError;
use crate::freshness::{self, CDN_CACHE_CONTROL};
use crate::outcome::Served;
use crate::policy::{DEFAULT_MAX_BODY, Policy};
use crate::ranges;
use crate::upstream;

mod recent;

/// Marks responses folio made up because something failed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failed;

pub(super) fn error_response(error: &ProxyError, served: Served) -> Response<Body> {
    let mut response = error.to_response();
    served.annotate(response.headers_mut(), None, None);
    if error.is_the_requests() {
        response.extensions_mut().insert(Refused);
    } else {
        response.extensions_mut().insert(Failed);
    }
    response
}

/// Marks answers folio made itself because of what the client asked: not
/// a failure of folio or its upstream.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refused;

/// The answer to a request folio will not serve as asked (a 4xx, a 5xx for
/// what it does not do, only-if-cached with nothing stored).
pub(super) fn refusal(error: &ProxyError) -> Response<Body> {
    let mut response = error.to_response();
    response.extensions_mut().insert(Refused);
    response
}

/// Headers `respond` may add to the stored ones: ETag, Cache-Control,
/// CDN-Cache-Control, Age, Via, X-Cache, X-Cache-Layer, Cache-Status,
/// Accept-Ranges and a Content-Range or Content-Length.
const RESPONSE_HEADERS_ADDED: usize = 10;

/// An answer from a stored entry: 304 when the client's conditional matches,
/// 206 for a satisfiable byte range, else the stored response (without body
/// for HEAD).
pub(super) fn respond(
    forms: Option<&Forms>,
    request: &Parts,
    policy: &Policy,
    entry: &Entry,
    served: Served,
    now: SystemTime,
) -> Response<Body> {
    let (age, ttl) = (entry.age(now).as_secs(), entry.ttl_secs(now));
    let plain = recent::Asked::of(request, entry.encoded(), policy, served, age, ttl);
    if let Some((status, headers, body)) = plain.as_ref().and_then(recent::find) {
        return answer(status, headers, Body::full(body));
    }
    let mut headers = answer_headers(policy, entry, served, age, ttl);
    let etag = entry.etag();
    // A compressed entry answers in the form the client takes, each form
    // with its own ETag; a range is always a range of the decoded body.
    let coding = entry.compressed();
    let ranged = request.method == Method::GET && request.headers.contains_key(header::RANGE);
    let form = match coding {
        None => Form::Stored,
        Some(_) if ranged => Form::Identity,
        Some(coding) => compression::negotiate(&request.headers, coding),
    };
    let etag = match (coding, form) {
        (Some(coding), Form::Stored) => tagged(&etag, coding),
        (Some(_), Form::Gzip) => tagged(&etag, Coding::Gzip),
        _ => etag,
    };
    if coding.is_some() {
        add_vary_accept_encoding(&mut headers);
    }

    let (status, body) = if entry.status().is_success()
        && freshness::not_modified(&request.headers, &etag, &headers, now)
    {
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ] {
            headers.remove(name);
        }
        (StatusCode::NOT_MODIFIED, Body::Empty)
    } else {
        let body = match (coding, form) {
            (Some(coding), Form::Identity | Form::Gzip) => {
                match coded_form(forms, entry, coding, form, policy.max_body) {
                    Ok(body) => {
                        if form == Form::Gzip {
                            headers.insert(header::CONTENT_ENCODING, Coding::Gzip.header_value());
                        } else {
                            headers.remove(header::CONTENT_ENCODING);
                        }
                        body
                    }
                    Err(error) => {
                        warn!(%error, "a stored entry could not be decoded");
                        return error_response(&ProxyError::Internal, served);
                    }
                }
            }
            _ => entry.body(),
        };
        match requested_range(request, entry, body.len()) {
            Some(Ok((start, end))) => {
                let len = body.len();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
                (
                    StatusCode::PARTIAL_CONTENT,
                    Body::full(body.slice(start..=end)),
                )
            }
            Some(Err(len)) => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
                headers.remove(header::CONTENT_TYPE);
                (StatusCode::RANGE_NOT_SATISFIABLE, Body::Empty)
            }
            None if request.method == Method::HEAD => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                (entry.status(), Body::Empty)
            }
            None => {
                headers.insert(header::ETAG, etag);
                if entry.status() == StatusCode::OK {
                    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                }
                if let Some(plain) = &plain {
                    recent::keep(plain, entry.status(), &headers, &body);
                }
                return answer(entry.status(), headers, Body::full(body));
            }
        }
    };
    headers.insert(header::ETAG, etag);
    if entry.status() == StatusCode::OK {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    answer(status, headers, body)
}

fn answer(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The decoded body of a compressed entry, or its gzip, kept in `forms`
/// so a hot entry is decoded once.
fn coded_form(
    forms: Option<&Forms>,
    entry: &Entry,
    coding: Coding,
    form: Form,
    max_body: usize,
) -> Result<Bytes, compression::DecodeError> {
    let stored = entry.body();
    let limit = max_body.max(DEFAULT_MAX_BODY);
    let decode = || compression::decode(coding, &stored, limit);
    let Some(forms) = forms else {
        return match form {
            Form::Gzip => decode().map(|decoded| compression::gzip(&decoded)),
            _ => decode(),
        };
    };
    let decoded = forms.get_or_make(&stored, Made::Decoded, decode)?;
    match form {
        Form::Gzip => forms.get_or_make(&stored, Made::Gzip, || Ok(compression::gzip(&decoded))),
        _ => Ok(decoded),
    }
}

/// The ETag of a coded form of the representation tagged `etag`:
/// `"abc"` → `"abc-br"` (a strong ETag names one exact byte sequence).
fn tagged(etag: &HeaderValue, coding: Coding) -> HeaderValue {
    let text = etag.as_bytes();
    let Some(body) = text.strip_suffix(b"\"") else {
        return etag.clone();
    };
    let mut out = Vec::with_capacity(text.len() + 6);
    out.extend_from_slice(body);
    out.push(b'-');
    out.extend_from_slice(coding.as_str().as_bytes());
    out.push(b'"');
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| etag.clone())
}

/// Adds `Accept-Encoding` to `Vary` unless it is named already.
fn add_vary_accept_encoding(headers: &mut HeaderMap) {
    let named = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| name.trim().eq_ignore_ascii_case("accept-encoding") || name.trim() == "*");
    if !named {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The stored headers as an answer from `entry` carries them: with the
/// policy's `Cache-Control` / `CDN-Cache-Control`, `Age`, `Via` and what
/// folio did added.
pub(super) fn answer_headers(
    policy: &Policy,
    entry: &Entry,
    served: Served,
    age: u64,
    ttl: i64,
) -> HeaderMap {
    // Room for what is added here and by the caller without growing the map.
    let mut headers = entry.headers(RESPONSE_HEADERS_ADDED);
    if let Some(cache_control) = &policy.cache_control {
        headers.insert(header::CACHE_CONTROL, cache_control.clone());
    }
    if let Some(cdn) = &policy.cdn_cache_control {
        headers.insert(CDN_CACHE_CONTROL, cdn.clone());
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    upstream::append_via(&mut headers);
    let forwarded = match served {
        Served::Miss {
            revalidated: true, ..
        } => Some(304),
        Served::Miss { .. } => Some(entry.status().as_u16()),
        _ => None,
    };
    served.annotate(&mut headers, Some(ttl), forwarded);
    headers
}

/// The byte range a GET asks of a stored full 200 (RFC 9110 §14): `None`
/// to send the whole body (no range, several ranges, an unparsable one, or
/// an `If-Range` that does not match); `Err(len)` when unsatisfiable.
fn requested_range(
    request: &Parts,
    entry: &Entry,
    len: usize,
) -> Option<Result<(usize, usize), usize>> {
    if request.method != Method::GET || entry.status() != StatusCode::OK {
        return None;
    }
    let asked = ranges::asked(request.headers.get(header::RANGE)?.to_str().ok()?)?;
    if !if_range_holds(&request.headers, entry) {
        return None;
    }
    if len == 0 && matches!(asked, ranges::Asked::Suffix(n) if n > 0) {
        return None; // satisfiable, but no byte to send: the whole (empty) body
    }
    match asked.resolve(u64::try_from(len).ok()?) {
        Ok((first, last)) => Some(Ok((
            usize::try_from(first).ok()?,
            usize::try_from(last).ok()?,
        ))),
        Err(ranges::Unsatisfiable) => Some(Err(len)),
    }
}

/// Whether the request's `If-Range`, if any, names the stored
/// representation: a strong ETag match, or exactly its `Last-Modified`
/// (RFC 9110 §13.1.5).
pub(super) fn if_range_holds(request: &HeaderMap, entry: &Entry) -> bool {
    let Some(condition) = request.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(condition) = condition.to_str() else {
        return false;
    };
    if condition.starts_with('"') {
        entry.upstream_etag() && entry.etag_bytes() == condition.as_bytes()
    } else {
        entry
            .header(&header::LAST_MODIFIED)
            .is_some_and(|lm| lm.as_bytes() == condition.as_bytes())
    }
}
