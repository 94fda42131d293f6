//! A flood of new client ids: `HEAD` issues none, `GET` without a client id is rate limited per
//! address, and the stored ids are capped, the oldest idle forgotten first, while a known
//! client keeps resuming with its id.

use std::time::{Duration, Instant};

use herald_server::storage::Storage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestServer, eventually};

/// The server's address as `host:port`.
fn address(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests_issue_no_client_id() {
    let (server, storage) = TestServer::start_instrumented().await;
    const REQUESTS: usize = 500;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let pipelined = "HEAD /events?topic=a HTTP/1.1\r\nHost: herald\r\n\r\n".repeat(REQUESTS);
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    let mut answers = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    while answers.matches("HTTP/1.1 ").count() < REQUESTS {
        let read = tokio::time::timeout(crate::support::TIMEOUT, stream.read(&mut buf))
            .await
            .expect("answers in time")
            .unwrap();
        assert!(read > 0, "the connection closed after {answers}");
        answers.push_str(&String::from_utf8_lossy(&buf[..read]));
    }
    assert_eq!(answers.matches("HTTP/1.1 200").count(), REQUESTS);
    assert!(answers.contains("text/event-stream"));
    assert_eq!(
        storage.client_count().await.unwrap(),
        0,
        "no client id stored"
    );
    assert_eq!(server.live_connections().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_client_ids_are_rate_limited_per_address_and_known_clients_still_resume() {
    const RATE: u32 = 5;
    const BURST: u32 = 20;
    let server = TestServer::start_with(|config| {
        config.new_client_rate = RATE;
        config.new_client_burst = BURST;
    })
    .await;
    let mut known = server.subscribe("topic=a").await;
    let client_id = known.connected().await.client_id;
    drop(known);

    let started = Instant::now();
    let mut issued = 0u32;
    let mut refused = 0u32;
    for n in 0..300 {
        let response = server
            .http
            .get(server.url("/events?topic=flood"))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => issued += 1,
            429 => {
                refused += 1;
                assert!(response.headers().contains_key("retry-after"));
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "too_many_new_clients");
            }
            other => panic!("unexpected {other}"),
        }
        if n % 50 == 0 {
            // During the flood, the known client resumes with its id.
            let mut again = server
                .subscribe(&format!("topic=a&client_id={client_id}"))
                .await;
            assert_eq!(again.connected().await.client_id, client_id);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = f64::from(BURST) + f64::from(RATE) * elapsed + 1.0;
    assert!(
        f64::from(issued) <= allowed,
        "{issued} new ids in {elapsed:.1} s (at most {allowed:.0})"
    );
    assert!(refused > 0);
    let mut after = server
        .subscribe(&format!("topic=a&client_id={client_id}"))
        .await;
    assert_eq!(after.connected().await.client_id, client_id, "and after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_client_ids_are_capped_forgetting_the_oldest_idle_never_a_live_one() {
    const CAP: u64 = 20;
    let (server, storage) = TestServer::start_instrumented_with(|config| {
        config.max_client_ids = CAP;
        config.retention_interval = Duration::from_millis(50);
    })
    .await;
    let mut live = server.subscribe("topic=a").await;
    let live_id = live.connected().await.client_id;
    for _ in 0..3 * CAP {
        let mut passing = server.subscribe("topic=b").await;
        passing.connected().await;
    }
    eventually("the stored client ids are back under the cap", || async {
        storage.client_count().await.unwrap() <= CAP
    })
    .await;
    assert!(server.metric("herald_client_ids_forgotten_total").await >= (2 * CAP) as f64);
    // The live client was never forgotten: it is sent to, and resumes with its id.
    let sent = server
        .post_json(
            &format!("/api/clients/{live_id}/events"),
            &serde_json::json!({"data": "still here"}),
        )
        .await;
    assert_eq!(sent.status(), 200);
    assert_eq!(live.envelope().await.data, "still here");
    drop(live);
    let mut resumed = server
        .subscribe(&format!("topic=a&client_id={live_id}"))
        .await;
    assert_eq!(resumed.connected().await.client_id, live_id);
}
