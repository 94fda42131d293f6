//! Event streams over HTTP/2, through a native client (reqwest on hyper and h2).

use std::time::Duration;

use serde_json::json;

use crate::support::tls::{https_builder, https_url};
use crate::support::tokens::{bearer, operator_token};
use crate::support::{TestCertificate, TestServer, eventually};

#[tokio::test]
async fn event_streams_over_https_are_http2_with_every_property() {
    let certificate = TestCertificate::generate();
    let server = TestServer::start_https(&certificate, |config| {
        config.heartbeat = Duration::from_millis(200);
    })
    .await;
    let mut stream = server.subscribe("topic=news").await;
    assert_eq!(stream.version, reqwest::Version::HTTP_2);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    stream.connected().await;

    let first = server.publish("news", "headline", json!({"n": 1})).await;
    let envelope = stream.envelope().await;
    assert_eq!(envelope.id, first.id);
    assert_eq!(envelope.data, json!({"n": 1}));

    // Nothing published: the stream is kept alive by heartbeat comments.
    let item = stream.next_item().await.expect("the stream goes on");
    assert!(
        matches!(item, herald_protocol::sse::Item::Comment(_)),
        "expected a heartbeat, got {item:?}"
    );

    // Away, then back with the last id: what was missed is replayed, then live.
    let last = stream.last_event_id().to_owned();
    drop(stream);
    let missed = [
        server.publish("news", "headline", json!({"n": 2})).await.id,
        server.publish("news", "headline", json!({"n": 3})).await.id,
    ];
    let mut resumed = server.subscribe_after("topic=news", Some(&last)).await;
    assert_eq!(resumed.version, reqwest::Version::HTTP_2);
    resumed.connected().await;
    for id in missed {
        assert_eq!(resumed.envelope().await.id, id);
    }
    let live = server.publish("news", "headline", json!({"n": 4})).await;
    assert_eq!(resumed.envelope().await.id, live.id);

    // The other requests answered over the same protocol.
    let me = server.http.get(server.url("/api/me")).send().await.unwrap();
    assert_eq!(me.version(), reqwest::Version::HTTP_2);
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn a_stalled_stream_is_reset_and_its_neighbour_on_the_connection_goes_on() {
    let certificate = TestCertificate::generate();
    let server = TestServer::start_https(&certificate, |config| {
        config.write_timeout = Duration::from_secs(1);
    })
    .await;
    let mut live = server.subscribe("topic=bulk").await;
    live.connected().await;
    // A second stream on the same connection, which the client never reads: its 64 KiB window
    // stays shut once full.
    let stalled = server
        .http
        .get(server.url("/events?topic=bulk"))
        .send()
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);
    assert_eq!(
        server.metric("herald_tcp_connections").await,
        1.0,
        "both streams share one connection"
    );

    let padding = "x".repeat(1000);
    let mut ids = Vec::new();
    for n in 0..150 {
        let published = server
            .publish("bulk", "chunk", json!({"n": n, "padding": padding}))
            .await;
        ids.push(published.id);
    }
    for id in &ids {
        assert_eq!(&live.envelope().await.id, id, "the live stream keeps up");
    }
    eventually(
        "the stalled stream is reset after the write timeout",
        || async { server.metric("herald_write_timeouts_total").await >= 1.0 },
    )
    .await;
    // The connection is fine: the live stream and new requests go on over it.
    let after = server.publish("bulk", "chunk", json!({"n": "after"})).await;
    assert_eq!(live.envelope().await.id, after.id);
    assert_eq!(server.metric("herald_tcp_connections").await, 1.0);
    // The stalled stream, read at last, gives what was in its window and then fails.
    let mut body = stalled;
    let ended = tokio::time::timeout(crate::support::TIMEOUT, async {
        loop {
            match body.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => return "ended",
                Err(_) => return "reset",
            }
        }
    })
    .await
    .expect("the stalled stream ends");
    assert_eq!(ended, "reset");
}

#[tokio::test]
async fn cleartext_http2_with_prior_knowledge_serves_event_streams() {
    let server = TestServer::start().await;
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .default_headers(bearer(&operator_token()))
        .build()
        .unwrap();
    let mut stream = server.connected_as(&h2c, "topic=plain").await;
    assert_eq!(stream.version, reqwest::Version::HTTP_2);
    let published = h2c
        .post(server.url("/api/publish"))
        .json(&json!({"topic": "plain", "type": "note", "data": "over h2c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.version(), reqwest::Version::HTTP_2);
    assert_eq!(published.status(), 200);
    assert_eq!(stream.envelope().await.data, json!("over h2c"));
    // HTTP/1.1 clients are served on the same listener as before.
    let mut plain = server.subscribe("topic=plain").await;
    assert_eq!(plain.version, reqwest::Version::HTTP_11);
    plain.connected().await;
}

#[tokio::test]
async fn shutdown_sends_closing_on_every_http2_stream_then_ends_the_connection() {
    let certificate = TestCertificate::generate();
    // A long grace: the connection must end because its streams did and GOAWAY followed, not
    // because the grace ran out.
    let server = TestServer::start_https(&certificate, |config| {
        config.shutdown_grace = Duration::from_secs(8);
    })
    .await;
    let mut streams = Vec::new();
    for topic in ["a", "b", "c"] {
        let mut stream = server.subscribe(&format!("topic={topic}")).await;
        stream.connected().await;
        streams.push(stream);
    }
    assert_eq!(server.metric("herald_tcp_connections").await, 1.0);
    let http = server.http.clone();
    let url = https_url(&server, "/healthz");
    let took = server.shutdown().await;
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    for stream in streams {
        stream.assert_closed_for_shutdown().await;
    }
    assert!(http.get(url).send().await.is_err(), "the server is gone");
}

#[tokio::test]
async fn https_clients_without_http2_get_event_streams_over_http1() {
    let certificate = TestCertificate::generate();
    let server = TestServer::start_https(&certificate, |_| {}).await;
    let http1 = https_builder(&server, &certificate.pem)
        .http1_only()
        .default_headers(bearer(&operator_token()))
        .build()
        .unwrap();
    let mut stream = server.connected_as(&http1, "topic=old").await;
    assert_eq!(stream.version, reqwest::Version::HTTP_11);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    let published = server.publish("old", "note", json!("over TLS")).await;
    let envelope = stream.envelope().await;
    assert_eq!(
        (envelope.id, envelope.data),
        (published.id, json!("over TLS"))
    );
}
