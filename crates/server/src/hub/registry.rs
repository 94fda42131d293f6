//! [`Registry`]: the live connections, indexed by the streams they receive, and the one way
//! events reach them live: [`Registry::deliver`].

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use herald_protocol::system::CloseReason;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use super::connection::{Connection, Limits, TooManyConnections};
use super::frames;
use super::members::{Left, Members, release_spare};
use super::queue::Queued;
use crate::ids::{ClientId, ConnectionId};
use crate::storage::{StoredEvent, StreamKey};
use crate::time::now_ms;

#[derive(Debug)]
pub struct Registry {
    inner: RwLock<Inner>,
    /// Connections removed since the start, for the memory trim that follows a wave of closes.
    removed: AtomicU64,
    /// Clients whose connection closed while storage's record of them was older than this
    /// many milliseconds: their last activity is still to be recorded.
    record_leaving_after_ms: u64,
    /// Events written to subscribers, counted here for those fan-out writes itself.
    delivered: Counter,
}

/// Connections fan-out writes to in one task: enough that a broadcast to thousands takes a few
/// dozen tasks rather than one per subscriber, few enough that several cores share the work.
const FLUSH_CHUNK: usize = 256;

#[derive(Debug, Default)]
struct Inner {
    connections: HashMap<ConnectionId, Arc<Connection>>,
    /// Topic and client streams to the connections receiving them. Broadcasts go to every
    /// connection, so they have no entry.
    streams: HashMap<StreamKey, Members>,
    /// Mercure subscribers with a `*` or template selector: offered every event with a topic.
    mercure_patterns: HashMap<ConnectionId, Arc<Connection>>,
    /// Live connections per client address.
    addresses: HashMap<IpAddr, usize>,
    /// Clients that left with their last activity not yet recorded.
    left: Vec<ClientId>,
}

impl Registry {
    /// `record_leaving_after`: how stale storage's record of a client may be when one of its
    /// connections closes before the client is queued for [`Registry::clients_to_record`].
    /// `delivered` counts the events fan-out writes itself.
    pub fn new(record_leaving_after: Duration, delivered: Counter) -> Self {
        Self {
            delivered,
            inner: RwLock::default(),
            removed: AtomicU64::new(0),
            record_leaving_after_ms: u64::try_from(record_leaving_after.as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every update of `Inner` completes under the guard, so a poisoned lock still holds
        // consistent data.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection unless its client, user or address already holds its limit.
    pub fn insert(
        &self,
        connection: &Arc<Connection>,
        limits: Limits,
    ) -> Result<(), TooManyConnections> {
        let mut inner = self.write();
        let held = |stream: StreamKey| inner.streams.get(&stream).map_or(0, Members::len);
        if held(StreamKey::Client(connection.client_id.clone())) >= limits.per_client {
            return Err(TooManyConnections {
                scope: "client",
                limit: limits.per_client,
            });
        }
        if let Some(user) = &connection.holder.user
            && held(StreamKey::User(Arc::clone(user))) >= limits.per_user
        {
            return Err(TooManyConnections {
                scope: "user",
                limit: limits.per_user,
            });
        }
        if let Some(address) = connection.holder.address {
            let count = inner.addresses.get(&address).copied().unwrap_or(0);
            if let Some(limit) = limits.per_address.filter(|limit| count >= *limit) {
                return Err(TooManyConnections {
                    scope: "address",
                    limit,
                });
            }
            inner.addresses.insert(address, count + 1);
        }
        inner
            .connections
            .insert(connection.id, Arc::clone(connection));
        if connection
            .mercure
            .as_ref()
            .is_some_and(|subscriber| subscriber.has_patterns())
        {
            inner
                .mercure_patterns
                .insert(connection.id, Arc::clone(connection));
        }
        for stream in &connection.streams {
            if *stream != StreamKey::Broadcast {
                match inner.streams.entry(stream.clone()) {
                    Entry::Occupied(mut members) => members.get_mut().insert(connection),
                    Entry::Vacant(place) => {
                        place.insert(Members::new(connection));
                    }
                }
            }
        }
        Ok(())
    }

    /// How many topics some live connection receives.
    pub fn topic_count(&self) -> usize {
        self.read()
            .streams
            .keys()
            .filter(|stream| matches!(stream, StreamKey::Topic(_)))
            .count()
    }

    /// Points `topics` at the names the registry already holds, where a live connection
    /// receives the same topic: subscribers of a topic then share one copy of its name.
    pub fn share_topic_names(&self, topics: &mut [Arc<str>]) {
        let inner = self.read();
        for topic in topics {
            let key = StreamKey::Topic(Arc::clone(topic));
            if let Some((StreamKey::Topic(held), _)) = inner.streams.get_key_value(&key) {
                *topic = Arc::clone(held);
            }
        }
    }

    /// Whether a live connection receives `stream`.
    pub fn is_received(&self, stream: &StreamKey) -> bool {
        self.read().streams.contains_key(stream)
    }

    /// Whether `client` holds a live connection here.
    pub fn has_client(&self, client: &ClientId) -> bool {
        self.read()
            .streams
            .contains_key(&StreamKey::Client(client.clone()))
    }

    pub fn remove(&self, connection: &Connection) {
        let mut inner = self.write();
        if inner.connections.remove(&connection.id).is_none() {
            return;
        }
        self.removed.fetch_add(1, Ordering::Relaxed);
        inner.mercure_patterns.remove(&connection.id);
        let recorded = connection.recorded_ms();
        if now_ms().saturating_sub(recorded) > self.record_leaving_after_ms {
            inner.left.push(connection.client_id.clone());
        }
        if let Some(address) = connection.holder.address
            && let Some(count) = inner.addresses.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                inner.addresses.remove(&address);
            }
        }
        for stream in &connection.streams {
            if let Some(members) = inner.streams.get_mut(stream)
                && members.remove(connection.id) == Left::None
            {
                inner.streams.remove(stream);
            }
        }
        release_spare(&mut inner.connections);
        release_spare(&mut inner.mercure_patterns);
        release_spare(&mut inner.streams);
        release_spare(&mut inner.addresses);
    }

    /// Fans `events` out, in order, to every live connection receiving one of their streams:
    /// the one way events are delivered live, by the sequencer and by the cluster's follower
    /// alike. An event's frame is built once for each of its streams that a live connection
    /// receives (none for a stream nobody receives), and shared by all of them; a connection
    /// receiving several of an event's streams gets the first, once. The whole batch is queued
    /// before anything is written, so a connection receiving several of its events gets them
    /// in one write. Connections whose writer waits with its sink lent are then written to by
    /// tasks of [`FLUSH_CHUNK`] connections each, rather than each woken; the per-connection
    /// lock keeps their writes in the order the events were queued, whichever task gets there
    /// first. Must run inside the Tokio runtime.
    pub fn deliver(&self, events: &[Arc<StoredEvent>]) {
        let mut to_flush = Vec::new();
        {
            let inner = self.read();
            for event in events {
                inner.queue(event, &mut to_flush);
            }
        }
        self.flush_soon(to_flush);
    }

    /// Writes to the connections [`Inner::queue`] collected, from tasks of [`FLUSH_CHUNK`]
    /// connections each. A connection may be listed more than once (several events of a batch
    /// for it): the first flush writes all it holds, in one write, and the others find nothing
    /// left.
    fn flush_soon(&self, to_flush: Vec<Arc<Connection>>) {
        let mut to_flush = to_flush.into_iter();
        loop {
            let chunk: Vec<_> = to_flush.by_ref().take(FLUSH_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let delivered = self.delivered.clone();
            tokio::spawn(async move {
                let now = Instant::now();
                let written: usize = chunk.iter().map(|connection| connection.flush(now)).sum();
                delivered.inc_by(written as u64);
            });
        }
    }

    /// Every client with a live connection, once each.
    pub fn live_clients(&self) -> Vec<ClientId> {
        self.read()
            .streams
            .keys()
            .filter_map(|stream| match stream {
                StreamKey::Client(client) => Some(client.clone()),
                _ => None,
            })
            .collect()
    }

    /// Closes every connection of a client; returns how many there were.
    pub fn close_client(&self, client: &ClientId, reason: CloseReason) -> usize {
        let inner = self.read();
        let Some(members) = inner.streams.get(&StreamKey::Client(client.clone())) else {
            return 0;
        };
        for connection in members.iter() {
            connection.close(reason);
        }
        members.len()
    }

    /// Closes every connection with `resync`, as having missed events: none may then move its
    /// client's position forward, so each resumes from the last event it wrote. Returns how
    /// many there were.
    pub fn resync_all(&self) -> usize {
        let inner = self.read();
        for connection in inner.connections.values() {
            connection.resync();
        }
        inner.connections.len()
    }

    /// Ticks every connection whose timer is due at `now_ms` (see [`Connection::tick_if_due`]);
    /// returns how many were.
    pub fn tick_due(&self, now_ms: u64) -> usize {
        let inner = self.read();
        inner
            .connections
            .values()
            .filter(|connection| connection.tick_if_due(now_ms))
            .count()
    }

    /// How many connections have been removed since the start.
    pub fn removed(&self) -> u64 {
        self.removed.load(Ordering::Relaxed)
    }

    /// Closes every connection, at shutdown; returns how many there were.
    pub fn close_all(&self, reason: CloseReason) -> usize {
        let inner = self.read();
        for connection in inner.connections.values() {
            connection.close(reason);
        }
        inner.connections.len()
    }

    /// Every live connection, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<Connection>> {
        let mut all: Vec<_> = self.read().connections.values().cloned().collect();
        all.sort_by_key(|connection| connection.connected_at);
        all
    }

    /// The clients whose activity storage should record now: those with a live connection
    /// last recorded before `stale_before_ms`, and those that left since the previous call
    /// with their record older than `record_leaving_after`. Each live connection returned
    /// counts as recorded at `now_ms`. Recording only stale clients keeps the periodic write
    /// small: a client connected for hours is written a few times, not at every pass.
    pub fn clients_to_record(&self, stale_before_ms: u64, now_ms: u64) -> Vec<ClientId> {
        let left = std::mem::take(&mut self.write().left);
        let mut clients: HashSet<ClientId> = left.into_iter().collect();
        // The scan needs only a read lock (records are atomics), so fan-out is not held up by
        // it; a connection that goes in between is in `left` for the next call.
        for connection in self.read().connections.values() {
            if connection.recorded_ms() < stale_before_ms {
                connection.recorded(now_ms);
                clients.insert(connection.client_id.clone());
            }
        }
        clients.into_iter().collect()
    }

    /// Takes back [`Registry::clients_to_record`] when storage could not record them: they are
    /// returned again by the next call.
    pub fn record_failed(&self, clients: &[ClientId]) {
        let clients: HashSet<&ClientId> = clients.iter().collect();
        let mut live = HashSet::new();
        // A connection that goes after this scan leaves with its record reset, so it is added
        // to `left` as it goes.
        for connection in self.read().connections.values() {
            if clients.contains(&connection.client_id) {
                connection.recorded(0);
                live.insert(connection.client_id.clone());
            }
        }
        let gone = clients.into_iter().filter(|client| !live.contains(*client));
        let gone: Vec<ClientId> = gone.cloned().collect();
        self.write().left.extend(gone);
    }
}

impl Inner {
    /// Queues `event` for every connection receiving one of its streams, and for every Mercure
    /// subscriber it is for, adding those to write to (their writer waits with its sink lent)
    /// to `to_flush`. Each frame is built once, when a first connection needs it.
    fn queue(&self, event: &StoredEvent, to_flush: &mut Vec<Arc<Connection>>) {
        let mut seen: HashSet<&ConnectionId> = HashSet::new();
        let patterns = !self.mercure_patterns.is_empty()
            && event.streams.iter().any(|stream| stream.topic().is_some());
        let dedupe = event.streams.len() > 1 || patterns;
        let mut mercure_frame: Option<Bytes> = None;
        let mut offer = |connection: &Arc<Connection>, frame: &Bytes| {
            let item = Queued {
                seq: event.seq,
                bytes: frame.clone(),
            };
            if connection.offer(item) {
                to_flush.push(Arc::clone(connection));
            }
        };
        for stream in &event.streams {
            let targets: Box<dyn Iterator<Item = &Arc<Connection>>> = match stream {
                StreamKey::Broadcast => Box::new(self.connections.values()),
                other => match self.streams.get(other) {
                    Some(members) => Box::new(members.iter()),
                    None => continue,
                },
            };
            let (mut frame, mut unnamed): (Option<Bytes>, Option<Bytes>) = (None, None);
            for connection in targets {
                if dedupe && !seen.insert(&connection.id) {
                    continue;
                }
                match &connection.mercure {
                    Some(subscriber) if subscriber.accepts(event) => {
                        offer(
                            connection,
                            mercure_frame.get_or_insert_with(|| frames::mercure_event(event)),
                        );
                    }
                    Some(_) => {}
                    None if connection.all_types => offer(
                        connection,
                        unnamed.get_or_insert_with(|| frames::event_frame(event, stream, false)),
                    ),
                    None => offer(
                        connection,
                        frame.get_or_insert_with(|| frames::event_frame(event, stream, true)),
                    ),
                }
            }
        }
        if patterns {
            for connection in self.mercure_patterns.values() {
                let accepts = connection
                    .mercure
                    .as_ref()
                    .is_some_and(|subscriber| subscriber.accepts(event));
                if accepts && seen.insert(&connection.id) {
                    offer(
                        connection,
                        mercure_frame.get_or_insert_with(|| frames::mercure_event(event)),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::connection::Holder;

    const NO_LIMITS: Limits = Limits {
        per_client: usize::MAX,
        per_user: usize::MAX,
        per_address: None,
    };

    fn connect(
        registry: &Registry,
        client: &ClientId,
        recorded_ms: Option<u64>,
    ) -> Arc<Connection> {
        let connection = Connection::new(
            client.clone(),
            Vec::new(),
            Holder::default(),
            8,
            crate::hub::connection::StreamOptions::default(),
        );
        if let Some(at) = recorded_ms {
            connection.recorded(at);
        }
        registry.insert(&connection, NO_LIMITS).unwrap();
        connection
    }

    #[test]
    fn a_client_is_known_while_one_of_its_connections_is_live() {
        let registry = Registry::new(Duration::from_secs(10), Counter::default());
        let client = ClientId::generate();
        assert!(!registry.has_client(&client));
        let tabs: Vec<_> = (0..2).map(|_| connect(&registry, &client, None)).collect();
        assert!(registry.has_client(&client));
        assert!(!registry.has_client(&ClientId::generate()));
        registry.remove(&tabs[0]);
        assert!(registry.has_client(&client), "one tab is still open");
        registry.remove(&tabs[1]);
        assert!(!registry.has_client(&client));
    }

    #[test]
    fn only_stale_and_departed_clients_are_recorded_again() {
        let registry = Registry::new(Duration::from_secs(10), Counter::default());
        let now = now_ms();
        let (fresh, returning, old) = (
            ClientId::generate(),
            ClientId::generate(),
            ClientId::generate(),
        );
        let fresh_connection = connect(&registry, &fresh, Some(now));
        connect(&registry, &returning, None);
        let old_connection = connect(&registry, &old, Some(now - 60_000));

        let mut due = registry.clients_to_record(now - 30_000, now);
        due.sort();
        let mut expected = vec![returning.clone(), old.clone()];
        expected.sort();
        assert_eq!(due, expected, "never recorded, or recorded too long ago");
        assert!(
            registry.clients_to_record(now - 30_000, now).is_empty(),
            "now recorded"
        );

        // Leaving right after being recorded needs no write; leaving long after does.
        registry.remove(&fresh_connection);
        old_connection.recorded(now - 20_000);
        registry.remove(&old_connection);
        assert_eq!(
            registry.clients_to_record(now - 30_000, now),
            vec![old.clone()]
        );

        // A failed write hands the clients back for the next pass.
        let due = registry.clients_to_record(0, now);
        assert!(due.is_empty());
        registry.record_failed(&[returning.clone(), old.clone()]);
        let mut due = registry.clients_to_record(now - 30_000, now);
        due.sort();
        assert_eq!(due, expected);
    }

    #[test]
    fn a_map_gives_back_the_room_of_a_past_peak() {
        let mut map: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let peak = map.capacity();
        for i in 100..10_000 {
            map.remove(&i);
            release_spare(&mut map);
        }
        assert_eq!(map.len(), 100);
        assert!(map.capacity() < 256, "{} of {peak} kept", map.capacity());
        assert!((0..100).all(|i| map.get(&i) == Some(&i)));
    }

    #[test]
    fn a_map_at_steady_size_keeps_its_room() {
        let mut map: HashMap<u32, u32> = (0..1_000).map(|i| (i, i)).collect();
        // Replacing members one at a time never empties the map by half: nothing to give back.
        for i in 0..5_000 {
            map.remove(&i);
            let before = map.capacity();
            release_spare(&mut map);
            assert_eq!(map.capacity(), before, "shrunk at step {i}");
            map.insert(i + 1_000, i);
        }
    }
}
