use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use serde_json::value::to_raw_value;

use super::log::{append_batch, read_page};
use super::retention::RETENTION_STREAMS_PER_COMMIT;
use super::*;

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "herald-sqlite-{}-{}",
        std::process::id(),
        crate::ids::random_u32()
    ))
}

fn settings() -> SqliteSettings {
    SqliteSettings {
        max_events_per_stream: 3,
        max_bytes: None,
    }
}

fn event(topic: &str, n: u32) -> NewEvent {
    NewEvent {
        mercure: None,
        streams: vec![StreamKey::Topic(Arc::from(topic))],
        kind: "message".into(),
        data: to_raw_value(&n).unwrap(),
        time: SystemTime::now(),
    }
}

fn topic(name: &str) -> Vec<String> {
    vec![StreamKey::Topic(Arc::from(name)).encode()]
}

fn seqs(replay: Replay) -> Vec<Seq> {
    match replay {
        Replay::Events { events, .. } => events.iter().map(|event| event.seq).collect(),
        Replay::Expired => panic!("expected events"),
    }
}

#[tokio::test]
async fn the_inbox_survives_reopening_and_keeps_the_newest() {
    let dir = temp_dir();
    let item = |title: &str| NewInboxItem {
        title: title.into(),
        body: String::new(),
        url: None,
        kind: None,
        created_at: SystemTime::now(),
    };
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let mut ids = Vec::new();
    for n in 0..4 {
        let stored = storage
            .add_notification("alice", item(&format!("n{n}")), 3)
            .await
            .unwrap();
        ids.push(stored.id);
    }
    storage
        .mark_read("alice", ReadTarget::One(ids[3]))
        .await
        .unwrap();
    drop(storage);
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let query = InboxQuery {
        unread_only: false,
        limit: 10,
        before: None,
    };
    let page = storage.notifications("alice", query).await.unwrap();
    let titles: Vec<&str> = page.items.iter().map(|item| item.title.as_str()).collect();
    assert_eq!(
        titles,
        ["n3", "n2", "n1"],
        "the oldest went past the limit of 3"
    );
    assert!(page.items[0].read);
    assert_eq!(page.unread_count, 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ids_continue_across_reopening_and_start_above_the_creation_floor() {
    let dir = temp_dir();
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let floor = storage.inner.floor;
    let first = {
        let mut writer = lock(&storage.inner.writer);
        append_batch(
            &storage.inner,
            &mut writer,
            vec![event("a", 1), event("a", 2)],
        )
        .unwrap()
    };
    assert_eq!(
        first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [floor + 1, floor + 2]
    );
    drop(storage);

    let reopened = SqliteStorage::open(&dir, settings()).unwrap();
    assert_eq!(reopened.inner.latest.load(Ordering::Acquire), floor + 2);
    let mut reader = lock(&reopened.inner.readers).pop().unwrap();
    let replay = read_page(&reopened.inner, &mut reader, &topic("a"), floor, 10).unwrap();
    assert_eq!(seqs(replay), [floor + 1, floor + 2]);
    let later = {
        let mut writer = lock(&reopened.inner.writer);
        append_batch(&reopened.inner, &mut writer, vec![event("a", 3)]).unwrap()
    };
    assert_eq!(later[0].seq, floor + 3, "ids are never reused");
    assert!(matches!(
        read_page(&reopened.inner, &mut reader, &topic("a"), floor - 1, 10).unwrap(),
        Replay::Expired
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn client_commits_leave_every_other_commit_durable() {
    let dir = temp_dir();
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let synchronous = |storage: &SqliteStorage| -> i64 {
        lock(&storage.inner.writer)
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    };
    storage
        .register_client(&ClientId::generate())
        .await
        .unwrap();
    assert_eq!(synchronous(&storage), 2, "FULL after a client commit");
    // As if restoring FULL had failed after a client commit: the next write restores it
    // before it commits.
    lock(&storage.inner.writer)
        .pragma_update(None, "synchronous", "NORMAL")
        .unwrap();
    storage.inner.sync_relaxed.store(true, Ordering::Release);
    storage.append(vec![event("a", 1)]).await.unwrap();
    assert_eq!(synchronous(&storage), 2, "FULL before the event commit");
    assert!(!storage.inner.sync_relaxed.load(Ordering::Acquire));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_page_says_whether_it_holds_all_of_the_history_after_the_position() {
    let dir = temp_dir();
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let floor = storage.inner.floor;
    let events = (1..=4).map(|n| event(if n % 2 == 0 { "a" } else { "b" }, n));
    append_batch(
        &storage.inner,
        &mut lock(&storage.inner.writer),
        events.collect(),
    )
    .unwrap();
    let mut reader = lock(&storage.inner.readers).pop().unwrap();
    let mut page =
        |keys: &[String], limit| match read_page(&storage.inner, &mut reader, keys, floor, limit)
            .unwrap()
        {
            Replay::Events { events, complete } => (
                events.iter().map(|e| e.seq - floor).collect::<Vec<_>>(),
                complete,
            ),
            Replay::Expired => panic!("expected events"),
        };
    let both = [topic("a"), topic("b")].concat();
    assert_eq!(page(&both, 5), (vec![1, 2, 3, 4], true));
    assert_eq!(
        page(&both, 4),
        (vec![1, 2, 3, 4], false),
        "a full page may have more"
    );
    assert_eq!(page(&both, 3), (vec![1, 2, 3], false));
    // One stream alone filling the page is not complete, even with the other short.
    assert_eq!(page(&both, 2), (vec![1, 2], false));
    assert_eq!(page(&topic("a"), 3), (vec![2, 4], true));
    drop(reader);
    let _ = std::fs::remove_dir_all(dir);
}

fn count_events(storage: &SqliteStorage) -> i64 {
    lock(&storage.inner.writer)
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn retention_trims_by_count_and_age_and_remembers_where() {
    let dir = temp_dir();
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let floor = storage.inner.floor;
    let events: Vec<NewEvent> = (1..=5)
        .map(|n| event("a", n))
        .chain([event("b", 6)])
        .collect();
    storage.append(events).await.unwrap();
    let long_ago = SystemTime::UNIX_EPOCH;
    storage.expire(long_ago, long_ago).await.unwrap();
    let mut reader = lock(&storage.inner.readers).pop().unwrap();
    assert!(matches!(
        read_page(&storage.inner, &mut reader, &topic("a"), floor, 10).unwrap(),
        Replay::Expired
    ));
    assert_eq!(
        seqs(read_page(&storage.inner, &mut reader, &topic("a"), floor + 2, 10).unwrap()),
        [floor + 3, floor + 4, floor + 5]
    );
    assert_eq!(
        seqs(read_page(&storage.inner, &mut reader, &topic("b"), floor, 10).unwrap()),
        [floor + 6]
    );

    let future = SystemTime::now() + Duration::from_secs(60);
    storage.expire(long_ago, future).await.unwrap();
    assert!(matches!(
        read_page(&storage.inner, &mut reader, &topic("b"), floor, 10).unwrap(),
        Replay::Expired
    ));
    assert_eq!(
        count_events(&storage),
        0,
        "events no stream refers to are deleted"
    );
    drop(reader);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn retention_counts_more_streams_than_one_commit_holds() {
    let dir = temp_dir();
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let streams = RETENTION_STREAMS_PER_COMMIT * 2 + 7;
    let events: Vec<NewEvent> = (0..streams)
        .flat_map(|stream| (0..5).map(move |n| event(&format!("t{stream}"), n)))
        .collect();
    storage.append(events).await.unwrap();
    let long_ago = SystemTime::UNIX_EPOCH;
    storage.expire(long_ago, long_ago).await.unwrap();
    assert_eq!(
        count_events(&storage),
        i64::try_from(streams * 3).unwrap(),
        "every stream keeps its newest 3"
    );
    assert!(lock(&storage.inner.touched).is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_expired_clients_stream_cannot_be_replayed_silently() {
    let dir = temp_dir();
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let floor = storage.inner.floor;
    let client = ClientId::generate();
    lock(&storage.inner.writer)
        .execute(
            "INSERT INTO clients (client_id, last_seen_ms) VALUES (?1, 0)",
            [client.to_string()],
        )
        .unwrap();
    let direct = NewEvent {
        mercure: None,
        streams: vec![StreamKey::Client(client.clone())],
        ..event("unused", 1)
    };
    storage.append(vec![direct]).await.unwrap();
    storage
        .expire(SystemTime::now(), SystemTime::UNIX_EPOCH)
        .await
        .unwrap();
    let mut reader = lock(&storage.inner.readers).pop().unwrap();
    let keys = vec![StreamKey::Client(client).encode()];
    assert!(matches!(
        read_page(&storage.inner, &mut reader, &keys, floor, 10).unwrap(),
        Replay::Expired
    ));
    assert_eq!(count_events(&storage), 0);
    drop(reader);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_database_from_a_newer_herald_is_refused() {
    let dir = temp_dir();
    drop(SqliteStorage::open(&dir, settings()).unwrap());
    let connection = Connection::open(dir.join(DATABASE_FILE)).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    drop(connection);
    let err = SqliteStorage::open(&dir, settings()).unwrap_err();
    assert!(err.message.contains("schema version 99"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

fn trim_records(storage: &SqliteStorage) -> i64 {
    lock(&storage.inner.writer)
        .query_row("SELECT count(*) FROM trims", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn retention_forgets_empty_streams_and_expired_clients_with_their_trim_records() {
    let dir = temp_dir();
    let storage = SqliteStorage::open(&dir, settings()).unwrap();
    let floor = storage.inner.floor;
    let client = ClientId::generate();
    storage.register_client(&client).await.unwrap();
    let direct = NewEvent {
        mercure: None,
        streams: vec![StreamKey::Client(client.clone())],
        ..event("unused", 0)
    };
    let events = (1..=5).map(|n| event(&format!("t{n}"), n)).chain([direct]);
    storage.append(events.collect()).await.unwrap();
    let long_ago = SystemTime::UNIX_EPOCH;
    let in_a_minute = SystemTime::now() + Duration::from_secs(60);
    storage.expire(in_a_minute, in_a_minute).await.unwrap();
    assert_eq!(count_events(&storage), 0);
    assert_eq!(trim_records(&storage), 0, "no record outlives its stream");
    let newest = floor + 6;
    assert_eq!(storage.inner.forgotten.load(Ordering::Acquire), newest);

    let mut reader = lock(&storage.inner.readers).pop().unwrap();
    assert!(
        matches!(
            read_page(&storage.inner, &mut reader, &topic("t1"), floor, 10).unwrap(),
            Replay::Expired
        ),
        "a forgotten stream cannot be replayed from before it was forgotten"
    );
    // The stream comes back, starting at the floor: still nothing from before it.
    let again = storage.append(vec![event("t1", 9)]).await.unwrap();
    assert!(matches!(
        read_page(&storage.inner, &mut reader, &topic("t1"), floor, 10).unwrap(),
        Replay::Expired
    ));
    assert_eq!(
        seqs(read_page(&storage.inner, &mut reader, &topic("t1"), newest, 10).unwrap()),
        [again[0].seq]
    );
    drop(reader);
    drop(storage);
    // The floor survives a restart.
    let reopened = SqliteStorage::open(&dir, settings()).unwrap();
    assert_eq!(reopened.inner.forgotten.load(Ordering::Acquire), newest);
    reopened.expire(long_ago, long_ago).await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
