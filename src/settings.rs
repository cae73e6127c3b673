//! Process settings: where to listen and forward, the cache tiers' sizes and
//! timeouts, and where the tenant of a request comes from. Built by `main`
//! from flags and `FOLIO_*` variables, or directly by tests.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, Uri, header};

use crate::error::ProxyError;

/// Everything `folio::run` needs besides the listener and the policies.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The API folio fronts, e.g. `http://127.0.0.1:8081` (a path prefix is kept).
    pub upstream: Uri,
    /// Longest wait for the upstream's response headers (and, for responses
    /// being cached, its whole body); then 504.
    pub upstream_timeout: Duration,
    /// Longest wait for a TCP connection to the upstream; then 502.
    pub connect_timeout: Duration,
    /// L1 budget in bytes; 0 turns L1 off.
    pub l1_capacity: u64,
    /// Redis URL for L2 (`redis://…`, `redis+unix:///…`); `None` turns L2 off.
    pub redis: Option<String>,
    /// Nodes of a Redis Cluster for L2 (instead of `redis`).
    pub redis_cluster: Vec<String>,
    /// Longest wait for one Redis command; then a miss.
    pub l2_timeout: Duration,
    /// Where the tenant of a request comes from.
    pub tenant: TenantSource,
    /// How long in-flight requests may finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Who may purge through the admin API.
    pub admin: crate::AdminAuth,
    /// Act as a CDN-class cache: `CDN-Cache-Control` from the upstream wins
    /// over `Cache-Control` (RFC 9213).
    pub cdn: bool,
    /// Tenants kept apart in metrics; later ones count as `other`.
    pub metrics_tenants: usize,
    /// Health thresholds and warming, from `--config`.
    pub config: crate::config::Config,
    /// Where the policies were read from, to reload them (SIGHUP, admin).
    pub policies_dir: Option<std::path::PathBuf>,
}

impl Settings {
    /// Defaults for everything but the upstream.
    pub fn new(upstream: Uri) -> Self {
        Self {
            upstream,
            upstream_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            l1_capacity: 256 << 20,
            redis: None,
            redis_cluster: Vec::new(),
            l2_timeout: Duration::from_millis(50),
            tenant: TenantSource::default(),
            shutdown_grace: Duration::from_secs(10),
            admin: crate::AdminAuth::default(),
            cdn: true,
            metrics_tenants: 20,
            config: crate::config::Config::default(),
            policies_dir: None,
        }
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

impl TenantSource {
    /// The tenant of a request; `""` is the anonymous tenant.
    pub(crate) fn tenant<'a>(&self, parts: &'a Parts) -> Result<Cow<'a, str>, ProxyError> {
        let tenant: Cow<'a, str> = match self {
            Self::Header(name) => match parts.headers.get(name) {
                None => Cow::Borrowed(""),
                Some(value) => Cow::Borrowed(value.to_str().map_err(|_| {
                    ProxyError::BadRequest(format!("the {name} header must be visible ASCII"))
                })?),
            },
            Self::Host => {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| parts.uri.authority().map(|a| a.as_str()))
                    .unwrap_or("");
                let host = host.rsplit_once(':').map_or(host, |(h, port)| {
                    if port.bytes().all(|b| b.is_ascii_digit()) {
                        h
                    } else {
                        host
                    }
                });
                if host.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(host.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(host)
                }
            }
            Self::PathSegment(n) => Cow::Borrowed(
                crate::policy::route::split_path(parts.uri.path())
                    .nth(n - 1)
                    .unwrap_or(""),
            ),
        };
        if tenant.len() > MAX_TENANT_LEN {
            return Err(ProxyError::BadRequest(format!(
                "tenant longer than {MAX_TENANT_LEN} bytes"
            )));
        }
        Ok(tenant)
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
}
