//! Who may call the admin API: the tokens, and how a request shows one.

use std::net::SocketAddr;

use http::{Request, StatusCode, header};
use hyper::body::Incoming;

use super::Refusal;

/// Who may change what.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    /// May purge for any tenant, or every tenant at once.
    pub operator_token: Option<String>,
    /// `(tenant, token)`: the token may purge for that tenant only.
    pub tenant_tokens: Vec<(String, String)>,
}

impl AdminAuth {
    pub(crate) fn is_open(&self) -> bool {
        self.operator_token.is_none() && self.tenant_tokens.is_empty()
    }
}

/// The caller of a mutation, once authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Caller {
    Operator,
    Tenant(String),
}

pub(super) fn authorize(
    auth: &AdminAuth,
    request: &Request<Incoming>,
    peer: SocketAddr,
) -> Result<Caller, Refusal> {
    if auth.is_open() {
        return if peer.ip().is_loopback() {
            Ok(Caller::Operator)
        } else {
            Err(Refusal::forbidden(
                "no --admin-token is configured, so mutations are accepted from loopback only",
            ))
        };
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        ));
    };
    if auth
        .operator_token
        .as_deref()
        .is_some_and(|t| same(t, presented))
    {
        return Ok(Caller::Operator);
    }
    if let Some((tenant, _)) = auth.tenant_tokens.iter().find(|(_, t)| same(t, presented)) {
        return Ok(Caller::Tenant(tenant.clone()));
    }
    Err(Refusal::forbidden("the token is not valid"))
}

/// Compares secrets in time that does not depend on where they differ.
fn same(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cret", "s3cre"));
        assert!(!same("s3cret", "s3cres"));
    }
}
