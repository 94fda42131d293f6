//! Presence: who receives a topic (`GET /api/topics/{topic}/presence`), counted over every
//! node, with the users shown only to those allowed to see the topic's private events; and the
//! live topics for administrators (`GET /api/topics`).

use serde_json::{Value, json};

use crate::support::services::RedisServer;
use crate::support::{SseStream, TestServer, client_with_token, eventually, token};

async fn presence(server: &TestServer, http: &reqwest::Client, topic: &str) -> (u16, Value) {
    let encoded: String = form_urlencoded::byte_serialize(topic.as_bytes()).collect();
    let response = http
        .get(server.url(&format!("/api/topics/{encoded}/presence")))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topics_audience_is_counted_by_connection_client_and_user() {
    let server = TestServer::start().await;
    let alice = client_with_token(&token("alice", &[], &["rooms/*"], false));
    let bob = client_with_token(&token("bob", &[], &[], false));
    let first = alice
        .get(server.url("/events?topic=rooms%2F1"))
        .send()
        .await
        .unwrap();
    let mut first_tab = SseStream::new(first);
    let client_id = first_tab.connected().await.client_id;
    let second_tab = server
        .connected_as(&alice, &format!("topic=rooms%2F1&client_id={client_id}"))
        .await;
    let _bob = server
        .connected_as(&bob, "topic=rooms%2F1&topic=rooms%2F2")
        .await;
    let _anonymous = server
        .connected_as(&reqwest::Client::new(), "topic=rooms%2F1")
        .await;

    let (status, seen) = presence(&server, &alice, "rooms/1").await;
    assert_eq!(status, 200);
    assert_eq!(
        seen,
        json!({
            "topic": "rooms/1", "connections": 4, "clients": 3,
            "users": [{"user": "alice", "connections": 2}, {"user": "bob", "connections": 1}],
        }),
        "two tabs of one client, one user"
    );
    let (status, counts) = presence(&server, &reqwest::Client::new(), "rooms/1").await;
    assert_eq!(status, 200);
    assert_eq!(
        counts,
        json!({"topic": "rooms/1", "connections": 4, "clients": 3}),
        "no users"
    );
    assert_eq!(
        presence(&server, &bob, "rooms/1").await.1.get("users"),
        None
    );

    drop(second_tab);
    eventually("the closed tab leaves", || async {
        presence(&server, &alice, "rooms/1").await.1["users"][0]
            == json!({"user": "alice", "connections": 1})
    })
    .await;
    let (_, nobody) = presence(&server, &alice, "rooms/9").await;
    assert_eq!(
        nobody,
        json!({"topic": "rooms/9", "connections": 0, "clients": 0, "users": []})
    );
    assert_eq!(presence(&server, &alice, "a\nb").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_topics_audience_is_for_those_who_may_subscribe_to_it() {
    let server =
        TestServer::start_with(|config| config.private_topics = vec!["secret/*".into()]).await;
    let member = client_with_token(&token("ada", &[], &["secret/*"], false));
    let _stream = server.connected_as(&member, "topic=secret%2Fplans").await;
    assert_eq!(
        presence(&server, &reqwest::Client::new(), "secret/plans")
            .await
            .0,
        401
    );
    let outsider = client_with_token(&token("eve", &[], &["public"], false));
    assert_eq!(presence(&server, &outsider, "secret/plans").await.0, 403);
    let (status, seen) = presence(&server, &member, "secret/plans").await;
    assert_eq!(status, 200);
    assert_eq!(seen["users"], json!([{"user": "ada", "connections": 1}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_list_the_live_topics() {
    let server = TestServer::start().await;
    let _a = server
        .connected_streams(&["rooms/1", "rooms/2", "news"])
        .await;
    let alice = client_with_token(&token("alice", &[], &[], false));
    let _b = server.connected_as(&alice, "topic=rooms%2F2").await;
    let topics: Value = server
        .http
        .get(server.url("/api/topics?prefix=rooms%2F"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        topics,
        json!([
            {"topic": "rooms/1", "connections": 1, "clients": 1, "users": 1},
            {"topic": "rooms/2", "connections": 2, "clients": 2, "users": 2},
        ])
    );
    let refused = alice.get(server.url("/api/topics")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_every_node_of_a_cluster() {
    let redis = RedisServer::start().await;
    let nodes = crate::cluster::nodes(&redis, 2, |_| {}).await;
    let alice = client_with_token(&token("alice", &[], &["*"], false));
    let bob = client_with_token(&token("bob", &[], &[], false));
    let _on_a = nodes[0].connected_as(&alice, "topic=lobby").await;
    let _on_b = nodes[1].connected_as(&bob, "topic=lobby").await;
    for node in &nodes {
        eventually("each node counts both", || async {
            presence(node, &alice, "lobby").await.1
                == json!({
                    "topic": "lobby", "connections": 2, "clients": 2,
                    "users": [{"user": "alice", "connections": 1}, {"user": "bob", "connections": 1}],
                })
        })
        .await;
    }
}

/// A `herald.presence` or the marker event, as the watcher reads them.
async fn next_change(stream: &mut SseStream) -> (String, Value) {
    let event = stream.next_event().await;
    (event.event, serde_json::from_str(&event.data).unwrap())
}

fn change(kind: &str, user: &str) -> impl Fn(&(String, Value)) -> bool {
    let (kind, user) = (kind.to_owned(), user.to_owned());
    move |(event, data): &(String, Value)| {
        event == "herald.presence" && data["user"] == user.as_str() && data.get(&kind).is_some()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_are_announced_once_per_user_and_not_for_a_reload() {
    // The grace period is twice the reconnection delay.
    let server =
        TestServer::start_with(|config| config.retry = std::time::Duration::from_millis(150)).await;
    let mut watcher = server
        .connected_as(&reqwest::Client::new(), "topic=lobby&presence=true")
        .await;
    let as_user = |user: &str| client_with_token(&token(user, &[], &[], false));
    let bob = as_user("bob");
    let first_tab = server.connected_as(&bob, "topic=lobby").await;
    let joined = next_change(&mut watcher).await;
    assert!(change("joined", "bob")(&joined), "{joined:?}");
    assert_eq!(joined.1["topic"], "lobby");
    assert!(joined.1["client_id"].is_string());
    let second_tab = server.connected_as(&bob, "topic=lobby").await;
    drop(first_tab);
    // The next is carol's arrival: bob's second tab and closed first tab changed nothing.
    let _carol = server.connected_as(&as_user("carol"), "topic=lobby").await;
    assert!(change("joined", "carol")(&next_change(&mut watcher).await));

    // Dave reloads: gone and back within the grace period, one arrival and no departure.
    let dave = as_user("dave");
    let before_reload = server.connected_as(&dave, "topic=lobby").await;
    assert!(change("joined", "dave")(&next_change(&mut watcher).await));
    drop(before_reload);
    let _after_reload = server.connected_as(&dave, "topic=lobby").await;
    drop(second_tab);
    // Bob's departure comes after the grace period; dave's, scheduled before it, never did.
    let left = next_change(&mut watcher).await;
    assert!(change("left", "bob")(&left), "{left:?}");
    assert!(left.1.get("joined").is_none());

    // A subscriber that did not ask, and the topic's events, are not disturbed.
    let mut quiet = server
        .connected_as(&reqwest::Client::new(), "topic=lobby")
        .await;
    let _erin = server.connected_as(&as_user("erin"), "topic=lobby").await;
    assert!(change("joined", "erin")(&next_change(&mut watcher).await));
    // Arrivals on a topic the watcher does not receive are not its business.
    let _elsewhere = server
        .connected_as(&as_user("mallory"), "topic=elsewhere")
        .await;
    let marker = server.publish("lobby", "note", json!("after erin")).await;
    assert_eq!(
        quiet.envelope().await.id,
        marker.id,
        "no presence for who did not ask"
    );
    let (event, data) = next_change(&mut watcher).await;
    assert_eq!(
        (event.as_str(), data["id"].as_str()),
        ("note", Some(marker.id.as_str())),
        "nothing of the other topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_reconnects_is_not_a_storm_of_presence_events() {
    let server =
        TestServer::start_with(|config| config.retry = std::time::Duration::from_millis(500)).await;
    let mut watcher = server
        .connected_as(
            &reqwest::Client::new(),
            "topic=lobby&presence=true&all_types=true",
        )
        .await;
    let frank = client_with_token(&token("frank", &[], &[], false));
    let mut connection = server.connected_as(&frank, "topic=lobby").await;
    for _ in 0..500 {
        // Gone, then back: as a client does when its connection drops.
        drop(connection);
        connection = server.connected_as(&frank, "topic=lobby").await;
    }
    let marker = server
        .publish("lobby", "note", json!("after the storm"))
        .await;
    let mut presence = 0;
    loop {
        let (event, data) = next_change(&mut watcher).await;
        if event == "herald.presence" {
            presence += 1;
            assert!(data.get("joined").is_some(), "{data}");
            continue;
        }
        assert_eq!(data["id"], marker.id.as_str());
        break;
    }
    assert_eq!(presence, 1, "one arrival for 501 connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topics_presence_events_are_paced_and_a_waiting_pair_cancels_out() {
    // Two a second after a burst of two; a grace period of 200 ms.
    let server = TestServer::start_with(|config| {
        config.retry = std::time::Duration::from_millis(100);
        config.presence.presence_rate = 2;
    })
    .await;
    let mut watcher = server
        .connected_as(&reqwest::Client::new(), "topic=lobby&presence=true")
        .await;
    let as_user = |user: &str| client_with_token(&token(user, &[], &[], false));
    let mut tabs = Vec::new();
    // The budget starts with u0's arrival, which comes after this: five announcements cannot
    // all be out sooner than 1.5 s from here (two at once, then one every half second). The
    // time is taken from before the arrivals rather than from the first announcement, whose
    // delivery waits for the first commit of a new database, which can take a while.
    let started = std::time::Instant::now();
    for user in ["u0", "u1", "u2", "u3"] {
        tabs.push(server.connected_as(&as_user(user), "topic=lobby").await);
    }
    // Brief comes and goes while its arrival still waits behind u2's and u3's: the departure,
    // due after the grace period, cancels it, and neither is announced.
    let brief = server.connected_as(&as_user("brief"), "topic=lobby").await;
    drop(brief);
    tabs.push(server.connected_as(&as_user("last"), "topic=lobby").await);

    let mut seen = Vec::new();
    loop {
        let (event, data) = next_change(&mut watcher).await;
        assert_eq!(event, "herald.presence");
        assert!(data.get("joined").is_some(), "{data}");
        let user = data["user"].as_str().unwrap().to_owned();
        seen.push(user.clone());
        if user == "last" {
            break;
        }
    }
    assert_eq!(
        seen,
        ["u0", "u1", "u2", "u3", "last"],
        "in order, brief never"
    );
    let spread = started.elapsed();
    assert!(
        spread >= std::time::Duration::from_millis(1_450),
        "paced: {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_are_announced_once_across_a_cluster() {
    let redis = RedisServer::start().await;
    let nodes = crate::cluster::nodes(&redis, 2, |config| {
        config.retry = std::time::Duration::from_millis(150);
    })
    .await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut watcher = a
        .connected_as(&reqwest::Client::new(), "topic=lobby&presence=true")
        .await;
    let as_user = |user: &str| client_with_token(&token(user, &[], &[], false));
    let alice = as_user("alice");
    let on_b = b.connected_as(&alice, "topic=lobby").await;
    let joined = next_change(&mut watcher).await;
    assert!(change("joined", "alice")(&joined), "{joined:?}");
    // A second tab on the other node, and the first closing: alice is still there.
    let on_a = a.connected_as(&alice, "topic=lobby").await;
    drop(on_b);
    let _bob = b.connected_as(&as_user("bob"), "topic=lobby").await;
    assert!(change("joined", "bob")(&next_change(&mut watcher).await));
    drop(on_a);
    let left = next_change(&mut watcher).await;
    assert!(change("left", "alice")(&left), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_a_node_that_died_leave_once_its_record_lapses() {
    let redis = RedisServer::start().await;
    let doomed = crate::cluster::node_process(&redis).await;
    let survivor = crate::support::TestServer::start_node(&redis.url(), |config| {
        config.retention_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let mut watcher = survivor
        .connected_as(&reqwest::Client::new(), "topic=lobby&presence=true")
        .await;
    let zed = client_with_token(&token("zed", &[], &[], false));
    let response = zed
        .get(doomed.url("/events?topic=lobby"))
        .send()
        .await
        .unwrap();
    let mut on_doomed = SseStream::new(response);
    on_doomed.connected().await;
    let joined = next_change(&mut watcher).await;
    assert!(change("joined", "zed")(&joined), "{joined:?}");

    // Killed: it withdraws nothing, and zed's connection on it is counted until its node
    // record lapses; then the survivor's retention pass says zed left, once.
    doomed.crash().await;
    let left = next_change(&mut watcher).await;
    assert!(change("left", "zed")(&left), "{left:?}");
    assert_eq!(left.1["client_id"], "", "no connection to name");
    let (status, counts) = presence(&survivor, &reqwest::Client::new(), "lobby").await;
    assert_eq!(status, 200);
    assert_eq!(
        counts,
        json!({"topic": "lobby", "connections": 1, "clients": 1}),
        "the watcher alone"
    );

    // Nothing more: the next is a marker.
    let marker = survivor.publish("lobby", "note", json!("marker")).await;
    let (event, data) = next_change(&mut watcher).await;
    assert_eq!(
        (event.as_str(), data["id"].as_str()),
        ("note", Some(marker.id.as_str()))
    );
}
