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

use http::{Method, StatusCode};
use serde_yaml::Value;

use super::route::Template;
use super::{DEFAULT_CACHE_STATUSES, Policy, PolicySet, Source};

mod fields;
mod text;

use text::{Lines, closest};

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
        // Every *.yaml is read, or is an error naming it: one that is no
        // longer a file (a dangling link, a pipe) must not drop its routes
        // silently. Hidden names (an editor's `.#x.yaml` lock) are not policies.
        .filter(|path| {
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            !hidden
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
        match crate::files::read_text(&file, crate::files::MAX_TEXT_FILE) {
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
    if let Some(line) = too_deep(text, MAX_FLOW_DEPTH) {
        return Err(vec![error(
            line,
            "yaml",
            format!("nested deeper than {MAX_FLOW_DEPTH} levels"),
        )]);
    }
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
            failed: false,
        };
        if let Some(policy) = ctx.policy(value) {
            policies.push(policy);
        }
    }
    Ok((policies, errors))
}

/// The line where flow collections may first nest deeper than `limit`:
/// every bracket counts, in quotes and comments too, so the count can only
/// refuse too much (65 unclosed brackets in a string), never too little.
fn too_deep(text: &str, limit: usize) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1);
    for byte in text.bytes() {
        match byte {
            b'\n' => line += 1,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Two policies for the same route shape and an overlapping method.
pub(super) fn check_duplicates(policies: &[Policy]) -> Result<(), Vec<PolicyError>> {
    // By shape and method: linear in the routes, however many share a shape.
    let mut seen: HashMap<(String, Method), &Policy> = HashMap::new();
    let mut errors = Vec::new();
    for policy in policies {
        let shape = policy.template.shape();
        let first = policy
            .methods
            .iter()
            .find_map(|method| seen.get(&(shape.clone(), method.clone())).copied());
        for method in &policy.methods {
            seen.entry((shape.clone(), method.clone()))
                .or_insert(policy);
        }
        if let Some(first) = first {
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

/// Problems listed for one file before the rest are left unsaid.
const MAX_FILE_ERRORS: usize = 100;
/// Flow collections (`[`, `{`) nested deeper than this are refused before
/// the YAML parser reads them, which takes quadratic time on deep nesting.
/// (Route templates use braces, one level each.)
const MAX_FLOW_DEPTH: usize = 64;

/// Validation state for one route's policy.
struct Ctx<'a> {
    file: &'a Path,
    lines: &'a Lines<'a>,
    route: &'a str,
    /// `None` when the route's key could not be found in the text.
    route_line: Option<usize>,
    errors: &'a mut Vec<PolicyError>,
    /// Whether this route had a problem, listed or past the file's bound.
    failed: bool,
}

impl Ctx<'_> {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.failed = true;
        // Each is placed by a look through its route's text: a file of
        // thousands of mistakes must not take minutes to say so.
        if self.errors.len() >= MAX_FILE_ERRORS {
            if self.errors.len() == MAX_FILE_ERRORS {
                self.errors.push(PolicyError {
                    file: self.file.to_path_buf(),
                    line: 0,
                    field: "file".into(),
                    message: format!("more than {MAX_FILE_ERRORS} problems: these first"),
                });
            }
            return;
        }
        let path: Vec<&str> = field.split('.').collect();
        let (line, message) = match self.route_line {
            Some(route_line) => (self.lines.field(route_line, &path), message.into()),
            // Rather no line than another route's.
            None => (0, format!("route '{}': {}", self.route, message.into())),
        };
        self.errors.push(PolicyError {
            file: self.file.to_path_buf(),
            line,
            field: field.into(),
            message,
        });
    }

    fn policy(&mut self, value: Value) -> Option<Policy> {
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
                line: self.route_line.unwrap_or_default(),
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
        let lifetime = policy.ttl.unwrap_or_default().saturating_add(
            policy
                .stale_while_revalidate
                .max(policy.stale_if_error.unwrap_or_default()),
        );
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
        (!self.failed).then_some(policy)
    }
}

#[cfg(test)]
mod tests;
