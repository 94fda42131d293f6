//! Replay after a reconnect: exact, ordered, and with no duplicate or gap at the hand-over.

use std::time::Duration;

use crate::support::{TestServer, eventually};
use herald_protocol::system::{Reset, ResetReason};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_missed_events_after_reconnect() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=a&topic=b").await;
    stream.connected().await;
    server.publish("a", "message", json!(0)).await;
    let seen = stream.envelope().await;
    drop(stream);

    for n in 1..=5 {
        server
            .publish(if n % 2 == 0 { "a" } else { "b" }, "message", json!(n))
            .await;
        server.publish("other", "message", json!(-n)).await;
    }
    let mut resumed = server
        .subscribe_after("topic=a&topic=b", Some(&seen.id))
        .await;
    resumed.connected().await;
    for n in 1..=5 {
        assert_eq!(resumed.envelope().await.data, json!(n));
    }
    server.publish("a", "message", json!("live")).await;
    assert_eq!(resumed.envelope().await.data, json!("live"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_parameter_works_and_the_header_wins() {
    let server = TestServer::start().await;
    let first = server.publish("a", "message", json!(1)).await;
    let second = server.publish("a", "message", json!(2)).await;
    server.publish("a", "message", json!(3)).await;

    let mut by_query = server
        .subscribe(&format!("topic=a&last_event_id={}", first.id))
        .await;
    by_query.connected().await;
    assert_eq!(by_query.envelope().await.data, json!(2));

    let mut both = server
        .subscribe_after(
            &format!("topic=a&last_event_id={}", first.id),
            Some(&second.id),
        )
        .await;
    both.connected().await;
    assert_eq!(
        both.envelope().await.data,
        json!(3),
        "Last-Event-ID wins over last_event_id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_announced_with_reset() {
    let server = TestServer::start().await;
    let mut latest = server.publish("a", "message", json!(1)).await;
    for unknown in ["not-an-id", "99999999999999999999", "18446744073709551615"] {
        let mut stream = server.subscribe_after("topic=a", Some(unknown)).await;
        stream.connected().await;
        let reset = stream.expect("herald.reset").await;
        let body: Reset = serde_json::from_str(&reset.data).unwrap();
        assert_eq!(body.reason, ResetReason::UnknownId, "{unknown}");
        assert_eq!(body.latest_id, latest.id);
        assert_eq!(
            stream.last_event_id(),
            latest.id,
            "the reset moves the client's last event id"
        );
        latest = server.publish("a", "message", json!("live")).await;
        assert_eq!(stream.envelope().await.id, latest.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_older_than_the_retained_history_is_announced_with_reset() {
    let server = TestServer::start_with(|config| {
        config.history_max_events = 3;
        config.retention_interval = Duration::from_millis(50);
    })
    .await;
    let mut acks = Vec::new();
    for n in 1..=6 {
        acks.push(server.publish("a", "message", json!(n)).await);
    }
    let first = &acks[0];
    // Retention runs in the background; once it has, the first id is too old.
    eventually("retention trims topic a to 3 events", || async {
        let mut stream = server.subscribe_after("topic=a", Some(&first.id)).await;
        stream.connected().await;
        let event = stream.next_event().await;
        if event.event != "herald.reset" {
            return false;
        }
        let reset: Reset = serde_json::from_str(&event.data).unwrap();
        assert_eq!(reset.reason, ResetReason::HistoryExpired);
        true
    })
    .await;
    // The three newest are still replayed from the id before them, then live events follow.
    let mut stream = server.subscribe_after("topic=a", Some(&acks[2].id)).await;
    stream.connected().await;
    for n in 4..=6 {
        assert_eq!(stream.envelope().await.data, json!(n));
    }
    server.publish("a", "message", json!("live")).await;
    assert_eq!(stream.envelope().await.data, json!("live"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_the_maximum_age_is_dropped() {
    let server = TestServer::start_with(|config| {
        config.history_max_age = Duration::from_millis(200);
        config.retention_interval = Duration::from_millis(50);
    })
    .await;
    let mut stream = server.subscribe("topic=a").await;
    stream.connected().await;
    let start = stream.last_event_id().to_owned();
    drop(stream);
    server.publish("a", "message", json!("old")).await;
    eventually("the old event ages out", || async {
        let mut stream = server.subscribe_after("topic=a", Some(&start)).await;
        stream.connected().await;
        stream.next_event().await.event == "herald.reset"
    })
    .await;
}

/// Reconnects many times while a publisher keeps publishing; across all the connections the
/// subscriber sees every event exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_hands_over_to_live_without_gap_or_duplicate_under_concurrent_publishing() {
    const EVENTS: u64 = 600;
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut stream = server.subscribe("topic=race").await;
    stream.connected().await;

    let publisher = {
        let server = std::sync::Arc::clone(&server);
        tokio::spawn(async move {
            for n in 1..=EVENTS {
                server
                    .publish(
                        if n % 3 == 0 { "noise" } else { "race" },
                        "message",
                        json!(n),
                    )
                    .await;
            }
        })
    };

    let expected: Vec<u64> = (1..=EVENTS).filter(|n| n % 3 != 0).collect();
    let mut received = Vec::new();
    let mut reconnects = 0;
    while received.len() < expected.len() {
        let envelope = stream.envelope().await;
        received.push(envelope.data.as_u64().unwrap());
        // Drop the connection every few events and resume from the last id seen.
        if received.len() % 37 == 0 {
            let last = stream.last_event_id().to_owned();
            drop(stream);
            reconnects += 1;
            stream = server.subscribe_after("topic=race", Some(&last)).await;
            stream.connected().await;
        }
    }
    publisher.await.unwrap();
    assert!(reconnects >= 10, "exercised {reconnects} reconnects");
    assert_eq!(received, expected);
}

/// A replay that reads all of the missed history in one page goes live without reading again:
/// an event published between that read and the stream going live must come through live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_right_after_the_last_replay_read_is_delivered_live() {
    let (server, storage) = TestServer::start_instrumented().await;
    let mut stream = server.subscribe("topic=a").await;
    stream.connected().await;
    server.publish("a", "message", json!(1)).await;
    let seen = stream.envelope().await;
    drop(stream);
    server.publish("a", "message", json!(2)).await;

    let (has_read, let_answer) = storage.hold_next_read();
    let mut resumed = server.subscribe_after("topic=a", Some(&seen.id)).await;
    resumed.connected().await;
    tokio::time::timeout(crate::support::TIMEOUT, has_read)
        .await
        .expect("the replay reads")
        .unwrap();
    // Stored and queued for the resumed stream (registered before it read), but after the read.
    server.publish("a", "message", json!(3)).await;
    let_answer.send(()).unwrap();

    assert_eq!(resumed.envelope().await.data, json!(2), "replayed");
    assert_eq!(resumed.envelope().await.data, json!(3), "live");
}
