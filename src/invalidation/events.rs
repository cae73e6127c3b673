//! Events → purge marks. An event names the endpoints that list it in
//! `invalidate_on`; for each, the narrowest scope the event's parameters
//! allow is purged:
//!
//! 1. the policy's tags whose every placeholder the event fills
//!    (`product:{id}` with `id=42` → `product:42`);
//! 2. else, when the event fills every route parameter, that one path
//!    (`/api/v1/products/{id}` → `/api/v1/products/42`);
//! 3. else the policy's tags without placeholders (`search`);
//! 4. else the whole endpoint (`route:<policy>`, a tag every entry carries).

use std::collections::HashMap;

use super::marks::Scope;
use crate::policy::route::Segment;
use crate::policy::{Policy, PolicySet, TagPart};

/// The tag every entry of a policy carries, so the endpoint can be purged whole.
pub(crate) fn route_tag(policy: &Policy) -> Box<str> {
    format!("route:{}", policy.name).into()
}

/// The scopes `event` purges, given its parameters.
pub(crate) fn scopes_for_event(
    policies: &PolicySet,
    event: &str,
    params: &HashMap<String, String>,
) -> Vec<Scope> {
    let mut scopes = Vec::new();
    for policy in policies
        .iter()
        .filter(|p| p.invalidate_on.iter().any(|e| **e == *event))
    {
        for scope in narrowest(policy, params) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    scopes
}

fn narrowest(policy: &Policy, params: &HashMap<String, String>) -> Vec<Scope> {
    fn placeholder(part: &TagPart) -> Option<&str> {
        match part {
            TagPart::Param(name) | TagPart::Query(name) => Some(name),
            TagPart::Text(_) => None,
        }
    }
    let filled: Vec<Scope> = policy
        .tags
        .iter()
        .filter(|tag| tag.iter().any(|p| placeholder(p).is_some()))
        .filter_map(|tag| {
            let mut text = String::new();
            for part in tag {
                match part {
                    TagPart::Text(t) => text.push_str(t),
                    TagPart::Param(name) | TagPart::Query(name) => {
                        text.push_str(params.get(name.as_ref())?)
                    }
                }
            }
            Some(Scope::Tag(text.into()))
        })
        .collect();
    if !filled.is_empty() {
        return filled;
    }
    let has_params = policy.template.params().next().is_some();
    if has_params
        && policy
            .template
            .params()
            .all(|name| params.contains_key(name))
    {
        let mut path = String::new();
        for segment in &policy.template.segments {
            path.push('/');
            match segment {
                Segment::Literal(text) => path.push_str(text),
                Segment::Param(name) => path.push_str(&params[name.as_ref()]),
                Segment::Rest => return vec![Scope::Tag(route_tag(policy))],
            }
        }
        return vec![Scope::Path(path.into())];
    }
    let fixed: Vec<Scope> = policy
        .tags
        .iter()
        .filter(|tag| tag.iter().all(|p| placeholder(p).is_none()))
        .map(|tag| {
            let text: String = tag
                .iter()
                .filter_map(|p| {
                    if let TagPart::Text(t) = p {
                        Some(&**t)
                    } else {
                        None
                    }
                })
                .collect();
            Scope::Tag(text.into())
        })
        .collect();
    if !fixed.is_empty() {
        return fixed;
    }
    vec![Scope::Tag(route_tag(policy))]
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: &str = r#"
"/api/v1/products":
  cache_ttl: 5m
  invalidate_on: [product_update, inventory_change]
"/api/v1/products/{id}":
  cache_ttl: 1h
  invalidate_on: [product_update]
"/api/v1/products/{id}/reviews":
  cache_ttl: 1h
  tags: ["product:{id}", "reviews"]
  invalidate_on: [product_update, review_added]
"/api/v1/search":
  cache_ttl: 1m
  tags: ["search", "search:{query.q}"]
  invalidate_on: [product_update]
"/api/v1/categories":
  cache_ttl: 1h
"#;

    fn scopes(event: &str, params: &[(&str, &str)]) -> Vec<Scope> {
        let set = PolicySet::from_yaml("e.yaml", POLICIES).unwrap();
        let params = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        scopes_for_event(&set, event, &params)
    }

    fn tag(t: &str) -> Scope {
        Scope::Tag(t.into())
    }

    #[test]
    fn an_event_with_params_purges_the_narrowest_entries() {
        assert_eq!(
            scopes("product_update", &[("id", "42")]),
            vec![
                tag("route:/api/v1/products"),
                Scope::Path("/api/v1/products/42".into()),
                tag("product:42"),
                tag("search"),
            ]
        );
    }

    #[test]
    fn an_event_without_params_purges_whole_endpoints() {
        assert_eq!(
            scopes("product_update", &[]),
            vec![
                tag("route:/api/v1/products"),
                tag("route:/api/v1/products/{id}"),
                tag("reviews"),
                tag("search")
            ]
        );
        assert_eq!(
            scopes("inventory_change", &[]),
            vec![tag("route:/api/v1/products")]
        );
        assert!(scopes("unknown_event", &[("id", "1")]).is_empty());
    }
}
