//! Subscribing and receiving: headers, the greeting, live events, topics, heartbeats, clean-up.

use std::time::Duration;

use crate::support::{TestServer, eventually};
use herald_protocol::sse::Item;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_connected_arrive_before_any_publish() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=orders").await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");

    let Some(Item::Retry(retry)) = stream.next_item().await else {
        panic!("the first field is retry")
    };
    assert!(
        (3000..=4500).contains(&retry),
        "retry {retry} is the 3 s default plus at most 50% jitter"
    );
    let connected = stream.connected().await;
    assert_eq!(connected.topics, ["orders"]);
    assert_eq!(connected.client_id.len(), 32, "client ids are 128-bit hex");
    assert!(!connected.connection_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_is_jittered_between_connections() {
    let server = TestServer::start().await;
    let mut retries = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let mut stream = server.subscribe("topic=a").await;
        let Some(Item::Retry(retry)) = stream.next_item().await else {
            panic!("retry first")
        };
        retries.insert(retry);
    }
    assert!(
        retries.len() > 1,
        "eight connections got the same retry: {retries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_is_delivered_exactly_as_published() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=exact").await;
    stream.connected().await;
    let body = r#"{"topic": "exact", "data": {"big": 12345678901234567890123, "pi": 3.141592653589793238462643}}"#;
    let (status, _) = server
        .post_raw("/api/publish", Some("application/json"), body)
        .await;
    assert_eq!(status, 200);
    let event = stream.next_event().await;
    assert!(
        event.data.contains(
            r#""data":{"big": 12345678901234567890123, "pi": 3.141592653589793238462643}"#
        ),
        "numbers keep every digit: {}",
        event.data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_event_arrives_with_its_id_type_and_envelope() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=orders").await;
    stream.connected().await;

    let ack = server
        .publish(
            "orders",
            "order.created",
            json!({"order": 42, "items": ["a", "b"]}),
        )
        .await;
    assert_eq!(ack.topics, ["orders"]);
    let envelope = stream.envelope().await;
    assert_eq!(envelope.id, ack.id);
    assert_eq!(envelope.topic.as_deref(), Some("orders"));
    assert_eq!(envelope.kind, "order.created");
    assert_eq!(envelope.data, json!({"order": 42, "items": ["a", "b"]}));
    assert!(
        humantime::parse_rfc3339(&envelope.time).is_ok(),
        "time {} is RFC 3339",
        envelope.time
    );
    assert_eq!(stream.last_event_id(), ack.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_defaults_to_message_and_data_to_null() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=t").await;
    stream.connected().await;
    let response = server
        .post_json("/api/publish", &json!({"topic": "t"}))
        .await;
    assert_eq!(response.status(), 200);
    let envelope = stream.envelope().await;
    assert_eq!(envelope.kind, "message");
    assert_eq!(envelope.data, serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_receives_each_of_its_topics_and_no_other() {
    let server = TestServer::start().await;
    let mut both = server.subscribe("topic=rooms%2F1&topic=rooms%2F2").await;
    let mut one = server.subscribe("topic=rooms%2F1").await;
    assert_eq!(both.connected().await.topics, ["rooms/1", "rooms/2"]);
    one.connected().await;

    server.publish("rooms/2", "message", json!(1)).await;
    server.publish("elsewhere", "message", json!(2)).await;
    server.publish("rooms/1", "message", json!(3)).await;

    assert_eq!(both.envelope().await.data, json!(1));
    let third = both.envelope().await;
    assert_eq!(
        (third.topic.as_deref(), third.data),
        (Some("rooms/1"), json!(3))
    );
    assert_eq!(
        one.envelope().await.data,
        json!(3),
        "events of other topics are not delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_several_topics_arrives_once_per_connection() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=a&topic=b").await;
    stream.connected().await;
    let response = server
        .post_json(
            "/api/publish",
            &json!({"topics": ["b", "a"], "data": "twice?"}),
        )
        .await;
    let ack: herald_protocol::api::PublishResponse = response.json().await.unwrap();
    assert_eq!(ack.topics, ["b", "a"]);
    server.publish("a", "message", json!("after")).await;

    let first = stream.envelope().await;
    assert_eq!(
        (first.id.as_str(), first.topic.as_deref()),
        (ack.id.as_str(), Some("b"))
    );
    assert_eq!(
        stream.envelope().await.data,
        json!("after"),
        "no duplicate of the two-topic event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_get_heartbeats() {
    let server =
        TestServer::start_with(|config| config.heartbeat = Duration::from_millis(100)).await;
    let mut stream = server.subscribe("topic=quiet").await;
    stream.connected().await;
    for _ in 0..3 {
        assert_eq!(
            stream.next_item().await,
            Some(Item::Comment("heartbeat".into()))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_empty_after_all_clients_leave() {
    let server = TestServer::start().await;
    let streams = server.connected_streams(&["a", "b", "c"]).await;
    let (_, clients) = server.get_json("/api/clients").await;
    assert_eq!(clients.as_array().unwrap().len(), 3);
    assert_eq!(server.metric("herald_connections").await, 3.0);

    drop(streams);
    eventually("every connection is released", || async {
        server.get_json("/api/clients").await.1 == json!([])
            && server.metric("herald_connections").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_at_its_maximum_lifetime() {
    let server = TestServer::start_with(|config| {
        config.max_connection_lifetime = Duration::from_millis(300)
    })
    .await;
    let mut stream = server.subscribe("topic=a").await;
    stream.connected().await;
    let closing = stream.closing().await;
    assert_eq!(
        closing.reason,
        herald_protocol::system::CloseReason::MaxLifetime
    );
    assert!(closing.reconnect);
    stream.assert_ends().await;
    eventually("the connection is released", || async {
        server.metric("herald_connections").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_connection_starts_at_an_id_it_can_resume_from() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=a").await;
    stream.connected().await;
    let start = stream.last_event_id().to_owned();
    assert!(
        !start.is_empty(),
        "herald.connected carries the starting position"
    );
    drop(stream);

    // Published while the client was away, before it ever received an event.
    let missed = server.publish("a", "message", json!("missed")).await;
    let mut again = server.subscribe_after("topic=a", Some(&start)).await;
    again.connected().await;
    assert_eq!(again.envelope().await.id, missed.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_move_a_quiet_subscribers_position_past_other_topics_events() {
    let server =
        TestServer::start_with(|config| config.heartbeat = Duration::from_millis(100)).await;
    let mut quiet = server.subscribe("topic=quiet").await;
    quiet.connected().await;
    let elsewhere = server
        .publish("busy", "message", json!("not for quiet"))
        .await;

    let mut heartbeats = 0;
    while quiet.last_event_id() != elsewhere.id {
        assert_eq!(
            quiet.next_item().await,
            Some(Item::Comment("heartbeat".into()))
        );
        heartbeats += 1;
        assert!(
            heartbeats <= 3,
            "the position did not move with the heartbeats"
        );
    }
    let position = quiet.last_event_id().to_owned();
    drop(quiet);
    let next = server.publish("quiet", "message", json!("for quiet")).await;
    let mut resumed = server.subscribe_after("topic=quiet", Some(&position)).await;
    resumed.connected().await;
    assert_eq!(
        resumed.envelope().await.id,
        next.id,
        "resumes with the next event, no reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_all_types_every_event_comes_as_a_message_naming_its_type_in_the_envelope() {
    let server = TestServer::start().await;
    let before = server.publish("orders", "order.created", json!(1)).await;
    let replayed = server.publish("orders", "order.paid", json!(2)).await;
    let mut stream = server
        .subscribe_after("topic=orders&all_types=true", Some(&before.id))
        .await;
    let connected = stream.expect(herald_protocol::system::CONNECTED).await;
    assert!(
        !connected.data.is_empty(),
        "Herald's own events keep their names"
    );
    let event = stream.next_event().await;
    assert_eq!(event.event, "message", "a replayed event has no event line");
    let envelope: herald_protocol::Envelope = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        (envelope.id.as_str(), envelope.kind.as_str()),
        (replayed.id.as_str(), "order.paid")
    );
    let mut plain = server.subscribe("topic=orders").await;
    plain.connected().await;
    let live = server.publish("orders", "order.shipped", json!(3)).await;
    let event = stream.next_event().await;
    assert_eq!(
        (event.id.as_str(), event.event.as_str()),
        (live.id.as_str(), "message")
    );
    let named = plain.next_event().await;
    assert_eq!(
        named.event, "order.shipped",
        "other subscribers still get the type"
    );
    let refused = server
        .http
        .get(server.url("/events?topic=orders&all_types=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}
