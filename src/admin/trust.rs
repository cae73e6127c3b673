//! Who may call the admin API, and which requests it answers at all.
//!
//! - Tokens: `Authorization: Bearer <token>` names the operator or a
//!   tenant ([`Credential`]); [`authorize`] decides mutations, [`reader`]
//!   the figures.
//! - Names: a browser on the operator's machine reaches a loopback admin API
//!   from any web page. A page whose DNS name is re-pointed at 127.0.0.1
//!   (DNS rebinding) is same-origin for the browser but names itself in
//!   `Host`, so without a token only names that cannot be rebound are
//!   answered ([`trusted_name`]).
//! - Cross-site requests: an HTML form posts `text/plain` or form bodies
//!   across sites without asking (CSRF). Mutations therefore need a JSON
//!   body, which a page on another origin can only send after a CORS
//!   preflight this API never grants, and no foreign `Origin`
//!   ([`check_mutation`]).

use std::net::{IpAddr, SocketAddr};

use http::uri::Authority;
use http::{Request, StatusCode, header};
use sha2::{Digest, Sha256};

use super::Refusal;
use crate::settings::{AdminAuth, TenantSource};

/// A caller, once its token (or, with no token configured, loopback) says
/// who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Caller {
    Operator,
    Tenant(String),
}

/// What a request's `Authorization` header shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Credential {
    /// No `Authorization` header.
    Absent,
    /// Not `Bearer <token>`, or more than one `Authorization` header.
    Malformed,
    /// A well-formed token that is nobody's.
    Unknown,
    /// The token of this caller.
    Valid(Caller),
}

impl Credential {
    pub(super) fn of<B>(auth: &AdminAuth, request: &Request<B>) -> Self {
        let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Self::Absent;
        };
        if values.next().is_some() {
            return Self::Malformed;
        }
        match value.to_str().ok().and_then(bearer_token) {
            None => Self::Malformed,
            Some(token) => auth.caller(token).map_or(Self::Unknown, Self::Valid),
        }
    }
}

/// The token of `Bearer <token>` (RFC 6750): the scheme in any case, one or
/// more spaces, then exactly one token.
fn bearer_token(value: &str) -> Option<&str> {
    let mut parts = value.split(' ').filter(|part| !part.is_empty());
    let (Some(scheme), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

impl AdminAuth {
    /// Whose token `presented` is. Every configured token is compared,
    /// each by its SHA-256 digest in full, so the time taken says nothing
    /// about how much of a token was right, nor how long it is.
    fn caller(&self, presented: &str) -> Option<Caller> {
        let presented = Sha256::digest(presented.as_bytes());
        let mut found = None;
        if let Some(token) = &self.operator_token
            && same(token, &presented)
        {
            found = Some(Caller::Operator);
        }
        for (tenant, token) in &self.tenant_tokens {
            if same(token, &presented) && found.is_none() {
                found = Some(Caller::Tenant(tenant.clone()));
            }
        }
        found
    }
}

/// Who may make a mutation: with no token configured, a loopback peer is
/// the operator; otherwise the caller whose token the request shows.
pub(super) fn authorize(
    auth: &AdminAuth,
    credential: &Credential,
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
    match credential {
        Credential::Valid(caller) => Ok(caller.clone()),
        Credential::Absent | Credential::Malformed => Err(Refusal::unauthorized()),
        Credential::Unknown => Err(Refusal::forbidden("the token is not valid")),
    }
}

/// Who may read the figures (stats, metrics, explain): the caller whose
/// token the request shows. Without a token, the operator, as long as no
/// operator token is configured (the request got past the name check);
/// once one is, the figures need a token.
pub(super) fn reader(auth: &AdminAuth, credential: &Credential) -> Result<Caller, Refusal> {
    if auth.is_open() {
        return Ok(Caller::Operator);
    }
    match credential {
        Credential::Valid(caller) => Ok(caller.clone()),
        Credential::Absent if auth.operator_token.is_none() => Ok(Caller::Operator),
        Credential::Absent | Credential::Malformed => Err(Refusal::unauthorized()),
        Credential::Unknown => Err(Refusal::forbidden("the token is not valid")),
    }
}

/// Refuses a mutation that a web page could have sent: one carrying the
/// `Origin` of another site (403), or whose body is not declared JSON (415).
pub(super) fn check_mutation<B>(
    request: &Request<B>,
    listen: Option<SocketAddr>,
) -> Result<(), Refusal> {
    for origin in request.headers().get_all(header::ORIGIN) {
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
fn authority<B>(request: &Request<B>) -> Option<&str> {
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

/// Whether the request names the admin API in a way DNS rebinding cannot
/// forge: `localhost`, a loopback address (any port), or the listener's own
/// address. A page on evil.example whose name the attacker then points at
/// 127.0.0.1 reaches the listener from the operator's browser, same-origin
/// for the browser, but it says `Host: evil.example`. Every name the
/// request gives (`:authority` or an absolute target, and `Host`) must pass.
pub(super) fn trusted_name<B>(request: &Request<B>, listen: Option<SocketAddr>) -> bool {
    let target = request.uri().authority().map(Authority::as_str);
    let hosts = request.headers().get_all(header::HOST).iter();
    let names: Vec<Option<&str>> = target
        .into_iter()
        .map(Some)
        .chain(hosts.map(|h| h.to_str().ok()))
        .collect();
    !names.is_empty()
        && names
            .iter()
            .all(|name| name.is_some_and(|name| trusted_authority(name, listen)))
}

fn trusted_authority(name: &str, listen: Option<SocketAddr>) -> bool {
    let Ok(authority) = name.parse::<Authority>() else {
        return false;
    };
    if authority.as_str().contains('@') {
        return false;
    }
    let host = authority.host();
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match ip_literal(host) {
        Some(ip) if ip.is_loopback() => true,
        // An address cannot be rebound; one of the listener's, that is.
        Some(ip) => listen.is_some_and(|listen| {
            authority.port_u16() == Some(listen.port())
                && (ip == listen.ip() || listen.ip().is_unspecified())
        }),
        None => false,
    }
}

/// `127.0.0.1` or `[::1]` as an address; `None` for a name.
fn ip_literal(host: &str) -> Option<IpAddr> {
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

/// Whether `expected`'s digest is `presented` (a digest): every byte is
/// compared, whatever differs.
fn same(expected: &str, presented: &[u8]) -> bool {
    let expected = Sha256::digest(expected.as_bytes());
    let differences = expected
        .iter()
        .zip(presented)
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    expected.len() == presented.len() && std::hint::black_box(differences) == 0
}

/// The tenant a mutation acts for: `None` is every tenant (operators only).
pub(super) fn tenant_for(
    source: &TenantSource,
    caller: &Caller,
    asked: Option<String>,
) -> Result<Option<Box<str>>, Refusal> {
    let asked = asked
        .map(|given| source.named(&given))
        .transpose()
        .map_err(|why| Refusal::bad_request("bad_tenant", why))?;
    match (caller, asked) {
        (Caller::Operator, asked) => Ok(asked.map(Into::into)),
        (Caller::Tenant(own), None) => Ok(Some(own.as_str().into())),
        (Caller::Tenant(own), Some(asked)) if *own == asked => Ok(Some(asked.into())),
        (Caller::Tenant(_), Some(_)) => Err(Refusal::forbidden(
            "this token may only act for its own tenant",
        )),
    }
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
    fn only_names_that_cannot_be_rebound_are_trusted() {
        let get = |host: &str| Request::get("/").header("host", host).body(()).unwrap();
        let at = |listen: &str| Some(listen.parse::<SocketAddr>().unwrap());
        let loopback = at("127.0.0.1:9090");
        for host in [
            "localhost",
            "LOCALHOST:1234",
            "127.0.0.1",
            "127.0.0.1:9090",
            "127.1.2.3:80",
            "[::1]:9090",
            "[::1]",
        ] {
            assert!(trusted_name(&get(host), loopback), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example",
            "localhost.",
            "127.0.0.1.nip.io:9090",
            "10.0.0.5:9090",
            "user@localhost:9090",
            "",
            "[::1",
        ] {
            assert!(!trusted_name(&get(host), loopback), "{host}");
        }
        assert!(trusted_name(&get("10.0.0.5:9090"), at("10.0.0.5:9090")));
        assert!(!trusted_name(&get("10.0.0.5:9091"), at("10.0.0.5:9090")));
        assert!(trusted_name(&get("10.0.0.5:9090"), at("0.0.0.0:9090")));
        assert!(!trusted_name(
            &get("admin.internal:9090"),
            at("0.0.0.0:9090")
        ));

        let no_host = Request::get("/").body(()).unwrap();
        assert!(!trusted_name(&no_host, loopback), "no name at all");
        let h2 = |uri: &str| Request::get(uri).body(()).unwrap();
        assert!(trusted_name(&h2("http://localhost:9090/_folio/"), loopback));
        assert!(!trusted_name(
            &h2("http://evil.example:9090/_folio/"),
            loopback
        ));
        let both = Request::get("http://localhost:9090/")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        assert!(!trusted_name(&both, loopback), "every name must pass");
    }

    #[test]
    fn bearer_values_are_read_strictly() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        for malformed in [
            "",
            "Bearer",
            "Bearer ",
            "abc",
            "Basic abc",
            "Bearerabc",
            "Bearer abc def",
            "Bearer\tabc",
        ] {
            assert_eq!(bearer_token(malformed), None, "{malformed:?}");
        }
    }

    #[test]
    fn tokens_name_their_caller() {
        let auth = AdminAuth {
            operator_token: Some("op".into()),
            tenant_tokens: vec![("acme".into(), "a".into()), ("globex".into(), "g".into())],
        };
        assert_eq!(auth.caller("op"), Some(Caller::Operator));
        assert_eq!(auth.caller("g"), Some(Caller::Tenant("globex".into())));
        for wrong in ["", "o", "opp", "OP", "a ", "ag"] {
            assert_eq!(auth.caller(wrong), None, "{wrong:?}");
        }
        let digest = Sha256::digest(b"s3cret");
        assert!(same("s3cret", &digest));
        assert!(!same("s3cre", &digest));
        assert!(!same("s3cret", &digest[..31]));
    }

    #[test]
    fn tenant_tokens_act_for_their_tenant_only() {
        let acme = Caller::Tenant("acme".into());
        let header = TenantSource::default();
        assert_eq!(
            tenant_for(&header, &acme, None).unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(
            tenant_for(&header, &acme, Some("acme".into()))
                .unwrap()
                .as_deref(),
            Some("acme")
        );
        assert_eq!(
            tenant_for(&header, &acme, Some("globex".into()))
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            tenant_for(&header, &Caller::Operator, None).unwrap(),
            None,
            "operators may purge every tenant"
        );
    }

    #[test]
    fn a_purge_names_its_tenant_as_requests_do_or_is_refused() {
        let host = TenantSource::Host;
        let shop = Caller::Tenant("shop.example".into());
        for spelling in [
            "Shop.Example",
            "SHOP.EXAMPLE:8080",
            " shop.example ",
            "shop.example.",
        ] {
            assert_eq!(
                tenant_for(&host, &Caller::Operator, Some(spelling.into()))
                    .unwrap()
                    .as_deref(),
                Some("shop.example"),
                "{spelling}"
            );
            assert_eq!(
                tenant_for(&host, &shop, Some(spelling.into()))
                    .unwrap()
                    .as_deref(),
                Some("shop.example"),
            );
        }
        for no_host in ["x:1:2", "a@b", "[1:2]"] {
            let refused = tenant_for(&host, &Caller::Operator, Some(no_host.into())).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{no_host}");
        }
        let header = TenantSource::default();
        assert_eq!(
            tenant_for(&header, &Caller::Operator, Some("Acme".into()))
                .unwrap()
                .as_deref(),
            Some("Acme"),
            "a header's tenant keeps its case, as requests' do"
        );
        for nobody in ["", "a b", "acme,globex", "<b>"] {
            let refused = tenant_for(&header, &Caller::Operator, Some(nobody.into())).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{nobody:?}");
        }
    }
}
