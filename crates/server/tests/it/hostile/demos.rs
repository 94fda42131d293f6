//! The demos on the open internet: not served unless asked for, and a demo stream lives no
//! longer than any connection.

use std::time::Duration;

use herald_protocol::system::CloseReason;

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_are_served_only_when_asked_for() {
    let server = TestServer::start().await;
    for path in [
        "/demo/countdown?count=1",
        "/demo/chat?prompt=hi",
        "/demo/anything",
    ] {
        let (status, body) = server.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let (status, _) = server.post_raw("/demo/orders", None, "").await;
    assert_eq!(status, 404);
    let dev = TestServer::start_with(|config| {
        config.dev = true;
        config.jwt_secret = None;
    })
    .await;
    let mut countdown = dev
        .get_stream("/demo/countdown?count=1&interval_ms=10")
        .await;
    countdown.expect("customEvent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_stream_ends_at_the_maximum_lifetime_of_a_connection() {
    let server = TestServer::start_with(|config| {
        config.demos = true;
        config.max_connection_lifetime = Duration::from_millis(300);
    })
    .await;
    let mut stream = server
        .get_stream("/demo/countdown?count=1000&interval_ms=50")
        .await;
    let mut received = 0;
    loop {
        let event = stream.next_event().await;
        if event.event == "herald.closing" {
            let closing: herald_protocol::system::Closing =
                serde_json::from_str(&event.data).unwrap();
            assert_eq!(closing.reason, CloseReason::MaxLifetime);
            break;
        }
        received += 1;
    }
    assert!(received < 1000, "closed before the countdown ended");
    stream.assert_ends().await;
}
