//! [`RateLimiter`]: a per-key limit on publishes, as a generic cell rate algorithm (GCRA).
//!
//! Each key keeps one instant, the "theoretical arrival time" of its next request. A request is
//! allowed when that instant is no further ahead of now than the burst allows, and pushes it one
//! interval further. That is a token bucket of `burst` tokens refilled at `rate` per second, in
//! one timestamp per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Keys kept before idle ones are swept out.
const SWEEP_AT: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    /// Time between two requests at the sustained rate; `None` when unlimited.
    interval: Option<Duration>,
    /// How far ahead of now the arrival time may run: `burst - 1` intervals.
    tolerance: Duration,
    arrivals: Mutex<HashMap<Arc<str>, Instant>>,
}

/// A refused request, and when the next one would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
}

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once; a rate of 0 means no limit.
    pub fn new(rate: u32, burst: u32) -> Self {
        let interval = (rate > 0).then(|| Duration::from_secs(1) / rate);
        Self {
            interval,
            tolerance: interval.unwrap_or_default() * burst.max(1).saturating_sub(1),
            arrivals: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request for `key`, or refuses it.
    pub fn check(&self, key: &Arc<str>) -> Result<(), RateLimited> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let now = Instant::now();
        // Every update completes under the lock, so a poisoned map is still consistent.
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        let arrival = arrivals.get(key).copied().unwrap_or(now).max(now);
        let ahead = arrival - now;
        if ahead > self.tolerance {
            return Err(RateLimited {
                retry_after: ahead - self.tolerance,
            });
        }
        if arrivals.len() >= SWEEP_AT && !arrivals.contains_key(key) {
            arrivals.retain(|_, arrival| *arrival > now);
        }
        arrivals.insert(Arc::clone(key), arrival + interval);
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
    fn a_zero_rate_never_limits() {
        let limiter = RateLimiter::new(0, 1);
        let key: Arc<str> = Arc::from("alice");
        for _ in 0..10_000 {
            limiter.check(&key).unwrap();
        }
    }
}
