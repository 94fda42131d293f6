//! [`MemoryStorage`]: the event log and client directory held in this process.
//!
//! History lives in one ring per stream, capped by count on append and by age in the background.
//! Sequence numbers start at the boot time in microseconds, so an id from an earlier run of the
//! process is older than anything held now and replaying it announces a reset instead of
//! silently matching a different event.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    BoxFuture, InboxItem, InboxPage, InboxQuery, NewEvent, NewInboxItem, ReadChange, ReadTarget,
    Replay, Seq, Storage, StorageError, StoredEvent, StreamKey,
};
use crate::ids::ClientId;

mod streams;

#[derive(Debug)]
pub struct MemoryStorage {
    /// Events kept per stream.
    max_events_per_stream: usize,
    /// The position before the first event of this run: ids at or below it are from before.
    floor: Seq,
    state: Mutex<State>,
    /// The response streams.
    responses: Mutex<streams::Responses>,
}

#[derive(Debug, Default)]
struct State {
    latest: Seq,
    streams: HashMap<StreamKey, History>,
    /// The newest position trimmed from any stream that was then forgotten for being empty:
    /// a stream without history cannot be replayed from before it.
    forgotten_through: Seq,
    clients: HashMap<ClientId, SystemTime>,
    /// Each user's notifications by id.
    inboxes: HashMap<String, BTreeMap<u64, InboxItem>>,
    /// The id of the newest notification of any user.
    last_notification: u64,
    /// The position of the newest event with each Mercure id; pruned with the history.
    mercure_ids: HashMap<String, Seq>,
}

#[derive(Debug, Default)]
struct History {
    events: VecDeque<Arc<StoredEvent>>,
    /// The newest position removed from this stream: replaying from before it would skip events.
    trimmed_through: Seq,
}

impl History {
    fn trim_front(&mut self) {
        if let Some(event) = self.events.pop_front() {
            self.trimmed_through = event.seq;
        }
    }
}

impl MemoryStorage {
    pub fn new(max_events_per_stream: usize) -> Self {
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let floor = u64::try_from(boot.as_micros()).unwrap_or(u64::MAX / 2);
        Self {
            max_events_per_stream,
            floor,
            state: Mutex::new(State {
                latest: floor,
                ..State::default()
            }),
            responses: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock guards plain data whose every update completes before the guard drops, so a
        // panic elsewhere cannot leave it half-updated: use it as is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append_now(&self, events: Vec<NewEvent>) -> Vec<Arc<StoredEvent>> {
        let mut state = self.state();
        let mut stored = Vec::with_capacity(events.len());
        for event in events {
            state.latest += 1;
            let seq = state.latest;
            let event = event.stored_at(seq);
            if let Some(fields) = &event.mercure {
                state.mercure_ids.insert(fields.id.clone(), seq);
            }
            let forgotten_through = state.forgotten_through;
            for stream in &event.streams {
                // A stream forgotten earlier comes back knowing it cannot replay from before.
                let history = state
                    .streams
                    .entry(stream.clone())
                    .or_insert_with(|| History {
                        events: VecDeque::new(),
                        trimmed_through: forgotten_through,
                    });
                history.events.push_back(Arc::clone(&event));
                while history.events.len() > self.max_events_per_stream {
                    history.trim_front();
                }
            }
            stored.push(event);
        }
        stored
    }

    fn read_now(&self, streams: &[StreamKey], after: Seq, limit: usize) -> Replay {
        let state = self.state();
        if after < self.floor {
            return Replay::Expired;
        }
        let mut found: Vec<Arc<StoredEvent>> = Vec::new();
        for stream in streams {
            let Some(history) = state.streams.get(stream) else {
                if state.forgotten_through > after {
                    return Replay::Expired;
                }
                continue;
            };
            if history.trimmed_through > after {
                return Replay::Expired;
            }
            let start = history.events.partition_point(|event| event.seq <= after);
            found.extend(history.events.range(start..).take(limit).cloned());
        }
        found.sort_by_key(|event| event.seq);
        found.dedup_by_key(|event| event.seq);
        let complete = found.len() < limit;
        found.truncate(limit);
        Replay::Events {
            events: found,
            complete,
        }
    }

    fn forget_oldest_now(&self, keep: u64) -> u64 {
        let mut state = self.state();
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        let Some(excess) = state.clients.len().checked_sub(keep).filter(|n| *n > 0) else {
            return 0;
        };
        let mut by_age: Vec<(SystemTime, ClientId)> = state
            .clients
            .iter()
            .map(|(client, seen)| (*seen, client.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, client) in by_age.into_iter().take(excess) {
            state.clients.remove(&client);
            state.streams.remove(&StreamKey::Client(client));
        }
        excess as u64
    }

    fn expire_now(&self, cutoff: SystemTime, oldest_kept: SystemTime) {
        let mut state = self.state();
        let State {
            streams,
            clients,
            forgotten_through,
            mercure_ids,
            ..
        } = &mut *state;
        clients.retain(|client, seen| {
            let keep = *seen >= cutoff;
            if !keep {
                streams.remove(&StreamKey::Client(client.clone()));
            }
            keep
        });
        // Streams emptied by age are forgotten, so publishing to ever new topics cannot grow
        // memory without bound; their trim positions fold into one floor.
        streams.retain(|_, history| {
            while history
                .events
                .front()
                .is_some_and(|event| event.time < oldest_kept)
            {
                history.trim_front();
            }
            if history.events.is_empty() {
                *forgotten_through = (*forgotten_through).max(history.trimmed_through);
                return false;
            }
            true
        });
        // Ids of events older than every stream's oldest are of events no longer held.
        let oldest = streams
            .values()
            .filter_map(|history| history.events.front().map(|event| event.seq))
            .min()
            .unwrap_or(Seq::MAX);
        mercure_ids.retain(|_, seq| *seq >= oldest);
    }
}

impl Storage for MemoryStorage {
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<Arc<StoredEvent>>, StorageError>> {
        let stored = self.append_now(events);
        Box::pin(async move { Ok(stored) })
    }

    fn latest(&self) -> BoxFuture<'_, Result<Seq, StorageError>> {
        let latest = self.state().latest;
        Box::pin(async move { Ok(latest) })
    }

    fn read_after<'a>(
        &'a self,
        streams: &'a [StreamKey],
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, StorageError>> {
        let replay = self.read_now(streams, after, limit);
        Box::pin(async move { Ok(replay) })
    }

    fn topic_streams(&self) -> BoxFuture<'_, Result<Vec<StreamKey>, StorageError>> {
        let streams = self
            .state()
            .streams
            .keys()
            .filter(|stream| stream.topic().is_some())
            .cloned()
            .collect();
        Box::pin(async move { Ok(streams) })
    }

    fn earliest<'a>(
        &'a self,
        streams: &'a [StreamKey],
    ) -> BoxFuture<'a, Result<Seq, StorageError>> {
        let state = self.state();
        let earliest = streams
            .iter()
            .map(|stream| {
                state
                    .streams
                    .get(stream)
                    .map_or(state.forgotten_through, |history| history.trimmed_through)
            })
            .max()
            .unwrap_or(state.forgotten_through)
            .max(self.floor);
        Box::pin(async move { Ok(earliest) })
    }

    fn find_mercure_id<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Seq>, StorageError>> {
        let found = self.state().mercure_ids.get(id).copied();
        Box::pin(async move { Ok(found) })
    }

    fn streams(&self) -> Option<&dyn super::streams::StreamStore> {
        Some(self)
    }

    fn register_client<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.state()
            .clients
            .insert(client.clone(), SystemTime::now());
        Box::pin(async { Ok(()) })
    }

    fn client_exists<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        let exists = self.state().clients.contains_key(client);
        Box::pin(async move { Ok(exists) })
    }

    fn touch_clients<'a>(
        &'a self,
        clients: &'a [ClientId],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let now = SystemTime::now();
        let mut state = self.state();
        for client in clients {
            state.clients.insert(client.clone(), now);
        }
        Box::pin(async { Ok(()) })
    }

    fn client_count(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        let count = self.state().clients.len() as u64;
        Box::pin(async move { Ok(count) })
    }

    fn forget_oldest_clients(&self, keep: u64) -> BoxFuture<'_, Result<u64, StorageError>> {
        let forgotten = self.forget_oldest_now(keep);
        Box::pin(async move { Ok(forgotten) })
    }

    fn expire(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        self.expire_now(cutoff, oldest_kept);
        Box::pin(async { Ok(()) })
    }

    fn add_notification<'a>(
        &'a self,
        user: &'a str,
        item: NewInboxItem,
        keep: usize,
    ) -> BoxFuture<'a, Result<InboxItem, StorageError>> {
        let mut state = self.state();
        state.last_notification += 1;
        let stored = InboxItem {
            id: state.last_notification,
            title: item.title,
            body: item.body,
            url: item.url,
            kind: item.kind,
            created_at: item.created_at,
            read: false,
        };
        let inbox = state.inboxes.entry(user.to_owned()).or_default();
        inbox.insert(stored.id, stored.clone());
        while inbox.len() > keep {
            inbox.pop_first();
        }
        Box::pin(async move { Ok(stored) })
    }

    fn notifications<'a>(
        &'a self,
        user: &'a str,
        query: InboxQuery,
    ) -> BoxFuture<'a, Result<InboxPage, StorageError>> {
        let state = self.state();
        let page = match state.inboxes.get(user) {
            None => InboxPage {
                items: Vec::new(),
                unread_count: 0,
                next_before: None,
            },
            Some(inbox) => {
                let mut items: Vec<InboxItem> = inbox
                    .range(..query.before.unwrap_or(u64::MAX))
                    .rev()
                    .map(|(_, item)| item)
                    .filter(|item| !query.unread_only || !item.read)
                    .take(query.limit.saturating_add(1))
                    .cloned()
                    .collect();
                let next_before = if items.len() > query.limit {
                    items.truncate(query.limit);
                    items.last().map(|item| item.id)
                } else {
                    None
                };
                InboxPage {
                    items,
                    unread_count: unread(inbox),
                    next_before,
                }
            }
        };
        Box::pin(async move { Ok(page) })
    }

    fn mark_read<'a>(
        &'a self,
        user: &'a str,
        target: ReadTarget,
    ) -> BoxFuture<'a, Result<Option<ReadChange>, StorageError>> {
        let mut state = self.state();
        // A user without notifications reads as an empty inbox, without adding one.
        let mut empty = BTreeMap::new();
        let inbox = state.inboxes.get_mut(user).unwrap_or(&mut empty);
        let ids: Option<Vec<u64>> = match target {
            ReadTarget::One(id) => inbox.get_mut(&id).map(|item| {
                let was_read = std::mem::replace(&mut item.read, true);
                if was_read { Vec::new() } else { vec![id] }
            }),
            ReadTarget::All => Some(
                inbox
                    .values_mut()
                    .rev()
                    .filter_map(|item| {
                        (!std::mem::replace(&mut item.read, true)).then_some(item.id)
                    })
                    .collect(),
            ),
        };
        let change = ids.map(|ids| ReadChange {
            ids,
            unread_count: unread(inbox),
        });
        Box::pin(async move { Ok(change) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async { Ok(()) })
    }
}

fn unread(inbox: &BTreeMap<u64, InboxItem>) -> u64 {
    inbox.values().filter(|item| !item.read).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::to_raw_value;

    fn event(streams: &[&str]) -> NewEvent {
        NewEvent {
            mercure: None,
            streams: streams
                .iter()
                .map(|s| StreamKey::Topic(Arc::from(*s)))
                .collect(),
            kind: "message".into(),
            data: to_raw_value(&serde_json::Value::Null).unwrap(),
            time: SystemTime::now(),
        }
    }

    fn topics(names: &[&str]) -> Vec<StreamKey> {
        names
            .iter()
            .map(|s| StreamKey::Topic(Arc::from(*s)))
            .collect()
    }

    fn seqs(replay: Replay) -> Vec<Seq> {
        match replay {
            Replay::Events { events, .. } => events.iter().map(|e| e.seq).collect(),
            Replay::Expired => panic!("expected events, got Expired"),
        }
    }

    #[test]
    fn replays_the_events_of_the_asked_streams_in_order_once() {
        let store = MemoryStorage::new(100);
        let start = store.floor;
        let stored = store.append_now(vec![
            event(&["a"]),
            event(&["b"]),
            event(&["a", "b"]),
            event(&["c"]),
        ]);
        assert_eq!(
            stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [start + 1, start + 2, start + 3, start + 4]
        );
        assert_eq!(
            seqs(store.read_now(&topics(&["a", "b"]), start, 10)),
            [start + 1, start + 2, start + 3]
        );
        assert_eq!(
            seqs(store.read_now(&topics(&["a", "b"]), start + 1, 10)),
            [start + 2, start + 3]
        );
        assert_eq!(
            seqs(store.read_now(&topics(&["a", "b"]), start, 2)),
            [start + 1, start + 2]
        );
    }

    #[test]
    fn trimmed_history_is_reported_as_expired() {
        let store = MemoryStorage::new(2);
        let start = store.floor;
        store.append_now(vec![event(&["a"]), event(&["a"]), event(&["a"])]);
        assert!(matches!(
            store.read_now(&topics(&["a"]), start, 10),
            Replay::Expired
        ));
        assert_eq!(
            seqs(store.read_now(&topics(&["a"]), start + 1, 10)),
            [start + 2, start + 3]
        );
        assert!(matches!(
            store.read_now(&topics(&["a"]), start - 5, 10),
            Replay::Expired
        ));
    }

    #[test]
    fn expiry_drops_old_events_and_forgotten_clients() {
        let store = MemoryStorage::new(10);
        let start = store.floor;
        let client = ClientId::generate();
        store
            .state()
            .clients
            .insert(client.clone(), SystemTime::UNIX_EPOCH);
        store.append_now(vec![event(&["a"])]);
        store.expire_now(
            SystemTime::now() - Duration::from_secs(60),
            SystemTime::now() + Duration::from_secs(1),
        );
        assert!(matches!(
            store.read_now(&topics(&["a"]), start, 10),
            Replay::Expired
        ));
        assert!(
            store.state().streams.is_empty(),
            "emptied streams are forgotten"
        );
        store.append_now(vec![event(&["a"])]);
        assert!(
            matches!(store.read_now(&topics(&["a"]), start, 10), Replay::Expired),
            "a stream that comes back still cannot replay from before what was forgotten"
        );
        assert!(
            matches!(
                store.read_now(&topics(&["never-used"]), start, 10),
                Replay::Expired
            ),
            "a position before forgotten history cannot be replayed on any stream"
        );
        assert!(!store.state().clients.contains_key(&client));
    }

    #[test]
    fn ids_are_decimal_positions() {
        let store = MemoryStorage::new(1);
        assert_eq!(store.parse_id(&store.format_id(42)), Some(42));
        for bad in ["", "+5", "-1", "1e3", "abc", "99999999999999999999999"] {
            assert_eq!(store.parse_id(bad), None, "{bad}");
        }
    }
}
