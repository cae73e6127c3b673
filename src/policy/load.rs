//! Policy files → validated [`Policy`] values.
//!
//! The YAML is first read as a generic tree, then each field is checked on its
//! own, so one run reports every mistake in every file rather than the first.
//! YAML trees carry no positions, so the line of a field is found again in the
//! text (`Lines`): a route is a top-level key, its fields the indented keys
//! below it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde_yaml::Value;

use super::route::Template;
use super::units::{parse_duration, parse_size};
use super::{DEFAULT_CACHE_STATUSES, Policy, PolicySet, QueryKey, Source, TagPart};

/// One mistake in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based; 0 when the mistake is not in a file's text (e.g. unreadable).
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.line == 0 {
            write!(f, "{file}: {}: {}", self.field, self.message)
        } else {
            write!(f, "{file}:{}: {}: {}", self.line, self.field, self.message)
        }
    }
}

/// Every mistake found in a policy set; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

const FIELDS: &[&str] = &[
    "cache_ttl",
    "cache_key",
    "invalidate_on",
    "methods",
    "tags",
    "cache_control",
    "stale_while_revalidate",
    "stale_if_error",
    "key",
    "cache",
    "private",
    "max_body",
    "cache_statuses",
    "override_upstream",
    "events",
    "rewarm",
    "cdn_cache_control",
    "compress",
];

pub(super) fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
    let unreadable = |message: String| {
        PolicyErrors(vec![PolicyError {
            file: dir.to_path_buf(),
            line: 0,
            field: "policies".into(),
            message,
        }])
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| unreadable(format!("cannot read the policies directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                )
        })
        .collect();
    files.sort();
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let (mut found, mut mistakes) = parse_file_lenient(&file, &text);
                policies.append(&mut found);
                errors.append(&mut mistakes);
            }
            Err(e) => errors.push(PolicyError {
                file,
                line: 0,
                field: "file".into(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if !errors.is_empty() {
        // Duplicates across files are worth reporting in the same run.
        if let Err(mut more) = check_duplicates(&policies) {
            errors.append(&mut more);
        }
        return Err(PolicyErrors(errors));
    }
    PolicySet::new(policies)
}

pub(super) fn parse_file(file: &Path, text: &str) -> Result<Vec<Policy>, Vec<PolicyError>> {
    let (policies, errors) = parse_file_lenient(file, text);
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

/// The valid policies of a file and the mistakes in the others: a set is
/// only used when there are no mistakes, but the valid ones still take part
/// in the duplicate check, so one run reports everything.
fn parse_file_lenient(file: &Path, text: &str) -> (Vec<Policy>, Vec<PolicyError>) {
    match parse_mapping(file, text) {
        Ok(found) => found,
        Err(errors) => (Vec::new(), errors),
    }
}

fn parse_mapping(
    file: &Path,
    text: &str,
) -> Result<(Vec<Policy>, Vec<PolicyError>), Vec<PolicyError>> {
    let lines = Lines::new(text);
    let error = |line: usize, field: &str, message: String| PolicyError {
        file: file.to_path_buf(),
        line,
        field: field.into(),
        message,
    };
    let root: Value = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        vec![error(line, "yaml", e.to_string())]
    })?;
    let mapping = match root {
        Value::Null => return Ok((Vec::new(), Vec::new())),
        Value::Mapping(mapping) => mapping,
        _ => {
            return Err(vec![error(
                1,
                "yaml",
                "a policy file maps routes to policies, e.g. \"/api/v1/products\": { cache_ttl: 5m }".into(),
            )]);
        }
    };
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in mapping {
        let Value::String(route) = key else {
            errors.push(error(
                1,
                "route",
                format!("route keys must be strings, found {}", kind(&key)),
            ));
            continue;
        };
        let line = lines.route(&route);
        let mut ctx = Ctx {
            file,
            lines: &lines,
            route: &route,
            route_line: line,
            errors: &mut errors,
        };
        if let Some(policy) = ctx.policy(value) {
            policies.push(policy);
        }
    }
    Ok((policies, errors))
}

/// Two policies for the same route shape and an overlapping method.
pub(super) fn check_duplicates(policies: &[Policy]) -> Result<(), Vec<PolicyError>> {
    let mut seen: HashMap<String, Vec<&Policy>> = HashMap::new();
    let mut errors = Vec::new();
    for policy in policies {
        let others = seen.entry(policy.template.shape()).or_default();
        if let Some(first) = others
            .iter()
            .find(|other| other.methods.iter().any(|m| policy.methods.contains(m)))
        {
            errors.push(PolicyError {
                file: policy.source.file.clone(),
                line: policy.source.line,
                field: "route".into(),
                message: format!(
                    "two policies for one route: '{}' is already defined at {}:{}",
                    policy.name,
                    first.source.file.display(),
                    first.source.line
                ),
            });
        }
        others.push(policy);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Validation state for one route's policy.
struct Ctx<'a> {
    file: &'a Path,
    lines: &'a Lines<'a>,
    route: &'a str,
    route_line: usize,
    errors: &'a mut Vec<PolicyError>,
}

impl Ctx<'_> {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        let path: Vec<&str> = field.split('.').collect();
        self.errors.push(PolicyError {
            file: self.file.to_path_buf(),
            line: self.lines.field(self.route_line, &path),
            field: field.into(),
            message: message.into(),
        });
    }

    fn policy(&mut self, value: Value) -> Option<Policy> {
        let before = self.errors.len();
        let (prefix_methods, path) = match self.route.trim().split_once(char::is_whitespace) {
            Some((methods, path)) => (Some(methods), path.trim()),
            None => (None, self.route.trim()),
        };
        let template = Template::parse(path)
            .map_err(|e| self.fail("route", e))
            .ok();
        let mut methods =
            prefix_methods.and_then(|m| self.methods("route", &Value::String(m.into())));

        let fields = match value {
            Value::Mapping(fields) => fields,
            Value::Null => Default::default(),
            other => {
                self.fail(
                    "route",
                    format!("expected the policy's fields, found {}", kind(&other)),
                );
                return None;
            }
        };
        let mut policy = Policy {
            name: Arc::from(self.route),
            template: template.clone().unwrap_or(Template {
                segments: Vec::new(),
            }),
            cache_statuses: DEFAULT_CACHE_STATUSES
                .iter()
                .filter_map(|s| StatusCode::from_u16(*s).ok())
                .collect(),
            implicit: false,
            source: Source {
                file: self.file.to_path_buf(),
                line: self.route_line,
            },
            ..Policy::rfc()
        };
        let mut cache_key = None;
        let mut key_field = None;
        let mut tags = None;
        for (name, value) in fields {
            let Value::String(name) = name else {
                self.fail(
                    "route",
                    format!("field names must be strings, found {}", kind(&name)),
                );
                continue;
            };
            match name.as_str() {
                "cache_ttl" => policy.ttl = self.duration(&name, &value),
                "stale_while_revalidate" => {
                    policy.stale_while_revalidate =
                        self.duration(&name, &value).unwrap_or_default();
                }
                "stale_if_error" => {
                    policy.stale_if_error = self.duration(&name, &value);
                }
                "cache" => policy.cache = self.boolean(&name, &value).unwrap_or(true),
                "private" => policy.private = self.boolean(&name, &value).unwrap_or(false),
                "override_upstream" => {
                    policy.override_upstream = self.boolean(&name, &value).unwrap_or(false);
                }
                "compress" => policy.compress = self.boolean(&name, &value).unwrap_or(true),
                "methods" => {
                    if methods.is_some() {
                        self.fail(
                            &name,
                            "methods are already given before the route path; give them once",
                        );
                    }
                    methods = self.methods(&name, &value);
                }
                "invalidate_on" => policy.invalidate_on = self.events(&name, &value),
                "events" => policy.events = self.events(&name, &value),
                "rewarm" => policy.rewarm = self.boolean(&name, &value).unwrap_or(false),
                "cache_control" => policy.cache_control = self.cache_control(&name, &value),
                "cdn_cache_control" => policy.cdn_cache_control = self.cache_control(&name, &value),
                "cache_statuses" => {
                    if let Some(statuses) = self.statuses(&name, &value) {
                        policy.cache_statuses = statuses;
                    }
                }
                "max_body" => {
                    if let Some(max) = self.max_body(&name, &value) {
                        policy.max_body = max;
                    }
                }
                "cache_key" => cache_key = Some(value),
                "key" => key_field = Some(value),
                "tags" => tags = Some(value),
                _ => {
                    let hint = closest(&name, FIELDS)
                        .map(|f| format!(" (did you mean '{f}'?)"))
                        .unwrap_or_default();
                    self.fail(
                        &name,
                        format!("unknown field{hint}; known fields: {}", FIELDS.join(", ")),
                    );
                }
            }
        }
        if let Some(methods) = methods {
            policy.methods = methods;
        }
        let lifetime = policy.ttl.unwrap_or_default()
            + policy
                .stale_while_revalidate
                .max(policy.stale_if_error.unwrap_or_default());
        if lifetime > super::MAX_ENTRY_LIFETIME {
            self.fail(
                "cache_ttl",
                "cache_ttl plus the longest stale window must stay within 48h, the longest folio keeps an entry",
            );
        }
        if let Some(template) = &template {
            if let Some(value) = cache_key {
                self.cache_key(&value, template, &mut policy);
            }
            if let Some(value) = key_field {
                self.key(&value, &mut policy);
            }
            if let Some(value) = tags {
                policy.tags = self.tags(&value, template);
            }
        }
        (self.errors.len() == before).then_some(policy)
    }

    fn string<'v>(&mut self, field: &str, value: &'v Value, what: &str) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.fail(field, format!("expected {what}, found {}", kind(other)));
                None
            }
        }
    }

    /// A list of strings; a single string counts as a list of one.
    fn strings(&mut self, field: &str, value: &Value, what: &str) -> Vec<String> {
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

    fn duration(&mut self, field: &str, value: &Value) -> Option<std::time::Duration> {
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

    fn boolean(&mut self, field: &str, value: &Value) -> Option<bool> {
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

    fn methods(&mut self, field: &str, value: &Value) -> Option<Vec<Method>> {
        let names: Vec<String> = match value {
            Value::String(s) => s.split(['|', ',']).map(|m| m.trim().to_owned()).collect(),
            other => self.strings(field, other, "HTTP methods"),
        };
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

    fn events(&mut self, field: &str, value: &Value) -> Vec<Box<str>> {
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

    fn cache_control(&mut self, field: &str, value: &Value) -> Option<HeaderValue> {
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

    fn statuses(&mut self, field: &str, value: &Value) -> Option<Vec<StatusCode>> {
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

    fn max_body(&mut self, field: &str, value: &Value) -> Option<usize> {
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
    fn cache_key(&mut self, value: &Value, template: &Template, policy: &mut Policy) {
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
                super::route::Segment::Literal(text) => Some(&**text),
                _ => None,
            })
            .collect();
        let mut query = QueryKey::Ignore;
        for part in text.split('+').map(str::trim) {
            let lower = part.to_ascii_lowercase();
            if let Some(name) = lower
                .strip_prefix("query:")
                .or_else(|| lower.strip_prefix("query."))
            {
                match &mut query {
                    QueryKey::Ignore => query = QueryKey::Only(vec![name.into()]),
                    QueryKey::Only(names) => names.push(name.into()),
                    QueryKey::All => {}
                }
            } else if let Some(name) = part
                .strip_prefix("header:")
                .or_else(|| part.strip_prefix("header."))
            {
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

    fn key(&mut self, value: &Value, policy: &mut Policy) {
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

    fn header_name(&mut self, field: &str, name: &str) -> Option<HeaderName> {
        HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| self.fail(field, format!("'{name}' is not a valid header name")))
            .ok()
    }

    fn tags(&mut self, value: &Value, template: &Template) -> Vec<Vec<TagPart>> {
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

/// The known name one or two edits away from `name`, for "did you mean".
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// The text of a file, to find where a route or field was written.
struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    /// The 1-based line of a top-level key.
    fn route(&self, route: &str) -> usize {
        self.lines
            .iter()
            .position(|line| !line.starts_with([' ', '\t', '#']) && key_of(line) == Some(route))
            .map_or(1, |i| i + 1)
    }

    /// The line of `path` (e.g. `["key", "query"]`) inside the route's block,
    /// or the route's own line.
    fn field(&self, route_line: usize, path: &[&str]) -> usize {
        let mut found = route_line;
        let mut min_indent = 1;
        'outer: for name in path {
            for (i, line) in self.lines.iter().enumerate().skip(found) {
                let indent = line.len() - line.trim_start().len();
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                if indent < min_indent {
                    break 'outer;
                }
                if key_of(trimmed.trim_start_matches("- ")) == Some(name) {
                    found = i + 1;
                    min_indent = indent + 1;
                    continue 'outer;
                }
            }
            break;
        }
        found
    }
}

/// The key of a `key: value` line, unquoted.
fn key_of(line: &str) -> Option<&str> {
    let line = line.trim();
    for quote in ['"', '\''] {
        if let Some(rest) = line.strip_prefix(quote) {
            let end = rest.find(quote)?;
            return rest[end + 1..]
                .trim_start()
                .starts_with(':')
                .then(|| &rest[..end]);
        }
    }
    let colon = line.find(':')?;
    let after = &line[colon + 1..];
    (after.is_empty() || after.starts_with([' ', '\t'])).then(|| line[..colon].trim_end())
}

#[cfg(test)]
mod tests;
