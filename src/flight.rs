//! Single flight: concurrent misses for one key make one upstream request.
//!
//! The first request for a key leads: it fetches and publishes the outcome.
//! Later ones follow: they wait (bounded) for that outcome. A leader that goes
//! away without finishing (its client hung up) publishes `Abandoned`; a
//! leader slower than the wait is replaced by the first follower to give up
//! on it ([`Flights::take_over`]); either way one follower becomes the new
//! leader and the others follow it, so the upstream is still asked once.
//!
//! A key whose answer could not be stored is remembered for a short while
//! (hit-for-pass): its requests then go straight upstream, side by side,
//! instead of queueing behind one leader after another.
//!
//! This is separate from a cache's own get-or-insert coalescing on purpose:
//! the outcome of a fetch is often not something to cache (an error, a
//! `no-store`), and such APIs store whatever the init future returns.

use std::collections::hash_map::Entry as InFlight;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// Keys remembered as not storable at once (hit-for-pass); beyond it the
/// oldest marks are forgotten first.
const PASS_CAPACITY: usize = 4096;

/// One flight under way: its generation tells a flight from the one that
/// replaced it.
#[derive(Debug)]
struct Flight {
    generation: u64,
    slot: Slot,
}

/// The keys being fetched right now, and those recently found not storable.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    inflight: Mutex<FlightMap>,
    passes: Mutex<Passes>,
}

#[derive(Debug, Default)]
struct FlightMap {
    flights: HashMap<CacheKey, Flight>,
    next_generation: u64,
}

/// Keys whose last answer could not be stored, until when.
#[derive(Debug, Default)]
struct Passes {
    until: HashMap<CacheKey, Instant>,
    order: VecDeque<CacheKey>,
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
        self.lead_unless(key, None)
    }

    /// The flight `follower` waited for is too slow: the first follower to
    /// say so leads a new one in its place; the others follow that one.
    pub(crate) fn take_over(self: &Arc<Self>, follower: &Follower) -> Role {
        self.lead_unless(follower.key, Some(follower.generation))
    }

    /// Follows the flight for `key`, unless there is none, or it is the
    /// `replacing` generation: then leads a new one.
    fn lead_unless(self: &Arc<Self>, key: CacheKey, replacing: Option<u64>) -> Role {
        let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = map.next_generation;
        match map.flights.entry(key) {
            InFlight::Occupied(under_way) if Some(under_way.get().generation) != replacing => {
                Role::Follower(Follower {
                    key,
                    generation: under_way.get().generation,
                    slot: under_way.get().slot.clone(),
                })
            }
            under_way => {
                let (sender, slot) = watch::channel(None);
                let flight = Flight { generation, slot };
                match under_way {
                    InFlight::Occupied(mut slow) => drop(slow.insert(flight)),
                    InFlight::Vacant(vacant) => drop(vacant.insert(flight)),
                }
                map.next_generation += 1;
                Role::Leader(Leader {
                    key,
                    generation,
                    flights: Arc::clone(self),
                    sender: Some(sender),
                })
            }
        }
    }

    fn end(&self, key: &CacheKey, generation: u64) {
        let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if map
            .flights
            .get(key)
            .is_some_and(|f| f.generation == generation)
        {
            map.flights.remove(key);
        }
    }

    /// How many flights are under way.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flights
            .len()
    }

    /// Remembers that `key`'s answer could not be stored: for `ttl`, its
    /// requests go straight upstream rather than queue behind one leader
    /// after another (Varnish's hit-for-miss).
    pub(crate) fn pass(&self, key: CacheKey, ttl: Duration) {
        let Some(until) = Instant::now().checked_add(ttl) else {
            return;
        };
        let mut passes = self.passes.lock().unwrap_or_else(PoisonError::into_inner);
        if passes.until.insert(key, until).is_none() {
            passes.order.push_back(key);
        }
        while passes.until.len() > PASS_CAPACITY {
            let Some(oldest) = passes.order.pop_front() else {
                break;
            };
            passes.until.remove(&oldest);
        }
        // Keep the queue from growing with keys marked again and again.
        if passes.order.len() > 2 * PASS_CAPACITY {
            let Passes { until, order } = &mut *passes;
            order.retain(|key| until.contains_key(key));
        }
    }

    /// Whether `key` was recently found not storable.
    pub(crate) fn passing(&self, key: &CacheKey) -> bool {
        let mut passes = self.passes.lock().unwrap_or_else(PoisonError::into_inner);
        match passes.until.get(key) {
            None => false,
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                passes.until.remove(key);
                false
            }
        }
    }

    /// Forgets a pass mark: the key's answer was stored after all.
    pub(crate) fn stored(&self, key: &CacheKey) {
        let mut passes = self.passes.lock().unwrap_or_else(PoisonError::into_inner);
        if !passes.until.is_empty() {
            passes.until.remove(key);
        }
    }

    /// How many keys are marked hit-for-pass.
    #[cfg(test)]
    fn passes_len(&self) -> usize {
        self.passes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .until
            .len()
    }
}

/// The one request that fetches; publishes on [`Leader::finish`] or drop.
#[derive(Debug)]
pub(crate) struct Leader {
    key: CacheKey,
    generation: u64,
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
        self.flights.end(&self.key, self.generation);
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
    key: CacheKey,
    generation: u64,
    slot: Slot,
}

impl Follower {
    /// The leader's outcome, or `None` if it takes longer than `limit`.
    pub(crate) async fn wait(&mut self, limit: Duration) -> Option<Outcome> {
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
        let Role::Follower(mut follower) = flights.join(key(1)) else {
            panic!("second follows")
        };
        assert!(
            matches!(flights.join(key(2)), Role::Leader(_)),
            "other keys fly alone"
        );
        let waiting = tokio::spawn(async move { follower.wait(Duration::from_secs(5)).await });
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
        let Role::Follower(mut follower) = flights.join(key(1)) else {
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
        let Role::Follower(mut follower) = flights.join(key(1)) else {
            panic!()
        };
        assert!(follower.wait(Duration::from_millis(20)).await.is_none());
    }

    #[tokio::test]
    async fn one_follower_takes_over_a_slow_flight_and_the_rest_follow_it() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(slow) = flights.join(key(1)) else {
            panic!()
        };
        let followers: Vec<Follower> = (0..5)
            .map(|_| match flights.join(key(1)) {
                Role::Follower(f) => f,
                Role::Leader(_) => panic!("one leader"),
            })
            .collect();
        let roles: Vec<Role> = followers.iter().map(|f| flights.take_over(f)).collect();
        let leaders = roles
            .iter()
            .filter(|r| matches!(r, Role::Leader(_)))
            .count();
        assert_eq!(leaders, 1, "one new leader, not all");
        // The slow leader finishing late does not end the new flight.
        slow.finish(Outcome::NotShareable);
        assert_eq!(flights.len(), 1);
        drop(roles);
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn pass_marks_expire_and_are_bounded() {
        let flights = Flights::default();
        flights.pass(key(1), Duration::from_secs(60));
        assert!(flights.passing(&key(1)));
        flights.stored(&key(1));
        assert!(!flights.passing(&key(1)));
        flights.pass(key(2), Duration::ZERO);
        assert!(!flights.passing(&key(2)), "expired");
        for n in 0..=u8::MAX {
            for m in 0..20u8 {
                let k = CacheKey::from_bytes([
                    n, m, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0,
                ]);
                flights.pass(k, Duration::from_secs(60));
            }
        }
        assert!(flights.passes_len() <= PASS_CAPACITY);
    }
}
