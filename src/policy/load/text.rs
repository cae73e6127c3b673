//! The policy text itself: where a route or field was written (YAML trees
//! carry no positions), and which known name a misspelt one is closest to.

use std::collections::HashMap;

/// The text of a file, to find where a route or field was written.
pub(super) struct Lines<'a> {
    lines: Vec<&'a str>,
    /// Each top-level key, as YAML reads it, and its first 1-based line:
    /// looked up once per route, so a file of many routes loads in linear
    /// time.
    routes: HashMap<String, usize>,
}

impl<'a> Lines<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut routes = HashMap::new();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with([' ', '\t', '#']) {
                continue;
            }
            if let Some(key) = key_of(line) {
                routes.entry(unescaped(line, key)).or_insert(i + 1);
            }
        }
        Self { lines, routes }
    }

    /// The 1-based line of a top-level key, if it can be found.
    pub(super) fn route(&self, route: &str) -> Option<usize> {
        self.routes.get(route).copied()
    }

    /// The line of `path` (e.g. `["key", "query"]`) inside the route's block,
    /// or the route's own line.
    pub(super) fn field(&self, route_line: usize, path: &[&str]) -> usize {
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

/// A key as YAML reads it: a double-quoted one with its escapes (`\/`)
/// resolved.
fn unescaped(line: &str, key: &str) -> String {
    if line.trim_start().starts_with('"')
        && key.contains('\\')
        && let Ok(read) = serde_yaml::from_str::<String>(&format!("\"{key}\""))
    {
        return read;
    }
    key.to_owned()
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

/// The known name one or two edits away from `name`, for "did you mean".
pub(super) fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
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
