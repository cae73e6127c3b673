//! Who may call the admin API: the tokens, and how a request shows one;
//! and which requests a web page could have sent on someone's behalf.
//!
//! A browser on the operator's machine can reach a loopback admin API from
//! any web page: an HTML form posts `text/plain` or form bodies across
//! sites without asking (CSRF). Mutations therefore need a JSON body
//! (`Content-Type: application/json`, which a page on another origin can
//! only send after a CORS preflight this API never grants) and no foreign
//! `Origin`.

use std::net::{IpAddr, SocketAddr};

use http::uri::Authority;
use http::{Request, StatusCode, header};
use hyper::body::Incoming;

use super::Refusal;

/// Who may change what.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    /// May purge for any tenant, or every tenant at once.
    pub operator_token: Option<String>,
    /// `(tenant, token)`: the token may purge for that tenant only.
    pub tenant_tokens: Vec<(String, String)>,
}

impl AdminAuth {
    pub(crate) fn is_open(&self) -> bool {
        self.operator_token.is_none() && self.tenant_tokens.is_empty()
    }
}

/// The caller of a mutation, once authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Caller {
    Operator,
    Tenant(String),
}

pub(super) fn authorize(
    auth: &AdminAuth,
    request: &Request<Incoming>,
    peer: SocketAddr,
) -> Result<Caller, Refusal> {
    if auth.is_open() {
        return if peer.ip().is_loopback() {
            Ok(Caller::Operator)
        } else {
            Err(Refusal::forbidden(
                "no --admin-token is configured, so mutations are accepted from loopback only",
            ))
        };
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        ));
    };
    if auth
        .operator_token
        .as_deref()
        .is_some_and(|t| same(t, presented))
    {
        return Ok(Caller::Operator);
    }
    if let Some((tenant, _)) = auth.tenant_tokens.iter().find(|(_, t)| same(t, presented)) {
        return Ok(Caller::Tenant(tenant.clone()));
    }
    Err(Refusal::forbidden("the token is not valid"))
}

/// Refuses a mutation that a web page could have sent: one carrying the
/// `Origin` of another site (403), or whose body is not declared JSON (415).
pub(super) fn check_mutation<B>(
    request: &Request<B>,
    listen: Option<SocketAddr>,
) -> Result<(), Refusal> {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let own = origin
            .to_str()
            .is_ok_and(|origin| same_origin(origin, authority(request), listen));
        if !own {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "foreign_origin",
                "a page of another origin cannot change folio",
            ));
        }
    }
    if !declares_json(request) {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON, with Content-Type: application/json",
        ));
    }
    Ok(())
}

/// The name the request was sent to: HTTP/2's `:authority` (or an
/// absolute-form target), else the `Host` header.
pub(super) fn authority<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request.headers().get(header::HOST)?.to_str().ok(),
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the admin API itself: the
/// name the request was sent to, or the listener's own address.
fn same_origin(origin: &str, authority: Option<&str>, listen: Option<SocketAddr>) -> bool {
    let Ok(origin) = origin.parse::<http::Uri>() else {
        return false; // "null" (sandboxed frames, file: pages) too
    };
    let default_port = match origin.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return false,
    };
    let Some(from) = origin.authority().filter(|a| !a.as_str().contains('@')) else {
        return false;
    };
    let port = from.port_u16().unwrap_or(default_port);
    let to_request = authority
        .and_then(|a| a.parse::<Authority>().ok())
        .is_some_and(|to| {
            to.host().eq_ignore_ascii_case(from.host())
                && to.port_u16().unwrap_or(default_port) == port
        });
    let to_listener =
        listen.is_some_and(|l| l.port() == port && ip_literal(from.host()) == Some(l.ip()));
    to_request || to_listener
}

/// `127.0.0.1` or `[::1]` as an address; `None` for a name.
pub(super) fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Exactly one `Content-Type`, and it is `application/json` (any parameters).
fn declares_json<B>(request: &Request<B>) -> bool {
    let mut values = request.headers().get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Compares secrets in time that does not depend on where they differ.
fn same(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::post("/_folio/purge");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap()
    }

    #[test]
    fn mutations_need_json_and_no_foreign_origin() {
        let listen: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let check = |headers: &[(&str, &str)]| {
            check_mutation(&post(headers), Some(listen)).map_err(|r| r.status.as_u16())
        };
        let json = ("content-type", "application/json");
        assert_eq!(check(&[json]), Ok(()));
        assert_eq!(
            check(&[("content-type", "application/json;charset=utf-8")]),
            Ok(())
        );
        assert_eq!(check(&[]), Err(415));
        assert_eq!(check(&[("content-type", "text/plain")]), Err(415));
        assert_eq!(check(&[json, ("content-type", "text/plain")]), Err(415));

        let host = ("host", "localhost:9090");
        assert_eq!(
            check(&[json, host, ("origin", "http://localhost:9090")]),
            Ok(())
        );
        assert_eq!(
            check(&[json, host, ("origin", "http://LOCALHOST:9090")]),
            Ok(())
        );
        assert_eq!(
            check(&[json, host, ("origin", "http://127.0.0.1:9090")]),
            Ok(()),
            "the listener"
        );
        assert_eq!(
            check(&[json, ("host", "localhost"), ("origin", "http://localhost")]),
            Ok(())
        );
        for foreign in [
            "null",
            "http://evil.example",
            "http://localhost:9091",
            "http://localhost",
            "ftp://localhost:9090",
            "http://user@localhost:9090",
            "localhost:9090",
        ] {
            assert_eq!(
                check(&[json, host, ("origin", foreign)]),
                Err(403),
                "{foreign}"
            );
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cret", "s3cre"));
        assert!(!same("s3cret", "s3cres"));
    }
}
