//! Active subscriptions (`--mercure-subscriptions`): a private update when a subscription starts
//! and ends, and the JSON-LD subscriptions API.

use serde_json::{Value, json};

use super::{subscribe_with, token, token_signed, topics};
use crate::support::{SseStream, TEST_SECRET, TestServer};

const TEMPLATE: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

/// The next subscription update of `stream`, as its JSON-LD document.
async fn next_document(stream: &mut SseStream) -> Value {
    let event = stream.next_event().await;
    assert_eq!(event.event, "message", "subscription updates have no type");
    serde_json::from_str(&event.data).unwrap()
}

async fn get(server: &TestServer, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["content-type"], "application/ld+json");
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_announced_and_listed_as_they_come_and_go() {
    let server = TestServer::start_with(|config| {
        config.mercure.mercure_anonymous = true;
        config.mercure.mercure_subscriptions = true;
    })
    .await;
    let watcher_token = token(&[], &[TEMPLATE]);
    let mut watcher = subscribe_with(
        reqwest::Client::new()
            .get(server.url(&format!("/.well-known/mercure?{}", topics(&[TEMPLATE]))))
            .bearer_auth(&watcher_token),
    )
    .await;
    let own = next_document(&mut watcher).await;
    assert_eq!(own["topic"], TEMPLATE, "its own subscription comes first");

    let with_payload = token_signed(
        TEST_SECRET,
        &[],
        &[],
        json!({"mercure": {"subscribe": [], "payload": {"user": "alice"}}}),
    );
    let selectors = ["books", "https://example.com/{id}"];
    let subscriber = subscribe_with(
        reqwest::Client::new()
            .get(server.url(&format!("/.well-known/mercure?{}", topics(&selectors))))
            .bearer_auth(&with_payload),
    )
    .await;
    let mut started = Vec::new();
    for _ in &selectors {
        let document = next_document(&mut watcher).await;
        assert_eq!(document["@context"], "https://mercure.rocks/");
        assert_eq!(document["type"], "Subscription");
        assert_eq!(document["active"], true);
        assert_eq!(document["payload"], json!({"user": "alice"}));
        started.push(document);
    }
    let subscriber_id = started[0]["subscriber"].as_str().unwrap().to_owned();
    assert!(subscriber_id.starts_with("urn:uuid:"));
    let topics_started: Vec<&str> = started
        .iter()
        .map(|d| d["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics_started, selectors);
    let id = started[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        id,
        format!(
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bid%7D/{}",
            subscriber_id.replace(':', "%3A")
        )
    );

    let (status, all) = get(
        &server,
        "/.well-known/mercure/subscriptions",
        Some(&watcher_token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(all["type"], "Subscriptions");
    assert_eq!(all["id"], "/.well-known/mercure/subscriptions");
    assert!(all["lastEventID"].is_string());
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 3, "{all}");
    let one_topic = "/.well-known/mercure/subscriptions/books";
    let (status, books) = get(&server, one_topic, Some(&watcher_token)).await;
    assert_eq!(status, 200);
    let listed = books["subscriptions"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["subscriber"], subscriber_id.as_str());
    assert!(listed[0].get("@context").is_none());
    let (status, single) = get(&server, &id, Some(&watcher_token)).await;
    assert_eq!(status, 200);
    assert_eq!(single["@context"], "https://mercure.rocks/");
    assert_eq!(single["topic"], "https://example.com/{id}");
    assert_eq!(single["active"], true);
    assert!(single["lastEventID"].is_string());
    let missing = format!("{one_topic}/urn%3Auuid%3Anobody");
    assert_eq!(get(&server, &missing, Some(&watcher_token)).await.0, 404);
    assert_eq!(get(&server, one_topic, None).await.0, 401);
    let elsewhere = token(&[], &["https://example.com/{id}"]);
    assert_eq!(get(&server, one_topic, Some(&elsewhere)).await.0, 403);

    drop(subscriber);
    for topic in selectors {
        let ended = next_document(&mut watcher).await;
        assert_eq!(
            (ended["topic"].as_str(), ended["active"].as_bool()),
            (Some(topic), Some(false))
        );
    }
    let (_, after) = get(&server, one_topic, Some(&watcher_token)).await;
    assert_eq!(after["subscriptions"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_there_is_no_subscriptions_api() {
    let server = TestServer::start_with(|config| config.mercure.mercure_anonymous = true).await;
    let all = token(&[], &["*"]);
    assert_eq!(
        get(&server, "/.well-known/mercure/subscriptions", Some(&all))
            .await
            .0,
        404
    );
}
