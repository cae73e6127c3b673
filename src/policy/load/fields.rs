//! The readers of a policy's fields, one file as all report through `Ctx`.
//!
//! Each checks a field's type, its range, and what it may name (route
//! parameters in keys and tags), and reports each mistake once.

use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde_yaml::Value;

use super::{Ctx, kind};
use crate::policy::route::{Segment, Template};
use crate::policy::units::{parse_duration, parse_size};
use crate::policy::{Policy, QueryKey, TagPart};

/// Methods one policy may name: HTTP has a handful.
const MAX_METHODS: usize = 64;

impl Ctx<'_> {
    pub(super) fn string<'v>(
        &mut self,
        field: &str,
        value: &'v Value,
        what: &str,
    ) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.fail(field, format!("expected {what}, found {}", kind(other)));
                None
            }
        }
    }

    /// A list of strings; a single string counts as a list of one.
    pub(super) fn strings(&mut self, field: &str, value: &Value, what: &str) -> Vec<String> {
        match value {
            Value::String(s) => vec![s.clone()],
            Value::Sequence(items) => items
                .iter()
                .filter_map(|item| match item {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    other => {
                        self.fail(
                            field,
                            format!("expected {what}, found {} in the list", kind(other)),
                        );
                        None
                    }
                })
                .collect(),
            other => {
                self.fail(
                    field,
                    format!("expected a list of {what}, found {}", kind(other)),
                );
                Vec::new()
            }
        }
    }

    pub(super) fn duration(&mut self, field: &str, value: &Value) -> Option<std::time::Duration> {
        let parsed = match value {
            Value::Number(n) => n
                .as_u64()
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| {
                    format!("bad duration '{n}': expected whole seconds or a unit, e.g. 5m")
                }),
            Value::String(s) => parse_duration(s),
            other => Err(format!(
                "expected a duration like 30s, 5m or 1h, found {}",
                kind(other)
            )),
        };
        parsed.map_err(|e| self.fail(field, e)).ok()
    }

    pub(super) fn boolean(&mut self, field: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.fail(
                    field,
                    format!("expected true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub(super) fn methods(&mut self, field: &str, value: &Value) -> Option<Vec<Method>> {
        let names: Vec<String> = match value {
            Value::String(s) => s.split(['|', ',']).map(|m| m.trim().to_owned()).collect(),
            other => self.strings(field, other, "HTTP methods"),
        };
        if names.len() > MAX_METHODS {
            self.fail(field, format!("more than {MAX_METHODS} methods"));
            return None;
        }
        let mut methods = Vec::new();
        for name in names.iter().filter(|n| !n.is_empty()) {
            let upper = name.to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if !methods.contains(&method) => methods.push(method),
                Ok(_) => {}
                Err(_) => self.fail(field, format!("'{name}' is not an HTTP method")),
            }
        }
        if methods.is_empty() {
            self.fail(field, "no methods given");
            return None;
        }
        // A HEAD is answered from the stored GET.
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        Some(methods)
    }

    pub(super) fn events(&mut self, field: &str, value: &Value) -> Vec<Box<str>> {
        let names = self.strings(field, value, "event names");
        let mut events = Vec::new();
        for name in names {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
            {
                self.fail(
                    field,
                    format!("'{name}' is not an event name (letters, digits, '_', '.', ':', '-')"),
                );
            } else {
                events.push(name.into());
            }
        }
        events
    }

    pub(super) fn cache_control(&mut self, field: &str, value: &Value) -> Option<HeaderValue> {
        let text = self.string(
            field,
            value,
            "a Cache-Control value like \"public, max-age=60\"",
        )?;
        let text = text.trim();
        if text.is_empty() {
            self.fail(
                field,
                "empty; leave the field out to pass the upstream's Cache-Control",
            );
            return None;
        }
        HeaderValue::from_str(text)
            .map_err(|_| self.fail(field, format!("'{text}' is not a valid header value")))
            .ok()
    }

    pub(super) fn statuses(&mut self, field: &str, value: &Value) -> Option<Vec<StatusCode>> {
        let Value::Sequence(items) = value else {
            self.fail(
                field,
                format!("expected a list of status codes, found {}", kind(value)),
            );
            return None;
        };
        let mut statuses = Vec::new();
        for item in items {
            match item.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(code @ (206 | 304)) => {
                    self.fail(
                        field,
                        format!(
                            "{code}: a partial or not-modified answer is not a whole response; \
                             folio stores 200s and answers ranges and conditionals from them"
                        ),
                    );
                }
                Some(code @ 200..=599) => {
                    if let Ok(status) = StatusCode::from_u16(code) {
                        statuses.push(status);
                    }
                }
                Some(code @ 100..=199) => {
                    self.fail(
                        field,
                        format!("{code}: interim (1xx) responses are never stored"),
                    );
                }
                _ => self.fail(
                    field,
                    format!("expected status codes 200-599, found {}", show(item)),
                ),
            }
        }
        Some(statuses)
    }

    pub(super) fn max_body(&mut self, field: &str, value: &Value) -> Option<usize> {
        let bytes = match value {
            Value::Number(n) => n.as_u64().ok_or_else(|| format!("bad size '{n}'")),
            Value::String(s) => parse_size(s),
            other => Err(format!("expected a size like 1MB, found {}", kind(other))),
        };
        match bytes {
            Ok(0) => self.fail(
                field,
                "must be more than 0 bytes; say cache: false to store nothing",
            ),
            Ok(n) if n > 1 << 30 => self.fail(field, "at most 1GB: larger bodies belong in a CDN"),
            Ok(n) => return usize::try_from(n).ok(),
            Err(e) => self.fail(field, e),
        }
        None
    }

    /// The operators' shorthand: `cache_key: "tenant_id + product_id"`.
    pub(super) fn cache_key(&mut self, value: &Value, template: &Template, policy: &mut Policy) {
        const FIELD: &str = "cache_key";
        let Some(text) = self.string(
            FIELD,
            value,
            "components joined by '+', e.g. \"tenant_id + query_params\"",
        ) else {
            return;
        };
        let params: Vec<&str> = template.params().collect();
        let literals: Vec<&str> = template
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(text) => Some(&**text),
                _ => None,
            })
            .collect();
        let mut query = QueryKey::Ignore;
        for part in text.split('+').map(str::trim) {
            let lower = part.to_ascii_lowercase();
            // The prefix in any case; the parameter's name exactly as
            // written, since query names are case-sensitive.
            if lower.starts_with("query:") || lower.starts_with("query.") {
                let name = part["query:".len()..].trim();
                match &mut query {
                    QueryKey::Ignore => query = QueryKey::Only(vec![name.into()]),
                    QueryKey::Only(names) => names.push(name.into()),
                    QueryKey::All => {}
                }
            } else if lower.starts_with("header:") || lower.starts_with("header.") {
                let name = part["header:".len()..].trim();
                if let Some(header) = self.header_name(FIELD, name) {
                    policy.key_headers.push(header);
                }
            } else if matches!(lower.as_str(), "query_params" | "query" | "querystring") {
                query = QueryKey::All;
            } else if matches!(
                lower.as_str(),
                "tenant_id" | "tenant" | "path" | "url" | "method"
            ) {
                // Always part of the key.
            } else if params.contains(&part) || names_route_param(&lower, &params, &literals) {
                // A route parameter is part of the path, which is always keyed.
            } else if matches!(lower.as_str(), "user" | "user_id" | "caller" | "auth") {
                policy.private = true;
            } else {
                self.fail(
                    FIELD,
                    format!(
                        "unknown component '{part}': use tenant_id, query_params, query:NAME, header:NAME, user_id, or a route parameter ({})",
                        if params.is_empty() { "this route has none".to_owned() } else { params.join(", ") }
                    ),
                );
            }
        }
        if let QueryKey::Only(names) = &mut query {
            names.sort();
            names.dedup();
        }
        policy.key_query = query;
    }

    pub(super) fn key(&mut self, value: &Value, policy: &mut Policy) {
        let Value::Mapping(fields) = value else {
            self.fail(
                "key",
                format!(
                    "expected a mapping with query and headers, found {}",
                    kind(value)
                ),
            );
            return;
        };
        for (name, value) in fields {
            match name.as_str() {
                Some("query") => match value {
                    Value::String(s) if matches!(s.as_str(), "*" | "all") => {
                        policy.key_query = QueryKey::All
                    }
                    Value::String(s) if s == "none" => policy.key_query = QueryKey::Ignore,
                    Value::Sequence(items) if items.is_empty() => {
                        policy.key_query = QueryKey::Ignore
                    }
                    other => {
                        let mut names: Vec<Box<str>> = self
                            .strings(
                                "key.query",
                                other,
                                "query parameter names, \"*\" or \"none\"",
                            )
                            .into_iter()
                            .map(Into::into)
                            .collect();
                        names.sort();
                        names.dedup();
                        policy.key_query = QueryKey::Only(names);
                    }
                },
                Some("headers") => {
                    for header in self.strings("key.headers", value, "header names") {
                        if let Some(name) = self.header_name("key.headers", &header)
                            && !policy.key_headers.contains(&name)
                        {
                            policy.key_headers.push(name);
                        }
                    }
                }
                _ => self.fail(
                    "key",
                    format!(
                        "unknown field '{}'; known fields: query, headers",
                        show(name)
                    ),
                ),
            }
        }
    }

    pub(super) fn header_name(&mut self, field: &str, name: &str) -> Option<HeaderName> {
        HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| self.fail(field, format!("'{name}' is not a valid header name")))
            .ok()
    }

    pub(super) fn tags(&mut self, value: &Value, template: &Template) -> Vec<Vec<TagPart>> {
        let params: Vec<&str> = template.params().collect();
        let mut tags = Vec::new();
        for tag in self.strings("tags", value, "tag templates like \"product:{id}\"") {
            match parse_tag(&tag, &params) {
                Ok(parts) => tags.push(parts),
                Err(e) => self.fail("tags", e),
            }
        }
        tags
    }
}

/// `product_id` names the `{id}` of `/products/{id}`, as the operators write it.
fn names_route_param(component: &str, params: &[&str], literals: &[&str]) -> bool {
    let Some(stem) = component.strip_suffix("_id") else {
        return false;
    };
    params.contains(&"id")
        && literals
            .iter()
            .any(|l| l.to_ascii_lowercase().starts_with(stem))
}

fn parse_tag(tag: &str, params: &[&str]) -> Result<Vec<TagPart>, String> {
    let mut parts = Vec::new();
    let mut rest = tag;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                parts.push(TagPart::Text(rest.into()));
                break;
            }
            Some(start) if rest.as_bytes()[start] == b'}' => {
                return Err(format!("'{tag}': '}}' without '{{'"));
            }
            Some(start) => {
                if start > 0 {
                    parts.push(TagPart::Text(rest[..start].into()));
                }
                let after = &rest[start + 1..];
                let end = after
                    .find('}')
                    .ok_or_else(|| format!("'{tag}': '{{' without '}}'"))?;
                let name = &after[..end];
                if let Some(query) = name.strip_prefix("query.") {
                    parts.push(TagPart::Query(query.into()));
                } else if params.contains(&name) {
                    parts.push(TagPart::Param(name.into()));
                } else {
                    let has = if params.is_empty() {
                        "none".to_owned()
                    } else {
                        params.join(", ")
                    };
                    return Err(format!(
                        "'{{{name}}}' in '{tag}' is not a parameter of the route (it has: {has}; use {{query.NAME}} for a query parameter)"
                    ));
                }
                rest = &after[end + 1..];
            }
        }
    }
    if parts.is_empty() {
        return Err("empty tag".into());
    }
    Ok(parts)
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).into(),
    }
}
