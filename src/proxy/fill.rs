//! [`Fill`]: everything a fetch for the cache needs, owned, so a background
//! refresh or a rewarm can take it; and the fetches no client waits for.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::request::Parts;
use http::{HeaderMap, Method, Uri, header};

use super::State;
use super::fetch::{Fetched, fetch};
use super::lookup::lookup;
use crate::cache::entry::Entry;
use crate::flight::{Outcome, Role};
use crate::invalidation::{Verdict, route_tag};
use crate::key::{CacheKey, normalize_path, query_pairs};
use crate::policy::{Policy, TagPart};

/// Everything a fetch needs, owned, so a background refresh can take it.
#[derive(Debug, Clone)]
pub(crate) struct Fill {
    pub(super) policy: Arc<Policy>,
    /// The flight's key: the variant's when an index named it.
    pub(super) key: CacheKey,
    /// The key without variant: where responses without `Vary` and vary
    /// indexes are stored.
    pub(super) primary: CacheKey,
    pub(crate) tenant: Box<str>,
    pub(crate) path: Box<str>,
    pub(crate) tags: Vec<Box<str>>,
    pub(super) uri: Uri,
    /// The request headers to forward: the client's (cleaned), or for a
    /// remembered fill only those the key is made of.
    pub(super) headers: HeaderMap,
    /// Named in `X-Forwarded-For`; none for a remembered fill.
    pub(super) client: Option<IpAddr>,
    /// The stale entry being revalidated: its validators go upstream, and a
    /// 304 refreshes it.
    pub(super) stale: Option<Entry>,
    pub(super) authorization: bool,
    pub(super) no_store: bool,
    /// A HEAD revalidating a stale entry: ask with HEAD (RFC 9111 §4.3.5).
    pub(super) head: bool,
}

impl Fill {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        policy: &Arc<Policy>,
        key: CacheKey,
        primary: CacheKey,
        tenant: &str,
        params: &[(&str, &str)],
        parts: &Parts,
        client: IpAddr,
        stale: Option<&Entry>,
    ) -> Self {
        // Only an entry with validators can be revalidated.
        let stale = stale.filter(|e| e.has_validators());
        Self {
            policy: Arc::clone(policy),
            key,
            primary,
            tenant: tenant.into(),
            path: normalize_path(parts.uri.path()).into(),
            tags: render_tags(policy, params, parts.uri.query()),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            client: Some(client),
            stale: stale.cloned(),
            // RFC 9111 §3.5: only responses that say so may be stored for
            // requests with credentials; a private policy keys on them instead.
            authorization: !policy.private && parts.headers.contains_key(header::AUTHORIZATION),
            no_store: false,
            head: parts.method == Method::HEAD && stale.is_some(),
        }
    }

    /// A fill to keep for rewarming: of the client's request only what the
    /// key is made of (`Host`, the tenant header, the policy's key headers,
    /// `Accept-Encoding`), so a replay fetches the shared entry, not this
    /// client's variant of it, and costs little to remember.
    pub(super) fn remembered(mut self, tenant_header: Option<&http::HeaderName>) -> Self {
        let mut kept = HeaderMap::new();
        let names = [&header::HOST, &header::ACCEPT_ENCODING]
            .into_iter()
            .chain(tenant_header)
            .chain(self.policy.key_headers.iter());
        for name in names {
            for value in self.headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        self.headers = kept;
        self.client = None;
        self.authorization = false;
        self.stale = None;
        self.head = false;
        self
    }

    /// Roughly the bytes this fill holds, to bound what is remembered.
    pub(crate) fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + 16).sum();
        std::mem::size_of::<Self>()
            + self.uri.to_string().len()
            + self.tenant.len()
            + self.path.len()
            + headers
            + tags
    }

    #[cfg(test)]
    pub(crate) fn primary_key(&self) -> CacheKey {
        self.primary
    }

    /// A fill of `path` whose request carried `extra` bytes of headers.
    #[cfg(test)]
    pub(crate) fn for_test(path: &str, extra: usize) -> Self {
        let policy = Arc::new(Policy::rfc());
        let mut request = http::Request::get(path).header("x-tenant-id", "acme");
        if extra > 0 {
            request = request.header("x-padding", "p".repeat(extra));
        }
        let (parts, ()) = request.body(()).unwrap_or_default().into_parts();
        let key = CacheKey::new("acme", path, None, &parts.headers, &policy);
        Self::new(
            &policy,
            key,
            key,
            "acme",
            &[],
            &parts,
            IpAddr::from([127, 0, 0, 1]),
            None,
        )
    }

    pub(super) fn asking(mut self, no_store: bool) -> Self {
        self.no_store = no_store;
        self
    }
}

/// The policy's tag templates filled in from this request, and the tag of
/// the whole endpoint.
pub(crate) fn render_tags(
    policy: &Policy,
    params: &[(&str, &str)],
    query: Option<&str>,
) -> Vec<Box<str>> {
    let mut tags: Vec<Box<str>> = policy
        .tags
        .iter()
        .map(|template| {
            let mut tag = String::new();
            for part in template {
                match part {
                    TagPart::Text(text) => tag.push_str(text),
                    TagPart::Param(name) => {
                        tag.push_str(
                            params
                                .iter()
                                .find(|(n, _)| *n == &**name)
                                .map_or("", |(_, v)| v),
                        );
                    }
                    TagPart::Query(name) => {
                        if let Some((_, value)) = query_pairs(query).find(|(n, _)| *n == **name) {
                            tag.push_str(&value);
                        }
                    }
                }
            }
            tag.into_boxed_str()
        })
        .collect();
    tags.push(route_tag(policy));
    tags
}

/// Stores a fetched entry unless a purge that covers it arrived while it was
/// being fetched (the generation check that keeps purged data out). An
/// entry with `Vary` goes under its variant's key, with an index under the
/// primary key naming the headers that pick the variant.
pub(super) fn store_unless_purged(
    state: &State,
    fill: &Fill,
    entry: &Entry,
    now: SystemTime,
) -> bool {
    if state.invalidator.verdict(&fill.key, entry) != Verdict::Valid {
        return false;
    }
    if !entry.has_vary() {
        state.cache.store(fill.primary, entry.clone(), now);
    } else {
        let variant = fill.primary.variant(&entry.vary_names(), &fill.headers);
        state.cache.store(variant, entry.clone(), now);
        if let Some(index) = entry.index() {
            state.cache.store(fill.primary, index, now);
        }
    }
    true
}

/// Refreshes a stale entry without anyone waiting.
pub(super) fn refresh_in_background(state: &Arc<State>, fill: Fill) {
    let state = Arc::clone(state);
    tokio::spawn(async move { refetch(&state, &fill).await });
}

/// Fetches and stores an entry with no client waiting (a refresh, a
/// rewarm); one per key at a time. Whether a new entry was stored.
pub(crate) async fn refetch(state: &Arc<State>, fill: &Fill) -> bool {
    let Role::Leader(leader) = state.flights.join(fill.key) else {
        return false; // a fetch for this key is already under way
    };
    // Another refresh may have stored a fresh entry between our read and
    // our lead: then there is nothing to do.
    let now = SystemTime::now();
    let found = lookup(state, fill.primary, &fill.headers, now).await.entry;
    if let Some((entry, _)) = found
        && entry.age(now) < entry.lifetime()
        && !entry.revalidate()
        && state.invalidator.verdict(&fill.key, &entry) == Verdict::Valid
    {
        leader.finish(Outcome::Shared(entry));
        return false;
    }
    match fetch(state, fill).await {
        Ok(Fetched::Entry(entry, _)) => {
            if store_unless_purged(state, fill, &entry, SystemTime::now()) {
                leader.finish(Outcome::Shared(entry));
                true
            } else {
                leader.finish(Outcome::NotShareable);
                false
            }
        }
        Ok(Fetched::Response(..)) => {
            leader.finish(Outcome::NotShareable);
            false
        }
        Err(error) => {
            leader.finish(Outcome::Failed(error));
            false
        }
    }
}
