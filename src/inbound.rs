//! The client's request, made into the one request folio decides on and
//! forwards.
//!
//! A shared cache is poisoned whenever the upstream reads a request
//! differently from the cache: a header the cache keyed on but dropped
//! before forwarding (`Connection: X-Tenant-ID`), one it forwarded but did
//! not key on (`X-Forwarded-Host`), two spellings of one header
//! (`X_Tenant_ID`), a body framed for a request that has none. So before
//! anything is decided, the head is cleaned here once, and the tenant, the
//! policy, the key, the credentials and the upstream request are all taken
//! from the result. What cannot be made unambiguous is refused with a 400.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};

use crate::error::ProxyError;
use crate::key::canonical_path;
use crate::outcome::CACHE_NAME;

/// Headers that change what an upstream answers without being part of the
/// URL: hosts, schemes, prefixes and URLs behind proxies, and method
/// overrides. On a request answered through the cache they are removed
/// unless the policy keys on them; otherwise one client's variant would be
/// served to everyone.
fn unkeyed_override(name: &str) -> bool {
    matches!(
        name,
        "forwarded"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-forwarded-scheme"
            | "x-forwarded-server"
            | "x-forwarded-ssl"
            | "x-host"
            | "x-original-host"
            | "x-original-url"
            | "x-original-uri"
            | "x-rewrite-url"
            | "x-override-url"
            | "x-url-scheme"
            | "front-end-https"
    ) || method_override_header(name)
}

/// Headers in which a client may ask a server to treat a request as
/// another method.
fn method_override_header(name: &str) -> bool {
    matches!(
        name,
        "x-http-method-override" | "x-http-method" | "x-method-override"
    )
}

/// Headers naming the client's address, believed only from trusted proxies.
fn client_address(name: &str) -> bool {
    matches!(
        name,
        "x-forwarded-for" | "forwarded" | "x-real-ip" | "x-client-ip"
    )
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Body framing, meaningless on a request forwarded without a body.
fn framing(name: &str) -> bool {
    matches!(name, "content-length" | "transfer-encoding" | "expect")
}

/// The one path a request is routed, keyed and forwarded by; or why it
/// is refused before anything is decided (the proxy and `explain` alike).
pub(crate) fn request_path(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<String, ProxyError> {
    if method == Method::CONNECT {
        return Err(ProxyError::Tunnel);
    }
    refuse_loop(headers)?;
    // `*` (asterisk-form) asks the server itself, not a resource; forwarded,
    // it would become a path the routes and the key never read.
    if !uri.path().starts_with('/') {
        return Err(ProxyError::BadRequest(
            "a request target that is not a path".into(),
        ));
    }
    match canonical_path(uri.path()) {
        Ok(path) => Ok(path.into_owned()),
        Err(why) => Err(ProxyError::BadRequest(format!(
            "an ambiguous path: it has {why}"
        ))),
    }
}

/// Refuses a request that already passed through folio: the upstream (or a
/// chain of proxies) points back at us, and forwarding would loop.
pub(crate) fn refuse_loop(headers: &HeaderMap) -> Result<(), ProxyError> {
    let ours = headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.split_whitespace().nth(1))
        .any(|received_by| received_by.eq_ignore_ascii_case(CACHE_NAME));
    if ours {
        return Err(ProxyError::Loop);
    }
    Ok(())
}

/// The request headers folio reads to decide: `Host`, `Authorization`,
/// `Cookie`, the tenant header and the policy's key headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecidedOn<'a> {
    pub(crate) tenant: Option<&'a HeaderName>,
    pub(crate) keyed: &'a [HeaderName],
}

impl DecidedOn<'_> {
    /// Whether `name` (any case, `_` read as `-`) is one of them.
    fn names(&self, name: &str) -> bool {
        let same = |decided: &str| {
            decided.len() == name.len()
                && decided
                    .bytes()
                    .zip(name.bytes())
                    .all(|(d, n)| d == n.to_ascii_lowercase() || (d == b'-' && n == b'_'))
        };
        ["host", "authorization", "cookie"].into_iter().any(same)
            || self.tenant.is_some_and(|t| same(t.as_str()))
            || self.keyed.iter().any(|k| same(k.as_str()))
    }
}

/// Cleans a request's headers in place, in one pass over those present:
/// what is hop-by-hop is removed (after refusing a `Connection` that names
/// a header folio decides on), a header folio decides on may not also
/// arrive spelled with underscores, a GET or HEAD loses any body framing,
/// and the client's address headers are dropped unless `trusted` (the peer
/// is a trusted proxy).
pub(crate) fn clean_headers(
    headers: &mut HeaderMap,
    method: &Method,
    decided: DecidedOn<'_>,
    trusted: bool,
) -> Result<(), ProxyError> {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for item in value.to_str().unwrap_or("").split(',').map(str::trim) {
            if decided.names(item) {
                return Err(ProxyError::BadRequest(format!(
                    "Connection names {item}, which folio needs to forward"
                )));
            }
            if let Ok(name) = HeaderName::from_bytes(item.as_bytes()) {
                named.push(name);
            }
        }
    }
    let bodiless = bodiless(method);
    let mut doomed = named;
    for name in headers.keys() {
        let text = name.as_str();
        if text.contains('_') && decided.names(text) {
            return Err(ProxyError::BadRequest(format!(
                "the header {text} is another spelling of one folio reads"
            )));
        }
        if hop_by_hop(text) || (bodiless && framing(text)) || (!trusted && client_address(text)) {
            doomed.push(name.clone());
        }
        if name == header::TRANSFER_ENCODING && !only_chunked(headers.get_all(name)) {
            return Err(ProxyError::TransferCoding);
        }
    }
    for name in doomed {
        headers.remove(name);
    }
    Ok(())
}

/// Whether the request's transfer codings are `chunked` alone: hyper
/// decodes that one only, so with another (`gzip, chunked`) the upstream
/// would get a coded body as if it were plain (RFC 9112 §6.1: 501).
fn only_chunked(values: http::header::GetAll<'_, http::HeaderValue>) -> bool {
    values.iter().all(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|coding| !coding.is_empty())
                .all(|coding| coding.eq_ignore_ascii_case("chunked"))
        })
    })
}

/// Makes `Host` one value, the host name alone: lower-cased, without its
/// port, from the header or (HTTP/2, absolute form) the request target.
/// It is part of the key and forwarded as keyed, so an upstream that builds
/// links from it cannot be made to build another host's (or port's) links
/// into a shared entry. Several, odd, or disagreeing values are refused.
pub(crate) fn canonical_host(headers: &mut HeaderMap, uri: &Uri) -> Result<(), ProxyError> {
    let bad = |what: &str| Err(ProxyError::BadRequest(format!("the Host {what}")));
    let mut values = headers.get_all(header::HOST).iter();
    let (given, twice) = (values.next(), values.next().is_some());
    if twice {
        return bad("header is sent more than once");
    }
    let authority = uri.authority().map(http::uri::Authority::as_str);
    let host = match (given.map(HeaderValue::as_bytes), authority) {
        (Some(value), Some(authority)) if !value.eq_ignore_ascii_case(authority.as_bytes()) => {
            return bad("header names another host than the request target");
        }
        (Some(value), _) => value,
        (None, Some(authority)) => authority.as_bytes(),
        (None, None) => return Ok(()),
    };
    // Nearly every request of a client names the same host (and port):
    // what was made of the last one (the checked name, lower-cased, and
    // whether it is all the header said) is used again, not made again.
    type Made = (Box<[u8]>, bool, HeaderValue);
    thread_local! {
        static LAST: std::cell::RefCell<Option<Made>> = const { std::cell::RefCell::new(None) };
    }
    let cached = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(sent, ..)| **sent == *host)
            .map(|(_, whole, value)| (*whole, value.clone()))
    });
    let (whole, value) = match cached {
        Some(made) => made,
        None => {
            let Some(name) = crate::key::canonical_host_name(host) else {
                return bad("is not a host name");
            };
            let whole = name.as_bytes() == host;
            let Ok(value) = HeaderValue::from_str(&name) else {
                return bad("is not a host name");
            };
            LAST.set(Some((host.into(), whole, value.clone())));
            (whole, value)
        }
    };
    // A Host header that is its name alone, lower-case and without a port,
    // is kept as sent.
    if whole && given.is_some() {
        return Ok(());
    }
    headers.insert(header::HOST, value);
    Ok(())
}

/// Replaces each header the policy keys on with the normalized value the
/// key holds ([`crate::key::normalized_header`]), so an upstream that reads
/// `,USD,` differently from `USD` is never asked with one and stored for
/// both.
pub(crate) fn forward_as_keyed(headers: &mut HeaderMap, keyed: &[HeaderName]) {
    for name in keyed {
        if !headers.contains_key(name) {
            continue;
        }
        let value = crate::key::normalized_header(headers, name);
        match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(value) if !value.is_empty() => {
                headers.insert(name.clone(), value);
            }
            _ => {
                headers.remove(name);
            }
        }
    }
}

/// GET and HEAD: folio forwards them without a body, whatever the client
/// sent (a body has no meaning for them, RFC 9110 §9.3.1), so their framing
/// headers must not reach the upstream either: an upstream that reads the
/// declared body on a keep-alive connection would take the next request's
/// bytes for it.
pub(crate) fn bodiless(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

/// The method a request asks, by header, to be treated as; `None` when it
/// asks for none (or names its own method).
pub(crate) fn method_override(headers: &HeaderMap, method: &Method) -> Option<Method> {
    headers
        .iter()
        .filter(|(name, _)| method_override_header(name.as_str()))
        .find_map(|(_, value)| {
            let asked = Method::from_bytes(value.as_bytes()).ok()?;
            (asked != *method).then_some(asked)
        })
}

/// On a request answered through the cache: removes what the upstream may
/// act on but the key does not hold: the unkeyed overrides and any header
/// spelled with underscores (many servers read `X_Forwarded_Host` as
/// `X-Forwarded-Host`), except the ones the policy keys on.
pub(crate) fn drop_unkeyed(headers: &mut HeaderMap, keyed: &[HeaderName]) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let text = name.as_str();
            (unkeyed_override(text) || text.contains('_')) && !keyed.contains(name)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// `uri` with its path and query replaced (scheme and authority kept);
/// `uri` itself when nothing changes.
pub(crate) fn with_path_and_query(
    uri: &Uri,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, ProxyError> {
    if uri.path() == path && uri.query() == query {
        return Ok(uri.clone());
    }
    let path_and_query = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| ProxyError::BadRequest("the path cannot be forwarded".into()))?,
    );
    Uri::from_parts(parts)
        .map_err(|_| ProxyError::BadRequest("the path cannot be forwarded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    static TENANT: HeaderName = HeaderName::from_static("x-tenant-id");

    fn tenant() -> DecidedOn<'static> {
        DecidedOn {
            tenant: Some(&TENANT),
            keyed: &[],
        }
    }

    #[test]
    fn connection_may_not_name_what_folio_decides_on() {
        for named in [
            "X-Tenant-ID",
            "x-tenant-id",
            "Authorization",
            "cookie",
            "HOST",
        ] {
            let mut h = headers(&[
                ("x-tenant-id", "globex"),
                ("connection", &format!("keep-alive, {named}")),
            ]);
            let refused = clean_headers(&mut h, &Method::GET, tenant(), false);
            assert!(matches!(refused, Err(ProxyError::BadRequest(_))), "{named}");
        }
        let mut h = headers(&[("x-other", "1"), ("connection", "close, x-other")]);
        clean_headers(&mut h, &Method::GET, tenant(), false).unwrap();
        assert!(h.is_empty(), "the hop-by-hop header it names goes: {h:?}");
    }

    #[test]
    fn underscore_spellings_of_decided_headers_are_refused() {
        let mut h = headers(&[("x-tenant-id", "acme"), ("x_tenant_id", "globex")]);
        assert!(clean_headers(&mut h, &Method::GET, tenant(), false).is_err());
        let mut h = headers(&[("x_other", "1")]);
        assert!(clean_headers(&mut h, &Method::GET, tenant(), false).is_ok());
    }

    #[test]
    fn bodiless_requests_lose_their_framing() {
        let mut h = headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        clean_headers(&mut h, &Method::GET, tenant(), false).unwrap();
        assert!(h.is_empty());
        let mut h = headers(&[("content-length", "5")]);
        clean_headers(&mut h, &Method::POST, tenant(), false).unwrap();
        assert_eq!(h["content-length"], "5");
    }

    #[test]
    fn client_addresses_are_believed_from_trusted_proxies_only() {
        let sent = [("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")];
        let mut h = headers(&sent);
        clean_headers(&mut h, &Method::GET, tenant(), false).unwrap();
        assert!(h.is_empty());
        let mut h = headers(&sent);
        clean_headers(&mut h, &Method::GET, tenant(), true).unwrap();
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn unkeyed_overrides_go_unless_keyed() {
        let sent = [
            ("x-forwarded-host", "evil.example"),
            ("x_forwarded_host", "evil.example"),
            ("x-original-url", "/admin"),
            ("accept", "application/json"),
        ];
        let mut h = headers(&sent);
        drop_unkeyed(&mut h, &[]);
        assert_eq!(h.len(), 1);
        let mut h = headers(&sent);
        drop_unkeyed(&mut h, &[HeaderName::from_static("x-forwarded-host")]);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn host_is_one_name_without_its_port() {
        let target: Uri = "/x".parse().unwrap();
        for (sent, kept) in [
            ("Shop.Example:8080", "shop.example"),
            ("shop.example", "shop.example"),
            ("a.EXAMPLE", "a.example"),
            ("[::1]:80", "[::1]"),
            ("127.0.0.1:9", "127.0.0.1"),
            ("Shop.Example.:8080", "shop.example"),
            ("[0:0::1]", "[::1]"),
            ("[::0001]:443", "[::1]"),
            ("[2001:DB8::A]", "[2001:db8::a]"),
        ] {
            let mut h = headers(&[("host", sent)]);
            canonical_host(&mut h, &target).unwrap();
            assert_eq!(h["host"], kept, "{sent}");
        }
        for bad in [
            "a b",
            "shop.example:x",
            "shop.example:123456",
            "",
            "a/b",
            "x:1:2",
            "[::g]",
            "[1:2]",
        ] {
            let mut h = headers(&[("host", bad)]);
            assert!(canonical_host(&mut h, &target).is_err(), "{bad:?}");
        }
        let mut two = headers(&[("host", "a.example"), ("host", "b.example")]);
        assert!(canonical_host(&mut two, &target).is_err());
        let absolute: Uri = "http://other.example/x".parse().unwrap();
        let mut h = headers(&[("host", "shop.example")]);
        assert!(canonical_host(&mut h, &absolute).is_err());
        let mut h2 = HeaderMap::new();
        canonical_host(&mut h2, &"http://Shop.example:443/x".parse().unwrap()).unwrap();
        assert_eq!(h2["host"], "shop.example");
    }

    #[test]
    fn loops_and_overrides_are_recognized() {
        assert!(refuse_loop(&headers(&[("via", "1.1 cdn, 1.1 folio")])).is_err());
        assert!(refuse_loop(&headers(&[("via", "1.1 folio-edge, 1.0 proxy")])).is_ok());
        let h = headers(&[("x-http-method-override", "DELETE")]);
        assert_eq!(method_override(&h, &Method::GET), Some(Method::DELETE));
        assert_eq!(method_override(&h, &Method::DELETE), None);
    }
}
