//! Admission: the client's request made the one canonical request folio
//! decides on and forwards (see `inbound`), its tenant found, and the
//! labels it is counted under.

use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;

use super::record::Ctx;
use super::{State, is_safe};
use crate::error::ProxyError;
use crate::inbound;
use crate::key::canonical_query;
use crate::policy::{Match, Policy, PolicySet};

/// The request's one canonical path, or why it is refused (a tunnel, a
/// loop, or a path with more than one reading).
pub(super) fn path(parts: &Parts) -> Result<String, ProxyError> {
    inbound::request_path(&parts.method, &parts.uri, &parts.headers)
}

/// Makes the headers, the host and the URI canonical for the policy
/// `matched`, finds the tenant, and labels the request with both; or says
/// why it is refused.
pub(super) fn request(
    state: &State,
    policies: &PolicySet,
    parts: &mut Parts,
    path: &str,
    matched: Option<&Match<'_>>,
    client: IpAddr,
    ctx: &mut Ctx,
) -> Result<String, ProxyError> {
    let decided = inbound::DecidedOn {
        tenant: state.tenant.header(),
        keyed: matched.map_or(&[], |m| &m.policy.key_headers),
    };
    let trusted = state
        .trusted_proxies
        .iter()
        .any(|range| range.contains(client));
    inbound::clean_headers(&mut parts.headers, &parts.method, decided, trusted)?;
    inbound::canonical_host(&mut parts.headers, &parts.uri)?;
    parts.uri = inbound::with_path_and_query(&parts.uri, path, parts.uri.query())?;
    let tenant = state.tenant.tenant(parts)?.into_owned();
    let endpoint = match matched {
        Some(matched) => Some(&matched.policy.name),
        None if is_safe(&parts.method) => Some(&policies.rfc().name),
        None => None,
    };
    label(state, ctx, &tenant, path, endpoint);
    Ok(tenant)
}

/// Labels the request with its tenant and endpoint (when a policy governs
/// it), and samples its path for the top paths.
pub(super) fn label(
    state: &State,
    ctx: &mut Ctx,
    tenant: &str,
    path: &str,
    endpoint: Option<&Arc<str>>,
) {
    ctx.tenant = state.metrics.tenant_label(tenant);
    state.metrics.sample_path(&ctx.tenant, path);
    if let Some(endpoint) = endpoint {
        ctx.endpoint = Arc::clone(endpoint);
    }
}

/// The request of a cached route as the key reads it and the upstream gets
/// it: without the unkeyed overrides, the keyed headers and the query as
/// the key holds them.
pub(super) fn as_keyed(parts: &mut Parts, policy: &Policy, path: &str) -> Result<(), ProxyError> {
    inbound::drop_unkeyed(&mut parts.headers, &policy.key_headers);
    inbound::forward_as_keyed(&mut parts.headers, &policy.key_headers);
    let query = canonical_query(policy, parts.uri.query());
    parts.uri = inbound::with_path_and_query(&parts.uri, path, query.as_deref())?;
    Ok(())
}
