//! One contract, every backend: the promises the hub relies on, checked by the same cases on
//! memory, SQLite and Redis. A new backend is done when these pass on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herald_server::ids::ClientId;
use herald_server::storage::{
    InboxQuery, MemoryStorage, NewEvent, NewInboxItem, ReadChange, ReadTarget, RedisSettings,
    RedisStorage, Replay, Seq, SqliteSettings, SqliteStorage, Storage, StoredEvent, StreamKey,
};
use serde_json::value::to_raw_value;

mod mercure;
mod streams;

use crate::support::services::RedisServer;
use crate::support::{eventually, fresh_data_dir};
use mercure::{
    lists_topic_streams_and_where_their_history_begins,
    mercure_updates_keep_their_fields_and_are_found_by_id,
};
use streams::{
    a_stream_grows_within_its_limits_then_ends_compacted,
    streams_go_after_their_ttl_and_idle_ones_end_first,
};

/// Events kept per stream by every store under test.
const KEPT: usize = 3;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Sqlite,
    Redis,
}

/// A store of one backend, with what it runs on, removed when dropped.
struct Store {
    storage: Arc<dyn Storage>,
    _redis: Option<RedisServer>,
    data_dir: Option<PathBuf>,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn open(backend: Backend) -> Store {
    match backend {
        Backend::Memory => Store {
            storage: Arc::new(MemoryStorage::new(KEPT)),
            _redis: None,
            data_dir: None,
        },
        Backend::Sqlite => {
            let dir = fresh_data_dir();
            let settings = SqliteSettings {
                max_events_per_stream: KEPT,
                max_bytes: None,
            };
            Store {
                storage: Arc::new(SqliteStorage::open(&dir, settings).unwrap()),
                _redis: None,
                data_dir: Some(dir),
            }
        }
        Backend::Redis => {
            let redis = RedisServer::start().await;
            let storage = RedisStorage::open(RedisSettings {
                url: redis.url(),
                tls_ca: None,
                prefix: "contract:".into(),
                max_events_per_stream: KEPT,
                feed_max_len: 1000,
                // Retention takes a lock for most of an interval: a short one lets every
                // pass of a test run.
                retention_interval: Duration::from_millis(1),
            })
            .unwrap();
            Store {
                storage: Arc::new(storage),
                _redis: Some(redis),
                data_dir: None,
            }
        }
    }
}

fn topic(name: &str) -> StreamKey {
    StreamKey::Topic(Arc::from(name))
}

fn event(streams: &[StreamKey], n: u32) -> NewEvent {
    NewEvent {
        mercure: None,
        streams: streams.to_vec(),
        kind: "message".into(),
        data: to_raw_value(&n).unwrap(),
        time: SystemTime::now(),
    }
}

/// Appends one event per entry of `streams`, in order.
async fn append(storage: &dyn Storage, streams: &[&[StreamKey]]) -> Vec<Arc<StoredEvent>> {
    let events = streams
        .iter()
        .enumerate()
        .map(|(n, keys)| event(keys, u32::try_from(n).unwrap()))
        .collect();
    storage.append(events).await.unwrap()
}

/// The positions of a replay's events; fails on `Expired`.
fn seqs(replay: Replay) -> Vec<Seq> {
    match replay {
        Replay::Events { events, .. } => events.iter().map(|event| event.seq).collect(),
        Replay::Expired => panic!("expected events, got Expired"),
    }
}

/// Every event of `streams` after `after`, read a page of `limit` at a time as a subscription
/// does: until a page is empty or says it holds everything.
async fn read_all(storage: &dyn Storage, streams: &[StreamKey], mut after: Seq) -> Vec<Seq> {
    let mut all = Vec::new();
    loop {
        match storage.read_after(streams, after, 2).await.unwrap() {
            Replay::Events { events, complete } => {
                let Some(last) = events.last() else {
                    return all;
                };
                after = last.seq;
                all.extend(events.iter().map(|event| event.seq));
                if complete {
                    return all;
                }
            }
            Replay::Expired => panic!("expected events, got Expired"),
        }
    }
}

async fn appends_number_events_in_batch_order(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let first = append(storage, &[&[topic("a")], &[topic("b")], &[topic("a")]]).await;
    assert!(first.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(storage.latest().await.unwrap(), first[2].seq);
    let second = append(storage, &[&[topic("a")]]).await;
    assert!(second[0].seq > first[2].seq, "positions keep increasing");
    assert_eq!(storage.latest().await.unwrap(), second[0].seq);
    for stored in first.iter().chain(&second) {
        assert_eq!(stored.id, storage.format_id(stored.seq));
        assert_eq!(storage.parse_id(&stored.id), Some(stored.seq));
        assert_eq!(stored.data.get(), stored.data.get().trim());
    }
    for bad in ["", "abc", "-1", "1e3", "99999999999999999999999"] {
        assert_eq!(storage.parse_id(bad), None, "{bad:?}");
    }
}

async fn replays_the_asked_streams_once_in_order(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let before = storage.latest().await.unwrap();
    let stored = append(
        storage,
        &[
            &[topic("a")],
            &[topic("b")],
            &[topic("a"), topic("b")],
            &[topic("c")],
        ],
    )
    .await;
    let s: Vec<Seq> = stored.iter().map(|event| event.seq).collect();
    let both = [topic("a"), topic("b")];
    assert_eq!(read_all(storage, &both, before).await, [s[0], s[1], s[2]]);
    assert_eq!(read_all(storage, &both, s[0]).await, [s[1], s[2]]);
    assert_eq!(read_all(storage, &[topic("c")], s[2]).await, [s[3]]);
    assert!(read_all(storage, &both, s[3]).await.is_empty());
    let page = seqs(storage.read_after(&both, before, 2).await.unwrap());
    assert_eq!(
        page,
        [s[0], s[1]],
        "a page holds at most the limit, oldest first"
    );
    match storage.read_after(&both, before, 10).await.unwrap() {
        Replay::Events { events, complete } => {
            assert!(events.len() <= 3);
            if complete {
                assert_eq!(events.len(), 3, "a complete page holds everything");
            }
        }
        Replay::Expired => panic!("nothing was trimmed"),
    }
}

async fn a_position_before_the_log_cannot_be_replayed(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    append(storage, &[&[topic("a")]]).await;
    // Position 1 is from long before this log began: its events are not here.
    let old = storage.parse_id("1").unwrap();
    assert!(matches!(
        storage.read_after(&[topic("a")], old, 10).await.unwrap(),
        Replay::Expired
    ));
}

async fn retention_keeps_the_newest_of_each_stream(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let before = storage.latest().await.unwrap();
    let a: &[StreamKey] = &[topic("a")];
    let stored = append(storage, &[a, a, a, a, a]).await;
    let other = append(storage, &[&[topic("b")]]).await;
    let long_ago = SystemTime::UNIX_EPOCH;
    eventually("retention keeps the newest events of topic a", || async {
        storage.expire(long_ago, long_ago).await.unwrap();
        matches!(
            storage.read_after(a, before, 10).await.unwrap(),
            Replay::Expired
        )
    })
    .await;
    assert_eq!(
        read_all(storage, a, stored[1].seq).await,
        [stored[2].seq, stored[3].seq, stored[4].seq],
        "the newest are kept, and read from where trimming stopped"
    );
    assert_eq!(
        read_all(storage, &[topic("b")], before).await,
        [other[0].seq],
        "other streams keep theirs"
    );
}

async fn retention_drops_what_is_older_than_the_age_limit(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let before = storage.latest().await.unwrap();
    append(storage, &[&[topic("a")]]).await;
    let in_a_minute = SystemTime::now() + Duration::from_secs(60);
    eventually("the event ages out", || async {
        storage
            .expire(SystemTime::UNIX_EPOCH, in_a_minute)
            .await
            .unwrap();
        matches!(
            storage.read_after(&[topic("a")], before, 10).await.unwrap(),
            Replay::Expired
        )
    })
    .await;
    let later = append(storage, &[&[topic("a")]]).await;
    assert_eq!(
        read_all(storage, &[topic("a")], later[0].seq - 1).await,
        [later[0].seq],
        "a stream goes on after its history aged out"
    );
}

async fn a_forgotten_stream_comes_back_without_replaying_from_before(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let before = storage.latest().await.unwrap();
    append(storage, &[&[topic("a")], &[topic("a")]]).await;
    let in_a_minute = SystemTime::now() + Duration::from_secs(60);
    eventually("topic a is forgotten", || async {
        storage
            .expire(SystemTime::UNIX_EPOCH, in_a_minute)
            .await
            .unwrap();
        matches!(
            storage.read_after(&[topic("a")], before, 10).await.unwrap(),
            Replay::Expired
        )
    })
    .await;
    let forgotten_at = storage.latest().await.unwrap();
    let back = append(storage, &[&[topic("a")]]).await;
    assert!(
        matches!(
            storage.read_after(&[topic("a")], before, 10).await.unwrap(),
            Replay::Expired
        ),
        "coming back, it still cannot replay what it lost"
    );
    assert_eq!(
        read_all(storage, &[topic("a")], forgotten_at).await,
        [back[0].seq]
    );
}

async fn client_ids_are_known_until_they_expire_with_their_stream(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let client = ClientId::generate();
    assert!(!storage.client_exists(&client).await.unwrap());
    storage.register_client(&client).await.unwrap();
    assert!(storage.client_exists(&client).await.unwrap());
    assert!(!storage.client_exists(&ClientId::generate()).await.unwrap());
    storage
        .touch_clients(std::slice::from_ref(&client))
        .await
        .unwrap();
    let before = storage.latest().await.unwrap();
    let direct = [StreamKey::Client(client.clone())];
    append(storage, &[&direct]).await;
    let long_ago = SystemTime::UNIX_EPOCH;
    storage.expire(long_ago, long_ago).await.unwrap();
    assert!(
        storage.client_exists(&client).await.unwrap(),
        "a client seen after the cutoff is kept"
    );
    let in_a_minute = SystemTime::now() + Duration::from_secs(60);
    eventually("the client expires", || async {
        storage.expire(in_a_minute, long_ago).await.unwrap();
        !storage.client_exists(&client).await.unwrap()
    })
    .await;
    // The hub never replays the stream of a client it does not know (such a client is
    // refused), so a store may answer `Expired` or nothing; it never gives the events back.
    if let Replay::Events { events, .. } = storage.read_after(&direct, before, 10).await.unwrap() {
        assert!(
            events.is_empty(),
            "an expired client's events are forgotten"
        );
    }
}

async fn the_clients_seen_longest_ago_are_forgotten_past_a_cap(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let clients: Vec<ClientId> = (0..5).map(|_| ClientId::generate()).collect();
    for client in &clients {
        storage.register_client(client).await.unwrap();
    }
    let registered = herald_server::time::now_ms();
    // Seen later than the others: the clock has to move past their registration first.
    eventually("the clock moves on", || async {
        herald_server::time::now_ms() > registered
    })
    .await;
    storage.touch_clients(&clients[3..]).await.unwrap();
    assert_eq!(storage.client_count().await.unwrap(), 5);
    let before = storage.latest().await.unwrap();
    let direct = [StreamKey::Client(clients[0].clone())];
    append(storage, &[&direct]).await;
    assert_eq!(
        storage.forget_oldest_clients(5).await.unwrap(),
        0,
        "under the cap"
    );
    assert_eq!(storage.forget_oldest_clients(2).await.unwrap(), 3);
    assert_eq!(storage.client_count().await.unwrap(), 2);
    for (n, client) in clients.iter().enumerate() {
        let kept = storage.client_exists(client).await.unwrap();
        assert_eq!(kept, n >= 3, "client {n}: the two seen last are kept");
    }
    if let Replay::Events { events, .. } = storage.read_after(&direct, before, 10).await.unwrap() {
        assert!(events.is_empty(), "a forgotten client's events go with it");
    }
}

fn notification(title: &str) -> NewInboxItem {
    NewInboxItem {
        title: title.into(),
        body: String::new(),
        url: Some("/orders/1".into()),
        kind: Some("order".into()),
        created_at: SystemTime::now(),
    }
}

async fn the_inbox_keeps_the_newest_and_counts_unread(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let mut ids = Vec::new();
    for n in 0..4 {
        let item = storage
            .add_notification("alice", notification(&format!("n{n}")), 3)
            .await
            .unwrap();
        assert!(!item.read);
        ids.push(item.id);
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    let all = |limit, before| InboxQuery {
        unread_only: false,
        limit,
        before,
    };
    let page = storage.notifications("alice", all(10, None)).await.unwrap();
    let titles: Vec<&str> = page.items.iter().map(|item| item.title.as_str()).collect();
    assert_eq!(titles, ["n3", "n2", "n1"], "newest first; the oldest went");
    assert_eq!(page.unread_count, 3);
    assert_eq!(page.next_before, None);
    assert_eq!(page.items[0].url.as_deref(), Some("/orders/1"));
    let first = storage.notifications("alice", all(2, None)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = storage
        .notifications("alice", all(2, first.next_before))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].title, "n1");
    let empty = storage.notifications("bob", all(10, None)).await.unwrap();
    assert!(empty.items.is_empty() && empty.unread_count == 0);
}

async fn marking_read_changes_only_the_owners_inbox_once(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let mut ids = Vec::new();
    for n in 0..3 {
        let item = storage
            .add_notification("alice", notification(&format!("n{n}")), 10)
            .await
            .unwrap();
        ids.push(item.id);
    }
    let change = storage
        .mark_read("alice", ReadTarget::One(ids[1]))
        .await
        .unwrap();
    assert_eq!(
        change,
        Some(ReadChange {
            ids: vec![ids[1]],
            unread_count: 2
        })
    );
    let again = storage
        .mark_read("alice", ReadTarget::One(ids[1]))
        .await
        .unwrap();
    assert_eq!(
        again,
        Some(ReadChange {
            ids: Vec::new(),
            unread_count: 2
        }),
        "marking again changes nothing"
    );
    assert_eq!(
        storage
            .mark_read("bob", ReadTarget::One(ids[0]))
            .await
            .unwrap(),
        None,
        "another user's notification is not found"
    );
    let unread = InboxQuery {
        unread_only: true,
        limit: 10,
        before: None,
    };
    let page = storage.notifications("alice", unread).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.items.iter().all(|item| !item.read));
    let all = storage
        .mark_read("alice", ReadTarget::All)
        .await
        .unwrap()
        .unwrap();
    let mut changed = all.ids.clone();
    changed.sort_unstable();
    assert_eq!(changed, [ids[0], ids[2]]);
    assert_eq!(all.unread_count, 0);
}

async fn answers_a_ping(backend: Backend) {
    let store = open(backend).await;
    store.storage.ping().await.unwrap();
}

/// Each case, as a test of its own for every backend: `storage_contract::<backend>::<case>`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::Memory).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::Sqlite).await;
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::Redis).await;
            })*
        }
    };
}

contract!(
    appends_number_events_in_batch_order,
    replays_the_asked_streams_once_in_order,
    a_position_before_the_log_cannot_be_replayed,
    retention_keeps_the_newest_of_each_stream,
    retention_drops_what_is_older_than_the_age_limit,
    a_forgotten_stream_comes_back_without_replaying_from_before,
    client_ids_are_known_until_they_expire_with_their_stream,
    the_clients_seen_longest_ago_are_forgotten_past_a_cap,
    the_inbox_keeps_the_newest_and_counts_unread,
    marking_read_changes_only_the_owners_inbox_once,
    mercure_updates_keep_their_fields_and_are_found_by_id,
    lists_topic_streams_and_where_their_history_begins,
    a_stream_grows_within_its_limits_then_ends_compacted,
    streams_go_after_their_ttl_and_idle_ones_end_first,
    answers_a_ping,
);
