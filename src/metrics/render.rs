//! The Prometheus text exposition of every metric.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{Layer, Metrics, PURGE_SCOPES, Result, UPSTREAM_ERROR_KINDS};

impl Metrics {
    /// The Prometheus text exposition; `gauges` are read at scrape time.
    pub(crate) fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP folio_requests_total Requests by endpoint (policy), tenant, result and layer.\n");
        out.push_str("# TYPE folio_requests_total counter\n");
        for ((endpoint, tenant), series) in self.series() {
            for result in Result::ALL {
                for layer in Layer::ALL {
                    let n = series.get(result, layer);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "folio_requests_total{{endpoint=\"{}\",tenant=\"{}\",result=\"{}\",layer=\"{}\"}} {n}",
                            escape(&endpoint),
                            escape(&tenant),
                            result.as_str(),
                            layer.as_str()
                        );
                    }
                }
            }
        }
        out.push_str("# HELP folio_request_duration_seconds Time to answer, by result.\n");
        out.push_str("# TYPE folio_request_duration_seconds histogram\n");
        for result in Result::ALL {
            let labels = format!("result=\"{}\"", result.as_str());
            self.durations[result as usize].render(
                &mut out,
                "folio_request_duration_seconds",
                &labels,
            );
        }
        out.push_str(
            "# HELP folio_upstream_duration_seconds Time to the upstream's response headers.\n",
        );
        out.push_str("# TYPE folio_upstream_duration_seconds histogram\n");
        self.upstream_latency
            .render(&mut out, "folio_upstream_duration_seconds", "");
        out.push_str("# HELP folio_redis_duration_seconds Time of one Redis (L2) command.\n");
        out.push_str("# TYPE folio_redis_duration_seconds histogram\n");
        self.redis_latency
            .render(&mut out, "folio_redis_duration_seconds", "");
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "folio_evictions_total",
            "L1 entries evicted for room.",
            self.evictions.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_coalesced_total",
            "Requests answered by another request's fetch.",
            self.coalesced.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_panics_total",
            "Requests whose handling panicked (a bug; each got a 500).",
            self.panics.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_access_log_dropped_total",
            "Access lines dropped because the log's output could not keep up.",
            self.access_log_dropped.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_l2_errors_total",
            "Redis (L2) commands that failed or timed out.",
            self.l2_errors.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "folio_l2_decrypt_failures_total",
            "Redis (L2) values that did not open with the encryption keys (each was a miss).",
            self.l2_decrypt_failures.load(Ordering::Relaxed),
        );
        out.push_str("# HELP folio_upstream_errors_total Upstream failures by kind.\n# TYPE folio_upstream_errors_total counter\n");
        for (i, kind) in UPSTREAM_ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "folio_upstream_errors_total{{kind=\"{kind}\"}} {}",
                self.upstream_errors[i].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP folio_purges_total Purge marks made on this instance, by scope.\n# TYPE folio_purges_total counter\n");
        for (i, scope) in PURGE_SCOPES.iter().enumerate() {
            let _ = writeln!(
                out,
                "folio_purges_total{{scope=\"{scope}\"}} {}",
                self.purges[i].load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
