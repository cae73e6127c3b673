//! The series each thread counted into lately: a hot endpoint and tenant
//! are counted without the shared map's lock, its hashing of two names, or
//! the reference counts of a key made to look them up.
//!
//! A series is found here only for the same `Metrics`, the same endpoint
//! and tenant labels (the very same ones, held here so their addresses
//! cannot name others), and while no series has been folded away since
//! (`Metrics::series_generation`): a label recycled moves its counts to
//! `other` and this forgets them.

use std::cell::RefCell;
use std::sync::Arc;

use super::Series;

/// Slots per thread.
const SLOTS: usize = 16;

struct Lately {
    metrics: u64,
    generation: u64,
    endpoint: Arc<str>,
    tenant: Arc<str>,
    series: Arc<Series>,
}

thread_local! {
    static LATELY: RefCell<[Option<Lately>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

fn slot(endpoint: &Arc<str>, tenant: &Arc<str>) -> usize {
    let (e, t) = (
        Arc::as_ptr(endpoint).cast::<u8>(),
        Arc::as_ptr(tenant).cast::<u8>(),
    );
    ((e.addr() >> 4) ^ (t.addr() >> 3)) % SLOTS
}

/// Runs `count` on the series this thread counted `endpoint` and `tenant`
/// of `metrics` into lately, at `generation`; false when there is none.
pub(super) fn count_into(
    metrics: u64,
    generation: u64,
    endpoint: &Arc<str>,
    tenant: &Arc<str>,
    count: impl FnOnce(&Series),
) -> bool {
    LATELY.with_borrow(|slots| match &slots[slot(endpoint, tenant)] {
        Some(lately)
            if lately.metrics == metrics
                && lately.generation == generation
                && Arc::ptr_eq(&lately.endpoint, endpoint)
                && Arc::ptr_eq(&lately.tenant, tenant) =>
        {
            count(&lately.series);
            true
        }
        _ => false,
    })
}

/// Notes that `endpoint` and `tenant` of `metrics` count into `series`.
pub(super) fn note(
    metrics: u64,
    generation: u64,
    endpoint: &Arc<str>,
    tenant: &Arc<str>,
    series: &Arc<Series>,
) {
    LATELY.with_borrow_mut(|slots| {
        slots[slot(endpoint, tenant)] = Some(Lately {
            metrics,
            generation,
            endpoint: Arc::clone(endpoint),
            tenant: Arc::clone(tenant),
            series: Arc::clone(series),
        });
    });
}
