//! Background work that lives as long as the server: the metrics sampler,
//! what SIGHUP reloads (the access log's file, the policies, the TLS
//! certificate), and warming.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::proxy::State;
use crate::settings::Settings;
use crate::{metrics, reload, tls, warm};

/// Warming attempts in a row while some URLs fail.
const WARM_ATTEMPTS: u32 = 3;

/// Starts the background work; each task ends when `stopping` resolves.
pub(crate) fn spawn(
    state: &Arc<State>,
    settings: &Settings,
    served: Option<Arc<tls::ServedCertificate>>,
    proxy_addr: Option<std::net::SocketAddr>,
    stopping: impl Future<Output = ()> + Send + 'static,
) {
    let (done, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stopping.await;
        let _ = done.send(true);
    });
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };

    let sampler = Arc::clone(state);
    let stop = until_stopped();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(metrics::SAMPLE_EVERY);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => sampler.metrics.sample(),
                () = &mut stop => return,
            }
        }
    });

    #[cfg(unix)]
    if let Some(access) = state.access.clone() {
        // logrotate moved the file: write to a new one at the path.
        on_hangup(until_stopped(), move || {
            access.reopen();
            async {}
        });
    }
    #[cfg(unix)]
    if let Some(dir) = settings.policies_dir.clone() {
        let state = Arc::clone(state);
        on_hangup(until_stopped(), move || {
            let (state, dir) = (Arc::clone(&state), dir.clone());
            async move {
                if let Err(errors) = reload::reload(&state, &dir).await {
                    tracing::error!(
                        "SIGHUP: the policies were not reloaded; the running ones stay:\n{errors}"
                    );
                }
            }
        });
    }
    #[cfg(unix)]
    if let Some(served) = served.clone() {
        // A renewed certificate: new handshakes use it, open connections
        // keep theirs.
        on_hangup(until_stopped(), move || {
            let served = Arc::clone(&served);
            async move {
                match tokio::task::spawn_blocking(move || served.reload()).await {
                    Ok(Ok(())) => tracing::info!("SIGHUP: the TLS certificate was reloaded"),
                    Ok(Err(error)) => {
                        tracing::error!(%error, "SIGHUP: the TLS certificate was not reloaded; the running one stays")
                    }
                    Err(_) => {}
                }
            }
        });
    }

    if let (Some(plan), Some(addr)) = (settings.config.warm.clone(), proxy_addr) {
        let tenants = settings.tenant.clone();
        let stop = until_stopped();
        // Through the listener as clients reach it: over TLS when it
        // speaks TLS, trusting exactly the certificate it serves.
        let (base, tls) = match &served {
            Some(served) => (
                format!("https://{addr}"),
                Some(tls::own_listener_client(served)),
            ),
            None => (format!("http://{addr}"), None),
        };
        tokio::spawn(async move {
            tokio::pin!(stop);
            // The upstream may start alongside folio: give it a moment, and
            // try again (with backoff) while some URLs fail.
            let mut pause = Duration::from_millis(500);
            let mut attempts = 0;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = &mut stop => return,
                }
                let total = plan.urls.len();
                let report = warm::warm(
                    &base,
                    &plan,
                    &tenants,
                    tls.clone(),
                    move |done, total, failed| {
                        if done == total || done % 100 == 0 {
                            tracing::info!("warming: {done}/{total} fetched ({failed} failed)");
                        }
                    },
                )
                .await;
                tracing::info!(
                    total,
                    ok = report.ok,
                    failed = report.failed,
                    "warming done"
                );
                attempts += 1;
                if report.failed > 0 && attempts < WARM_ATTEMPTS {
                    pause = Duration::from_secs(2u64.pow(attempts));
                    continue;
                }
                attempts = 0;
                pause = Duration::ZERO;
                let Some(every) = plan.every else { return };
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = &mut stop => return,
                }
            }
        });
    }
}

/// Runs `act` on every SIGHUP until `stop` resolves (nothing when the
/// signal cannot be listened for).
#[cfg(unix)]
fn on_hangup<A>(
    stop: impl Future<Output = ()> + Send + 'static,
    mut act: impl FnMut() -> A + Send + 'static,
) where
    A: Future<Output = ()> + Send,
{
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = hangups.recv() => act().await,
                () = &mut stop => return,
            }
        }
    });
}
