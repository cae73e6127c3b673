//! Endpoint policies: what folio does with requests to each route.
//!
//! A [`PolicySet`] is loaded from `policies/*.yaml` ([`load`] turns the files
//! into validated [`Policy`] values, with `file:line: field:` errors) and
//! answers one question per request: which policy, if any, governs this
//! method and path ([`PolicySet::match_request`]).

mod load;
pub(crate) mod route;
pub(crate) mod units;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};

pub use load::{PolicyError, PolicyErrors};
use route::{Router, Template};

/// Where a policy was written, for error messages and `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
}

/// Which query parameters enter the cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryKey {
    /// Every parameter (the default): `?a=1&b=2` and `?b=2&a=1` share an entry.
    All,
    /// Only these (sorted); the rest are forwarded but do not split the cache.
    Only(Vec<Box<str>>),
    /// None: every query string shares one entry.
    Ignore,
}

/// A piece of a tag template such as `product:{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TagPart {
    Text(Box<str>),
    /// A route parameter.
    Param(Box<str>),
    /// `{query.NAME}`: a query parameter of the request.
    Query(Box<str>),
}

/// One endpoint's rule, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    /// The route as written in the file, e.g. `/api/v1/products/{id}`: the
    /// policy's name in headers, logs and metrics.
    pub(crate) name: Arc<str>,
    pub(crate) template: Template,
    pub(crate) methods: Vec<Method>,
    /// `cache: false` makes the route a pass-through.
    pub(crate) cache: bool,
    /// How long an entry stays fresh; `None` leaves it to the upstream's
    /// `Cache-Control` / `Expires`.
    pub(crate) ttl: Option<Duration>,
    pub(crate) stale_while_revalidate: Duration,
    /// `None`: the upstream's `stale-if-error`, and a short grace when the
    /// upstream cannot be reached; `Some(0)` turns both off.
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) key_query: QueryKey,
    /// Request headers whose (normalized) values enter the key.
    pub(crate) key_headers: Vec<HeaderName>,
    /// The key includes the caller's identity (`Authorization`, `Cookie`):
    /// such entries are never shared between callers.
    pub(crate) private: bool,
    pub(crate) tags: Vec<Vec<TagPart>>,
    pub(crate) invalidate_on: Vec<Box<str>>,
    /// Events raised when a write to this route succeeds (2xx), with the
    /// route's parameters: `PUT|PATCH|DELETE /products/{id}` → `product_update`.
    pub(crate) events: Vec<Box<str>>,
    /// After a purge of this endpoint's entries, refetch the most requested.
    pub(crate) rewarm: bool,
    /// What clients are told; `None` passes the upstream's `Cache-Control`.
    pub(crate) cache_control: Option<HeaderValue>,
    /// `CDN-Cache-Control` sent to clients (CDNs in front of folio).
    pub(crate) cdn_cache_control: Option<HeaderValue>,
    pub(crate) cache_statuses: Vec<StatusCode>,
    pub(crate) max_body: usize,
    /// Cache even when the upstream says `no-store`, `private` or a shorter
    /// `max-age`.
    pub(crate) override_upstream: bool,
    /// Store compressible answers compressed (`compress: false` turns it off).
    pub(crate) compress: bool,
    /// The policy of requests no policy matches: plain RFC 9111, where only
    /// the upstream's headers count.
    pub(crate) implicit: bool,
    pub(crate) source: Source,
}

/// Statuses cached by default: those RFC 9110 §15.1 calls heuristically
/// cacheable (206 aside: folio does not store partial content).
pub(crate) const DEFAULT_CACHE_STATUSES: [u16; 11] =
    [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Largest body stored per entry unless a policy says otherwise.
pub(crate) const DEFAULT_MAX_BODY: usize = 8 << 20;

/// No entry lives longer than this in any tier: a policy may not ask for
/// more, an upstream's lifetime is cut to it, and purge marks are kept as
/// long.
pub(crate) const MAX_ENTRY_LIFETIME: Duration = Duration::from_secs(48 * 3600);

impl Policy {
    /// The implicit policy: a plain RFC 9111 shared cache for any origin.
    pub(crate) fn rfc() -> Self {
        Self {
            name: Arc::from("(no policy)"),
            template: Template {
                segments: Vec::new(),
            },
            methods: vec![Method::GET, Method::HEAD],
            cache: true,
            ttl: None,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: None,
            key_query: QueryKey::All,
            key_headers: Vec::new(),
            private: false,
            tags: Vec::new(),
            invalidate_on: Vec::new(),
            events: Vec::new(),
            rewarm: false,
            cache_control: None,
            cdn_cache_control: None,
            cache_statuses: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
            override_upstream: false,
            compress: true,
            implicit: true,
            source: Source {
                file: PathBuf::new(),
                line: 0,
            },
        }
    }

    /// Whether requests with this method may be answered from the cache.
    pub(crate) fn caches(&self, method: &Method) -> bool {
        self.cache && (*method == Method::GET || *method == Method::HEAD)
    }
}

/// A policy chosen for a request, with the route parameters it captured.
#[derive(Debug)]
pub(crate) struct Match<'a> {
    pub(crate) policy: &'a Arc<Policy>,
    pub(crate) params: Vec<(&'a str, &'a str)>,
}

/// All endpoint policies, ready to match requests.
#[derive(Debug)]
pub struct PolicySet {
    policies: Vec<Arc<Policy>>,
    /// Governs requests no policy matches.
    rfc: Arc<Policy>,
    router: Router,
}

impl PolicySet {
    /// Loads every `*.yaml` / `*.yml` file in `dir` (sorted by name).
    ///
    /// Every mistake in every file is reported, each as
    /// `file:line: field: what is wrong`.
    pub fn load_dir(dir: impl AsRef<std::path::Path>) -> Result<Self, PolicyErrors> {
        load::load_dir(dir.as_ref())
    }

    /// Parses one policy document; `name` stands for the file in errors.
    pub fn from_yaml(name: impl Into<PathBuf>, text: &str) -> Result<Self, PolicyErrors> {
        let name = name.into();
        let policies = load::parse_file(&name, text).map_err(PolicyErrors)?;
        Self::new(policies)
    }

    fn new(policies: Vec<Policy>) -> Result<Self, PolicyErrors> {
        load::check_duplicates(&policies).map_err(PolicyErrors)?;
        let mut router = Router::default();
        for (index, policy) in policies.iter().enumerate() {
            router.insert(&policy.template, policy.methods.clone(), index);
        }
        let policies = policies.into_iter().map(Arc::new).collect();
        Ok(Self {
            policies,
            router,
            rfc: Arc::new(Policy::rfc()),
        })
    }

    /// The implicit policy of requests no policy matches.
    pub(crate) fn rfc(&self) -> &Arc<Policy> {
        &self.rfc
    }

    /// Every policy, in file order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.policies.iter()
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether the set holds no policy (folio then forwards everything).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The most specific policy for this method and path.
    pub(crate) fn match_request<'a>(&'a self, method: &Method, path: &'a str) -> Option<Match<'a>> {
        let (index, positions) = self.router.find(method, path)?;
        let policy = &self.policies[index];
        let mut segments = route::split_path(path);
        let mut taken = 0;
        let params = policy
            .template
            .params()
            .zip(positions)
            .filter_map(|(name, position)| {
                let value = segments.nth(position - taken)?;
                taken = position + 1;
                Some((name, value))
            })
            .collect();
        Some(Match { policy, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_captures_params_by_name() {
        let set = PolicySet::from_yaml(
            "t.yaml",
            r#"
"/api/v1/products/{id}/reviews/{review}":
  cache_ttl: 1m
"/api/v1/products/{pid}":
  cache_ttl: 1m
"#,
        )
        .unwrap();
        let m = set
            .match_request(&Method::GET, "/api/v1/products/42/reviews/7")
            .unwrap();
        assert_eq!(&*m.policy.name, "/api/v1/products/{id}/reviews/{review}");
        assert_eq!(m.params, vec![("id", "42"), ("review", "7")]);
        let m = set
            .match_request(&Method::HEAD, "/api/v1/products/9")
            .unwrap();
        assert_eq!(m.params, vec![("pid", "9")]);
        assert!(
            set.match_request(&Method::POST, "/api/v1/products/9")
                .is_none()
        );
    }
}
