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

use http::{HeaderMap, HeaderName, Method, Uri, header};

use crate::error::ProxyError;
use crate::outcome::CACHE_NAME;
use crate::upstream;

/// Headers that change what an upstream answers without being part of the
/// URL: hosts, schemes, prefixes and URLs behind proxies, and method
/// overrides. On a request answered through the cache they are removed
/// unless the policy keys on them; otherwise one client's variant would be
/// served to everyone.
const UNKEYED_OVERRIDES: [&str; 19] = [
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-host",
    "x-original-host",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-url-scheme",
    "front-end-https",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers in which a client may ask a server to treat a request as
/// another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers naming the client's address, believed only from trusted proxies.
const CLIENT_ADDRESS: [&str; 4] = ["x-forwarded-for", "forwarded", "x-real-ip", "x-client-ip"];

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

/// Cleans a request's headers in place: what is hop-by-hop is removed
/// (after refusing a `Connection` that names a header folio decides on), a
/// header folio decides on may not also arrive spelled with underscores,
/// a GET or HEAD loses any body framing, and the client's address headers
/// are dropped unless `trusted` (the peer is a trusted proxy).
///
/// `decided_on` are the request headers besides `Host`, `Authorization` and
/// `Cookie` that folio reads: the tenant header, the policy's key headers.
pub(crate) fn clean_headers(
    headers: &mut HeaderMap,
    method: &Method,
    decided_on: &[&HeaderName],
    trusted: bool,
) -> Result<(), ProxyError> {
    let always = [&header::HOST, &header::AUTHORIZATION, &header::COOKIE];
    let decided = |name: &str| {
        always
            .iter()
            .chain(decided_on)
            .any(|d| d.as_str().eq_ignore_ascii_case(name))
    };
    for named in headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        if decided(named) {
            return Err(ProxyError::BadRequest(format!(
                "Connection names {named}, which folio needs to forward"
            )));
        }
    }
    upstream::strip_hop_by_hop(headers);
    if let Some(name) = headers
        .keys()
        .map(HeaderName::as_str)
        .find(|name| name.contains('_') && decided(&name.replace('_', "-")))
    {
        return Err(ProxyError::BadRequest(format!(
            "the header {name} is another spelling of one folio reads"
        )));
    }
    if bodiless(method) {
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
        ] {
            headers.remove(name);
        }
    }
    if !trusted {
        for name in CLIENT_ADDRESS {
            headers.remove(name);
        }
    }
    Ok(())
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
    METHOD_OVERRIDES
        .iter()
        .filter_map(|name| headers.get(*name))
        .find_map(|value| {
            let asked = Method::from_bytes(value.as_bytes()).ok()?;
            (asked != *method).then_some(asked)
        })
}

/// On a request answered through the cache: removes what the upstream may
/// act on but the key does not hold: the [`UNKEYED_OVERRIDES`] and any
/// header spelled with underscores (many servers read `X_Forwarded_Host`
/// as `X-Forwarded-Host`), except the ones the policy keys on.
pub(crate) fn drop_unkeyed(headers: &mut HeaderMap, keyed: &[HeaderName]) {
    let is_keyed = |name: &str| keyed.iter().any(|k| k.as_str() == name);
    for name in UNKEYED_OVERRIDES {
        if !is_keyed(name) {
            headers.remove(name);
        }
    }
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_') && !is_keyed(name.as_str()))
        .cloned()
        .collect();
    for name in underscored {
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

    const TENANT: HeaderName = HeaderName::from_static("x-tenant-id");

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
            let refused = clean_headers(&mut h, &Method::GET, &[&TENANT], false);
            assert!(matches!(refused, Err(ProxyError::BadRequest(_))), "{named}");
        }
        let mut h = headers(&[("x-other", "1"), ("connection", "close, x-other")]);
        clean_headers(&mut h, &Method::GET, &[&TENANT], false).unwrap();
        assert!(h.is_empty(), "the hop-by-hop header it names goes: {h:?}");
    }

    #[test]
    fn underscore_spellings_of_decided_headers_are_refused() {
        let mut h = headers(&[("x-tenant-id", "acme"), ("x_tenant_id", "globex")]);
        assert!(clean_headers(&mut h, &Method::GET, &[&TENANT], false).is_err());
        let mut h = headers(&[("x_other", "1")]);
        assert!(clean_headers(&mut h, &Method::GET, &[&TENANT], false).is_ok());
    }

    #[test]
    fn bodiless_requests_lose_their_framing() {
        let mut h = headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        clean_headers(&mut h, &Method::GET, &[], false).unwrap();
        assert!(h.is_empty());
        let mut h = headers(&[("content-length", "5")]);
        clean_headers(&mut h, &Method::POST, &[], false).unwrap();
        assert_eq!(h["content-length"], "5");
    }

    #[test]
    fn client_addresses_are_believed_from_trusted_proxies_only() {
        let sent = [("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")];
        let mut h = headers(&sent);
        clean_headers(&mut h, &Method::GET, &[], false).unwrap();
        assert!(h.is_empty());
        let mut h = headers(&sent);
        clean_headers(&mut h, &Method::GET, &[], true).unwrap();
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
    fn loops_and_overrides_are_recognized() {
        assert!(refuse_loop(&headers(&[("via", "1.1 cdn, 1.1 folio")])).is_err());
        assert!(refuse_loop(&headers(&[("via", "1.1 folio-edge, 1.0 proxy")])).is_ok());
        let h = headers(&[("x-http-method-override", "DELETE")]);
        assert_eq!(method_override(&h, &Method::GET), Some(Method::DELETE));
        assert_eq!(method_override(&h, &Method::DELETE), None);
    }
}
