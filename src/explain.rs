//! `folio explain` and `GET /_folio/explain`: what folio would do with a
//! request, and why — the policy, the key and what went into it, the tags,
//! the lifetimes, the events that purge it. It runs the same functions the
//! pipeline runs, so it cannot drift from what folio does.

use std::fmt::Write as _;

use http::{HeaderMap, Method, Uri, header};
use serde::Serialize;

use crate::key::{CacheKey, kept_query, normalize_path, vary_value};
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
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method.clone();
    parts.uri = uri.clone();
    parts.headers = headers.clone();
    let tenant = tenants
        .tenant(&parts)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    let matched = policies.match_request(method, uri.path());
    let (policy, params) = match &matched {
        Some(m) => (m.policy, m.params.clone()),
        None => (policies.rfc(), Vec::new()),
    };
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
        stale_if_error_s: policy.stale_if_error.as_secs(),
        invalidated_by: policy
            .invalidate_on
            .iter()
            .map(ToString::to_string)
            .collect(),
        raises: policy.events.iter().map(ToString::to_string).collect(),
    };
    let safe = crate::proxy::is_safe(method);
    explanation.reason = if !safe {
        "an unsafe method: passed to the upstream; a 2xx/3xx answer purges the cached GETs of this path on every instance, and a 2xx raises the route's events".into()
    } else if matched.is_none() && !(*method == Method::GET || *method == Method::HEAD) {
        "no policy and not GET/HEAD: passed to the upstream".into()
    } else if !policy.cache {
        "the policy says cache: false: passed to the upstream".into()
    } else if !policy.caches(method) {
        format!("{method} is not cached: passed to the upstream")
    } else if !policy.private && headers.contains_key(header::COOKIE) {
        "Cookie on a shared route: passed to the upstream, nothing stored".into()
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
        let key = CacheKey::new(&tenant, uri.path(), uri.query(), headers, policy);
        explanation.key = Some(key.hex());
        let mut inputs = vec![
            ("tenant".to_owned(), tenant),
            ("method class".to_owned(), "GET".to_owned()),
            ("path".to_owned(), normalize_path(uri.path()).into_owned()),
        ];
        for (name, value) in kept_query(policy, uri.query()) {
            inputs.push((format!("query {name}"), value.into_owned()));
        }
        for name in &policy.key_headers {
            inputs.push((
                format!("header {name}"),
                vary_value(headers, name).unwrap_or_else(|| "(absent)".into()),
            ));
        }
        if policy.private {
            inputs.push((
                "caller".to_owned(),
                "Authorization and Cookie (private policy)".to_owned(),
            ));
        }
        explanation.key_inputs = inputs;
        let tags = crate::proxy::render_tags(policy, &params, uri.query());
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
}
