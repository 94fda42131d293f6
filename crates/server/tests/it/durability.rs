//! The durable event log: nothing acknowledged is lost to a crash, ids survive restarts, history
//! is read in pages, and storage failures are answered with 503 without dropping subscribers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{
    HeraldProcess, SseStream, TestServer, eventually, fresh_data_dir, herald_refuses,
};
use herald_protocol::api::PublishResponse;
use herald_protocol::sse::Item;
use serde_json::{Value, json};

async fn subscribe(
    http: &reqwest::Client,
    base: &str,
    query: &str,
    last_event_id: Option<&str>,
) -> SseStream {
    let mut request = http.get(format!("{base}/events?{query}"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.expect("subscribe");
    assert_eq!(response.status(), 200);
    SseStream::new(response)
}

async fn publish(http: &reqwest::Client, base: &str, body: &Value) -> Option<PublishResponse> {
    let response = http
        .post(format!("{base}/api/publish"))
        .json(body)
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    response.json().await.ok()
}

/// An acknowledged publish: its id, its publisher and that publisher's count.
type Ack = (u64, usize, u64);

const PUBLISHERS: usize = 8;

/// `PUBLISHERS` publishers race on topic `crash` until at least `acks` publishes are
/// acknowledged, then the server is killed with SIGKILL; returns what was acknowledged.
async fn publish_until_crash(
    herald: HeraldProcess,
    http: &reqwest::Client,
    acks: usize,
) -> Vec<Ack> {
    let acked: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        let (http, base, acked) = (http.clone(), herald.base.clone(), Arc::clone(&acked));
        publishers.push(tokio::spawn(async move {
            for n in 0u64.. {
                let body = json!({"topic": "crash", "data": {"publisher": publisher, "n": n}});
                let Some(ack) = publish(&http, &base, &body).await else {
                    return;
                };
                acked
                    .lock()
                    .unwrap()
                    .push((ack.id.parse().unwrap(), publisher, n));
            }
        }));
    }
    let herald_pid = herald.pid();
    eventually("the publishers are acknowledged enough times", || async {
        assert!(
            !publishers.iter().all(|p| p.is_finished()),
            "every publisher stopped before the crash"
        );
        acked.lock().unwrap().len() >= acks
    })
    .await;
    herald.crash().await;
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= acks,
        "publishers were acknowledged before the crash"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{herald_pid}")).exists(),
        "the first process is gone"
    );
    acked
}

/// The event of an envelope, as its publisher numbered it.
fn ack_of(envelope: &herald_protocol::Envelope) -> Ack {
    let publisher = usize::try_from(envelope.data["publisher"].as_u64().unwrap()).unwrap();
    (
        envelope.id.parse().unwrap(),
        publisher,
        envelope.data["n"].as_u64().unwrap(),
    )
}

/// Every acknowledged event arrives once, with its data; ids strictly increase, and each
/// publisher's events come in the order it sent them.
#[track_caller]
fn assert_exactly_once_in_order(received: &[Ack], acked: &[Ack]) {
    assert!(
        received.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "ids strictly increase: no duplicate, in order"
    );
    for publisher in 0..PUBLISHERS {
        let sequence: Vec<u64> = received
            .iter()
            .filter(|(_, p, _)| *p == publisher)
            .map(|(.., n)| *n)
            .collect();
        assert!(
            sequence.windows(2).all(|pair| pair[0] < pair[1]),
            "publisher {publisher}'s events in order"
        );
    }
    for (id, publisher, n) in acked {
        assert!(
            received.contains(&(*id, *publisher, *n)),
            "acknowledged event {id} delivered with its data"
        );
    }
}

/// Eight publishers race while the server is killed with SIGKILL; after a restart on the same
/// data directory, a client resuming from before the run receives every acknowledged event
/// exactly once, in order, and new ids continue above the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_crash_exactly_once_and_in_order() {
    let data_dir = fresh_data_dir();
    let http = crate::support::operator_client();
    // History large enough to hold the whole run, so only the crash is under test.
    let args = ["--history-max-events", "1000000"];
    let herald = HeraldProcess::start(&data_dir, &args).await;
    let mut probe = subscribe(&http, &herald.base, "topic=crash", None).await;
    probe.connected().await;
    let start = probe.last_event_id().to_owned();
    drop(probe);
    let acked = publish_until_crash(herald, &http, 1500).await;

    let herald = HeraldProcess::start(&data_dir, &args).await;
    let mut resumed = subscribe(&http, &herald.base, "topic=crash", Some(&start)).await;
    resumed.connected().await;
    let mut missing: HashSet<u64> = acked.iter().map(|(id, ..)| *id).collect();
    let mut received: Vec<Ack> = Vec::new();
    while !missing.is_empty() {
        let event = ack_of(&resumed.envelope().await);
        missing.remove(&event.0);
        received.push(event);
    }
    let marker = publish(
        &http,
        &herald.base,
        &json!({"topic": "crash", "data": "after restart"}),
    )
    .await
    .unwrap();
    let marker_id: u64 = marker.id.parse().unwrap();
    loop {
        let envelope = resumed.envelope().await;
        if envelope.id == marker.id {
            break;
        }
        // Published and committed just before the crash, but never acknowledged: allowed once.
        received.push(ack_of(&envelope));
    }
    assert_exactly_once_in_order(&received, &acked);
    let newest_before = received.iter().map(|(id, ..)| *id).max().unwrap();
    assert!(
        marker_id > newest_before,
        "ids keep increasing after the restart"
    );
    drop(herald);
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_client_ids_survive_a_restart() {
    let data_dir = fresh_data_dir();
    let http = crate::support::operator_client();
    let herald = HeraldProcess::start(&data_dir, &[]).await;
    let mut stream = subscribe(&http, &herald.base, "topic=a", None).await;
    let client_id = stream.connected().await.client_id;
    let start = stream.last_event_id().to_owned();
    drop(stream);
    let first = publish(&http, &herald.base, &json!({"topic": "a", "data": 1}))
        .await
        .unwrap();
    assert_eq!(herald.terminate().await.code(), Some(0));

    let herald = HeraldProcess::start(&data_dir, &[]).await;
    let query = format!("topic=a&client_id={client_id}");
    let mut stream = subscribe(&http, &herald.base, &query, Some(&start)).await;
    assert_eq!(
        stream.connected().await.client_id,
        client_id,
        "the client id is still valid"
    );
    let replayed = stream.envelope().await;
    assert_eq!(
        (replayed.id.as_str(), replayed.data),
        (first.id.as_str(), json!(1))
    );
    let response = http
        .post(herald.url(&format!("/api/clients/{client_id}/events")))
        .json(&json!({"data": "direct"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(stream.envelope().await.data, json!("direct"));
    drop(herald);
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_data_directory_stops_start_up_with_a_clear_message() {
    let base = fresh_data_dir();
    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let inside_file = file.join("data");
    let stderr = herald_refuses(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        inside_file.to_str().unwrap(),
    ])
    .await;
    assert!(
        stderr.contains("cannot create the data directory"),
        "{stderr}"
    );

    let occupied = base.join("occupied");
    std::fs::create_dir_all(occupied.join("herald.db")).unwrap();
    let stderr = herald_refuses(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        occupied.to_str().unwrap(),
    ])
    .await;
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    let _ = std::fs::remove_dir_all(base);
}

/// The database is capped far below what the publishes need: once it is full, publishes are
/// refused with 503 saying so, while the subscriber stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_refuses_publishes_with_503_and_subscribers_stay() {
    let server = TestServer::start_with(|config| {
        config.storage_max_bytes = 512 * 1024;
        config.history_max_events = 10;
        config.retention_interval = Duration::from_secs(3600);
        config.heartbeat = Duration::from_millis(200);
    })
    .await;
    let mut stream = server.subscribe("topic=big").await;
    stream.connected().await;

    let payload = "x".repeat(16 * 1024);
    let mut refused = None;
    for n in 0..200 {
        let response = server
            .post_json(
                "/api/publish",
                &json!({"topic": "big", "data": {"n": n, "pad": payload}}),
            )
            .await;
        if response.status() == 503 {
            refused = Some(response.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(response.status(), 200);
        assert_eq!(stream.envelope().await.data["n"], json!(n));
    }
    let refused = refused.expect("a 512 KiB database fills up");
    assert_eq!(refused["error"]["code"], "storage_unavailable");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("full"),
        "{refused}"
    );

    // Still connected: heartbeats keep coming and the registry lists the subscriber.
    assert_eq!(
        stream.next_item().await,
        Some(Item::Comment("heartbeat".into()))
    );
    assert_eq!(server.live_connections().await, 1);
}

/// A server holding a large history uses memory independent of it: replays read it page by page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_while_replaying_a_large_history() {
    const EVENTS: usize = 12_000;
    let data_dir = fresh_data_dir();
    let http = crate::support::operator_client();
    let herald = HeraldProcess::start(&data_dir, &["--history-max-events", "100000"]).await;
    let mut probe = subscribe(&http, &herald.base, "topic=big", None).await;
    probe.connected().await;
    let start = probe.last_event_id().to_owned();
    drop(probe);
    let payload = "y".repeat(4096);
    let publishers: Vec<_> = (0..8)
        .map(|publisher| {
            let (http, base, payload) = (http.clone(), herald.base.clone(), payload.clone());
            tokio::spawn(async move {
                for n in (publisher..EVENTS).step_by(8) {
                    let body = json!({"topic": "big", "data": {"n": n, "pad": payload}});
                    assert!(publish(&http, &base, &body).await.is_some());
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let history_kib = (EVENTS * payload.len() / 1024) as u64;
    let before = herald.rss_kib();

    let mut replay = subscribe(&http, &herald.base, "topic=big", Some(&start)).await;
    replay.connected().await;
    let mut peak = before;
    for n in 0..EVENTS {
        replay.envelope().await;
        if n % 500 == 0 {
            peak = peak.max(herald.rss_kib());
        }
    }
    let grew = peak.saturating_sub(before);
    println!(
        "history {history_kib} KiB; server RSS {before} KiB before the replay, grew by {grew} KiB at most"
    );
    assert!(
        grew < history_kib / 3,
        "replaying {history_kib} KiB of history grew the server by {grew} KiB"
    );
    drop(herald);
    let _ = std::fs::remove_dir_all(data_dir);
}
