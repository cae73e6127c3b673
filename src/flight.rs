//! Single flight: concurrent misses for one key make one upstream request.
//!
//! The first request for a key leads: it fetches and publishes the outcome.
//! Later ones follow: they wait (bounded) for that outcome. A leader that goes
//! away without finishing (its client hung up) publishes `Abandoned`, so
//! followers never wait forever; they then fetch for themselves.
//!
//! This is separate from a cache's own get-or-insert coalescing on purpose:
//! the outcome of a fetch is often not something to cache (an error, a
//! `no-store`), and such APIs store whatever the init future returns.

use std::collections::HashMap;
use std::collections::hash_map::Entry as InFlight;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::cache::entry::Entry;
use crate::error::ProxyError;
use crate::key::CacheKey;

/// What the leader's fetch came to, as followers see it.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// A response every follower may be given.
    Shared(Entry),
    /// The upstream could not be reached or timed out.
    Failed(ProxyError),
    /// A response for the leader's client only (e.g. `private`, too large):
    /// each follower fetches its own.
    NotShareable,
    /// The leader went away before it finished.
    Abandoned,
}

type Slot = watch::Receiver<Option<Outcome>>;

/// The keys being fetched right now.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<CacheKey, Slot>>,
}

/// A request's part in the flight for its key.
#[derive(Debug)]
pub(crate) enum Role {
    Leader(Leader),
    Follower(Follower),
}

impl Flights {
    /// Leads the flight for `key`, or follows the one under way.
    pub(crate) fn join(self: &Arc<Self>, key: CacheKey) -> Role {
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        let vacant = match inflight.entry(key) {
            InFlight::Occupied(under_way) => {
                return Role::Follower(Follower {
                    slot: under_way.get().clone(),
                });
            }
            InFlight::Vacant(vacant) => vacant,
        };
        let (sender, slot) = watch::channel(None);
        vacant.insert(slot);
        Role::Leader(Leader {
            key,
            flights: Arc::clone(self),
            sender: Some(sender),
        })
    }

    fn end(&self, key: &CacheKey) {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// The one request that fetches; publishes on [`Leader::finish`] or drop.
#[derive(Debug)]
pub(crate) struct Leader {
    key: CacheKey,
    flights: Arc<Flights>,
    sender: Option<watch::Sender<Option<Outcome>>>,
}

impl Leader {
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.publish(outcome);
    }

    fn publish(&mut self, outcome: Outcome) {
        // Leave the map first: a request arriving after this point must look
        // in the cache (or fetch anew), not follow a finished flight.
        self.flights.end(&self.key);
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(outcome));
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.sender.is_some() {
            self.publish(Outcome::Abandoned);
        }
    }
}

/// A request waiting for the leader's outcome.
#[derive(Debug)]
pub(crate) struct Follower {
    slot: Slot,
}

impl Follower {
    /// The leader's outcome, or `None` if it takes longer than `limit`.
    pub(crate) async fn wait(mut self, limit: Duration) -> Option<Outcome> {
        let published = tokio::time::timeout(limit, self.slot.wait_for(Option::is_some)).await;
        match published {
            Ok(Ok(outcome)) => outcome.clone(),
            // The sender vanished without a value: only possible if the
            // leader was leaked; treat it as abandoned.
            Ok(Err(_)) => Some(Outcome::Abandoned),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::sample;

    fn key(n: u8) -> CacheKey {
        let set =
            crate::policy::PolicySet::from_yaml("f.yaml", "\"/p\":\n  cache_ttl: 1m\n").unwrap();
        let m = set.match_request(&http::Method::GET, "/p").unwrap();
        CacheKey::new(
            &n.to_string(),
            "/p",
            None,
            &http::HeaderMap::new(),
            m.policy,
        )
    }

    #[tokio::test]
    async fn followers_get_the_leaders_outcome() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(leader) = flights.join(key(1)) else {
            panic!("first joins as leader")
        };
        let Role::Follower(follower) = flights.join(key(1)) else {
            panic!("second follows")
        };
        assert!(
            matches!(flights.join(key(2)), Role::Leader(_)),
            "other keys fly alone"
        );
        let waiting = tokio::spawn(follower.wait(Duration::from_secs(5)));
        leader.finish(Outcome::Shared(sample(b"x")));
        assert!(matches!(waiting.await.unwrap(), Some(Outcome::Shared(_))));
        assert!(
            matches!(flights.join(key(1)), Role::Leader(_)),
            "a finished flight is gone"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_followers() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(leader) = flights.join(key(1)) else {
            panic!()
        };
        let Role::Follower(follower) = flights.join(key(1)) else {
            panic!()
        };
        drop(leader);
        assert!(matches!(
            follower.wait(Duration::from_secs(5)).await,
            Some(Outcome::Abandoned)
        ));
    }

    #[tokio::test]
    async fn the_wait_is_bounded() {
        let flights = Arc::new(Flights::default());
        let _leader = flights.join(key(1));
        let Role::Follower(follower) = flights.join(key(1)) else {
            panic!()
        };
        assert!(follower.wait(Duration::from_millis(20)).await.is_none());
    }
}
