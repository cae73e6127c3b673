//! Re-reading the policies without a restart (`SIGHUP`, or `POST
//! /_folio/reload`). An invalid set is refused with the same errors as
//! `folio check`, and the running set stays. A valid set serves new requests
//! at once, connections stay open, and the cache keeps the entries of every
//! policy that did not change; entries of changed or removed policies are
//! purged (through their `route:` tag, so on every instance).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tracing::{info, warn};

use crate::invalidation::{Mark, Scope, route_tag};
use crate::policy::{Policy, PolicyError, PolicyErrors, PolicySet};
use crate::proxy::State;

/// What a reload changed.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Reloaded {
    pub(crate) policies: usize,
    pub(crate) added: Vec<String>,
    pub(crate) changed: Vec<String>,
    pub(crate) removed: Vec<String>,
}

pub(crate) async fn reload(state: &State, dir: &Path) -> Result<Reloaded, PolicyErrors> {
    let dir = dir.to_path_buf();
    let reading = dir.clone();
    let fresh = match tokio::task::spawn_blocking(move || PolicySet::load_dir(&reading)).await {
        Ok(loaded) => loaded?,
        // A bug in the loader: said as a problem, never as "0 problems".
        Err(failed) => {
            return Err(PolicyErrors(vec![PolicyError {
                file: dir,
                line: 0,
                field: "policies".into(),
                message: format!("folio failed while reading them (a bug: {failed})"),
            }]));
        }
    };
    let current = state.policies.load_full();
    let mut report = Reloaded {
        policies: fresh.len(),
        ..Reloaded::default()
    };
    let mut gone: Vec<&Arc<Policy>> = Vec::new();
    for old in current.iter() {
        match fresh.iter().find(|p| p.name == old.name) {
            Some(new) if same_rule(old, new) => {}
            Some(_) => {
                report.changed.push(old.name.to_string());
                gone.push(old);
            }
            None => {
                report.removed.push(old.name.to_string());
                gone.push(old);
            }
        }
    }
    report.added = fresh
        .iter()
        .filter(|p| !current.iter().any(|old| old.name == p.name))
        .map(|p| p.name.to_string())
        .collect();
    let at = state.invalidator.now_us();
    let marks: Vec<Mark> = gone
        .iter()
        .map(|p| Mark {
            tenant: None,
            scope: Scope::Tag(route_tag(p)),
            at,
            soft: false,
        })
        .collect();
    state.policies.store(Arc::new(fresh));
    if let Err(error) = state.invalidator.purge(&marks).await {
        warn!(%error, "entries of changed policies were dropped here only");
    }
    info!(
        policies = report.policies,
        added = report.added.len(),
        changed = report.changed.len(),
        removed = report.removed.len(),
        "policies reloaded"
    );
    Ok(report)
}

/// Whether two policies make the same rule (where they were written aside).
fn same_rule(a: &Policy, b: &Policy) -> bool {
    let mut b = b.clone();
    b.source = a.source.clone();
    *a == b
}
