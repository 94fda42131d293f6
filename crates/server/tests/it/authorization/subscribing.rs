//! Who receives what: private topics and events, user streams, and connections whose credential
//! expires.

use std::collections::HashSet;
use std::time::Duration;

use herald_protocol::auth::Grants;
use serde_json::{Value, json};

use crate::support::{TestServer, client_with_token, eventually, token, token_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_topics_need_a_subscribe_selector_and_bad_credentials_are_never_anonymous() {
    let server =
        TestServer::start_with(|config| config.private_topics = vec!["private/*".into()]).await;
    let anonymous = reqwest::Client::new();
    let status_of = |http: reqwest::Client, query: &'static str| {
        let url = server.url(&format!("/events?{query}"));
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_of(anonymous.clone(), "topic=public").await, 200);
    assert_eq!(status_of(anonymous.clone(), "topic=private/1").await, 401);
    let reader = client_with_token(&token("reader", &[], &["rooms/*"], false));
    assert_eq!(status_of(reader, "topic=private/1").await, 403);
    let allowed = client_with_token(&token("reader", &[], &["private/*"], false));
    assert_eq!(status_of(allowed, "topic=private/1").await, 200);
    let broken = client_with_token("not-a-token");
    assert_eq!(
        status_of(broken, "topic=public").await,
        401,
        "a bad credential is refused, not downgraded to anonymous"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_events_never_reach_connections_not_allowed_to_see_them() {
    const TOPICS: usize = 8;
    const PER_TOPIC: usize = 40;
    let server = TestServer::start().await;
    let topics: Vec<String> = (0..TOPICS).map(|n| format!("orders/{n}")).collect();
    let query: String = topics
        .iter()
        .map(|topic| format!("topic={topic}"))
        .collect::<Vec<_>>()
        .join("&");
    let open = |http: reqwest::Client| {
        let query = query.clone();
        let server = &server;
        async move { server.connected_as(&http, &query).await }
    };
    let mut anonymous = open(reqwest::Client::new()).await;
    let mut outsider = open(client_with_token(&token("eve", &[], &["rooms/*"], false))).await;
    let mut insider = open(client_with_token(&token("ops", &[], &["orders/*"], false))).await;

    // Concurrent publishers, one per topic, alternating private and public events.
    let publishers: Vec<_> = topics
        .iter()
        .map(|topic| {
            let (http, url, topic) = (
                server.http.clone(),
                server.url("/api/publish"),
                topic.clone(),
            );
            tokio::spawn(async move {
                for n in 0..PER_TOPIC {
                    let private = n % 2 == 0;
                    let body =
                        json!({"topic": topic, "private": private, "data": {"private": private}});
                    let response = http.post(&url).json(&body).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let public = TOPICS * PER_TOPIC / 2;
    for (who, stream, expected) in [
        ("anonymous", &mut anonymous, public),
        ("outsider", &mut outsider, public),
        ("insider", &mut insider, TOPICS * PER_TOPIC),
    ] {
        let mut seen = HashSet::new();
        while seen.len() < expected {
            let envelope = stream.envelope().await;
            if who != "insider" {
                assert_eq!(
                    envelope.data,
                    json!({"private": false}),
                    "{who} received a private event"
                );
            }
            assert!(seen.insert(envelope.id), "{who} received an event twice");
        }
    }
    // A marker published last proves the outsiders' streams held nothing private after it.
    server.publish("orders/0", "marker", json!("end")).await;
    for stream in [&mut anonymous, &mut outsider] {
        assert_eq!(stream.envelope().await.kind, "marker");
    }
    // Replay honours the same rule.
    let mut replay = server
        .connected_as(&reqwest::Client::new(), &format!("{query}&last_event_id=0"))
        .await;
    let first = replay.next_event().await;
    assert_eq!(
        first.event, "herald.reset",
        "id 0 predates the log: reset, not a gap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_holds_only_the_events_the_connection_may_see() {
    let server = TestServer::start().await;
    let first = server.publish("t", "public", json!(1)).await;
    let response = server
        .post_json(
            "/api/publish",
            &json!({"topic": "t", "type": "secret", "private": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    server.publish("t", "public", json!(2)).await;
    let after = first.id.clone();
    let mut stream = server
        .connected_as(
            &reqwest::Client::new(),
            &format!("topic=t&last_event_id={after}"),
        )
        .await;
    let replayed = stream.envelope().await;
    assert_eq!(
        (replayed.kind.as_str(), replayed.data),
        ("public", json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_events_reach_every_connection_of_that_user_only() {
    let server = TestServer::start().await;
    let alice = client_with_token(&token("alice", &[], &[], false));
    let bob = client_with_token(&token("bob", &[], &[], false));
    let mut laptop = server.connected_as(&alice, "").await;
    let mut phone = server.connected_as(&alice, "").await;
    let mut other = server.connected_as(&bob, "").await;
    let sent: Value = server
        .post_json(
            "/api/users/alice/events",
            &json!({"type": "order.shipped", "data": {"order": 7}}),
        )
        .await
        .json()
        .await
        .unwrap();
    for stream in [&mut laptop, &mut phone] {
        let envelope = stream.envelope().await;
        assert_eq!(envelope.id, sent["id"].as_str().unwrap());
        assert_eq!(envelope.kind, "order.shipped");
    }
    server
        .post_json("/api/users/bob/events", &json!({"type": "for.bob"}))
        .await;
    assert_eq!(
        other.envelope().await.kind,
        "for.bob",
        "bob got only his own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_when_its_credential_expires() {
    let server = TestServer::start().await;
    let credential = token_with("brief", Grants::default(), Duration::from_secs(2));
    let mut stream = server
        .connected_as(&client_with_token(&credential), "topic=a")
        .await;
    let closing = stream.closing().await;
    assert_eq!(closing.reason.as_str(), "credential_expired");
    assert!(!closing.reconnect, "the same credential would be refused");
    stream.assert_ends().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_user_are_limited() {
    let server = TestServer::start_with(|config| config.max_connections_per_user = 2).await;
    let alice = client_with_token(&token("alice", &[], &[], false));
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = alice.get(server.url("/events")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let third = alice.get(server.url("/events")).send().await.unwrap();
    assert_eq!(third.status(), 429);
    let body: Value = third.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("user"));
    // Another user is not affected.
    let bob = client_with_token(&token("bob", &[], &[], false));
    let other = bob.get(server.url("/events")).send().await.unwrap();
    assert_eq!(other.status(), 200);
    drop(held);
    eventually("the connections are released", || async {
        alice
            .get(server.url("/events"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
}

/// Behind a proxy every connection comes from the proxy's address: streams are counted by the
/// forwarded address instead (connections from one address are limited at accept, see
/// `hostile::connection_limits`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_streams_are_limited_per_forwarded_address() {
    let server = TestServer::start_with(|config| {
        config.trust_forwarded_for = true;
        config.max_connections_per_address = 2;
    })
    .await;
    let http = reqwest::Client::new();
    let from = |address: &'static str| {
        http.get(server.url("/events"))
            .header("x-forwarded-for", format!("198.51.100.1, {address}"))
            .send()
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = from("203.0.113.7").await.unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let third = from("203.0.113.7").await.unwrap();
    assert_eq!(third.status(), 429);
    let body: Value = third.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("address")
    );
    // Another forwarded address, though through the same proxy connection address, is not.
    assert_eq!(from("203.0.113.8").await.unwrap().status(), 200);
    drop(held);
}
