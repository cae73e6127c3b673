//! Purges Redis could not be told (it was down), kept until it can be:
//! without them other instances would serve what the purges changed for as
//! long as the entries live. Bounded: past [`MAX_PENDING`] they widen one
//! tenant at a time, never into another tenant's purge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;

use super::{Mark, Scope, duration_us};

/// How long kept marks wait after Redis refused them again: a Redis that
/// takes the message but not the log (full) is not sent them every second.
const RETRY: Duration = Duration::from_secs(10);
/// Marks kept while Redis cannot be told.
const MAX_PENDING: usize = 10_000;

#[derive(Debug, Default)]
pub(super) struct Pending {
    marks: Mutex<Vec<Mark>>,
    /// No retry before this (µs).
    retry_at_us: AtomicU64,
}

impl Pending {
    /// Keeps `marks`; `known`: tenants with a token, whose marks are never
    /// the ones dropped.
    pub(super) fn keep(&self, marks: &[Mark], known: impl Fn(&str) -> bool) {
        let mut pending = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(marks);
        if pending.len() > MAX_PENDING {
            let (widened, dropped) = widened(&pending, known);
            *pending = widened;
            if dropped > 0 {
                warn!(
                    dropped,
                    "purges of this many tenants cannot be kept until Redis is back: other instances serve what they changed until it expires"
                );
            }
        }
    }

    /// The kept marks, taken, unless Redis refused them too recently.
    pub(super) fn take_due(&self, now_us: u64) -> Vec<Mark> {
        if now_us < self.retry_at_us.load(Ordering::Relaxed) {
            return Vec::new();
        }
        std::mem::take(&mut *self.marks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Redis refused them again at `now_us`: the next try waits.
    pub(super) fn wait_from(&self, now_us: u64) {
        let later = now_us.saturating_add(duration_us(RETRY));
        self.retry_at_us.store(later, Ordering::Relaxed);
    }
}

/// `marks` as one mark a tenant covering all of it, as of its latest:
/// wider than what was asked, never less, and never reaching another
/// tenant. Past [`MAX_PENDING`] tenants, those written for last are dropped
/// (and counted), never the operator's marks for every tenant, nor those of
/// tenants with a token: anyone can write for invented tenants.
fn widened(marks: &[Mark], known: impl Fn(&str) -> bool) -> (Vec<Mark>, usize) {
    let mut latest: std::collections::HashMap<Option<&str>, u64> = Default::default();
    let mut order: Vec<Option<&str>> = Vec::new();
    for mark in marks {
        let tenant = mark.tenant.as_deref();
        let at = latest.entry(tenant).or_insert_with(|| {
            order.push(tenant);
            0
        });
        *at = (*at).max(mark.at);
    }
    let kept_first = |tenant: &Option<&str>| !tenant.is_none_or(&known);
    order.sort_by_key(kept_first); // stable: the first written stay first
    let dropped = order.len().saturating_sub(MAX_PENDING);
    order.truncate(MAX_PENDING);
    let widened = order
        .into_iter()
        .map(|tenant| Mark {
            tenant: tenant.map(Into::into),
            scope: Scope::All,
            at: latest.get(&tenant).copied().unwrap_or_default(),
            soft: false,
        })
        .collect();
    (widened, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invalidation::Scope;

    #[test]
    fn pending_marks_widen_to_all_of_each_tenant_as_of_its_latest() {
        let mark = |tenant: Option<&str>, at| Mark {
            tenant: tenant.map(Into::into),
            scope: Scope::Tag("t".into()),
            at,
            soft: true,
        };
        let (mut widened, dropped) = widened(
            &[
                mark(Some("acme"), 5),
                mark(Some("acme"), 9),
                mark(Some("globex"), 7),
                mark(None, 3),
            ],
            |_| false,
        );
        assert_eq!(dropped, 0);
        widened.sort_by_key(|m| m.at);
        let got: Vec<_> = widened
            .iter()
            .map(|m| (m.tenant.as_deref(), m.at, m.scope == Scope::All, m.soft))
            .collect();
        assert_eq!(
            got,
            [
                (None, 3, true, false),
                (Some("globex"), 7, true, false),
                (Some("acme"), 9, true, false)
            ]
        );
    }

    #[test]
    fn invented_tenants_never_widen_into_a_purge_of_every_tenant() {
        let mark = |tenant: String| Mark {
            tenant: Some(tenant.into()),
            scope: Scope::Path("/p".into()),
            at: 1,
            soft: false,
        };
        let mut marks: Vec<Mark> = (0..MAX_PENDING + 50)
            .map(|i| mark(format!("t{i}")))
            .collect();
        marks.push(mark("acme".into()));
        let (widened, dropped) = widened(&marks, |tenant| tenant == "acme");
        assert_eq!(widened.len(), MAX_PENDING);
        assert_eq!(dropped, 51);
        assert!(
            widened.iter().all(|m| m.tenant.is_some()),
            "no mark for every tenant"
        );
        assert!(
            widened.iter().any(|m| m.tenant.as_deref() == Some("acme")),
            "a tenant with a token keeps its purge"
        );
    }
}
