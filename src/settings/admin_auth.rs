//! The admin API's tokens, as configured: who may purge, and for which
//! tenants. `admin::trust` checks requests against them.

/// Who may change and read what through the admin API.
#[derive(Clone, Default)]
pub struct AdminAuth {
    /// May purge for any tenant, or every tenant at once.
    pub operator_token: Option<String>,
    /// `(tenant, token)`: the token may purge for that tenant only.
    pub tenant_tokens: Vec<(String, String)>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Who has a token, never the token.
        f.debug_struct("AdminAuth")
            .field(
                "operator_token",
                &self.operator_token.as_ref().map(|_| "***"),
            )
            .field(
                "tenant_tokens",
                &self
                    .tenant_tokens
                    .iter()
                    .map(|(tenant, _)| (tenant.as_str(), "***"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AdminAuth {
    pub(crate) fn is_open(&self) -> bool {
        self.operator_token.is_none() && self.tenant_tokens.is_empty()
    }

    /// Refuses tokens that would not keep anyone out or could not be sent:
    /// an empty token (`Authorization: Bearer ` with nothing after it must
    /// not be the operator), one that is not visible ASCII (it is sent as
    /// one Bearer token), a tenant token without a tenant, and one token
    /// for two callers. `folio::run` calls it before serving.
    pub fn validate(&self) -> Result<(), String> {
        let tenants = self
            .tenant_tokens
            .iter()
            .map(|(tenant, token)| (format!("tenant '{tenant}' (--tenant-token)"), token));
        let callers: Vec<(String, &String)> = self
            .operator_token
            .iter()
            .map(|token| ("the operator (--admin-token)".to_owned(), token))
            .chain(tenants)
            .collect();
        if self
            .tenant_tokens
            .iter()
            .any(|(tenant, _)| tenant.is_empty())
        {
            return Err(
                "a tenant token names no tenant: expected --tenant-token TENANT=TOKEN".to_owned(),
            );
        }
        for (i, (who, token)) in callers.iter().enumerate() {
            if token.is_empty() {
                return Err(format!(
                    "the token of {who} is empty: give a secret, or leave it out"
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "the token of {who} must be visible ASCII without spaces: it is sent as one Bearer token"
                ));
            }
            if let Some((other, _)) = callers[i + 1..]
                .iter()
                .find(|(other, t)| *t == *token && *other != *who)
            {
                return Err(format!(
                    "{who} and {other} have the same token: each caller needs its own"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_that_keep_nobody_out_are_refused() {
        let auth = |operator: Option<&str>, tenants: &[(&str, &str)]| AdminAuth {
            operator_token: operator.map(str::to_owned),
            tenant_tokens: tenants
                .iter()
                .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
                .collect(),
        };
        assert_eq!(auth(None, &[]).validate(), Ok(()));
        assert_eq!(
            auth(Some("op"), &[("acme", "a"), ("acme", "a")]).validate(),
            Ok(())
        );
        for (bad, says) in [
            (auth(Some(""), &[]), "empty"),
            (auth(None, &[("acme", "")]), "empty"),
            (auth(None, &[("", "x")]), "no tenant"),
            (auth(Some("a b"), &[]), "visible ASCII"),
            (auth(Some("a\tb"), &[]), "visible ASCII"),
            (auth(None, &[("acme", "caf\u{e9}")]), "visible ASCII"),
            (auth(Some("x"), &[("acme", "x")]), "same token"),
            (auth(None, &[("acme", "x"), ("globex", "x")]), "same token"),
        ] {
            let error = bad.validate().unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
