//! [`Replays`]: how many replay reads run at once, in all and for one address.
//!
//! After a restart or a network blip, every client reconnects at once and asks for what it
//! missed. Each page of history is a storage read; unmetered, thousands of them would queue for
//! the same few readers as everything else. A page is read only with a place among the
//! `max_concurrent_replays` and among its address's `max_replays_per_address`: a storm queues
//! here, in arrival order, one address cannot take every place, and the storage keeps readers
//! for the rest (readiness checks, the inbox). Live delivery reads nothing and never waits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Replays {
    all: Arc<Semaphore>,
    /// Places for one address; `None`: addresses are not limited.
    per_address: Option<usize>,
    addresses: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
    /// Replay reads waiting for a place, exported.
    waiting: Gauge<i64, AtomicI64>,
    /// Replay reads holding a place, exported.
    in_flight: Gauge<i64, AtomicI64>,
}

/// A place to read one page of history, given back when dropped.
#[derive(Debug)]
pub struct ReplayPlace {
    _all: Option<OwnedSemaphorePermit>,
    _address: Option<AddressPlace>,
    _in_flight: InFlight,
}

/// Counts a place as held until dropped.
#[derive(Debug)]
struct InFlight(Gauge<i64, AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug)]
struct AddressPlace {
    address: IpAddr,
    permit: Option<OwnedSemaphorePermit>,
    semaphore: Arc<Semaphore>,
    addresses: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

impl Replays {
    /// `max` reads at once in all (at least one), `per_address` for one address; `waiting` and
    /// `in_flight` count the reads waiting for a place and those holding one.
    pub fn new(
        max: usize,
        per_address: Option<usize>,
        waiting: Gauge<i64, AtomicI64>,
        in_flight: Gauge<i64, AtomicI64>,
    ) -> Self {
        Self {
            all: Arc::new(Semaphore::new(max.max(1))),
            per_address: per_address.map(|limit| limit.max(1)),
            addresses: Arc::default(),
            waiting,
            in_flight,
        }
    }

    /// Waits for a place to read a page for a connection from `address`.
    pub async fn place(&self, address: Option<IpAddr>) -> ReplayPlace {
        self.waiting.inc();
        let _counted = Decrement(&self.waiting);
        // The address's place first: a crowd from one address waits behind itself, holding
        // none of the places everyone else needs.
        let address = match (address, self.per_address) {
            (Some(address), Some(limit)) => {
                let semaphore = Arc::clone(
                    lock(&self.addresses)
                        .entry(address)
                        .or_insert_with(|| Arc::new(Semaphore::new(limit))),
                );
                let permit = Arc::clone(&semaphore).acquire_owned().await.ok();
                Some(AddressPlace {
                    address,
                    permit,
                    semaphore,
                    addresses: Arc::clone(&self.addresses),
                })
            }
            _ => None,
        };
        // The semaphores are never closed: acquiring cannot fail (and a closed one would
        // only stop limiting).
        let all = Arc::clone(&self.all).acquire_owned().await.ok();
        self.in_flight.inc();
        ReplayPlace {
            _all: all,
            _address: address,
            _in_flight: InFlight(self.in_flight.clone()),
        }
    }
}

struct Decrement<'a>(&'a Gauge<i64, AtomicI64>);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut addresses = lock(&self.addresses);
        drop(self.permit.take());
        // The map and this place hold the only references: no one else holds or waits for
        // this address's places, so it is forgotten.
        if Arc::strong_count(&self.semaphore) == 2 {
            addresses.remove(&self.address);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update completes under the lock: a poisoned map is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    async fn waits(future: impl std::future::Future) -> bool {
        tokio::time::timeout(Duration::from_millis(50), future)
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn reads_beyond_a_limit_wait_for_a_place() {
        let replays = Replays::new(3, Some(2), Gauge::default(), Gauge::default());
        let a1 = replays.place(ip("192.0.2.1")).await;
        let _a2 = replays.place(ip("192.0.2.1")).await;
        assert!(
            waits(replays.place(ip("192.0.2.1"))).await,
            "the address is full"
        );
        let _b1 = replays.place(ip("192.0.2.2")).await;
        assert!(waits(replays.place(ip("192.0.2.3"))).await, "all are taken");
        drop(a1);
        let _c1 = replays.place(ip("192.0.2.3")).await;
        assert_eq!(replays.waiting.get(), 0);
    }

    #[tokio::test]
    async fn an_address_with_nothing_in_progress_is_forgotten() {
        let replays = Replays::new(3, Some(2), Gauge::default(), Gauge::default());
        let first = replays.place(ip("192.0.2.1")).await;
        let second = replays.place(ip("192.0.2.1")).await;
        drop(first);
        assert_eq!(lock(&replays.addresses).len(), 1);
        drop(second);
        assert!(lock(&replays.addresses).is_empty());
    }
}
