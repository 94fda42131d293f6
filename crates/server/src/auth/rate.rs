//! [`RateLimiter`]: a per-key limit on requests, or on what they cost (bytes, say), as a
//! generic cell rate algorithm (GCRA).
//!
//! Each key keeps one instant, the "theoretical arrival time" of its next unit. A request
//! costing `n` units is allowed when that instant, pushed `n` intervals further, is no further
//! ahead of now than `burst` intervals; it is then pushed so. That is a token bucket of `burst`
//! tokens refilled at `rate` per second, in one timestamp per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Keys kept before idle ones are swept out.
const SWEEP_AT: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    /// Seconds per unit at the sustained rate; `None` when unlimited.
    interval: Option<f64>,
    /// How far ahead of now the arrival time may run once a request is counted: `burst`
    /// intervals.
    capacity: Duration,
    arrivals: Mutex<HashMap<Arc<str>, Instant>>,
}

/// A refused request, and when the next one would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
}

impl RateLimiter {
    /// `rate` units per second sustained, `burst` at once; a rate of 0 means no limit.
    pub fn new(rate: u64, burst: u64) -> Self {
        let interval = (rate > 0).then(|| 1.0 / rate as f64);
        Self {
            interval,
            capacity: Duration::from_secs_f64(interval.unwrap_or_default() * burst.max(1) as f64),
            arrivals: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request for `key`, or refuses it.
    pub fn check(&self, key: &Arc<str>) -> Result<(), RateLimited> {
        self.check_cost(key, 1)
    }

    /// Counts a request costing `cost` units for `key`, or refuses it. A cost above the burst
    /// is never allowed: callers refuse it beforehand.
    pub fn check_cost(&self, key: &Arc<str>, cost: u64) -> Result<(), RateLimited> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let spent = Duration::from_secs_f64(interval * cost as f64);
        let now = Instant::now();
        // Every update completes under the lock, so a poisoned map is still consistent.
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        let arrival = arrivals.get(key).copied().unwrap_or(now).max(now);
        let ahead = arrival - now + spent;
        if ahead > self.capacity {
            return Err(RateLimited {
                retry_after: ahead - self.capacity,
            });
        }
        if arrivals.len() >= SWEEP_AT && !arrivals.contains_key(key) {
            arrivals.retain(|_, arrival| *arrival > now);
        }
        arrivals.insert(Arc::clone(key), arrival + spent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_until_the_rate_refills() {
        let limiter = RateLimiter::new(10, 3);
        let key: Arc<str> = Arc::from("alice");
        for _ in 0..3 {
            limiter.check(&key).unwrap();
        }
        let refused = limiter.check(&key).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_millis(100));
        // Another key has its own budget.
        limiter.check(&Arc::from("bob")).unwrap();
    }

    #[test]
    fn costs_are_counted_in_units() {
        // 1,000 bytes a second, 4,000 at once.
        let limiter = RateLimiter::new(1_000, 4_000);
        let key: Arc<str> = Arc::from("alice");
        limiter.check_cost(&key, 3_000).unwrap();
        limiter.check_cost(&key, 1_000).unwrap();
        let refused = limiter.check_cost(&key, 500).unwrap_err();
        assert!(refused.retry_after > Duration::from_millis(400));
        assert!(refused.retry_after <= Duration::from_millis(500));
        assert!(limiter.check_cost(&key, 5_000).is_err(), "above the burst");
    }

    #[test]
    fn a_zero_rate_never_limits() {
        let limiter = RateLimiter::new(0, 1);
        let key: Arc<str> = Arc::from("alice");
        for _ in 0..10_000 {
            limiter.check(&key).unwrap();
        }
    }
}
