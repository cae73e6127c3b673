use http::{HeaderName, Method};

use super::*;
use crate::policy::{PolicySet, QueryKey};

/// Shared with the CLI test, so both check the same text.
const OPERATORS_FORMAT: &str = include_str!("../../../tests/fixtures/operators.yaml");

fn errors(text: &str) -> Vec<String> {
    match PolicySet::from_yaml("p.yaml", text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn operators_format_loads_as_written() {
    let set = PolicySet::from_yaml("bookstore.yaml", OPERATORS_FORMAT).unwrap();
    assert_eq!(set.len(), 2);
    let list = set
        .match_request(&Method::GET, "/api/v1/products")
        .unwrap()
        .policy;
    assert_eq!(list.ttl, Some(std::time::Duration::from_secs(300)));
    assert_eq!(list.key_query, QueryKey::All);
    let events: Vec<&str> = list.invalidate_on.iter().map(|e| &**e).collect();
    assert_eq!(events, ["product_update", "inventory_change"]);
    assert_eq!(list.source.line, 2);
    let item = set
        .match_request(&Method::GET, "/api/v1/products/42")
        .unwrap()
        .policy;
    assert_eq!(item.ttl, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(
        item.key_query,
        QueryKey::Ignore,
        "the operator's key names no query"
    );
    assert!(!item.private);
    assert_eq!(item.source.line, 7);
}

#[test]
fn richer_fields() {
    let set = PolicySet::from_yaml(
        "rich.yaml",
        r#"
"GET /api/v1/search":
  cache_ttl: 30s
  stale_while_revalidate: 1m
  stale_if_error: 1h
  key:
    query: [q, page]
    headers: [Accept-Language]
  tags: ["search", "search:{query.q}"]
  cache_control: "public, max-age=10, s-maxage=30"
  cache_statuses: [200]
  max_body: 256KB
"/api/v1/cart":
  cache: false
"/api/v1/users/{id}":
  cache_ttl: 10s
  private: true
"#,
    )
    .unwrap();
    let search = set
        .match_request(&Method::HEAD, "/api/v1/search")
        .unwrap()
        .policy;
    assert_eq!(search.methods, vec![Method::GET, Method::HEAD]);
    assert_eq!(
        search.stale_while_revalidate,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        search.key_query,
        QueryKey::Only(vec!["page".into(), "q".into()])
    );
    assert_eq!(
        search.key_headers,
        vec![HeaderName::from_static("accept-language")]
    );
    assert_eq!(search.max_body, 256 * 1024);
    assert_eq!(search.cache_statuses, vec![StatusCode::OK]);
    assert_eq!(search.tags.len(), 2);
    assert!(
        !set.match_request(&Method::GET, "/api/v1/cart")
            .unwrap()
            .policy
            .cache
    );
    assert!(
        set.match_request(&Method::GET, "/api/v1/users/1")
            .unwrap()
            .policy
            .private
    );
}

#[test]
fn every_mistake_is_reported_with_file_line_and_field() {
    let errors = errors(
        r#"
"/api/v1/products":
  cache_ttl: 5 minutes
  cahce_key: "tenant_id"
"/api/v1/products/{id}":
  cache_ttl: 1h
  tags: ["product:{sku}"]
  key:
    query: [a]
    hedaers: [x]
"#,
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0].starts_with("p.yaml:3: cache_ttl: bad duration '5 minutes'"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("p.yaml:4: cahce_key: unknown field (did you mean 'cache_key'?)"),
        "{}",
        errors[1]
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("p.yaml:7: tags: '{sku}'")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("p.yaml:8: key: unknown field 'hedaers'")),
        "{errors:#?}"
    );
}

#[test]
fn two_policies_for_one_route() {
    let errors = errors(
        r#"
"/p/{id}":
  cache_ttl: 1m
"GET /p/{pid}":
  cache_ttl: 2m
"PUT /p/{id}":
  cache: false
"#,
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("p.yaml:4: route: two policies for one route"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("p.yaml:2"), "{}", errors[0]);
}

#[test]
fn yaml_syntax_errors_name_the_line() {
    let errors = errors("\"/a\":\n  cache_ttl: 5m\n  bad: [unclosed\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("p.yaml:"), "{}", errors[0]);
    assert!(errors[0].contains(": yaml: "), "{}", errors[0]);
}

#[test]
fn cache_key_query_names_keep_their_case() {
    // Query names are case-sensitive: `pageSize` was once read as
    // `pagesize`, so the parameter was neither keyed nor forwarded.
    let set = PolicySet::from_yaml(
        "p.yaml",
        "\"/s\":\n  cache_key: \"tenant_id + QUERY:pageSize + query: q + Header:X-Region\"\n",
    )
    .unwrap();
    let policy = set.match_request(&Method::GET, "/s").unwrap().policy;
    assert_eq!(
        policy.key_query,
        QueryKey::Only(vec!["pageSize".into(), "q".into()])
    );
    assert_eq!(
        policy.key_headers,
        vec![HeaderName::from_static("x-region")]
    );
}

#[test]
fn wrong_types_and_values() {
    let errors = errors(
        r#"
"/a":
  cache: "yes"
  methods: [GET, "NOT A METHOD"]
  cache_statuses: [100, 700, 206, 304]
  max_body: 0
  cache_key: "tenant_id + colour"
"no-slash":
  cache_ttl: 1m
"#,
    );
    let joined = errors.join("\n");
    assert!(
        joined.contains("p.yaml:3: cache: expected true or false, found a string"),
        "{joined}"
    );
    assert!(
        joined.contains("p.yaml:4: methods: 'NOT A METHOD' is not an HTTP method"),
        "{joined}"
    );
    assert!(
        joined.contains("p.yaml:5: cache_statuses: 100: interim"),
        "{joined}"
    );
    assert!(
        joined.contains("p.yaml:5: cache_statuses: expected status codes 200-599, found 700"),
        "{joined}"
    );
    for partial in [206, 304] {
        assert!(
            joined.contains(&format!(
                "p.yaml:5: cache_statuses: {partial}: a partial or not-modified"
            )),
            "{joined}"
        );
    }
    assert!(
        joined.contains("p.yaml:6: max_body: must be more than 0"),
        "{joined}"
    );
    assert!(
        joined.contains("p.yaml:7: cache_key: unknown component 'colour'"),
        "{joined}"
    );
    assert!(
        joined.contains("p.yaml:8: route: route 'no-slash' must start with '/'"),
        "{joined}"
    );
}

#[test]
fn empty_file_is_an_empty_set() {
    assert!(
        PolicySet::from_yaml("e.yaml", "# nothing yet\n")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_repository_policies_load() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let set = PolicySet::load_dir(dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(set.len() >= 5);
}

#[test]
fn duplicates_across_files_and_missing_dir() {
    let dir = std::env::temp_dir().join(format!("folio-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), "\"/x/{id}\":\n  cache_ttl: 1m\n").unwrap();
    std::fs::write(dir.join("b.yml"), "# b\n\"/x/{other}\":\n  cache_ttl: 1m\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a policy").unwrap();
    let errors = PolicySet::load_dir(&dir).unwrap_err().to_string();
    assert!(
        errors.contains("b.yml:2: route: two policies for one route"),
        "{errors}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let missing = PolicySet::load_dir(&dir).unwrap_err().to_string();
    assert!(
        missing.contains("policies: cannot read the policies directory"),
        "{missing}"
    );
}

#[test]
fn key_lines_are_found_for_quoted_and_plain_keys() {
    let lines = Lines::new("# c\n/plain:\n  a: 1\n'/single':\n  b:\n    c: 2\n");
    assert_eq!(lines.route("/plain"), Some(2));
    assert_eq!(lines.route("/single"), Some(4));
    assert_eq!(lines.field(4, &["b", "c"]), 6);
    assert_eq!(lines.field(2, &["b"]), 2, "b belongs to the next route");
}

#[test]
fn a_mistake_is_placed_in_its_own_route_or_nowhere() {
    let text = "\"/api/a\":\n  cache_ttl: 5m\n\"\\/api/b\":\n  cache_ttl: 5 minutes\n\"/api/c\": {cache_ttl: 5 minutes}\n";
    let errors = PolicySet::from_yaml("w.yaml", text)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("w.yaml:4: cache_ttl"),
        "an escaped key is found: {errors}"
    );
    assert!(errors.contains("w.yaml:5: cache_ttl"), "{errors}");
    assert!(
        !errors.contains("w.yaml:2"),
        "never another route's line: {errors}"
    );
}

#[test]
fn many_routes_load_in_linear_time() {
    // 20,000 routes took 8 s when each route's line was searched from the top.
    let text: String = (0..20_000)
        .map(|i| format!("\"/r{i}\":\n  cache_ttl: 1m\n"))
        .collect();
    let started = std::time::Instant::now();
    assert_eq!(
        PolicySet::from_yaml("many.yaml", &text)
            .map(|set| set.len())
            .ok(),
        Some(20_000)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_policy_file_that_cannot_be_read_is_an_error_not_a_silent_gap() {
    let dir = std::env::temp_dir().join(format!("folio-policies-gone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), "\"/x\":\n  cache_ttl: 1m\n").unwrap();
    // A link whose file was moved away, and an editor's lock beside it.
    std::os::unix::fs::symlink(dir.join("moved-away.yaml"), dir.join("private.yaml")).unwrap();
    std::os::unix::fs::symlink("nowhere", dir.join(".#a.yaml")).unwrap();
    let errors = PolicySet::load_dir(&dir).unwrap_err().to_string();
    assert!(
        errors.contains("private.yaml: file: cannot read"),
        "{errors}"
    );
    assert!(!errors.contains(".#a.yaml"), "{errors}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_made_to_be_slow_to_check_are_answered_at_once() {
    // Each of these took from tens of seconds to hours before: errors placed
    // one by one without end, routes of one shape compared pairwise, a
    // methods list searched for every name, and nesting the YAML parser
    // reads in quadratic time.
    let started = std::time::Instant::now();
    let unknown: String = (0..40_000).map(|i| format!("  f{i}: 1\n")).collect();
    let errors = PolicySet::from_yaml("u.yaml", &format!("\"/p\":\n{unknown}")).unwrap_err();
    assert_eq!(
        errors.0.len(),
        101,
        "100 problems, then a line saying there are more"
    );

    let same_shape: String = (0..40_000)
        .map(|i| format!("\"M{i} /p/{{id}}\": {{}}\n"))
        .collect();
    assert!(PolicySet::from_yaml("s.yaml", &same_shape).is_ok());

    let methods: Vec<String> = (0..40_000).map(|i| format!("M{i}")).collect();
    let many = format!("\"/p\":\n  methods: [{}]\n", methods.join(", "));
    let refused = PolicySet::from_yaml("m.yaml", &many)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("more than 64 methods"), "{refused}");

    let bad_templates: String = (0..40_000)
        .map(|i| format!("\"/p/{{{i}\": {{}}\n"))
        .collect();
    let errors = PolicySet::from_yaml("b.yaml", &bad_templates).unwrap_err();
    assert!(
        errors.0.len() <= 101,
        "broken routes are not compared as if valid: {}",
        errors.0.len()
    );

    let after_a_quote = format!(
        "\"/p\":\n  cache_control: it's public\n  tags: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let refused = PolicySet::from_yaml("a.yaml", &after_a_quote)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("nested deeper than 64"), "{refused}");

    let deep = format!(
        "\"/p\":\n  tags: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let refused = PolicySet::from_yaml("d.yaml", &deep)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("d.yaml:2: yaml: nested deeper than 64"),
        "{refused}"
    );
    let quoted = "\"/p\":\n  cache_control: it's public\n  tags: [\"[[[[\", '{{{{', a] # [[[[\n";
    let read = PolicySet::from_yaml("q.yaml", quoted)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert!(
        read.as_ref()
            .map_or_else(|e| !e.contains("nested"), |()| true),
        "{read:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
