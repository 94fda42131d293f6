//! One hub, two dialects: an update published through Mercure reaches `/events` subscribers of
//! its topic as an envelope, and an event published through Herald reaches Mercure subscribers.

use serde_json::json;

use super::{hub, publish, subscribe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mercure_updates_reach_herald_subscribers_as_envelopes() {
    let server = hub().await;
    let mut herald = server.subscribe("topic=books").await;
    herald.connected().await;
    publish(
        &server,
        &[
            ("topic", "books"),
            ("data", "{\"title\": \"Dune\"}"),
            ("type", "book.updated"),
        ],
    )
    .await;
    let typed = herald.envelope().await;
    assert_eq!(typed.kind, "book.updated");
    assert_eq!(typed.topic.as_deref(), Some("books"));
    assert_eq!(
        typed.data,
        json!("{\"title\": \"Dune\"}"),
        "the text, as a string"
    );
    publish(&server, &[("topic", "books"), ("data", "two\nlines")]).await;
    let untyped = herald.envelope().await;
    assert_eq!(untyped.kind, "message");
    assert_eq!(untyped.data, json!("two\nlines"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_events_reach_mercure_subscribers_as_json() {
    let server = hub().await;
    let mut mercure = subscribe(&server, "topic=books").await;
    let published = server
        .publish(
            "books",
            "book.created",
            json!({"title": "Dune", "pages": 412}),
        )
        .await;
    let event = mercure.next_event().await;
    assert_eq!(
        event.id, published.id,
        "Herald's id, which a Mercure client resumes from"
    );
    assert_eq!(event.event, "book.created");
    // The event's data as JSON text, as it was published.
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data, json!({"title": "Dune", "pages": 412}));
    // Events to a client, a user or everyone have no topic: they are Herald's alone, and the
    // next update is the one the Mercure subscriber gets.
    server
        .post_json("/api/broadcast", &json!({"type": "notice", "data": 1}))
        .await;
    let after = server.publish("books", "book.deleted", json!(null)).await;
    assert_eq!(mercure.next_event().await.id, after.id);
}
