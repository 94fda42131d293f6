//! The Mercure hub at `/.well-known/mercure`, over real sockets: subscribing with topic
//! selectors, publishing forms, Mercure's framing and credentials, resuming from publishers'
//! ids, and one log shared with `/events`, on one node and across a cluster.

mod cluster;
mod dialects;
mod hub;
mod resume;
mod subscriptions;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{SseStream, TEST_SECRET, TIMEOUT, TestServer};

/// A token with the `mercure` claim and no `exp`, signed with `key`.
fn token_signed(key: &str, publish: &[&str], subscribe: &[&str], extra: Value) -> String {
    let mut claims = json!({"mercure": {"publish": publish, "subscribe": subscribe}});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// A Mercure token signed with the test servers' key.
fn token(publish: &[&str], subscribe: &[&str]) -> String {
    token_signed(TEST_SECRET, publish, subscribe, json!({}))
}

/// A publisher allowed every topic.
fn publisher() -> String {
    token(&["*"], &[])
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A hub that lets anonymous subscribers receive public updates.
async fn hub() -> TestServer {
    TestServer::start_with(|config| config.mercure.mercure_anonymous = true).await
}

/// The answer to a Mercure publish: status, content type and body.
struct Published {
    status: u16,
    content_type: String,
    body: String,
}

/// Publishes the form `fields` with `token` (none when `None`).
async fn publish_form(
    server: &TestServer,
    token: Option<&str>,
    fields: &[(&str, &str)],
) -> Published {
    let mut request = reqwest::Client::new()
        .post(server.url("/.well-known/mercure"))
        .form(fields);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    Published {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: response.text().await.unwrap(),
    }
}

/// Publishes `fields` as an allowed publisher; returns the update's id.
async fn publish(server: &TestServer, fields: &[(&str, &str)]) -> String {
    let published = publish_form(server, Some(&publisher()), fields).await;
    assert_eq!(published.status, 200, "{}", published.body);
    published.body
}

/// Opens `GET /.well-known/mercure?{query}` with `request`'s credential and headers; checks the
/// answer is an event stream.
async fn subscribe_with(request: reqwest::RequestBuilder) -> SseStream {
    let response = tokio::time::timeout(TIMEOUT, request.send())
        .await
        .expect("the headers arrive at once")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    SseStream::new(response)
}

/// An anonymous Mercure subscription.
async fn subscribe(server: &TestServer, query: &str) -> SseStream {
    subscribe_with(reqwest::Client::new().get(server.url(&format!("/.well-known/mercure?{query}"))))
        .await
}

/// The query selecting `topics`, each encoded.
fn topics(topics: &[&str]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(topics.iter().map(|topic| ("topic", *topic)))
        .finish()
}
