//! [`Gate`]: how many connections Herald holds, in all and from one address. Every accepted
//! connection is counted, whatever it turns out to be, from its accept until it closes; one
//! past a limit is refused at once with a short answer, so that no client can use up the
//! process's open files and Herald never fails to accept for want of one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;

use super::peer::limited_address;

/// The connection counts and their limits.
#[derive(Debug)]
pub struct Gate {
    open: AtomicUsize,
    max: usize,
    /// The most from one address (an IPv6 /64 counting as one); `None`: no limit.
    per_address: Option<usize>,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    /// The open count, exported.
    gauge: Gauge<i64, AtomicI64>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Herald holds `--max-connections` already.
    Full,
    /// The address holds `--max-connections-per-address` already.
    AddressFull,
}

impl Refused {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Full => "max_connections",
            Self::AddressFull => "max_connections_per_address",
        }
    }
}

/// One admitted connection, counted until dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    /// The address it counts for, when addresses are counted.
    address: Option<IpAddr>,
}

/// What an event stream holds until it closes: its place among the connections, and its
/// part in the server's wait for every connection to end.
#[derive(Debug)]
pub struct Held {
    _permit: Permit,
    _alive: mpsc::Sender<()>,
}

impl Held {
    pub fn new(permit: Permit, alive: mpsc::Sender<()>) -> Self {
        Self {
            _permit: permit,
            _alive: alive,
        }
    }
}

impl Gate {
    /// At most `max` connections, and `per_address` from one address (`None`: no limit); the
    /// count of open ones is kept in `gauge` too.
    pub fn new(max: usize, per_address: Option<usize>, gauge: Gauge<i64, AtomicI64>) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            per_address,
            by_address: Mutex::new(HashMap::new()),
            gauge,
        })
    }

    /// Counts a connection from `peer`, or says why it may not be opened.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refused> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            });
        if admitted.is_err() {
            return Err(Refused::Full);
        }
        self.gauge.inc();
        // From here on, dropping the permit gives back what it counted.
        let mut permit = Permit {
            gate: Arc::clone(self),
            address: None,
        };
        if let Some(limit) = self.per_address {
            let address = limited_address(peer);
            let mut by_address = self.addresses();
            let count = by_address.entry(address).or_insert(0);
            if *count >= limit {
                drop(by_address);
                return Err(Refused::AddressFull);
            }
            *count += 1;
            permit.address = Some(address);
        }
        Ok(permit)
    }

    /// The connections open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn addresses(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map is consistent between statements: a panic elsewhere cannot leave it torn.
        self.by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
        self.gate.gauge.dec();
        if let Some(address) = self.address {
            let mut by_address = self.gate.addresses();
            if let Some(count) = by_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    by_address.remove(&address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn counts_every_connection_until_it_closes() {
        let gate = Gate::new(2, None, Gauge::default());
        let first = gate.admit(ip("192.0.2.1")).unwrap();
        let _second = gate.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.3")).unwrap_err(), Refused::Full);
        assert_eq!(gate.open(), 2);
        drop(first);
        assert_eq!(gate.open(), 1);
        assert!(gate.admit(ip("192.0.2.3")).is_ok());
    }

    #[test]
    fn an_address_is_limited_and_an_ipv6_network_counts_as_one() {
        let gate = Gate::new(100, Some(2), Gauge::default());
        let _a = gate.admit(ip("2001:db8::1")).unwrap();
        let b = gate.admit(ip("2001:db8::ffff:2")).unwrap();
        assert_eq!(
            gate.admit(ip("2001:db8::3")).unwrap_err(),
            Refused::AddressFull
        );
        // A refusal gives back its place in the total.
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        drop(b);
        assert!(gate.admit(ip("2001:db8::3")).is_ok());
    }

    #[test]
    fn forgets_addresses_with_nothing_open() {
        let gate = Gate::new(100, Some(5), Gauge::default());
        drop(gate.admit(ip("192.0.2.1")).unwrap());
        assert!(gate.addresses().is_empty());
    }
}
