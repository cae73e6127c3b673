//! What folio did with a request, named once and shown everywhere: the
//! `X-Cache` and `X-Cache-Layer` headers, RFC 9211 `Cache-Status`, and logs.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::cache::Layer;

pub(crate) const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub(crate) const X_CACHE_LAYER: HeaderName = HeaderName::from_static("x-cache-layer");
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The name folio gives itself in `Cache-Status` and `Via`.
pub(crate) const CACHE_NAME: &str = "folio";

/// Why a request went to the upstream without the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BypassReason {
    /// No policy matches the route.
    NoPolicy,
    /// The policy says `cache: false`.
    CacheOff,
    /// Not GET or HEAD.
    Method,
    /// `Cookie` on a route whose policy is not `private`.
    Credentials,
    /// A `Range` request nothing stored could answer, whose answer is not
    /// one part to keep (several ranges, a whole or multipart answer, an
    /// unknown length).
    Range,
    /// A GET or HEAD that asks (`X-HTTP-Method-Override`) to be another method.
    MethodOverride,
}

impl BypassReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NoPolicy => "no-policy",
            Self::CacheOff => "cache-off",
            Self::Method => "method",
            Self::Credentials => "credentials",
            Self::Range => "range",
            Self::MethodOverride => "method-override",
        }
    }
}

/// Why a cacheable request went forward (RFC 9211 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// Nothing stored for the key.
    UriMiss,
    /// Something stored, for other values of a `Vary` header.
    VaryMiss,
    /// Stored but stale.
    Stale,
    /// Stored and fresh, but the request's directives (`no-cache`,
    /// `max-age`, `min-fresh`, credentials) did not allow its use.
    Request,
}

impl Forward {
    fn as_str(self) -> &'static str {
        match self {
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Stale => "stale",
            Self::Request => "request",
        }
    }
}

/// How a response came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// Fresh from a tier.
    Hit(Layer),
    /// Stale from a tier while one refresh runs in the background.
    StaleWhileRevalidate(Layer),
    /// Stale from a tier because the upstream failed.
    StaleIfError(Layer),
    /// Stale from a tier because the client accepts it (`max-stale`).
    StaleAccepted(Layer),
    /// `only-if-cached` and nothing suitable stored: a 504, nothing forwarded.
    OnlyIfCached,
    /// From the upstream, for a cacheable request.
    Miss {
        forward: Forward,
        /// The response was stored.
        stored: bool,
        /// Another request's fetch answered this one (single flight).
        collapsed: bool,
        /// A stale entry was revalidated (the upstream said 304).
        revalidated: bool,
        detail: Option<&'static str>,
    },
    /// Passed to the upstream without looking at the cache.
    Bypass(BypassReason),
}

impl Served {
    /// The `X-Cache` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit(_) => "HIT",
            Self::StaleWhileRevalidate(_) | Self::StaleIfError(_) | Self::StaleAccepted(_) => {
                "STALE"
            }
            Self::OnlyIfCached => "MISS",
            Self::Miss {
                forward: Forward::Stale,
                ..
            } => "EXPIRED",
            Self::Miss { .. } => "MISS",
            Self::Bypass(_) => "BYPASS",
        }
    }

    /// The `X-Cache-Layer` value: which tier answered, or `UPSTREAM`.
    pub(crate) fn layer(self) -> &'static str {
        match self {
            Self::Hit(layer)
            | Self::StaleWhileRevalidate(layer)
            | Self::StaleIfError(layer)
            | Self::StaleAccepted(layer) => layer.as_str(),
            Self::OnlyIfCached => "NONE",
            Self::Miss {
                collapsed: true, ..
            } => "COLLAPSED",
            Self::Miss { .. } | Self::Bypass(_) => "UPSTREAM",
        }
    }

    /// This cache's member of `Cache-Status` (RFC 9211 §2).
    pub(crate) fn cache_status(self, ttl: Option<i64>, forwarded_status: Option<u16>) -> String {
        let mut out = String::from(CACHE_NAME);
        match self {
            Self::Hit(layer) => {
                let _ = write!(out, "; hit; detail={}", layer.as_str());
            }
            Self::StaleWhileRevalidate(layer) => {
                let _ = write!(
                    out,
                    "; hit; detail=stale-while-revalidate-{}",
                    layer.as_str()
                );
            }
            Self::StaleAccepted(layer) => {
                let _ = write!(out, "; hit; detail=max-stale-{}", layer.as_str());
            }
            Self::StaleIfError(layer) => {
                let _ = write!(out, "; fwd=stale; detail=stale-if-error-{}", layer.as_str());
            }
            Self::OnlyIfCached => out.push_str("; detail=only-if-cached"),
            Self::Miss {
                forward,
                stored,
                collapsed,
                detail,
                ..
            } => {
                let _ = write!(out, "; fwd={}", forward.as_str());
                if stored {
                    out.push_str("; stored");
                }
                if collapsed {
                    out.push_str("; collapsed");
                }
                if let Some(detail) = detail {
                    let _ = write!(out, "; detail={detail}");
                }
            }
            Self::Bypass(BypassReason::Method) => out.push_str("; fwd=method"),
            Self::Bypass(reason) => {
                let _ = write!(out, "; fwd=bypass; detail={}", reason.as_str());
            }
        }
        if let Some(status) = forwarded_status {
            let _ = write!(out, "; fwd-status={status}");
        }
        if let Some(ttl) = ttl {
            let _ = write!(out, "; ttl={ttl}");
        }
        out
    }

    /// Sets `X-Cache`, `X-Cache-Layer` and appends to `Cache-Status`.
    pub(crate) fn annotate(
        self,
        headers: &mut HeaderMap,
        ttl: Option<i64>,
        forwarded_status: Option<u16>,
    ) {
        headers.insert(X_CACHE, HeaderValue::from_static(self.as_str()));
        headers.insert(X_CACHE_LAYER, HeaderValue::from_static(self.layer()));
        let ours = self.cache_status(ttl, forwarded_status);
        // Earlier caches (nearer the origin) come first (RFC 9211 §2).
        let value = match headers.get(CACHE_STATUS).and_then(|v| v.to_str().ok()) {
            Some(theirs) => format!("{theirs}, {ours}"),
            None => ours,
        };
        if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
            headers.insert(CACHE_STATUS, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_vocabulary() {
        assert_eq!(Served::Hit(Layer::L2).as_str(), "HIT");
        assert_eq!(Served::Hit(Layer::L2).layer(), "L2");
        assert_eq!(
            Served::Hit(Layer::L1).cache_status(Some(42), None),
            "folio; hit; detail=L1; ttl=42"
        );
        let miss = Served::Miss {
            forward: Forward::UriMiss,
            stored: true,
            collapsed: false,
            revalidated: false,
            detail: None,
        };
        assert_eq!(miss.as_str(), "MISS");
        assert_eq!(
            miss.cache_status(Some(60), Some(200)),
            "folio; fwd=uri-miss; stored; fwd-status=200; ttl=60"
        );
        assert_eq!(
            Served::Bypass(BypassReason::NoPolicy).cache_status(None, Some(404)),
            "folio; fwd=bypass; detail=no-policy; fwd-status=404"
        );
        assert_eq!(
            Served::Bypass(BypassReason::Method).cache_status(None, None),
            "folio; fwd=method"
        );
        let expired = Served::Miss {
            forward: Forward::Stale,
            stored: true,
            collapsed: false,
            revalidated: false,
            detail: None,
        };
        assert_eq!(expired.as_str(), "EXPIRED");
    }

    #[test]
    fn cache_status_appends_to_the_upstreams() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_STATUS, HeaderValue::from_static("origin-cache; hit"));
        Served::Hit(Layer::L1).annotate(&mut headers, Some(1), None);
        assert_eq!(
            headers[CACHE_STATUS],
            "origin-cache; hit, folio; hit; detail=L1; ttl=1"
        );
        assert_eq!(headers[X_CACHE], "HIT");
    }
}
