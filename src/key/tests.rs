use super::uri::AmbiguousPath;
use super::*;

#[test]
fn header_values_normalize_case_spaces_and_lines() {
    let mut headers = HeaderMap::new();
    headers.append(
        "x-v",
        HeaderValue::from_static("  Text/HTML ;  q=0.9 ,, en  US"),
    );
    headers.append("x-v", HeaderValue::from_static("a; ; b,  "));
    let name = HeaderName::from_static("x-v");
    assert_eq!(
        normalized_header(&headers, &name),
        "Text/HTML ;q=0.9,en US,a;;b",
        "case is kept where the header's values may depend on it"
    );
    let accept = HeaderName::from_static("accept");
    let mut folded = HeaderMap::new();
    folded.insert(
        "accept",
        HeaderValue::from_static("Text/HTML,  Application/JSON"),
    );
    assert_eq!(
        normalized_header(&folded, &accept),
        "text/html,application/json"
    );
    let mut spaced = HeaderMap::new();
    spaced.insert("x-v", HeaderValue::from_static("a;   B"));
    assert_eq!(normalized_header(&spaced, &name), "a;B");
}
use crate::policy::PolicySet;
use http::{HeaderValue, Method};

fn policy(yaml_fields: &str) -> PolicySet {
    PolicySet::from_yaml(
        "k.yaml",
        &format!("\"/p/{{id}}\":\n  cache_ttl: 1m\n{yaml_fields}"),
    )
    .unwrap()
}

fn key(
    set: &PolicySet,
    tenant: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> CacheKey {
    let m = set.match_request(&Method::GET, "/p/1").unwrap();
    CacheKey::new(tenant, path, query, headers, m.policy)
}

#[test]
fn tenants_never_share_a_key() {
    let set = policy("");
    let h = HeaderMap::new();
    assert_ne!(
        key(&set, "acme", "/p/1", None, &h),
        key(&set, "globex", "/p/1", None, &h)
    );
    // Length prefixes keep tenant and path apart.
    assert_ne!(
        key(&set, "a", "/bp/1", None, &h),
        key(&set, "a/b", "/p/1", None, &h)
    );
}

#[test]
fn query_order_and_encoding_do_not_split_entries() {
    let set = policy("");
    let h = HeaderMap::new();
    let k = |q| key(&set, "t", "/p/1", Some(q), &h);
    assert_eq!(k("a=1&b=2"), k("b=2&a=1"));
    assert_eq!(k("q=hello+world"), k("q=hello%20world"));
    assert_eq!(k("a=1&&b=2"), k("b=2&a=1"));
    assert_ne!(k("a=1"), k("a=2"));
    assert_ne!(k("q=%+1"), k("q=%01"), "a sign is not a hex digit");
    assert_ne!(
        k("tag=x&tag=y"),
        k("tag=y&tag=x"),
        "order of repeated values is kept"
    );
}

#[test]
fn only_kept_query_params_count() {
    let set = policy("  key:\n    query: [page]\n");
    let h = HeaderMap::new();
    let k = |q| key(&set, "t", "/p/1", Some(q), &h);
    assert_eq!(k("page=2&utm_source=x"), k("page=2"));
    assert_ne!(k("page=2"), k("page=3"));
    let ignore = policy("  cache_key: \"tenant_id + id\"\n");
    let k = |q| key(&ignore, "t", "/p/1", Some(q), &h);
    assert_eq!(k("x=1"), k("y=2"));
}

#[test]
fn varied_headers_are_normalized() {
    let set = policy("  key:\n    headers: [Accept-Language]\n");
    let with = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("accept-language", HeaderValue::from_static(v));
        key(&set, "t", "/p/1", None, &h)
    };
    assert_eq!(with("en-US, fr"), with("en-us,fr"));
    assert_eq!(with(" en-us ,  fr "), with("en-us,fr"));
    assert_ne!(with("en-us"), with("fr"));
    assert_ne!(
        with("en-us"),
        key(&set, "t", "/p/1", None, &HeaderMap::new())
    );
}

#[test]
fn private_policies_key_on_the_caller() {
    let set = policy("  private: true\n");
    let as_user = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
        key(&set, "t", "/p/1", None, &h)
    };
    assert_ne!(as_user("Bearer alice"), as_user("Bearer bob"));
    assert_eq!(as_user("Bearer alice"), as_user("Bearer alice"));
    let shared = policy("");
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer alice"),
    );
    assert_eq!(
        key(&shared, "t", "/p/1", None, &h),
        key(&shared, "t", "/p/1", None, &HeaderMap::new())
    );
}

#[test]
fn vary_values_are_the_bytes_sent() {
    let of = |name: &'static str, v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(v));
        vary_value(&h, &HeaderName::from_static(name))
    };
    // The upstream read these bytes: another spelling may have had
    // another answer.
    assert_ne!(of("x-currency", ",EUR"), of("x-currency", "EUR"));
    assert_ne!(of("x-currency", "usd"), of("x-currency", "USD"));
    assert_eq!(
        of("accept-encoding", "gzip, br"),
        of("accept-encoding", "br,gzip"),
        "content negotiation has one meaning"
    );
    assert_eq!(
        of("accept-language", "en-US, fr;q=0.5"),
        of("accept-language", "en-us,fr; q=0.5")
    );
    assert_eq!(
        of("accept-language", "en, fr;q=0.8"),
        of("accept-language", "fr;q=0.8, en"),
        "the same preferences, in another order"
    );
    assert_eq!(
        of("accept-language", "en;q=1.0, fr;q=0.80"),
        of("accept-language", "fr;q=0.8, en")
    );
    assert_ne!(
        of("accept-language", "en, fr;q=0.8"),
        of("accept-language", "fr, en;q=0.8"),
        "other preferences"
    );
    assert_eq!(of("x-currency", "EUR"), Some("EUR".into()));
    let secret = of("authorization", "Bearer alice").unwrap();
    assert!(secret.starts_with("sha256:") && !secret.contains("alice"));
    assert_ne!(Some(secret), of("authorization", "Bearer bob"));
    assert_eq!(vary_value(&HeaderMap::new(), &header::ACCEPT), None);
    let set = policy("");
    let key = key(&set, "t", "/p/1", None, &HeaderMap::new());
    let names = [header::ACCEPT_ENCODING];
    let mut gzip = HeaderMap::new();
    gzip.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    assert_ne!(
        key.variant(&names, &gzip),
        key.variant(&names, &HeaderMap::new())
    );
    assert_eq!(key.variant(&names, &gzip), key.variant(&names, &gzip));
}

#[test]
fn paths_are_normalized_per_rfc3986() {
    assert_eq!(normalize_path("/api/v1/products/42"), "/api/v1/products/42");
    assert_eq!(normalize_path("/api/%761/products"), "/api/v1/products");
    assert_eq!(normalize_path("/a/%2f/b"), "/a/%2F/b");
    assert_eq!(normalize_path("/a/./b/../c"), "/a/c");
    assert_eq!(normalize_path("/a/b/.."), "/a/");
    assert_eq!(normalize_path("/../a"), "/a");
    assert_eq!(normalize_path("/caf%C3%A9/é"), "/caf%C3%A9/é");
    let set = policy("");
    let h = HeaderMap::new();
    assert_eq!(
        key(&set, "t", "/p/%31", None, &h),
        key(&set, "t", "/p/1", None, &h)
    );
}

#[test]
fn canonical_paths_have_one_spelling_or_none() {
    assert_eq!(
        canonical_path("/api/v1/products/42").unwrap(),
        "/api/v1/products/42"
    );
    assert_eq!(
        canonical_path("/api//v1/./x/../products/%34%32").unwrap(),
        "/api/v1/products/42"
    );
    assert_eq!(canonical_path("/a/%c3%a9").unwrap(), "/a/%C3%A9");
    for (path, why) in [
        ("/a/%2F/b", AmbiguousPath::EncodedSeparator),
        ("/a/%5c", AmbiguousPath::EncodedSeparator),
        ("/a/%00", AmbiguousPath::EncodedSeparator),
        ("/a/%2e%2E/b", AmbiguousPath::EncodedDot),
        ("/a/.%2e", AmbiguousPath::EncodedDot),
        ("/a/%2e", AmbiguousPath::EncodedDot),
        ("/a/%zz", AmbiguousPath::BadEscape),
        ("/a/%4", AmbiguousPath::BadEscape),
        ("/a\\b", AmbiguousPath::Backslash),
        ("/a;b", AmbiguousPath::PathParameter),
    ] {
        assert_eq!(canonical_path(path), Err(why), "{path}");
    }
}

#[test]
fn the_forwarded_query_is_what_the_key_holds() {
    let all = policy("");
    let q = |set: &PolicySet, query| {
        let m = set.match_request(&Method::GET, "/p/1").unwrap();
        canonical_query(m.policy, query).map(|q| q.into_owned())
    };
    assert_eq!(q(&all, Some("a=1&b=2")).as_deref(), Some("a=1&b=2"));
    assert_eq!(q(&all, Some("b=x+y&a=%7e")).as_deref(), Some("a=~&b=x%20y"));
    assert_eq!(q(&all, Some("a=1;b=2")).as_deref(), Some("a=1%3Bb%3D2"));
    assert_eq!(q(&all, None), None);
    let page = policy("  key:\n    query: [page]\n");
    assert_eq!(
        q(&page, Some("utm=1&page=2&x=3")).as_deref(),
        Some("page=2")
    );
    let none = policy("  cache_key: \"tenant_id + id\"\n");
    assert_eq!(q(&none, Some("x=1")), None);
}
