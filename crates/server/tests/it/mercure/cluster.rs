//! The Mercure hub in cluster mode: an update published on one node reaches Mercure and Herald
//! subscribers on another, and a Mercure subscriber resumes on another node from a
//! publisher's id.

use crate::support::services::RedisServer;

use super::{publisher, subscribe, subscribe_with, topics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_their_ids_are_shared_by_every_node() {
    let redis = RedisServer::start().await;
    let nodes =
        crate::cluster::nodes(&redis, 2, |config| config.mercure.mercure_anonymous = true).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let book = "https://example.com/books/1";
    let mut template = subscribe(b, &topics(&["https://example.com/books/{id}"])).await;
    let mut herald = b.subscribe(&format!("topic={}", urlencode(book))).await;
    herald.connected().await;
    let form = |id: &'static str, data: &'static str| {
        reqwest::Client::new()
            .post(a.url("/.well-known/mercure"))
            .bearer_auth(publisher())
            .form(&[("topic", book), ("data", data), ("id", id)])
            .send()
    };
    let first = form("book-1-v1", "v1").await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "book-1-v1");
    let event = template.next_event().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        ("book-1-v1", "v1")
    );
    assert_eq!(herald.envelope().await.data, serde_json::json!("v1"));

    let second = form("book-1-v2", "v2").await.unwrap();
    assert_eq!(second.status(), 200);
    // A subscriber that saw v1 on node A resumes on node B from its id.
    let mut resumed = subscribe_with(
        reqwest::Client::new()
            .get(b.url(&format!("/.well-known/mercure?{}", topics(&[book]))))
            .header("Last-Event-ID", "book-1-v1"),
    )
    .await;
    assert_eq!(resumed.headers["last-event-id"], "book-1-v1");
    let event = resumed.next_event().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        ("book-1-v2", "v2")
    );
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriptions_api_lists_the_subscribers_of_every_node() {
    let redis = RedisServer::start().await;
    let nodes = crate::cluster::nodes(&redis, 2, |config| {
        config.mercure.mercure_anonymous = true;
        config.mercure.mercure_subscriptions = true;
    })
    .await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let _on_a = subscribe(a, &topics(&["https://example.com/books/{id}"])).await;
    let reader = super::token(&[], &["*"]);
    let url = b.url("/.well-known/mercure/subscriptions");
    crate::support::eventually("node B lists node A's subscriber", || async {
        let response = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        let document: serde_json::Value = response.json().await.unwrap();
        document["subscriptions"].as_array().is_some_and(|all| {
            all.iter()
                .any(|one| one["topic"] == "https://example.com/books/{id}")
        })
    })
    .await;
}
