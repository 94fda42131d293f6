//! The contract's cases for what the Mercure hub asks of a store: the fields of an update and
//! its id, the topic streams, and where their history begins.

use std::sync::Arc;
use std::time::SystemTime;

use herald_server::storage::{MercureFields, Replay, StreamKey};
use serde_json::value::to_raw_value;

use super::{Backend, append, event, open, read_all, topic};
use crate::support::eventually;

pub(super) async fn mercure_updates_keep_their_fields_and_are_found_by_id(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let before = storage.latest().await.unwrap();
    let update = |id: &str, retry| {
        let mut event = event(&[topic("books/1"), topic("books")], 0);
        event.data = to_raw_value("line one\n\n  line three").unwrap();
        event.mercure = Some(Box::new(MercureFields {
            id: id.to_owned(),
            untyped: true,
            retry,
        }));
        event
    };
    let first = storage
        .append(vec![
            update("urn:uuid:1", Some(2500)),
            event(&[topic("books")], 1),
        ])
        .await
        .unwrap();
    let again = storage
        .append(vec![update("id-[\"x\"]", None)])
        .await
        .unwrap();
    let reused = storage
        .append(vec![update("id-[\"x\"]", None)])
        .await
        .unwrap();
    let Replay::Events { events, .. } = storage
        .read_after(&[topic("books/1")], before, 10)
        .await
        .unwrap()
    else {
        panic!("the history is there");
    };
    let fields: Vec<_> = events
        .iter()
        .map(|event| event.mercure.as_deref().cloned())
        .collect();
    let x = |retry| {
        Some(MercureFields {
            id: "id-[\"x\"]".into(),
            untyped: true,
            retry,
        })
    };
    assert_eq!(
        fields,
        [
            Some(MercureFields {
                id: "urn:uuid:1".into(),
                untyped: true,
                retry: Some(2500)
            }),
            x(None),
            x(None),
        ],
        "each update as stored, in order"
    );
    assert_eq!(events[0].data.get(), "\"line one\\n\\n  line three\"");
    assert_eq!(
        storage.find_mercure_id("urn:uuid:1").await.unwrap(),
        Some(first[0].seq)
    );
    assert_ne!(again[0].seq, reused[0].seq);
    assert_eq!(
        storage.find_mercure_id("id-[\"x\"]").await.unwrap(),
        Some(reused[0].seq),
        "a reused id names its newest event"
    );
    assert_eq!(
        storage.find_mercure_id("urn:uuid:unknown").await.unwrap(),
        None
    );
    assert_eq!(storage.find_mercure_id(&first[1].id).await.unwrap(), None);
}

pub(super) async fn lists_topic_streams_and_where_their_history_begins(backend: Backend) {
    let store = open(backend).await;
    let storage = &*store.storage;
    let before = storage.latest().await.unwrap();
    let private = StreamKey::Private(Arc::from("c"));
    let user = StreamKey::User(Arc::from("u"));
    let a: &[StreamKey] = &[topic("a")];
    let stored = append(storage, &[a, a, a, a, a]).await;
    let others = append(
        storage,
        &[&[topic("b"), private.clone()], std::slice::from_ref(&user)],
    )
    .await;
    let mut listed = storage.topic_streams().await.unwrap();
    listed.sort();
    let mut expected = vec![topic("a"), topic("b"), private.clone()];
    expected.sort();
    assert_eq!(listed, expected, "topics and private topics, not users");
    let long_ago = SystemTime::UNIX_EPOCH;
    eventually("retention keeps the newest events of topic a", || async {
        storage.expire(long_ago, long_ago).await.unwrap();
        matches!(
            storage.read_after(a, before, 10).await.unwrap(),
            Replay::Expired
        )
    })
    .await;
    // `a` kept its newest three: its history begins after the second.
    let earliest_a = storage.earliest(a).await.unwrap();
    assert_eq!(earliest_a, stored[1].seq);
    assert_eq!(
        read_all(storage, a, earliest_a).await,
        [stored[2].seq, stored[3].seq, stored[4].seq]
    );
    let earliest_b = storage
        .earliest(&[topic("b"), private.clone()])
        .await
        .unwrap();
    assert!(earliest_b < others[0].seq);
    assert_eq!(
        read_all(storage, &[topic("b")], earliest_b).await,
        [others[0].seq]
    );
    assert_eq!(
        storage.earliest(&[topic("a"), topic("b")]).await.unwrap(),
        earliest_a,
        "the latest of their beginnings"
    );
    assert!(
        storage.earliest(&[]).await.unwrap() < stored[0].seq,
        "no stream was forgotten"
    );
}
