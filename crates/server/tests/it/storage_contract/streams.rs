//! The contract's cases for response streams: appends all or none within the limits, in
//! order, positions as given; the end compacts; the ttl removes; open streams per owner.

use std::time::{Duration, SystemTime};

use herald_protocol::streams::{StreamKind, StreamStatus};
use herald_server::storage::streams::{
    Appended, Created, Ended, NewChunk, NewResponseStream, StreamLimits, StreamStore,
};
use serde_json::value::to_raw_value;

use super::{Backend, open};

const LIMITS: StreamLimits = StreamLimits {
    max_chunks: 4,
    max_bytes: 1000,
};

fn new(id: &str, kind: StreamKind, ttl: Duration) -> NewResponseStream {
    NewResponseStream {
        id: id.to_owned(),
        kind,
        owner: "writer".into(),
        user: Some("alice".into()),
        private: true,
        ttl,
        created_at: SystemTime::now(),
    }
}

fn text(chunks: &[&str]) -> Vec<NewChunk> {
    chunks
        .iter()
        .map(|chunk| NewChunk {
            advance: chunk.len() as u64,
            data: to_raw_value(chunk).unwrap(),
        })
        .collect()
}

async fn positions(store: &dyn StreamStore, id: &str, after: u64) -> Vec<u64> {
    let mut all = Vec::new();
    let mut after = after;
    loop {
        let page = store.read_chunks(id, after, 2).await.unwrap();
        let Some(last) = page.last() else {
            return all;
        };
        after = last.position;
        all.extend(page.iter().map(|chunk| chunk.position));
    }
}

pub(super) async fn a_stream_grows_within_its_limits_then_ends_compacted(backend: Backend) {
    let store = open(backend).await;
    let streams = store.storage.streams().expect("this store keeps streams");
    let now = SystemTime::now();
    let ttl = Duration::from_secs(60);
    assert_eq!(
        streams
            .create_stream(new("s1", StreamKind::Text, ttl), 1)
            .await
            .unwrap(),
        Created::Created
    );
    assert_eq!(
        streams
            .create_stream(new("s2", StreamKind::Text, ttl), 1)
            .await
            .unwrap(),
        Created::TooMany,
        "one open stream per owner here"
    );
    let appended = streams
        .append_chunks("s1", text(&["ab", "cde"]), LIMITS, now)
        .await
        .unwrap();
    assert_eq!(appended, Appended::Appended { last: 5, chunks: 2 });
    assert_eq!(
        streams
            .append_chunks("s1", text(&["f", "g", "h"]), LIMITS, now)
            .await
            .unwrap(),
        Appended::TooLong,
        "past four chunks: none of them is kept"
    );
    assert_eq!(positions(streams, "s1", 0).await, [2, 5]);
    assert_eq!(positions(streams, "s1", 2).await, [5]);
    let record = streams.response_stream("s1").await.unwrap().unwrap();
    assert_eq!(
        (
            record.chunks,
            record.last,
            record.status,
            record.user.as_deref(),
            record.private
        ),
        (2, 5, StreamStatus::Open, Some("alice"), true)
    );
    assert_eq!(
        streams
            .append_chunks("nope", text(&["x"]), LIMITS, now)
            .await
            .unwrap(),
        Appended::NotFound
    );

    let result = to_raw_value(&serde_json::json!({"finish_reason": "stop"})).unwrap();
    let Ended::Ended(ended) = streams
        .end_stream("s1", StreamStatus::Done, Some(result), now)
        .await
        .unwrap()
    else {
        panic!("the stream ends");
    };
    assert_eq!(ended.status, StreamStatus::Done);
    assert_eq!(ended.compacted.unwrap().get(), r#""abcde""#);
    assert_eq!(ended.result.unwrap().get(), r#"{"finish_reason":"stop"}"#);
    assert!(
        positions(streams, "s1", 0).await.is_empty(),
        "the chunks are compacted away"
    );
    assert!(matches!(
        streams
            .end_stream("s1", StreamStatus::Error, None, now)
            .await
            .unwrap(),
        Ended::Already(StreamStatus::Done)
    ));
    assert_eq!(
        streams
            .append_chunks("s1", text(&["x"]), LIMITS, now)
            .await
            .unwrap(),
        Appended::Ended(StreamStatus::Done)
    );
    assert_eq!(
        streams
            .create_stream(new("s2", StreamKind::Progress, ttl), 1)
            .await
            .unwrap(),
        Created::Created,
        "the ended one no longer counts"
    );
}

pub(super) async fn streams_go_after_their_ttl_and_idle_ones_end_first(backend: Backend) {
    let store = open(backend).await;
    let streams = store.storage.streams().expect("this store keeps streams");
    let start = SystemTime::now();
    let ttl = Duration::from_secs(10);
    for id in ["ended", "idle", "busy"] {
        streams
            .create_stream(new(id, StreamKind::Progress, ttl), 10)
            .await
            .unwrap();
    }
    let value = |n: u32| NewChunk {
        advance: 1,
        data: to_raw_value(&n).unwrap(),
    };
    streams
        .append_chunks("idle", vec![value(1), value(2)], LIMITS, start)
        .await
        .unwrap();
    streams
        .end_stream("ended", StreamStatus::Done, None, start)
        .await
        .unwrap();
    let later = start + Duration::from_secs(8);
    streams
        .append_chunks("busy", vec![value(7)], LIMITS, later)
        .await
        .unwrap();
    assert!(streams.expire_streams(later).await.unwrap().is_empty());

    let due = start + Duration::from_secs(11);
    assert_eq!(streams.expire_streams(due).await.unwrap(), ["idle"]);
    assert!(streams.response_stream("ended").await.unwrap().is_none());
    let idle = streams.response_stream("idle").await.unwrap().unwrap();
    assert_eq!(idle.status, StreamStatus::Error);
    assert_eq!(idle.compacted.unwrap().get(), "2", "its last value");
    assert_eq!(
        streams
            .response_stream("busy")
            .await
            .unwrap()
            .unwrap()
            .status,
        StreamStatus::Open
    );
    assert!(
        streams
            .expire_streams(due + Duration::from_secs(11))
            .await
            .unwrap()
            .contains(&"busy".to_owned())
    );
    assert!(streams.response_stream("idle").await.unwrap().is_none());
}
