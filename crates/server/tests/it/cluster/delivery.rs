//! Events published on any node reach every node's subscribers once and in order; clients resume on
//! any node; the client list, user streams, the inbox and history span the cluster; nginx in front
//! streams unbuffered, over HTTP/1.1 and over HTTPS with HTTP/2.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use herald_protocol::api::{ClientInfo, PublishResponse};
use herald_protocol::payloads::{Notification, NotificationRead};
use herald_protocol::system::{CloseReason, Reset, ResetReason};
use serde_json::{Value, json};

use super::{nodes, receive_exactly, seq};
use crate::support::services::{Nginx, RedisServer};
use crate::support::tls::trusting;
use crate::support::tokens::{bearer, operator_token};
use crate::support::{
    SseStream, TestServer, client_with_token, eventually, herald_refuses, operator_client, token,
};

#[tokio::test]
async fn three_nodes_deliver_every_event_to_every_subscriber_exactly_once_in_order() {
    let redis = RedisServer::start().await;
    let nodes = nodes(&redis, 3, |_| {}).await;
    let queries = [
        ("topic=orders", vec!["orders"]),
        ("topic=chat", vec!["chat"]),
        ("topic=orders&topic=chat", vec!["orders", "chat"]),
    ];
    let mut subscribers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for (query, topics) in &queries {
            let mut stream = node.subscribe(query).await;
            stream.connected().await;
            subscribers.push((format!("node {n} {query}"), topics.clone(), stream));
        }
    }

    // A publisher on each node, all at once, alternating topics.
    const PER_NODE: usize = 80;
    let published = join_all(nodes.iter().enumerate().map(|(n, node)| async move {
        let mut acks = Vec::new();
        for i in 0..PER_NODE {
            let topic = if i % 2 == 0 { "orders" } else { "chat" };
            let ack = node
                .publish(topic, "tick", json!({"node": n, "i": i}))
                .await;
            acks.push((topic, ack.id));
        }
        acks
    }))
    .await;
    let mut by_topic: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (topic, id) in published.into_iter().flatten() {
        by_topic.entry(topic).or_default().push(seq(&id));
    }

    for (who, topics, stream) in &mut subscribers {
        let mut expected: Vec<u64> = topics
            .iter()
            .flat_map(|topic| by_topic[topic].iter().copied())
            .collect();
        expected.sort_unstable();
        let expected: Vec<String> = expected.iter().map(u64::to_string).collect();
        assert_eq!(expected.len(), PER_NODE * 3 * topics.len() / 2);
        receive_exactly(stream, &expected, who).await;
    }
    // Nothing else came in between: the next events are the ones published now.
    let orders = nodes[1].publish("orders", "marker", Value::Null).await.id;
    let chat = nodes[2].publish("chat", "marker", Value::Null).await.id;
    for (who, topics, stream) in &mut subscribers {
        let markers: Vec<String> = [("orders", &orders), ("chat", &chat)]
            .into_iter()
            .filter(|(topic, _)| topics.contains(topic))
            .map(|(_, id)| id.clone())
            .collect();
        receive_exactly(stream, &markers, &format!("{who}, no duplicate")).await;
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_with_its_last_event_id() {
    let redis = RedisServer::start().await;
    let nodes = nodes(&redis, 3, |_| {}).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    let mut on_a = a.subscribe("topic=news").await;
    let client_id = on_a.connected().await.client_id;
    for i in 0..3 {
        let ack = a.publish("news", "story", json!(i)).await;
        assert_eq!(on_a.envelope().await.id, ack.id);
    }
    let last_seen = on_a.last_event_id().to_owned();
    drop(on_a);

    // Missed while away: topic events from another node, and a message to the client itself.
    let mut missed = Vec::new();
    for i in 3..7 {
        missed.push(c.publish("news", "story", json!(i)).await.id);
    }
    let direct = c
        .post_json(
            &format!("/api/clients/{client_id}/events"),
            &json!({"type": "direct", "data": "for you"}),
        )
        .await;
    assert_eq!(
        direct.status(),
        200,
        "a client id issued by node A is known on C"
    );
    let direct: Value = direct.json().await.unwrap();
    missed.push(direct["id"].as_str().unwrap().to_owned());

    let mut on_b = b
        .subscribe_after(
            &format!("topic=news&client_id={client_id}"),
            Some(&last_seen),
        )
        .await;
    assert_eq!(
        on_b.connected().await.client_id,
        client_id,
        "same client on node B"
    );
    receive_exactly(&mut on_b, &missed, "resumed on B").await;
    let live = a.publish("news", "story", json!("live")).await;
    assert_eq!(
        on_b.envelope().await.id,
        live.id,
        "then live, from any node"
    );
}

#[tokio::test]
async fn a_long_replay_over_many_topics_arrives_whole_and_in_order() {
    let redis = RedisServer::start().await;
    let nodes = nodes(&redis, 2, |_| {}).await;
    let topics = ["t0", "t1", "t2", "t3", "t4", "t5"];
    let query = topics.map(|topic| format!("topic={topic}")).join("&");
    let mut first = nodes[0].subscribe(&query).await;
    first.connected().await;
    let start = first.last_event_id().to_owned();
    drop(first);
    // Uneven: one busy topic, others quiet, so pages end at different places in each stream.
    let mut ids = Vec::new();
    for i in 0..700usize {
        let topic = if i % 7 < 2 { topics[i % 6] } else { "t0" };
        ids.push(nodes[0].publish(topic, "n", json!(i)).await.id);
    }
    let mut replay = nodes[1].subscribe_after(&query, Some(&start)).await;
    replay.connected().await;
    receive_exactly(&mut replay, &ids, "replay on the other node").await;
}

#[tokio::test]
async fn the_client_list_and_closing_a_client_span_the_cluster() {
    let redis = RedisServer::start().await;
    let nodes = nodes(&redis, 2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_b = b.subscribe("topic=x").await;
    let client_id = on_b.connected().await.client_id;

    let listed = || async {
        let (status, body) = a.get_json("/api/clients").await;
        assert_eq!(status, 200);
        serde_json::from_value::<Vec<ClientInfo>>(body).unwrap()
    };
    eventually("node A lists the client connected to B", || async {
        listed()
            .await
            .iter()
            .any(|info| info.client_id == client_id && info.node.is_some())
    })
    .await;

    let close = || async {
        let url = a.url(&format!("/api/clients/{client_id}"));
        a.http.delete(url).send().await.unwrap().status()
    };
    assert_eq!(close().await, 204, "closed from the other node");
    let closing = on_b.closing().await;
    assert_eq!(closing.reason, CloseReason::AdminClose);
    assert!(!closing.reconnect);

    eventually("the client is gone from the list", || async {
        !listed()
            .await
            .iter()
            .any(|info| info.client_id == client_id)
    })
    .await;
    assert_eq!(close().await, 404, "no live connection anywhere");
}

#[tokio::test]
async fn user_streams_and_the_inbox_work_across_nodes() {
    let redis = RedisServer::start().await;
    let nodes = nodes(&redis, 3, |_| {}).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let alice = client_with_token(&token("alice", &[], &[], false));
    let mut tab_a = a.connected_as(&alice, "topic=home").await;
    let mut tab_b = b.connected_as(&alice, "topic=home").await;

    let sent = c
        .post_json(
            "/api/users/alice/events",
            &json!({"type": "hello", "data": 1}),
        )
        .await;
    assert_eq!(sent.status(), 200);
    let sent: Value = sent.json().await.unwrap();
    let id = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(tab_a.envelope().await.id, id);
    assert_eq!(tab_b.envelope().await.id, id);

    let stored = c
        .post_json(
            "/api/users/alice/notifications",
            &json!({"title": "Order shipped", "body": "#42"}),
        )
        .await;
    assert_eq!(stored.status(), 200);
    let stored: Notification = stored.json().await.unwrap();
    for tab in [&mut tab_a, &mut tab_b] {
        let pushed: Notification = serde_json::from_value(tab.envelope().await.data).unwrap();
        assert_eq!(pushed, stored);
    }
    let page: Value = alice
        .get(b.url("/api/notifications"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["unread_count"], 1,
        "node B reads the inbox node C wrote"
    );
    let read = alice
        .post(a.url(&format!("/api/notifications/{}/read", stored.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    for tab in [&mut tab_a, &mut tab_b] {
        let envelope = tab.envelope().await;
        assert_eq!(envelope.kind, "notification.read");
        let change: NotificationRead = serde_json::from_value(envelope.data).unwrap();
        assert_eq!(
            (change.ids, change.unread_count),
            (vec![stored.id.clone()], 0)
        );
    }
}

#[tokio::test]
async fn history_in_redis_is_kept_by_length_and_by_age() {
    let redis = RedisServer::start().await;
    let by_length = TestServer::start_node(&redis.url(), |config| {
        config.history_max_events = 3;
    })
    .await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(by_length.publish("kept", "n", json!(i)).await.id);
        }
        ids
    };
    let mut within = by_length.subscribe_after("topic=kept", Some(&ids[2])).await;
    within.connected().await;
    receive_exactly(&mut within, &ids[3..], "replay within the kept length").await;
    let mut beyond = by_length.subscribe_after("topic=kept", Some(&ids[1])).await;
    beyond.connected().await;
    let reset = beyond.expect("herald.reset").await;
    let reset: Reset = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(reset.reason, ResetReason::HistoryExpired);

    let by_age = TestServer::start_node(&redis.url(), |config| {
        config.redis_prefix = "aged:".into();
        config.history_max_age = Duration::from_secs(1);
        config.retention_interval = Duration::from_millis(100);
    })
    .await;
    let old = by_age.publish("aging", "n", json!("old")).await;
    let before_old = (seq(&old.id) - 1).to_string();
    eventually(
        "the event ages out and a replay from before it is a reset",
        || async {
            let mut stream = by_age
                .subscribe_after("topic=aging", Some(&before_old))
                .await;
            stream.connected().await;
            stream.next_event().await.event == "herald.reset"
        },
    )
    .await;
    // The topic, forgotten once empty, comes back with a new event and still knows what it lost.
    let new = by_age.publish("aging", "n", json!("new")).await;
    let mut stream = by_age
        .subscribe_after("topic=aging", Some(&before_old))
        .await;
    stream.connected().await;
    stream.expect("herald.reset").await;
    let mut recent = by_age.subscribe_after("topic=aging", Some(&old.id)).await;
    recent.connected().await;
    assert_eq!(
        recent.envelope().await.id,
        new.id,
        "nothing after `old` was lost"
    );
}

/// Two nodes on one Redis, and nginx in front of them as `docs/deploy/nginx.conf` says.
async fn nginx_in_front_of_two_nodes() -> (RedisServer, Vec<TestServer>, Nginx) {
    let redis = RedisServer::start().await;
    let nodes = nodes(&redis, 2, |_| {}).await;
    let upstreams: Vec<String> = nodes
        .iter()
        .map(|node| node.base.trim_start_matches("http://").to_owned())
        .collect();
    let upstreams: Vec<&str> = upstreams.iter().map(String::as_str).collect();
    let nginx = Nginx::start(&upstreams).await;
    (redis, nodes, nginx)
}

/// Publishes a `tick` with data `i` to `topic` at `url` (through nginx) and returns the
/// acknowledgement.
async fn publish_tick(http: &reqwest::Client, url: &str, topic: &str, i: u32) -> PublishResponse {
    http.post(url)
        .json(&json!({"topic": topic, "type": "tick", "data": i}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn nginx_in_front_of_two_nodes_streams_every_event_as_it_happens() {
    let (_redis, _nodes, nginx) = nginx_in_front_of_two_nodes().await;
    let http = operator_client();

    let response = http
        .get(nginx.url("/events?topic=live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = SseStream::new(response);
    stream.connected().await;
    // Each event must arrive before the next is published: a buffering proxy would hold these
    // few bytes back.
    for i in 0..6 {
        let ack = publish_tick(&http, &nginx.url("/api/publish"), "live", i).await;
        let envelope = stream.envelope().await;
        assert_eq!((envelope.id, envelope.data), (ack.id, json!(i)));
    }
}

#[tokio::test]
async fn cluster_settings_are_checked_at_start() {
    let both = herald_refuses(&["--redis", "redis://127.0.0.1:1", "--storage", "memory"]).await;
    assert!(both.contains("--redis and --storage"), "{both}");
    let scheme = herald_refuses(&["--redis", "http://127.0.0.1:6379"]).await;
    assert!(scheme.contains("redis://"), "{scheme}");
}

#[tokio::test]
async fn nginx_with_https_and_http2_carries_ten_streams_on_one_client() {
    let (_redis, _nodes, nginx) = nginx_in_front_of_two_nodes().await;
    let https = trusting(
        &nginx.certificate.pem,
        std::net::SocketAddr::from(([127, 0, 0, 1], nginx.https_port)),
    )
    .default_headers(bearer(&operator_token()))
    .build()
    .unwrap();

    // Ten streams at once: over HTTP/1.1 a browser would hold six.
    let mut streams = Vec::new();
    for _ in 0..10 {
        let response = https
            .get(nginx.https_url("/events?topic=tabs"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let mut stream = SseStream::new(response);
        stream.connected().await;
        streams.push(stream);
    }
    for i in 0..3 {
        let ack = publish_tick(&https, &nginx.https_url("/api/publish"), "tabs", i).await;
        for stream in &mut streams {
            let envelope = stream.envelope().await;
            assert_eq!((&envelope.id, &envelope.data), (&ack.id, &json!(i)));
        }
    }
}
