//! Redis and nodes fail and come back: publishes fail fast, nothing acknowledged is lost, no id is
//! issued twice, and every gap is announced.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use herald_protocol::Envelope;
use herald_protocol::api::PublishResponse;
use herald_protocol::sse::Item;
use herald_protocol::system::{CloseReason, Reset, ResetReason};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{node_process, nodes, seq};
use crate::support::services::RedisServer;
use crate::support::{SseStream, TIMEOUT, TestServer, operator_client};

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
