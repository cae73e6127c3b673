//! One fetch per key: in this instance through the single flight, across
//! instances sharing Redis through a short lease in L2.

use std::time::{Duration, SystemTime};

use http::request::Parts;

use super::State;
use super::fill::Fill;
use super::lookup::{lookup, stored_facts};
use crate::cache::entry::Entry;
use crate::error::ProxyError;
use crate::flight::{Outcome, Role};
use crate::freshness::{self, Use};
use crate::invalidation::Verdict;
use crate::key::CacheKey;

/// How much longer than the upstream timeout a coalesced request waits for
/// the leader's fetch before fetching itself.
pub(super) const FOLLOWER_MARGIN: Duration = Duration::from_secs(1);

/// Rejoins after an abandoned or slow flight, at most this often, before
/// fetching alone.
const FLIGHT_ROUNDS: usize = 3;

/// A request's part in the single flight for its key.
pub(super) enum Part {
    /// Fetch, and publish the outcome to the followers.
    Lead(crate::flight::Leader),
    /// Fetch for this client alone.
    Alone,
    /// Another request's fetch answered.
    Answered(Entry),
    /// Another request's fetch failed, for this request too.
    Failed(ProxyError),
}

/// Leads or follows the flight for the fill's key. A follower whose leader
/// went away or is too slow rejoins: the first to do so leads, the rest
/// follow it. A new leader first looks in L1 again: a flight that ended
/// between this request's lookup and its lead has stored its answer there.
pub(super) async fn take_part(
    state: &State,
    parts: &Parts,
    fill: &Fill,
    asked: &freshness::Request,
) -> Part {
    let mut role = state.flights.join(fill.key);
    let mut rounds = 0;
    loop {
        match role {
            Role::Leader(leader) => {
                let now = SystemTime::now();
                if let Some(entry) = state.cache.lookup_local(&fill.key, now)
                    && answers(state, parts, fill, asked, &entry, now)
                {
                    leader.finish(Outcome::Shared(entry.clone()));
                    return Part::Answered(entry);
                }
                return Part::Lead(leader);
            }
            Role::Follower(mut follower) => {
                let limit = state.upstream.timeout().saturating_add(FOLLOWER_MARGIN);
                match follower.wait(limit).await {
                    Some(Outcome::Shared(entry))
                        if entry.vary_matches(&parts.headers)
                            && (!fill.authorization || entry.shared_ok()) =>
                    {
                        return Part::Answered(entry);
                    }
                    Some(Outcome::Failed(error)) => return Part::Failed(error),
                    // Not for us (another variant, private, too large).
                    Some(Outcome::Shared(_) | Outcome::NotShareable) => return Part::Alone,
                    _ if rounds >= FLIGHT_ROUNDS => return Part::Alone,
                    Some(Outcome::Abandoned) => role = state.flights.join(fill.key),
                    None => role = state.flights.take_over(&follower),
                }
                rounds += 1;
            }
        }
    }
}

/// How often an instance waiting on another's lease looks for its entry.
const LEASE_POLL: Duration = Duration::from_millis(20);

/// This instance's lease to fetch a key for every instance; given back
/// when dropped, whatever the fetch came to.
pub(super) struct Lease {
    pub(super) l2: crate::cache::l2::L2,
    pub(super) key: CacheKey,
    pub(super) ticket: crate::cache::l2::Ticket,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.l2.release_lease(&self.key, self.ticket);
    }
}

/// Waits, at most `limit`, for the entry another instance is fetching
/// under its lease; `None` when it does not come (its answer could not be
/// stored, its lease ended, or Redis cannot say).
pub(super) async fn wait_for_shared(
    state: &State,
    parts: &Parts,
    fill: &Fill,
    asked: &freshness::Request,
    l2: &crate::cache::l2::L2,
    limit: Duration,
) -> Option<Entry> {
    let started = tokio::time::Instant::now();
    let mut released = 0;
    loop {
        tokio::time::sleep(LEASE_POLL).await;
        let now = SystemTime::now();
        if let Some((entry, _)) = lookup(state, fill.primary, &parts.headers, now).await.entry
            && answers(state, parts, fill, asked, &entry, now)
        {
            return Some(entry);
        }
        if started.elapsed() >= limit {
            return None;
        }
        match l2.leased(&fill.key).await {
            Some(true) => {}
            // Given back: its entry, if any, is a write away; look twice more.
            Some(false) => {
                released += 1;
                if released > 2 {
                    return None;
                }
            }
            None => return None,
        }
    }
}

/// Whether a stored entry may answer this request as a fresh hit would.
fn answers(
    state: &State,
    parts: &Parts,
    fill: &Fill,
    asked: &freshness::Request,
    entry: &Entry,
    now: SystemTime,
) -> bool {
    *entry.tenant() == *fill.tenant
        && entry.path() == &*fill.path
        && state.invalidator.verdict(&fill.key, entry) == Verdict::Valid
        && entry.vary_matches(&parts.headers)
        && (!fill.authorization || entry.shared_ok())
        && asked.allows(&stored_facts(entry, now)) == Use::Fresh
}
