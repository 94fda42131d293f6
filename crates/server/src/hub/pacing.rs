//! Pacing of presence events: each topic has a budget of `presence_rate` events a second,
//! after a burst of as many (a token bucket). A change past the budget waits its turn, in
//! order; a user's arrival and departure that are both still waiting cancel out, as nobody was
//! told of either.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A presence change to announce.
#[derive(Debug)]
pub(super) struct Change {
    pub user: Arc<str>,
    pub client_id: String,
    pub joined: bool,
    /// When it happened (it may be announced later).
    pub time: SystemTime,
}

/// What to do with a change.
#[derive(Debug)]
pub(super) enum Admission {
    /// Announce it now.
    Now(Change),
    /// It waits; the caller starts the topic's drain when `true` (none is running).
    Waiting(bool),
    /// It cancelled the waiting opposite change of its user (or repeated a waiting one).
    Cancelled,
}

/// One topic's budget and the changes waiting for it.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    refilled: Instant,
    /// Waiting changes by their place in line.
    waiting: BTreeMap<u64, Change>,
    /// Each waiting user's place in line.
    places: HashMap<Arc<str>, u64>,
    next_place: u64,
    draining: bool,
}

impl Budget {
    fn full(rate: f64, now: Instant) -> Self {
        Self {
            tokens: rate,
            refilled: now,
            waiting: BTreeMap::new(),
            places: HashMap::new(),
            next_place: 0,
            draining: false,
        }
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let earned = now.duration_since(self.refilled).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(rate);
        self.refilled = now;
    }
}

/// The budgets of the topics that had presence changes lately.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    topics: Mutex<HashMap<Arc<str>, Budget>>,
}

impl Pacer {
    fn topics(&self) -> MutexGuard<'_, HashMap<Arc<str>, Budget>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a change of `topic` in: to announce now, or to wait.
    pub(super) fn admit(&self, topic: &Arc<str>, rate: u32, change: Change) -> Admission {
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        let mut topics = self.topics();
        let budget = topics
            .entry(Arc::clone(topic))
            .or_insert_with(|| Budget::full(rate, now));
        budget.refill(rate, now);
        if let Some(place) = budget.places.get(&change.user).copied() {
            let opposite = budget
                .waiting
                .get(&place)
                .is_some_and(|waiting| waiting.joined != change.joined);
            if opposite {
                budget.waiting.remove(&place);
                budget.places.remove(&change.user);
            }
            return Admission::Cancelled;
        }
        if budget.waiting.is_empty() && budget.tokens >= 1.0 {
            budget.tokens -= 1.0;
            return Admission::Now(change);
        }
        let place = budget.next_place;
        budget.next_place += 1;
        budget.places.insert(Arc::clone(&change.user), place);
        budget.waiting.insert(place, change);
        let start = !budget.draining;
        budget.draining = true;
        Admission::Waiting(start)
    }

    /// The waiting changes of `topic` the budget allows now, in order, and how long until the
    /// next may go; `None` when none is left waiting (the drain ends).
    pub(super) fn release(&self, topic: &str, rate: u32) -> (Vec<Change>, Option<Duration>) {
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        let mut topics = self.topics();
        let Some(budget) = topics.get_mut(topic) else {
            return (Vec::new(), None);
        };
        budget.refill(rate, now);
        let mut released = Vec::new();
        while budget.tokens >= 1.0 {
            let Some((_, change)) = budget.waiting.pop_first() else {
                break;
            };
            budget.places.remove(&change.user);
            budget.tokens -= 1.0;
            released.push(change);
        }
        if budget.waiting.is_empty() {
            budget.draining = false;
            return (released, None);
        }
        let wait = Duration::from_secs_f64((1.0 - budget.tokens) / rate);
        (released, Some(wait))
    }

    /// Forgets the topics whose budget is full again and that have nothing waiting.
    pub(super) fn sweep(&self, rate: u32) {
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        self.topics().retain(|_, budget| {
            budget.refill(rate, now);
            budget.draining || budget.tokens < rate
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(user: &str, joined: bool) -> Change {
        Change {
            user: Arc::from(user),
            client_id: String::new(),
            joined,
            time: SystemTime::now(),
        }
    }

    fn users(changes: &[Change]) -> Vec<(&str, bool)> {
        changes
            .iter()
            .map(|change| (&*change.user, change.joined))
            .collect()
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_waits_in_order() {
        let pacer = Pacer::default();
        let topic: Arc<str> = Arc::from("lobby");
        assert!(matches!(
            pacer.admit(&topic, 2, change("a", true)),
            Admission::Now(_)
        ));
        assert!(matches!(
            pacer.admit(&topic, 2, change("b", true)),
            Admission::Now(_)
        ));
        assert!(matches!(
            pacer.admit(&topic, 2, change("c", true)),
            Admission::Waiting(true)
        ));
        assert!(matches!(
            pacer.admit(&topic, 2, change("d", true)),
            Admission::Waiting(false)
        ));
        let (released, wait) = pacer.release(&topic, 2);
        assert!(released.is_empty(), "no budget yet");
        let wait = wait.expect("c and d wait");
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        // Another topic has its own budget.
        assert!(matches!(
            pacer.admit(&Arc::from("elsewhere"), 2, change("a", true)),
            Admission::Now(_)
        ));
    }

    #[test]
    fn an_arrival_and_departure_both_waiting_cancel_out() {
        let pacer = Pacer::default();
        let topic: Arc<str> = Arc::from("lobby");
        let _ = pacer.admit(&topic, 1, change("a", true));
        let _ = pacer.admit(&topic, 1, change("b", true));
        let _ = pacer.admit(&topic, 1, change("c", true));
        assert!(matches!(
            pacer.admit(&topic, 1, change("b", false)),
            Admission::Cancelled
        ));
        // Waiting for a token, c is all that is left.
        {
            let mut topics = pacer.topics();
            let budget = topics.get_mut(&topic).unwrap();
            budget.tokens = 1.0;
            budget.refilled = Instant::now();
        }
        let (released, wait) = pacer.release(&topic, 1);
        assert_eq!(users(&released), [("c", true)]);
        assert_eq!(wait, None, "the drain ends");
        // b may now come and go again.
        assert!(matches!(
            pacer.admit(&topic, 1, change("b", true)),
            Admission::Waiting(true)
        ));
    }

    #[test]
    fn a_full_idle_budget_is_forgotten() {
        let pacer = Pacer::default();
        let topic: Arc<str> = Arc::from("lobby");
        let _ = pacer.admit(&topic, 1, change("a", true));
        pacer.sweep(1);
        assert_eq!(pacer.topics().len(), 1, "spent budget kept");
        pacer.topics().get_mut(&topic).unwrap().tokens = 1.0;
        pacer.sweep(1);
        assert!(pacer.topics().is_empty());
    }
}
