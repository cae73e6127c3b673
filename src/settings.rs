//! Process settings: where to listen and forward, the cache tiers' sizes and
//! timeouts, and where the tenant of a request comes from. Built by `main`
//! from flags and `FOLIO_*` variables, or directly by tests.

use std::borrow::Cow;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, Uri, header};

use crate::error::ProxyError;
use crate::key::canonical_host_name;

mod admin_auth;

pub use admin_auth::AdminAuth;

/// Everything `folio::run` needs besides the listener and the policies.
#[derive(Clone)]
pub struct Settings {
    /// The API folio fronts, e.g. `http://127.0.0.1:8081` (a path prefix is kept).
    pub upstream: Uri,
    /// Longest wait for the upstream's response headers (and, for responses
    /// being cached, its whole body); then 504.
    pub upstream_timeout: Duration,
    /// Longest wait for each part of a body the upstream streams on (not
    /// stored); then that answer is cut short, as nginx's
    /// `proxy_read_timeout` does.
    pub upstream_read_timeout: Duration,
    /// Longest wait for a TCP connection to the upstream; then 502.
    pub connect_timeout: Duration,
    /// L1 budget in bytes; 0 turns L1 off.
    pub l1_capacity: u64,
    /// Redis URL for L2 (`redis://…`, `rediss://…` over TLS,
    /// `redis+unix:///…`); `None` turns L2 off. May hold a password: never
    /// printed (see the `Debug` impl).
    pub redis: Option<String>,
    /// Nodes of a Redis Cluster for L2 (instead of `redis`).
    pub redis_cluster: Vec<String>,
    /// Extra certificate authorities (PEM) trusted, beside the system's, for
    /// an `https://` upstream and `rediss://` Redis.
    pub ca_file: Option<std::path::PathBuf>,
    /// The certificate chain (PEM) the listener serves; with `tls_key`, the
    /// listener speaks TLS. Re-read on SIGHUP.
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// `KEY_ID BASE64_32_BYTES` lines: entries written to Redis are sealed
    /// with the first key, and opened with any.
    pub encryption_keys: Option<std::path::PathBuf>,
    /// Longest wait for one Redis command; then a miss.
    pub l2_timeout: Duration,
    /// Where the tenant of a request comes from.
    pub tenant: TenantSource,
    /// How long in-flight requests may finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// A client connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Where the access log goes (off for library users unless set).
    pub access_log: crate::AccessTarget,
    /// How access lines are written.
    pub log_format: crate::AccessFormat,
    /// Access-log bytes buffered while the output is behind; past it,
    /// lines are dropped and counted.
    pub access_log_buffer: usize,
    /// Who may purge through the admin API.
    pub admin: AdminAuth,
    /// Act as a CDN-class cache: `CDN-Cache-Control` from the upstream wins
    /// over `Cache-Control` (RFC 9213).
    pub cdn: bool,
    /// Metric label slots for tenants without a token (tenants with one
    /// always have their own label); an idle slot goes to a newcomer.
    pub metrics_tenants: usize,
    /// Health thresholds and warming, from `--config`.
    pub config: crate::config::Config,
    /// Where the policies were read from, to reload them (SIGHUP, admin).
    pub policies_dir: Option<std::path::PathBuf>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` are believed (a load
    /// balancer in front of folio); from anyone else they are replaced.
    pub trusted_proxies: Vec<Cidr>,
}

impl Settings {
    /// Defaults for everything but the upstream.
    pub fn new(upstream: Uri) -> Self {
        Self {
            upstream,
            upstream_timeout: Duration::from_secs(10),
            upstream_read_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            l1_capacity: 256 << 20,
            redis: None,
            redis_cluster: Vec::new(),
            ca_file: None,
            tls_cert: None,
            tls_key: None,
            encryption_keys: None,
            l2_timeout: Duration::from_millis(50),
            tenant: TenantSource::default(),
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            access_log: crate::AccessTarget::Off,
            log_format: crate::AccessFormat::Human,
            access_log_buffer: crate::access::DEFAULT_BUFFER,
            admin: AdminAuth::default(),
            cdn: true,
            metrics_tenants: 20,
            config: crate::config::Config::default(),
            policies_dir: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a new field cannot be forgotten here; URLs are
        // printed without their passwords.
        let Self {
            upstream,
            upstream_timeout,
            upstream_read_timeout,
            connect_timeout,
            l1_capacity,
            redis,
            redis_cluster,
            ca_file,
            tls_cert,
            tls_key,
            encryption_keys,
            l2_timeout,
            tenant,
            shutdown_grace,
            idle_timeout,
            access_log,
            log_format,
            access_log_buffer,
            admin,
            cdn,
            metrics_tenants,
            config,
            policies_dir,
            trusted_proxies,
        } = self;
        let redact = |url: &String| crate::tls::redact_url(url).into_owned();
        f.debug_struct("Settings")
            .field("upstream", &crate::tls::redact_url(&upstream.to_string()))
            .field("upstream_timeout", upstream_timeout)
            .field("upstream_read_timeout", upstream_read_timeout)
            .field("connect_timeout", connect_timeout)
            .field("l1_capacity", l1_capacity)
            .field("redis", &redis.as_ref().map(redact))
            .field(
                "redis_cluster",
                &redis_cluster.iter().map(redact).collect::<Vec<_>>(),
            )
            .field("ca_file", ca_file)
            .field("tls_cert", tls_cert)
            .field("tls_key", tls_key)
            .field("encryption_keys", encryption_keys)
            .field("l2_timeout", l2_timeout)
            .field("tenant", tenant)
            .field("shutdown_grace", shutdown_grace)
            .field("idle_timeout", idle_timeout)
            .field("access_log", access_log)
            .field("log_format", log_format)
            .field("access_log_buffer", access_log_buffer)
            .field("admin", admin)
            .field("cdn", cdn)
            .field("metrics_tenants", metrics_tenants)
            .field("config", config)
            .field("policies_dir", policies_dir)
            .field("trusted_proxies", trusted_proxies)
            .finish()
    }
}

/// Where a request's tenant is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSource {
    /// A request header (default `X-Tenant-ID`); absent means the anonymous tenant.
    Header(HeaderName),
    /// The `Host` (port dropped, lower-cased).
    Host,
    /// The N-th path segment, counting from 1.
    PathSegment(usize),
}

impl Default for TenantSource {
    fn default() -> Self {
        Self::Header(HeaderName::from_static("x-tenant-id"))
    }
}

impl FromStr for TenantSource {
    type Err = String;

    /// `header:NAME`, `host` or `path:N`.
    fn from_str(text: &str) -> Result<Self, String> {
        let fail = || format!("bad tenant source '{text}': expected header:NAME, host or path:N");
        match text.split_once(':') {
            None if text.eq_ignore_ascii_case("host") => Ok(Self::Host),
            Some((kind, name)) if kind.eq_ignore_ascii_case("header") => {
                HeaderName::from_bytes(name.trim().as_bytes())
                    .map(Self::Header)
                    .map_err(|_| fail())
            }
            Some((kind, n)) if kind.eq_ignore_ascii_case("path") => match n.trim().parse::<usize>()
            {
                Ok(n) if n > 0 => Ok(Self::PathSegment(n)),
                _ => Err(fail()),
            },
            _ => Err(fail()),
        }
    }
}

/// Longest tenant accepted; anything longer is a client error, not a key.
const MAX_TENANT_LEN: usize = 128;

/// Whether `tenant` may name a tenant: 1 to 128 bytes of letters, digits
/// and `. _ - ~ : @ [ ]` (enough for ids and host names). Anything else (a
/// comma that joins two values, spaces, quotes, markup) would be read one
/// way here and another way by the upstream, a log or a dashboard.
pub(crate) fn valid_tenant(tenant: &str) -> bool {
    (1..=MAX_TENANT_LEN).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-~:@[]".contains(&b))
}

impl TenantSource {
    /// The tenant requests know by `given`, as the admin API and tokens
    /// name one: a host lower-cased and without its port, like the `Host`
    /// requests send; otherwise as given (header values are trimmed). A
    /// name no request could have is refused: a purge for it would purge
    /// nothing, and say it had.
    pub(crate) fn named(&self, given: &str) -> Result<String, String> {
        let given = given.trim();
        let tenant = match self {
            // A name no Host can have would name no request's tenant.
            Self::Host => canonical_host_name(given.as_bytes())
                .map(Cow::into_owned)
                .unwrap_or_default(),
            Self::Header(_) | Self::PathSegment(_) => given.to_owned(),
        };
        if valid_tenant(&tenant) {
            Ok(tenant)
        } else {
            Err(format!(
                "'{}' is not a tenant: expected 1 to {MAX_TENANT_LEN} letters, digits or . _ - ~ : @ [ ]",
                given.escape_debug()
            ))
        }
    }

    /// The header the tenant is read from, if it comes from one.
    pub(crate) fn header(&self) -> Option<&HeaderName> {
        match self {
            Self::Header(name) => Some(name),
            Self::Host => Some(&header::HOST),
            Self::PathSegment(_) => None,
        }
    }

    /// The tenant of a request; `""` is the anonymous tenant (no tenant
    /// header, or no such path segment). A tenant that is given must be
    /// given once and be [`valid_tenant`]: the upstream may read the last of
    /// two headers, or split one at a comma, and then it would answer for
    /// another tenant than the key names.
    pub(crate) fn tenant<'a>(&self, parts: &'a Parts) -> Result<Cow<'a, str>, ProxyError> {
        let bad = |what: String| Err(ProxyError::BadRequest(what));
        let tenant: Cow<'a, str> = match self {
            Self::Header(name) => {
                let mut values = parts.headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => return Ok(Cow::Borrowed("")),
                    (Some(_), Some(_)) => {
                        return bad(format!("send one {name} header, not several"));
                    }
                    (Some(value), None) => match value.to_str() {
                        Ok(value) => Cow::Borrowed(value.trim()),
                        Err(_) => return bad(format!("the {name} header must be visible ASCII")),
                    },
                }
            }
            Self::Host => {
                let mut values = parts.headers.get_all(header::HOST).iter();
                let host = match (values.next(), values.next()) {
                    (_, Some(_)) => return bad("send one Host header, not several".to_owned()),
                    (Some(value), None) => value.to_str().unwrap_or("\u{0}"),
                    (None, None) => parts.uri.authority().map_or("", |a| a.as_str()),
                };
                if host.is_empty() {
                    return Ok(Cow::Borrowed(""));
                }
                // Its one spelling; a value that is no host is kept, for
                // the tenant check below to refuse.
                canonical_host_name(host.as_bytes()).unwrap_or(Cow::Borrowed(host))
            }
            Self::PathSegment(n) => {
                match crate::policy::route::split_path(parts.uri.path()).nth(n - 1) {
                    None => return Ok(Cow::Borrowed("")),
                    Some(segment) => Cow::Borrowed(segment),
                }
            }
        };
        if !valid_tenant(&tenant) {
            return bad(format!(
                "not a tenant: expected 1 to {MAX_TENANT_LEN} letters, digits or . _ - ~ : @"
            ));
        }
        Ok(tenant)
    }
}

/// An address range, `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fail = || {
            format!("bad address range '{text}': expected e.g. 10.0.0.0/8, 127.0.0.1 or ::1/128")
        };
        let (address, prefix) = text.trim().split_once('/').unwrap_or((text.trim(), ""));
        let network: IpAddr = address.parse().map_err(|_| fail())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(fail)?
        };
        Ok(Self { network, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tenant_sources() {
        let default = TenantSource::default();
        assert_eq!(
            default
                .tenant(&parts("/a", &[("x-tenant-id", "acme")]))
                .unwrap(),
            "acme"
        );
        assert_eq!(default.tenant(&parts("/a", &[])).unwrap(), "");
        let host: TenantSource = "host".parse().unwrap();
        assert_eq!(
            host.tenant(&parts("/a", &[("host", "Acme.example.com:8080")]))
                .unwrap(),
            "acme.example.com"
        );
        let path: TenantSource = "path:2".parse().unwrap();
        assert_eq!(
            path.tenant(&parts("/t/globex/products", &[])).unwrap(),
            "globex"
        );
        let custom: TenantSource = "header:X-Shop".parse().unwrap();
        assert_eq!(
            custom
                .tenant(&parts("/", &[("x-shop", "initech")]))
                .unwrap(),
            "initech"
        );
        assert!("path:0".parse::<TenantSource>().is_err());
        assert!("cookie:x".parse::<TenantSource>().is_err());
        let long = "x".repeat(200);
        assert!(
            default
                .tenant(&parts("/", &[("x-tenant-id", &long)]))
                .is_err()
        );
    }

    #[test]
    fn a_tenant_is_one_plain_value() {
        let default = TenantSource::default();
        let mut duplicate = parts("/", &[("x-tenant-id", "acme")]);
        duplicate
            .headers
            .append("x-tenant-id", http::HeaderValue::from_static("globex"));
        assert!(default.tenant(&duplicate).is_err());
        for bad in ["acme,globex", "acme globex", "<b>", "a\"b", "", "caf\u{e9}"] {
            let value = http::HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            let mut p = parts("/", &[]);
            p.headers.insert("x-tenant-id", value);
            assert!(default.tenant(&p).is_err(), "{bad:?}");
        }
        for good in ["acme", "acme-eu_1.x", "t:1@x"] {
            assert_eq!(
                default
                    .tenant(&parts("/", &[("x-tenant-id", good)]))
                    .unwrap(),
                good
            );
        }
        let host: TenantSource = "host".parse().unwrap();
        let mut two_hosts = parts("/", &[("host", "a.example")]);
        two_hosts
            .headers
            .append("host", http::HeaderValue::from_static("b.example"));
        assert!(host.tenant(&two_hosts).is_err());
    }

    #[test]
    fn settings_never_print_a_redis_password() {
        let mut settings = Settings::new("http://127.0.0.1:8081".parse().unwrap());
        settings.redis = Some("rediss://folio:hunter2@cache:6380".into());
        settings.redis_cluster = vec!["rediss://:hunter2@node:7000".into()];
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("rediss://folio:***@cache:6380"),
            "{printed}"
        );
    }

    #[test]
    fn address_ranges() {
        let lan: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(lan.contains("10.1.2.3".parse().unwrap()));
        assert!(!lan.contains("11.0.0.1".parse().unwrap()));
        assert!(lan.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "::1/129", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
