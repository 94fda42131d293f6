//! Connections whose first request is `GET /events` are served by Herald's own writer; every
//! other connection goes to hyper with the bytes read to tell them apart put back. These tests
//! speak raw HTTP/1.1 over TCP to check both sides of that split.

use std::time::Duration;

use crate::support::{SseStream, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(server: &TestServer) -> TcpStream {
    let address = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads until `done` holds for what was read, or the peer closes.
async fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if done(&String::from_utf8_lossy(&text)) {
                break;
            }
            let read = stream.read(&mut buf).await.unwrap_or(0);
            if read == 0 {
                break;
            }
            text.extend_from_slice(&buf[..read]);
        }
    })
    .await
    .expect("an answer within 10 s");
    String::from_utf8_lossy(&text).into_owned()
}

/// A complete answer with a body: status, headers, and the JSON body.
fn split_answer(answer: &str) -> (u16, String, Value) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).expect("a JSON body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_has_its_headers_greeting_and_events_without_chunking() {
    let server = TestServer::start().await;
    let mut stream = connect(&server).await;
    stream
        .write_all(
            b"GET /events?topic=news HTTP/1.1\r\nHost: herald\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    let greeting = read_until(&mut stream, |text| {
        text.contains("herald.connected") && text.ends_with("\n\n")
    })
    .await;
    let (head, body) = greeting.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(head.contains("x-accel-buffering: no"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(body.starts_with("retry: "), "{body}");

    let published = server
        .http
        .post(format!("{}/api/publish", server.base))
        .json(&serde_json::json!({"topic": "news", "type": "story", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    let event = read_until(&mut stream, |text| {
        text.contains("event: story") && text.ends_with("\n\n")
    })
    .await;
    assert!(event.contains("\"topic\":\"news\""), "{event}");
    assert!(event.contains("\"data\":{\"n\":1}"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_line_sent_in_pieces_still_opens_a_stream() {
    let server = TestServer::start().await;
    let mut stream = connect(&server).await;
    for piece in [
        "GE",
        "T /ev",
        "ents?topic=a HTTP/1.1\r\nHo",
        "st: herald\r\n\r\n",
    ] {
        stream.write_all(piece.as_bytes()).await.unwrap();
        // Gives each piece its own segment; what is checked is the answer below.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let greeting = read_until(&mut stream, |text| text.contains("herald.connected")).await;
    assert!(greeting.starts_with("HTTP/1.1 200"), "{greeting}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_requests_get_json_errors_and_a_close() {
    let server = TestServer::start().await;
    let padding = "x".repeat(20 * 1024);
    let cases = [
        (
            format!("GET /events?topic=a HTTP/1.1\r\nHost: h\r\nX-Pad: {padding}\r\n\r\n"),
            431,
            "request_header_too_large",
        ),
        (
            "GET /events?topic=a HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n".to_owned(),
            400,
            "bad_request",
        ),
        (
            "GET /events?topic=a%0Ab HTTP/1.1\r\nHost: h\r\n\r\n".to_owned(),
            400,
            "invalid_topic",
        ),
        (
            "GET /events?client_id=nope HTTP/1.1\r\nHost: h\r\n\r\n".to_owned(),
            400,
            "unknown_client_id",
        ),
    ];
    for (request, status, code) in cases {
        let mut stream = connect(&server).await;
        // The server may answer before it has read all of an oversized head.
        let _ = stream.write_all(request.as_bytes()).await;
        let answer = read_until(&mut stream, |_| false).await;
        let (got, head, body) = split_answer(&answer);
        assert_eq!(got, status, "{answer}");
        assert_eq!(body["error"]["code"], code, "{answer}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_are_served_by_hyper_with_keep_alive() {
    let server = TestServer::start().await;
    let mut stream = connect(&server).await;
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until(&mut stream, |text| {
            text.contains("\r\n\r\n") && text.ends_with('}')
        })
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // `/eventsource` shares the first bytes of `/events` without being it.
    let mut stream = connect(&server).await;
    stream
        .write_all(b"GET /eventsource HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until(&mut stream, |_| false).await;
    let (status, _, body) = split_answer(&answer);
    assert_eq!(status, 404, "{answer}");
    assert_eq!(body["error"]["code"], "not_found", "{answer}");
}

/// Fan-out writes to a waiting stream's socket itself, and hands the socket back to the
/// stream's task for heartbeats and for whatever the socket does not take at once (large
/// frames here, past the stream's unsent limit). Bursts from concurrent publishers, each
/// followed by a heartbeat, must reach every subscriber whole, once and in id order, with a
/// client resuming half-way getting the rest exactly once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_and_the_streams_own_writes_never_mix() {
    const ROUNDS: usize = 12;
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 5;
    let server = std::sync::Arc::new(
        TestServer::start_with(|config| config.heartbeat = Duration::from_millis(50)).await,
    );
    let mut watcher = server.subscribe("topic=mix").await;
    watcher.connected().await;
    let mut others = server.connected_streams(&["mix", "mix"]).await;
    let large = "x".repeat(48 * 1024);

    let mut published = Vec::new();
    let mut resume_from = None;
    for round in 0..ROUNDS {
        let mut burst = Vec::new();
        for publisher in 0..PUBLISHERS {
            let server = std::sync::Arc::clone(&server);
            let large = large.clone();
            burst.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..PER_PUBLISHER {
                    let pad = if (round + publisher + n) % 3 == 0 { large.as_str() } else { "" };
                    let data = serde_json::json!({"round": round, "publisher": publisher, "n": n, "pad": pad});
                    ids.push(server.publish("mix", "burst", data).await.id);
                }
                ids
            }));
        }
        for task in burst {
            published.extend(task.await.unwrap());
        }
        // The watcher reads the burst, then waits for a heartbeat: the stream's own write
        // after fan-out's.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut seen = 0;
        while seen < PUBLISHERS * PER_PUBLISHER {
            // Heartbeats keep coming: a burst that never arrives whole fails here.
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: {seen} events of the burst arrived"
            );
            match watcher.next_item().await.expect("the stream goes on") {
                herald_protocol::sse::Item::Event(event) => {
                    assert_eq!(event.event, "burst");
                    seen += 1;
                }
                herald_protocol::sse::Item::Comment(_) | herald_protocol::sse::Item::Retry(_) => {}
            }
        }
        loop {
            if let herald_protocol::sse::Item::Comment(comment) =
                watcher.next_item().await.expect("the stream goes on")
            {
                assert_eq!(comment, "heartbeat");
                break;
            }
        }
        if round == ROUNDS / 2 {
            resume_from = Some(watcher.last_event_id().to_owned());
        }
    }
    let resume_from = resume_from.unwrap();
    let mut resumed = server
        .subscribe_after("topic=mix", Some(resume_from.as_str()))
        .await;
    resumed.connected().await;
    let tail = ROUNDS - ROUNDS / 2 - 1;
    published.sort_by_key(|id| id.parse::<u64>().unwrap());
    let published_ids: Vec<u64> = published.iter().map(|id| id.parse().unwrap()).collect();

    let after_resume = &published_ids[published_ids.len() - tail * PUBLISHERS * PER_PUBLISHER..];
    let mut checks: Vec<(&mut SseStream, &[u64])> = others
        .iter_mut()
        .map(|stream| (stream, &published_ids[..]))
        .collect();
    checks.push((&mut resumed, after_resume));
    for (stream, expected) in checks {
        let mut next = [0usize; PUBLISHERS];
        for id in expected {
            let envelope = stream.envelope().await;
            assert_eq!(
                envelope.id.parse::<u64>().unwrap(),
                *id,
                "every event once, in order"
            );
            let publisher = envelope.data["publisher"].as_u64().unwrap() as usize;
            let n = envelope.data["n"].as_u64().unwrap() as usize;
            assert_eq!(
                n,
                next[publisher] % PER_PUBLISHER,
                "each publisher's events in order"
            );
            next[publisher] += 1;
            let pad = envelope.data["pad"].as_str().unwrap();
            assert!(pad.is_empty() || pad == large, "frames arrive whole");
        }
    }
}
