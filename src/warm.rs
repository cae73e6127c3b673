//! Warming: fetching a list of URLs through folio, so they are cached
//! before users ask. At start-up and every `warm.every` (from the config
//! file), and once from the command line with `folio warm`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use crate::config::WarmPlan;
use crate::settings::TenantSource;

/// Longest wait for one warming request.
const WARM_TIMEOUT: Duration = Duration::from_secs(30);

/// How a warming run went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmReport {
    pub total: usize,
    pub ok: usize,
    pub failed: usize,
}

/// Fetches every URL of `plan` through the folio at `base` (e.g.
/// `http://127.0.0.1:8080`, or `https://…` verified with `tls`),
/// `plan.concurrency` at a time, calling `progress(done, total, failed)`
/// after each.
pub async fn warm(
    base: &str,
    plan: &WarmPlan,
    tenants: &TenantSource,
    tls: Option<rustls::ClientConfig>,
    progress: impl Fn(usize, usize, usize) + Send + Sync + 'static,
) -> WarmReport {
    crate::tls::use_ring();
    let connector = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match tls {
        // No TLS config: plain http (an https:// base verifies nothing
        // against no roots, so fails).
        None => connector
            .with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .https_or_http(),
        Some(config) => connector.with_tls_config(config).https_or_http(),
    }
    .enable_http1()
    .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let permits = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let progress = Arc::new(progress);
    let total = plan.urls.len();
    let mut tasks = tokio::task::JoinSet::new();
    for item in &plan.urls {
        let Ok(mut request) =
            Request::get(format!("{}{}", base.trim_end_matches('/'), item.url)).body(Empty::new())
        else {
            failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        for (name, value) in &item.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request.headers_mut().insert(name, value);
            }
        }
        if let Some(tenant) = item
            .tenant
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            match tenants {
                TenantSource::Header(name) => {
                    request.headers_mut().insert(name.clone(), tenant);
                }
                TenantSource::Host => {
                    request.headers_mut().insert(header::HOST, tenant);
                }
                TenantSource::PathSegment(_) => {} // the tenant is in the URL itself
            }
        }
        let (client, permits) = (client.clone(), Arc::clone(&permits));
        let (done, failed, progress) = (
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&progress),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let fetched = tokio::time::timeout(WARM_TIMEOUT, async {
                let response = client.request(request).await.ok()?;
                let ok = response.status().is_success();
                response.into_body().collect().await.ok()?;
                Some(ok)
            })
            .await;
            if !matches!(fetched, Ok(Some(true))) {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            let done = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(done, total, failed.load(Ordering::Relaxed));
        });
    }
    while tasks.join_next().await.is_some() {}
    let failed = failed.load(Ordering::Relaxed);
    WarmReport {
        total,
        ok: total - failed.min(total),
        failed,
    }
}
