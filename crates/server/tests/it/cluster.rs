//! Cluster mode: several Herald nodes sharing a real `redis-server`. Events published on any node
//! reach subscribers on every node exactly once and in order; a client resumes on another node;
//! Redis and nodes fail and come back without losing an acknowledged event; nginx in front
//! streams unbuffered.


use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use herald_protocol::Envelope;
use herald_protocol::api::{ClientInfo, PublishResponse};
use herald_protocol::payloads::{Notification, NotificationRead};
use herald_protocol::sse::Item;
use herald_protocol::system::{CloseReason, Reset, ResetReason};
use serde_json::{Value, json};
use crate::support::services::{Nginx, RedisServer};
use crate::support::{HeraldProcess, SseStream, TIMEOUT, TestServer, client_with_token, fresh_data_dir, herald_refuses, operator_client, token, eventually};
use tokio::sync::{mpsc, watch};

/// `n` nodes on one Redis, each ready.
async fn nodes(
    redis: &RedisServer,
    n: usize,
    adjust: impl Fn(&mut herald_server::Config),
) -> Vec<TestServer> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(TestServer::start_node(&redis.url(), &adjust).await);
    }
    nodes
}

fn seq(id: &str) -> u64 {
    id.parse()
        .unwrap_or_else(|_| panic!("event id {id:?} is a number"))
}

/// Reads envelopes until every id of `expected` arrived; fails on an unexpected id, a duplicate
/// or an id out of order.
async fn receive_exactly(stream: &mut SseStream, expected: &[String], who: &str) {
    let mut last = 0;
    for want in expected {
        let envelope = stream.envelope().await;
        assert_eq!(&envelope.id, want, "{who}: the next event in log order");
        assert!(seq(&envelope.id) > last, "{who}: ids increase");
        last = seq(&envelope.id);
    }
}

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

/// Publishes to `nodes` in turn until told to stop, reporting each outcome: `Ok(id)` for an
/// acknowledged event, `Err(data)` for a refused one (which may or may not have been stored).
fn spawn_publisher(
    nodes: Vec<String>,
    topic: &'static str,
    stop: watch::Receiver<bool>,
) -> mpsc::UnboundedReceiver<(u64, Result<String, u16>, Duration)> {
    let (report, outcomes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let http = operator_client();
        // Paced, so an outage does not turn into a busy loop of refusals.
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        for n in 0u64.. {
            if *stop.borrow() {
                return;
            }
            pace.tick().await;
            let node = &nodes[usize::try_from(n).unwrap() % nodes.len()];
            let started = Instant::now();
            let outcome = match http
                .post(format!("{node}/api/publish"))
                .json(&json!({"topic": topic, "type": "n", "data": n}))
                .send()
                .await
            {
                Ok(response) if response.status() == 200 => {
                    Ok(response.json::<PublishResponse>().await.unwrap().id)
                }
                Ok(response) => Err(response.status().as_u16()),
                // The node itself is gone (killed): the publisher moves on to the next one.
                Err(_) => Err(0),
            };
            if report.send((n, outcome, started.elapsed())).is_err() {
                return;
            }
        }
    });
    outcomes
}

/// What a publisher reported so far.
#[derive(Default)]
struct Outcomes {
    acked: BTreeMap<u64, String>,
    refused: HashSet<u64>,
}

impl Outcomes {
    /// Takes reports until `done` holds.
    async fn until(
        &mut self,
        reports: &mut mpsc::UnboundedReceiver<(u64, Result<String, u16>, Duration)>,
        mut done: impl FnMut(&Self, Option<(u16, Duration)>) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + TIMEOUT * 3;
        loop {
            let (n, outcome, took) = tokio::time::timeout_at(deadline, reports.recv())
                .await
                .expect("the publisher makes progress")
                .unwrap();
            let refusal = match outcome {
                Ok(id) => {
                    self.acked.insert(n, id);
                    None
                }
                Err(status) => {
                    self.refused.insert(n);
                    Some((status, took))
                }
            };
            if done(self, refusal) {
                return;
            }
        }
    }
}

/// Reads a subscriber's events until it has every acknowledged one, checking that each arrives
/// once, in increasing id order, and that anything else is an event whose publish was refused
/// (Redis may have stored it just before failing).
#[track_caller]
fn check_delivery(received: &[Envelope], outcomes: &Outcomes, who: &str) {
    let mut seen = HashSet::new();
    let mut last = 0;
    for envelope in received {
        let n = envelope.data.as_u64().unwrap();
        assert!(seen.insert(n), "{who}: event {n} delivered twice");
        assert!(seq(&envelope.id) > last, "{who}: event {n} out of order");
        last = seq(&envelope.id);
        assert!(
            outcomes.acked.get(&n) == Some(&envelope.id) || outcomes.refused.contains(&n),
            "{who}: event {n} was never published"
        );
    }
    for (n, id) in &outcomes.acked {
        assert!(
            seen.contains(n),
            "{who}: acknowledged event {n} ({id}) never arrived"
        );
    }
}

/// Reads envelopes from `stream` until every acknowledged event arrived.
async fn collect(stream: &mut SseStream, outcomes: &Outcomes, received: &mut Vec<Envelope>) {
    let wanted: HashSet<&String> = outcomes.acked.values().collect();
    let mut got: HashSet<String> = received.iter().map(|e| e.id.clone()).collect();
    while !wanted.iter().all(|id| got.contains(*id)) {
        let envelope = stream.envelope().await;
        got.insert(envelope.id.clone());
        received.push(envelope);
    }
}

#[tokio::test]
async fn publishes_fail_fast_while_redis_is_down_and_nothing_is_lost_when_it_returns() {
    let mut redis = RedisServer::start().await;
    let nodes = nodes(&redis, 2, |config| {
        config.heartbeat = Duration::from_millis(200)
    })
    .await;
    let mut streams = Vec::new();
    for node in &nodes {
        let mut stream = node.subscribe("topic=steady").await;
        stream.connected().await;
        streams.push(stream);
    }
    let (stop, stopped) = watch::channel(false);
    let mut reports = spawn_publisher(
        nodes.iter().map(|node| node.base.clone()).collect(),
        "steady",
        stopped,
    );
    let mut outcomes = Outcomes::default();
    outcomes
        .until(&mut reports, |o, _| o.acked.len() >= 20)
        .await;

    redis.kill().await;
    // Every refusal is a 503 that came back within a second.
    let mut refusals = 0;
    outcomes
        .until(&mut reports, |_, refusal| {
            if let Some((status, took)) = refusal {
                assert_eq!(status, 503, "a publish while Redis is down");
                assert!(took < Duration::from_secs(1), "refused fast, took {took:?}");
                refusals += 1;
            }
            refusals >= 10
        })
        .await;
    for node in &nodes {
        let (status, body) = node.get_json("/readyz").await;
        assert_eq!(status, 503, "not ready without Redis: {body}");
    }
    let (status, body) = nodes[0]
        .post_raw(
            "/api/publish",
            Some("application/json"),
            r#"{"topic":"steady"}"#,
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    // Subscribers stay connected meanwhile: heartbeats keep coming.
    let mut received: Vec<Vec<Envelope>> = vec![Vec::new(); streams.len()];
    for (stream, received) in streams.iter_mut().zip(&mut received) {
        loop {
            match stream.next_item().await.expect("the stream stays open") {
                Item::Comment(_) => break,
                // Events acknowledged before Redis went away, still arriving.
                Item::Event(event) => received.push(serde_json::from_str(&event.data).unwrap()),
                Item::Retry(_) => {}
            }
        }
    }

    redis.restart().await;
    for node in &nodes {
        node.wait_ready().await;
    }
    let before = outcomes.acked.len();
    outcomes
        .until(&mut reports, |o, _| o.acked.len() >= before + 20)
        .await;
    stop.send(true).unwrap();
    drop(reports);

    for (n, (stream, received)) in streams.iter_mut().zip(&mut received).enumerate() {
        collect(stream, &outcomes, received).await;
        check_delivery(received, &outcomes, &format!("subscriber on node {n}"));
    }
}

#[tokio::test]
async fn when_redis_loses_its_data_subscribers_are_told_of_the_gap() {
    let mut redis = RedisServer::start().await;
    let node = TestServer::start_node(&redis.url(), |_| {}).await;
    let mut stream = node.subscribe("topic=fragile").await;
    let client_id = stream.connected().await.client_id;
    for i in 0..3 {
        let ack = node.publish("fragile", "n", json!(i)).await;
        assert_eq!(stream.envelope().await.id, ack.id);
    }
    let last_seen = stream.last_event_id().to_owned();

    redis.restart_empty().await;
    node.wait_ready().await;
    // The next event shows the node that its log moved on without it: the stream is closed so
    // the client finds out what it missed.
    node.publish("fragile", "n", json!("after the loss")).await;
    let closing = stream.closing().await;
    assert_eq!(closing.reason, CloseReason::Resync);
    assert!(closing.reconnect);
    assert_eq!(
        stream.last_event_id(),
        last_seen,
        "the closing frame does not move the client past what it missed"
    );

    // Its client id went with the data, so it comes back as a new client, and is told.
    let unknown = node
        .http
        .get(node.url(&format!("/events?topic=fragile&client_id={client_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400, "a client id Redis no longer knows");
    let mut again = node
        .subscribe_after("topic=fragile", Some(&last_seen))
        .await;
    again.connected().await;
    let reset: Reset = serde_json::from_str(&again.expect("herald.reset").await.data).unwrap();
    assert_eq!(reset.reason, ResetReason::HistoryExpired);
}

#[tokio::test]
async fn when_redis_comes_back_from_an_older_copy_no_id_is_issued_twice() {
    let mut redis = RedisServer::start().await;
    let node = TestServer::start_node(&redis.url(), |_| {}).await;
    let mut stream = node.subscribe("topic=rolled").await;
    stream.connected().await;
    node.publish("rolled", "n", json!("kept")).await;
    stream.envelope().await;
    let backup = redis.copy_data();
    let mut lost = Vec::new();
    for i in 0..3 {
        let ack = node.publish("rolled", "n", json!(i)).await;
        assert_eq!(stream.envelope().await.id, ack.id);
        lost.push(ack.id);
    }
    let last_seen = stream.last_event_id().to_owned();

    // Redis forgets the last three events and its counter goes back.
    redis.restart_from(&backup).await;
    node.wait_ready().await;
    let after = node.publish("rolled", "n", json!("after")).await;
    assert!(
        seq(&after.id) > seq(&last_seen),
        "a new event never takes the id of one a client already saw"
    );
    let closing = stream.closing().await;
    assert_eq!(closing.reason, CloseReason::Resync);
    assert_eq!(stream.last_event_id(), last_seen);
    let mut again = node.subscribe_after("topic=rolled", Some(&last_seen)).await;
    again.connected().await;
    let reset: Reset = serde_json::from_str(&again.expect("herald.reset").await.data).unwrap();
    assert_eq!(reset.reason, ResetReason::HistoryExpired);
}

/// A node running as its own process, ready to serve.
async fn node_process(redis: &RedisServer) -> HeraldProcess {
    let data_dir = fresh_data_dir();
    std::fs::create_dir_all(&data_dir).unwrap();
    let node = HeraldProcess::start(&data_dir, &["--redis", &redis.url()]).await;
    let http = reqwest::Client::new();
    eventually("the node is ready", || async {
        http.get(node.url("/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
    node
}

#[tokio::test]
async fn when_a_node_dies_its_clients_resume_on_another_without_a_gap() {
    let redis = RedisServer::start().await;
    let doomed = node_process(&redis).await;
    let survivor = node_process(&redis).await;
    let http = operator_client();
    let open = |url: String, client: Option<String>, last: Option<String>| {
        let http = http.clone();
        async move {
            let mut url = format!("{url}/events?topic=busy");
            if let Some(client) = client {
                url.push_str(&format!("&client_id={client}"));
            }
            let mut request = http.get(url);
            if let Some(last) = last {
                request = request.header("Last-Event-ID", last);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            SseStream::new(response)
        }
    };
    let mut stream = open(doomed.base.clone(), None, None).await;
    let client_id = stream.connected().await.client_id;

    let (stop, stopped) = watch::channel(false);
    let mut reports = spawn_publisher(
        vec![survivor.base.clone(), doomed.base.clone()],
        "busy",
        stopped,
    );
    let mut outcomes = Outcomes::default();
    let mut received = Vec::new();
    while received.len() < 15 {
        received.push(stream.envelope().await);
    }
    doomed.crash().await;
    // The stream breaks; what it delivered before is kept.
    while let Some(event) = stream.next_event_or_end().await {
        if event.event == "n" {
            received.push(serde_json::from_str(&event.data).unwrap());
        }
    }
    let last_seen = stream.last_event_id().to_owned();
    let mut resumed = open(
        survivor.base.clone(),
        Some(client_id.clone()),
        Some(last_seen),
    )
    .await;
    assert_eq!(resumed.connected().await.client_id, client_id);

    outcomes
        .until(&mut reports, |o, _| o.acked.len() >= 60)
        .await;
    stop.send(true).unwrap();
    // Reports still in flight are part of the record.
    while let Some((n, outcome, _)) = reports.recv().await {
        match outcome {
            Ok(id) => {
                outcomes.acked.insert(n, id);
            }
            Err(_) => {
                outcomes.refused.insert(n);
            }
        }
    }
    collect(&mut resumed, &outcomes, &mut received).await;
    check_delivery(&received, &outcomes, "client moved to the surviving node");
}

#[tokio::test]
async fn nginx_in_front_of_two_nodes_streams_every_event_as_it_happens() {
    let redis = RedisServer::start().await;
    let nodes = nodes(&redis, 2, |_| {}).await;
    let upstreams: Vec<String> = nodes
        .iter()
        .map(|node| node.base.trim_start_matches("http://").to_owned())
        .collect();
    let upstreams: Vec<&str> = upstreams.iter().map(String::as_str).collect();
    let nginx = Nginx::start(&upstreams).await;
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
        let ack: PublishResponse = http
            .post(nginx.url("/api/publish"))
            .json(&json!({"topic": "live", "type": "tick", "data": i}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
