//! What a run builds once from its settings, before it serves: the TLS and
//! encryption material, the metrics and access log, the upstream client,
//! the cache tiers, the invalidator, and the [`State`] every request shares.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::error::Error;
use crate::policy::PolicySet;
use crate::proxy::{Hot, State};
use crate::settings::Settings;
use crate::{access, cache, invalidation, metrics, tls, upstream};

/// Refuses a token's tenant that requests cannot name as written (a token
/// for `Shop.Example` with `--tenant host`, where requests name
/// `shop.example`, could purge nothing of its own), or that the figures use
/// for many tenants at once (it would read theirs).
fn token_tenant(settings: &Settings, tenant: &str) -> Result<(), String> {
    let named = settings.tenant.named(tenant)?;
    if named != tenant {
        return Err(format!(
            "requests name tenant '{tenant}' '{named}' (a Host is lower-cased, without its port): write that"
        ));
    }
    if metrics::is_reserved_label(tenant) {
        return Err(format!(
            "'{tenant}' is the figures' name for every tenant without a label of its own: a token for it would read theirs"
        ));
    }
    Ok(())
}

/// The state every request shares, and the listener's certificate when it
/// speaks TLS.
pub(crate) fn state(
    settings: &Settings,
    policies: PolicySet,
) -> Result<(Arc<State>, Option<Arc<tls::ServedCertificate>>), Error> {
    settings
        .admin
        .validate()
        .map_err(|e| Error::Config(format!("refusing to start: {e}")))?;
    for (tenant, _) in &settings.admin.tenant_tokens {
        token_tenant(settings, tenant)
            .map_err(|e| Error::Config(format!("refusing to start: --tenant-token: {e}")))?;
    }
    let known_tenants = || settings.admin.tenant_tokens.iter().map(|(t, _)| t.as_str());
    let metrics = Arc::new(
        metrics::Metrics::new(settings.metrics_tenants).with_known_tenants(known_tenants()),
    );
    let access = access::AccessLog::start(
        &settings.access_log,
        settings.log_format,
        settings.access_log_buffer,
        Arc::clone(&metrics),
    )
    .map_err(|e| Error::Config(format!("cannot open the access log: {e}")))?
    .map(Arc::new);
    let security = Security::load(settings)?;
    let upstream = upstream::Upstream::new(
        &settings.upstream,
        settings.connect_timeout,
        settings.upstream_timeout,
        security.trust.as_ref(),
    )
    .map_err(Error::Upstream)?
    .with_read_timeout(settings.upstream_read_timeout)
    .with_metrics(Arc::clone(&metrics));
    let redis = match (&settings.redis, settings.redis_cluster.is_empty()) {
        (Some(_), false) => {
            return Err(Error::Config(
                "give --redis or --redis-cluster, not both".into(),
            ));
        }
        (Some(url), true) => Some(cache::RedisTarget::Single(url.clone())),
        (None, false) => Some(cache::RedisTarget::Cluster(settings.redis_cluster.clone())),
        (None, true) => None,
    };
    let cache = cache::Cache::new(
        settings.l1_capacity,
        redis.as_ref(),
        settings.l2_timeout,
        &metrics,
        cache::Protection {
            trust: security.trust.clone(),
            keyring: security.keyring.clone(),
        },
    )?;
    if security.keyring.is_some() && redis.is_none() {
        tracing::warn!(
            "--encryption-keys is set but there is no Redis: L1 holds plain entries, so nothing is encrypted"
        );
    }
    let invalidator = Arc::new(invalidation::Invalidator::new(
        cache.clone(),
        Arc::clone(&metrics),
        known_tenants(),
    ));
    invalidator.spawn_listener();
    let state = Arc::new(State {
        policies: ArcSwap::from_pointee(policies),
        cache,
        flights: Arc::default(),
        upstream,
        tenant: settings.tenant.clone(),
        invalidator,
        hot: Hot::default(),
        cdn: settings.cdn,
        metrics,
        trusted_proxies: settings.trusted_proxies.clone(),
        access,
        unmatched: Arc::from("-"),
        started: std::time::Instant::now(),
    });
    tracing::info!(
        upstream = %tls::redact_url(&settings.upstream.to_string()),
        cache = %state.cache.describe(),
        tls = security.served.is_some(),
        encrypted_l2 = security.keyring.is_some(),
        policies = state.policies.load().len(),
        "folio started"
    );
    Ok((state, security.served))
}

/// The TLS and encryption material of a run, read once at start.
struct Security {
    /// Roots for an `https://` upstream and `rediss://` Redis, loaded only
    /// when one of them is used.
    trust: Option<tls::Trust>,
    /// The listener's certificate, when it speaks TLS.
    served: Option<Arc<tls::ServedCertificate>>,
    /// The keys sealing entries in Redis.
    keyring: Option<Arc<cache::encryption::Keyring>>,
}

impl Security {
    fn load(settings: &Settings) -> Result<Self, Error> {
        let config = |e: &dyn std::fmt::Display| Error::Config(format!("refusing to start: {e}"));
        let tls_redis = settings
            .redis
            .iter()
            .chain(&settings.redis_cluster)
            .any(|url| {
                let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
                scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
            });
        let tls_upstream = settings.upstream.scheme() == Some(&http::uri::Scheme::HTTPS);
        let trust = if tls_redis || tls_upstream {
            Some(tls::Trust::load(settings.ca_file.as_deref()).map_err(|e| config(&e))?)
        } else {
            if settings.ca_file.is_some() {
                tracing::warn!(
                    "--ca-file is set, but neither the upstream (https://) nor Redis (rediss://) uses TLS"
                );
            }
            None
        };
        let served = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls::ServedCertificate::load(cert, key).map_err(|e| config(&e))?)
            }
            (None, None) => None,
            (Some(_), None) => return Err(config(&"--tls-cert needs --tls-key")),
            (None, Some(_)) => return Err(config(&"--tls-key needs --tls-cert")),
        };
        let keyring = settings
            .encryption_keys
            .as_deref()
            .map(cache::encryption::Keyring::load)
            .transpose()
            .map_err(|e| config(&e))?
            .map(Arc::new);
        if let Some(keyring) = &keyring {
            tracing::info!(
                sealing_key = keyring.sealing_id(),
                "L2 entries are encrypted"
            );
        }
        Ok(Self {
            trust,
            served,
            keyring,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::TenantSource;

    #[test]
    fn a_token_names_its_tenant_as_requests_do_and_never_a_shared_label() {
        let mut settings = Settings::new(http::Uri::from_static("http://127.0.0.1:1"));
        assert_eq!(token_tenant(&settings, "Acme"), Ok(()));
        for shared in ["other", "-"] {
            let refused = token_tenant(&settings, shared).unwrap_err();
            assert!(refused.contains("would read theirs"), "{refused}");
        }
        assert!(token_tenant(&settings, "a/b").is_err());
        settings.tenant = TenantSource::Host;
        assert_eq!(token_tenant(&settings, "shop.example"), Ok(()));
        let refused = token_tenant(&settings, "Shop.Example").unwrap_err();
        assert!(refused.contains("'shop.example'"), "{refused}");
    }
}
