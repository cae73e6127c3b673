//! Purges Redis could not be told (it was down), kept until it can be:
//! without them other instances would serve what the purges changed for as
//! long as the entries live. Bounded: past [`MAX_PENDING`] they widen one
//! tenant at a time, never into another tenant's purge, and what still does
//! not fit is dropped and counted.

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
/// What widening leaves: room for more marks before the next widening.
const WIDENED_TO: usize = MAX_PENDING * 3 / 4;

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

/// `marks` within [`WIDENED_TO`]: the operator's marks for every tenant (a
/// key purge, a tag for all) kept as they are, since widened they would
/// purge every tenant; the others as one mark a tenant covering all of it,
/// as of its latest: wider than what was asked, never reaching another
/// tenant. What does not fit is dropped and counted: the operator's marks
/// past the bound, then tenants without a token, those written for last
/// first (anyone can write for invented tenants).
fn widened(marks: &[Mark], known: impl Fn(&str) -> bool) -> (Vec<Mark>, usize) {
    let mut kept: Vec<Mark> = marks
        .iter()
        .filter(|mark| mark.tenant.is_none())
        .take(WIDENED_TO)
        .cloned()
        .collect();
    let mut dropped = marks.iter().filter(|mark| mark.tenant.is_none()).count() - kept.len();
    let mut latest: std::collections::HashMap<&str, u64> = Default::default();
    let mut order: Vec<&str> = Vec::new();
    for mark in marks {
        let Some(tenant) = mark.tenant.as_deref() else {
            continue;
        };
        let at = latest.entry(tenant).or_insert_with(|| {
            order.push(tenant);
            0
        });
        *at = (*at).max(mark.at);
    }
    order.sort_by_key(|tenant| !known(tenant)); // stable: the first written stay first
    let room = WIDENED_TO - kept.len();
    dropped += order.len().saturating_sub(room);
    order.truncate(room);
    kept.extend(order.into_iter().map(|tenant| Mark {
        tenant: Some(tenant.into()),
        scope: Scope::All,
        at: latest.get(tenant).copied().unwrap_or_default(),
        soft: false,
    }));
    (kept, dropped)
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
                (None, 3, false, true),
                (Some("globex"), 7, true, false),
                (Some("acme"), 9, true, false)
            ],
            "the operator's mark for every tenant is kept as it was"
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
        // An operator's key purge: a mark for no tenant in particular.
        marks.push(Mark {
            tenant: None,
            scope: Scope::Key("ab".into()),
            at: 1,
            soft: false,
        });
        let (widened, dropped) = widened(&marks, |tenant| tenant == "acme");
        assert_eq!(widened.len(), WIDENED_TO);
        assert_eq!(dropped, MAX_PENDING + 51 + 1 - WIDENED_TO);
        assert!(
            widened
                .iter()
                .all(|m| m.tenant.is_some() || m.scope == Scope::Key("ab".into())),
            "no mark for every tenant but the key purge, as it was"
        );
        assert!(
            widened.iter().any(|m| m.tenant.as_deref() == Some("acme")),
            "a tenant with a token keeps its purge"
        );
    }
}
