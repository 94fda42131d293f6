//! A subscriber that falls behind is closed as a slow consumer; the others do not notice.

use std::time::Duration;

use crate::support::{TestServer, eventually};
use herald_protocol::system::{CloseReason, Closing};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SLOW_CLOSED: &str = r#"herald_connections_closed_by_server_total{reason="slow_consumer"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_while_a_fast_one_keeps_receiving() {
    // A queue that never fills first, so the write timeout is what releases the stalled one.
    let server = TestServer::start_with(|config| {
        config.queue_capacity = 1_000_000;
        config.write_timeout = Duration::from_millis(500);
    })
    .await;
    let mut fast = server.subscribe("topic=feed").await;
    fast.connected().await;

    // A subscriber that sends its request and then never reads a byte.
    let address = server.base.trim_start_matches("http://");
    let mut stalled = TcpStream::connect(address).await.unwrap();
    let request = format!("GET /events?topic=feed HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stalled.write_all(request.as_bytes()).await.unwrap();
    eventually("both subscribers are registered", || async {
        server.live_connections().await == 2
    })
    .await;

    // Publish large events, reading each on the fast connection, until the server lets go of
    // the stalled one.
    let payload = "x".repeat(64 * 1024);
    let mut published = 0u64;
    while server.live_connections().await == 2 {
        assert!(
            published < 2000,
            "the stalled subscriber was never released"
        );
        for _ in 0..10 {
            published += 1;
            server
                .publish("feed", "message", json!({"n": published, "pad": payload}))
                .await;
            assert_eq!(fast.envelope().await.data["n"], json!(published));
        }
    }
    assert_eq!(
        server.metric("herald_write_timeouts_total").await,
        1.0,
        "dropped for not reading"
    );
    published += 1;
    server
        .publish("feed", "message", json!({"n": published}))
        .await;
    assert_eq!(
        fast.envelope().await.data["n"],
        json!(published),
        "the fast subscriber never missed an event"
    );
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_is_told_why_and_resumes_from_its_last_event_id() {
    const EVENTS: u64 = 400;
    let server = TestServer::start_with(|config| config.queue_capacity = 8).await;
    let mut lagging = server.subscribe("topic=feed").await;
    lagging.connected().await;

    // 25 MiB while the subscriber reads nothing: more than the socket buffers and the queue hold.
    let payload = "x".repeat(64 * 1024);
    for n in 1..=EVENTS {
        server
            .publish("feed", "message", json!({"n": n, "pad": payload}))
            .await;
    }
    let mut received = Vec::new();
    let closing = loop {
        let event = lagging.next_event().await;
        if event.event == "herald.closing" {
            break serde_json::from_str::<Closing>(&event.data).unwrap();
        }
        let envelope: herald_protocol::Envelope = serde_json::from_str(&event.data).unwrap();
        received.push(envelope.data["n"].as_u64().unwrap());
    };
    assert_eq!(
        (closing.reason, closing.reconnect),
        (CloseReason::SlowConsumer, true)
    );
    assert!(
        (received.len() as u64) < EVENTS,
        "the subscriber did fall behind"
    );
    let last = lagging.last_event_id().to_owned();
    drop(lagging);

    let mut resumed = server.subscribe_after("topic=feed", Some(&last)).await;
    resumed.connected().await;
    while (received.len() as u64) < EVENTS {
        received.push(resumed.envelope().await.data["n"].as_u64().unwrap());
    }
    assert_eq!(
        received,
        (1..=EVENTS).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    eventually("the lagging connection is counted", || async {
        server.metric(SLOW_CLOSED).await == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_holds_little_in_the_kernel_before_its_queue_fills() {
    let server = TestServer::start_with(|config| {
        config.queue_capacity = 8;
        // The default unsent limit alone, with the send buffer left to the kernel's autotuning.
        config.stream_send_buffer = 0;
        // Flagged as a slow consumer, it is released once its stuck write gives up.
        config.write_timeout = Duration::from_secs(1);
    })
    .await;
    // A subscriber with a small receive window that sends its request and never reads.
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(address).await.unwrap();
    let request = format!("GET /events?topic=feed HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stalled.write_all(request.as_bytes()).await.unwrap();
    eventually("the stalled subscriber is registered", || async {
        server.live_connections().await == 1
    })
    .await;

    // 384 KiB: far less than the 4 MiB the kernel would let one stream's send buffer grow to,
    // far more than 8 queued events plus the unsent limit and the small receive window.
    let payload = "x".repeat(16 * 1024);
    for n in 1..=24 {
        server
            .publish("feed", "message", json!({"n": n, "pad": payload}))
            .await;
    }
    eventually(
        "the stalled subscriber is closed as a slow consumer",
        || async { server.metric(SLOW_CLOSED).await == 1.0 },
    )
    .await;
    drop(stalled);
}
