//! Route templates (`/api/v1/products/{id}`) and the trie that matches a
//! request path against all of them at once.
//!
//! Precedence, from most to least specific, segment by segment from the left:
//! a literal segment beats a `{param}`, which beats a trailing `*`. So
//! `/api/v1/products/featured` wins over `/api/v1/products/{id}` for that one
//! path, whatever the order in the files. A route whose methods do not include
//! the request's method does not match, and the search backtracks to the next
//! most specific route.

use rustc_hash::FxHashMap;

use http::Method;

/// One segment of a route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
    /// `*` as the last segment: one or more remaining segments.
    Rest,
}

/// A parsed route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) segments: Vec<Segment>,
}

impl Template {
    /// Parses `/a/{b}/c` or `/a/*`. The error says what is wrong with it.
    pub(crate) fn parse(path: &str) -> Result<Self, String> {
        if !path.starts_with('/') {
            return Err(format!("route '{path}' must start with '/'"));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = split_path(path).collect();
        for (i, part) in parts.iter().enumerate() {
            let segment = if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(format!("route '{path}': '*' may only be the last segment"));
                }
                Segment::Rest
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!(
                        "route '{path}': '{{{name}}}' is not a valid parameter name (letters, digits, '_')"
                    ));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) if **n == *name))
                {
                    return Err(format!("route '{path}': parameter '{name}' appears twice"));
                }
                Segment::Param(name.into())
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "route '{path}': segment '{part}' mixes text and braces; a parameter is a whole segment like {{id}}"
                ));
            } else {
                Segment::Literal((*part).into())
            };
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// The names of the template's parameters, in order.
    pub(crate) fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(&**name),
            _ => None,
        })
    }

    /// The template with parameter names erased: two templates with the same
    /// shape match exactly the same paths.
    pub(crate) fn shape(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Param(_) => out.push_str("{}"),
                Segment::Rest => out.push('*'),
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

/// Path segments without empty ones, so `/a//b/` is `a`, `b`.
pub(crate) fn split_path(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        let (segment, after) = next_segment(rest)?;
        rest = after;
        Some(segment)
    })
}

/// All routes of a policy set, as a trie over path segments.
#[derive(Debug, Default)]
pub(crate) struct Router {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    /// FxHash: keys are our own route segments, looked up once per level.
    literals: FxHashMap<Box<str>, Node>,
    /// Where a `{name}` segment leads; names live in the policy's template.
    param: Option<Box<Node>>,
    /// Routes ending here: (methods, index of the policy).
    routes: Vec<(Vec<Method>, usize)>,
    /// Routes ending in `*` here.
    rest: Vec<(Vec<Method>, usize)>,
}

impl Router {
    /// Adds a route. Parameter names at one position may differ between
    /// templates (`/p/{id}` and `/p/{pid}/reviews`); each keeps its own name.
    pub(crate) fn insert(&mut self, template: &Template, methods: Vec<Method>, index: usize) {
        let mut node = &mut self.root;
        for segment in &template.segments {
            match segment {
                Segment::Literal(text) => node = node.literals.entry(text.clone()).or_default(),
                Segment::Param(_) => node = node.param.get_or_insert_default(),
                Segment::Rest => {
                    node.rest.push((methods, index));
                    return;
                }
            }
        }
        node.routes.push((methods, index));
    }

    /// Finds the most specific route for `method` and `path`; returns the
    /// policy index and the positions of parameter segments.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<(usize, Vec<usize>)> {
        let mut params = Vec::new();
        find_in(&self.root, method, path, 0, &mut params).map(|index| (index, params))
    }
}

fn pick(routes: &[(Vec<Method>, usize)], method: &Method) -> Option<usize> {
    routes
        .iter()
        .find(|(methods, _)| methods.contains(method))
        .map(|(_, index)| *index)
}

/// The next non-empty segment of `rest` and what follows it.
fn next_segment(rest: &str) -> Option<(&str, &str)> {
    // By bytes: '/' is ASCII, so every cut is at a character boundary.
    let start = rest.bytes().position(|b| b != b'/')?;
    let rest = rest.get(start..)?;
    Some(match rest.bytes().position(|b| b == b'/') {
        Some(end) => (rest.get(..end)?, rest.get(end + 1..)?),
        None => (rest, ""),
    })
}

fn find_in(
    node: &Node,
    method: &Method,
    rest: &str,
    depth: usize,
    params: &mut Vec<usize>,
) -> Option<usize> {
    let Some((segment, after)) = next_segment(rest) else {
        return pick(&node.routes, method);
    };
    if let Some(child) = node.literals.get(segment)
        && let Some(found) = find_in(child, method, after, depth + 1, params)
    {
        return Some(found);
    }
    if let Some(child) = &node.param {
        params.push(depth);
        if let Some(found) = find_in(child, method, after, depth + 1, params) {
            return Some(found);
        }
        params.pop();
    }
    pick(&node.rest, method)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &[Method])]) -> Router {
        let mut router = Router::default();
        for (i, (path, methods)) in routes.iter().enumerate() {
            let template = Template::parse(path).unwrap();
            router.insert(&template, methods.to_vec(), i);
        }
        router
    }

    const GET: &[Method] = &[Method::GET, Method::HEAD];

    #[test]
    fn literal_beats_param_beats_rest() {
        let r = router(&[
            ("/api/*", GET),
            ("/api/v1/products/{id}", GET),
            ("/api/v1/products/featured", GET),
        ]);
        assert_eq!(
            r.find(&Method::GET, "/api/v1/products/featured")
                .map(|m| m.0),
            Some(2)
        );
        assert_eq!(
            r.find(&Method::GET, "/api/v1/products/42"),
            Some((1, vec![3]))
        );
        assert_eq!(r.find(&Method::GET, "/api/v1/other").map(|m| m.0), Some(0));
        assert_eq!(r.find(&Method::GET, "/elsewhere"), None);
    }

    #[test]
    fn method_mismatch_backtracks_to_less_specific_route() {
        let r = router(&[("/p/{id}", GET), ("/p/new", &[Method::POST])]);
        assert_eq!(r.find(&Method::GET, "/p/new").map(|m| m.0), Some(0));
        assert_eq!(r.find(&Method::POST, "/p/new").map(|m| m.0), Some(1));
        assert_eq!(r.find(&Method::DELETE, "/p/new"), None);
    }

    #[test]
    fn exact_depth_only_and_empty_segments_ignored() {
        let r = router(&[("/api/v1/products", GET), ("/", GET)]);
        assert_eq!(
            r.find(&Method::GET, "/api/v1/products/").map(|m| m.0),
            Some(0)
        );
        assert_eq!(
            r.find(&Method::GET, "/api//v1/products").map(|m| m.0),
            Some(0)
        );
        assert_eq!(r.find(&Method::GET, "/api/v1/products/1"), None);
        assert_eq!(r.find(&Method::GET, "/").map(|m| m.0), Some(1));
    }

    #[test]
    fn shapes_ignore_param_names() {
        let a = Template::parse("/p/{id}").unwrap();
        let b = Template::parse("/p/{pid}").unwrap();
        assert_eq!(a.shape(), b.shape());
        assert_eq!(Template::parse("/").unwrap().shape(), "/");
    }

    #[test]
    fn bad_templates_are_explained() {
        assert!(
            Template::parse("api")
                .unwrap_err()
                .contains("must start with '/'")
        );
        assert!(
            Template::parse("/a/*/b")
                .unwrap_err()
                .contains("last segment")
        );
        assert!(
            Template::parse("/a/{1x}")
                .unwrap_err()
                .contains("not a valid parameter")
        );
        assert!(
            Template::parse("/a/x{id}")
                .unwrap_err()
                .contains("mixes text")
        );
        assert!(
            Template::parse("/a/{id}/{id}")
                .unwrap_err()
                .contains("twice")
        );
    }
}
