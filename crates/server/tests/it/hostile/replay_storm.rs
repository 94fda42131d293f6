//! A reconnect storm of long replays: page reads queue for a place (in all and per address),
//! while readiness checks, live delivery and the replays of other addresses go on.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::future::join_all;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{SseStream, TestServer, eventually};

const HISTORY: usize = 2_000;
const STORM: usize = 300;

/// A subscriber from `from` resuming `topic` after `last_event_id`.
async fn resume_from(
    server: &TestServer,
    from: Ipv4Addr,
    topic: &str,
    last_event_id: &str,
) -> SseStream {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .build()
        .unwrap();
    let response = http
        .get(server.url(&format!("/events?topic={topic}")))
        .header("last-event-id", last_event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    SseStream::new(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_replays_queues_while_readiness_and_live_delivery_go_on() {
    let server = TestServer::start_with(|config| {
        config.history_max_events = HISTORY;
    })
    .await;
    let first = server.publish("history", "old", json!(0)).await.id;
    for batch in (1..HISTORY).collect::<Vec<_>>().chunks(50) {
        join_all(batch.iter().map(|i| {
            let text = format!("{i:0>100}");
            server.publish("history", "old", json!(text))
        }))
        .await;
    }

    // The storm: every client resumes from the start, from one address, none reading.
    let address = server.base.trim_start_matches("http://").to_owned();
    let request =
        format!("GET /events?topic=history HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {first}\r\n\r\n");
    let mut storm = Vec::new();
    for _ in 0..STORM {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        storm.push(stream);
    }
    eventually("replay reads queue", || async {
        server.metric("herald_replays_waiting").await > 0.0
    })
    .await;
    assert!(server.metric("herald_replays_in_flight").await <= 8.0);

    // Readiness reads the database, on a reader replays never take.
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    // Live delivery reads nothing from storage.
    let mut live = server.subscribe("topic=live").await;
    live.connected().await;
    server.publish("live", "now", json!("fresh")).await;
    assert_eq!(live.envelope().await.data, json!("fresh"));
    // Another address replays the whole history without waiting behind the storm's address.
    let mut other = resume_from(&server, Ipv4Addr::new(127, 0, 0, 2), "history", &first).await;
    other.connected().await;
    for _ in 1..HISTORY {
        assert_eq!(other.envelope().await.kind, "old");
    }
    assert!(
        server.metric("herald_replays_waiting").await > 0.0,
        "all of this while the storm was still queued"
    );
    drop(storm);
    eventually("every place is given back", || async {
        server.metric("herald_replays_in_flight").await == 0.0
            && server.metric("herald_replays_waiting").await == 0.0
    })
    .await;
}
