//! `folio explain` and `GET /_folio/explain`: what folio would do with a
//! request, and why — the policy, the key and what went into it, the tags,
//! the lifetimes, the events that purge it. It runs the same functions the
//! pipeline runs, so it cannot drift from what folio does.

use std::fmt::Write as _;

use http::{HeaderMap, Method, Uri, header};
use serde::Serialize;

use crate::inbound;
use crate::key::{CacheKey, canonical_query, kept_query};
use crate::policy::PolicySet;
use crate::settings::TenantSource;

/// The answer of `explain`.
#[derive(Debug, Serialize)]
pub(crate) struct Explanation {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) tenant: String,
    /// The policy's name, or `(no policy)` for plain RFC 9111.
    pub(crate) policy: String,
    /// `file:line` of the policy.
    pub(crate) defined_at: Option<String>,
    pub(crate) cacheable: bool,
    pub(crate) reason: String,
    pub(crate) key: Option<String>,
    pub(crate) key_inputs: Vec<(String, String)>,
    pub(crate) tags: Vec<String>,
    /// `None`: the upstream's headers decide.
    pub(crate) ttl_s: Option<u64>,
    pub(crate) stale_while_revalidate_s: u64,
    pub(crate) stale_if_error_s: u64,
    pub(crate) invalidated_by: Vec<String>,
    /// Events a successful write to this route raises.
    pub(crate) raises: Vec<String>,
}

pub(crate) fn explain(
    policies: &PolicySet,
    tenants: &TenantSource,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Explanation {
    // The same canonical request the pipeline makes (see `inbound`); what
    // it refuses, explain says it refuses.
    let mut refused = None;
    let path = match inbound::request_path(method, uri, headers) {
        Ok(path) => path,
        Err(error) => {
            refused = Some(error);
            uri.path().to_owned()
        }
    };
    let matched = policies.match_request(method, &path);
    let (policy, params) = match &matched {
        Some(m) => (m.policy, m.params.clone()),
        None => (policies.rfc(), Vec::new()),
    };
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method.clone();
    parts.uri =
        inbound::with_path_and_query(uri, &path, uri.query()).unwrap_or_else(|_| uri.clone());
    parts.headers = headers.clone();
    let decided = inbound::DecidedOn {
        tenant: tenants.header(),
        keyed: &policy.key_headers,
    };
    if let Err(error) = inbound::clean_headers(&mut parts.headers, method, decided, false) {
        refused.get_or_insert(error);
    }
    // The host is in every key: from the URL or a Host header, as requests
    // give it.
    if let Err(error) = inbound::canonical_host(&mut parts.headers, &parts.uri) {
        refused.get_or_insert(error);
    }
    let tenant = match tenants.tenant(&parts) {
        Ok(tenant) => tenant.into_owned(),
        Err(error) => {
            refused.get_or_insert(error);
            String::new()
        }
    };
    let headers = &parts.headers;
    let query = canonical_query(policy, uri.query());
    let mut explanation = Explanation {
        method: method.to_string(),
        url: uri.to_string(),
        tenant: tenant.clone(),
        policy: policy.name.to_string(),
        defined_at: matched.as_ref().map(|m| {
            format!(
                "{}:{}",
                m.policy.source.file.display(),
                m.policy.source.line
            )
        }),
        cacheable: false,
        reason: String::new(),
        key: None,
        key_inputs: Vec::new(),
        tags: Vec::new(),
        ttl_s: policy.ttl.map(|t| t.as_secs()),
        stale_while_revalidate_s: policy.stale_while_revalidate.as_secs(),
        stale_if_error_s: policy.stale_if_error.unwrap_or_default().as_secs(),
        invalidated_by: policy
            .invalidate_on
            .iter()
            .map(ToString::to_string)
            .collect(),
        raises: policy.events.iter().map(ToString::to_string).collect(),
    };
    let safe = crate::proxy::is_safe(method);
    explanation.reason = if let Some(error) = &refused {
        format!("refused with {}: {error}", error.status().as_u16())
    } else if !safe {
        "an unsafe method: passed to the upstream; a 2xx/3xx answer purges the cached GETs of this path on every instance, and a 2xx raises the route's events".into()
    } else if matched.is_none() && !(*method == Method::GET || *method == Method::HEAD) {
        "no policy and not GET/HEAD: passed to the upstream".into()
    } else if !policy.cache {
        "the policy says cache: false: passed to the upstream".into()
    } else if !policy.caches(method) {
        format!("{method} is not cached: passed to the upstream")
    } else if !policy.private && headers.contains_key(header::COOKIE) {
        "Cookie on a shared route: passed to the upstream, nothing stored".into()
    } else if inbound::method_override(headers, method).is_some() {
        "asks to be another method (X-HTTP-Method-Override): passed to the upstream, nothing stored"
            .into()
    } else {
        explanation.cacheable = true;
        let mut reason = if policy.implicit {
            "cacheable as plain RFC 9111: the upstream's Cache-Control, Expires and Last-Modified decide".to_owned()
        } else if policy.override_upstream {
            "cacheable for the policy's TTL, whatever the upstream says".to_owned()
        } else {
            "cacheable for the policy's TTL, bounded by the upstream's no-store, private and max-age".to_owned()
        };
        if !policy.private && headers.contains_key(header::AUTHORIZATION) {
            reason.push_str("; with Authorization only answers marked public, s-maxage or must-revalidate are used (RFC 9111 §3.5)");
        }
        reason
    };
    if explanation.cacheable {
        let key = CacheKey::new(&tenant, &path, query.as_deref(), headers, policy);
        explanation.key = Some(key.hex());
        let mut inputs = vec![
            ("tenant".to_owned(), tenant),
            ("method class".to_owned(), "GET".to_owned()),
            (
                "host".to_owned(),
                headers
                    .get(header::HOST)
                    .and_then(|host| host.to_str().ok())
                    .unwrap_or("(none: requests always name one; give the URL's or a Host header)")
                    .to_owned(),
            ),
            ("path".to_owned(), path.clone()),
        ];
        for (name, value) in kept_query(policy, query.as_deref()) {
            inputs.push((format!("query {name}"), value.into_owned()));
        }
        for name in &policy.key_headers {
            inputs.push((
                format!("header {name}"),
                if headers.contains_key(name) {
                    crate::key::normalized_header(headers, name)
                } else {
                    "(absent)".into()
                },
            ));
        }
        if policy.private {
            inputs.push((
                "caller".to_owned(),
                "Authorization and Cookie (private policy)".to_owned(),
            ));
        }
        explanation.key_inputs = inputs;
        let tags = crate::proxy::render_tags(policy, &params, query.as_deref());
        explanation.tags = tags.iter().map(ToString::to_string).collect();
    }
    explanation
}

impl Explanation {
    /// The human-readable form `folio explain` prints.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} {}", self.method, self.url);
        let _ = writeln!(
            out,
            "  policy      {}{}",
            self.policy,
            self.defined_at
                .as_ref()
                .map(|at| format!("  ({at})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "  tenant      {}",
            if self.tenant.is_empty() {
                "(none)"
            } else {
                &self.tenant
            }
        );
        let _ = writeln!(
            out,
            "  decision    {}",
            if self.cacheable { "CACHED" } else { "BYPASS" }
        );
        let _ = writeln!(out, "  why         {}", self.reason);
        if let Some(key) = &self.key {
            let _ = writeln!(out, "  key         {key}");
            for (name, value) in &self.key_inputs {
                let _ = writeln!(out, "    {name:<14}{value}");
            }
            let _ = writeln!(out, "  tags        {}", self.tags.join(", "));
            let ttl = self.ttl_s.map_or("as the upstream says".to_owned(), |t| {
                format!("{t}s (bounded by the upstream unless override_upstream)")
            });
            let _ = writeln!(out, "  ttl         {ttl}");
            let _ = writeln!(
                out,
                "  stale       while revalidating {}s, if error {}s",
                self.stale_while_revalidate_s, self.stale_if_error_s
            );
        }
        if !self.invalidated_by.is_empty() {
            let _ = writeln!(
                out,
                "  purged by   events {}",
                self.invalidated_by.join(", ")
            );
        }
        if !self.raises.is_empty() {
            let _ = writeln!(out, "  raises      {} (on a 2xx)", self.raises.join(", "));
        }
        out
    }
}

/// What `folio explain` prints for a request.
pub fn explain_text(
    policies: &PolicySet,
    tenants: &TenantSource,
    method: &str,
    url: &str,
    headers: &[(String, String)],
) -> Result<String, String> {
    // As sent: methods are case-sensitive, and the proxy passes `get` on.
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("'{method}' is not an HTTP method"))?;
    let uri: http::Uri = url.parse().map_err(|_| format!("'{url}' is not a URL"))?;
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("'{name}' is not a header name"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not valid"))?;
        map.append(name, value);
    }
    Ok(explain(policies, tenants, &method, &uri, &map).to_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain_get(url: &str, headers: &[(&'static str, &'static str)]) -> Explanation {
        let set = PolicySet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap();
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.insert(*n, http::HeaderValue::from_static(v));
        }
        explain(
            &set,
            &TenantSource::default(),
            &Method::GET,
            &url.parse().unwrap(),
            &map,
        )
    }

    #[test]
    fn a_cached_product() {
        let e = explain_get(
            "http://host/api/v1/products/42?x=1",
            &[("x-tenant-id", "acme")],
        );
        assert!(e.cacheable);
        assert_eq!(e.policy, "/api/v1/products/{id}");
        assert!(
            e.defined_at
                .as_deref()
                .unwrap()
                .ends_with("bookstore.yaml:15"),
            "{:?}",
            e.defined_at
        );
        assert_eq!(e.ttl_s, Some(3600));
        assert_eq!(e.invalidated_by, vec!["product_update"]);
        assert!(
            e.key_inputs
                .contains(&("path".into(), "/api/v1/products/42".into()))
        );
        assert!(
            e.key_inputs.contains(&("host".into(), "host".into())),
            "the URL's host is keyed, as a request's Host is"
        );
        assert!(
            !e.key_inputs.iter().any(|(n, _)| n.starts_with("query")),
            "x is not in the key"
        );
        assert_eq!(e.key.as_deref().map(str::len), Some(64));
        assert!(e.to_text().contains("decision    CACHED"));
    }

    #[test]
    fn bypasses_say_why() {
        let cart = explain_get("http://host/api/v1/cart", &[]);
        assert!(!cart.cacheable);
        assert!(cart.reason.contains("cache: false"));
        let cookie = explain_get("http://host/api/v1/products", &[("cookie", "a=b")]);
        assert!(cookie.reason.contains("Cookie"));
        let unmatched = explain_get("http://host/elsewhere", &[]);
        assert_eq!(unmatched.policy, "(no policy)");
        assert!(unmatched.reason.contains("RFC 9111"));
    }

    #[test]
    fn a_target_that_is_not_a_path_and_a_tunnel_are_refused_as_the_proxy_does() {
        let set = PolicySet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap();
        for (method, target, status) in [
            (Method::GET, "*", 400),
            (Method::OPTIONS, "*", 400),
            (Method::CONNECT, "host:443", 501),
        ] {
            let e = explain(
                &set,
                &TenantSource::default(),
                &method,
                &target.parse().unwrap(),
                &HeaderMap::new(),
            );
            assert!(!e.cacheable, "{method} {target}");
            assert!(
                e.reason.starts_with(&format!("refused with {status}")),
                "{method} {target}: {}",
                e.reason
            );
        }
    }

    #[test]
    fn a_method_is_explained_as_sent() {
        let set = PolicySet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap();
        let headers = [("X-Tenant-ID".to_owned(), "acme".to_owned())];
        let url = "http://host/api/v1/products/42";
        let upper = explain_text(&set, &TenantSource::default(), "GET", url, &headers);
        assert!(upper.unwrap_or_default().contains("CACHED"));
        // The proxy passes `get` on: a method it does not know is unsafe.
        let lower = explain_text(&set, &TenantSource::default(), "get", url, &headers)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            lower.contains("PASS") && !lower.contains("CACHED"),
            "{lower}"
        );
    }

    #[test]
    fn what_the_pipeline_refuses_explain_refuses() {
        for (url, headers) in [
            (
                "http://host/api/v1/products/4%2F2",
                vec![("x-tenant-id", "acme")],
            ),
            (
                "http://host/api/v1/products/42",
                vec![("x-tenant-id", "acme"), ("connection", "x-tenant-id")],
            ),
            (
                "http://host/api/v1/products/42",
                vec![("x-tenant-id", "a,b")],
            ),
        ] {
            let e = explain_get(url, &headers);
            assert!(!e.cacheable, "{url} {headers:?}");
            assert!(e.reason.starts_with("refused with 400"), "{}", e.reason);
        }
        let e = explain_get(
            "http://host/api/v1/x/../products/%34%32",
            &[("x-tenant-id", "acme")],
        );
        assert_eq!(e.policy, "/api/v1/products/{id}");
        assert!(
            e.key_inputs
                .contains(&("path".into(), "/api/v1/products/42".into()))
        );
        assert!(
            e.key_inputs.contains(&("host".into(), "host".into())),
            "the URL's host is keyed, as a request's Host is"
        );
    }
}
