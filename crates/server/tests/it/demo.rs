//! The demo streams, countdown and chat: served only in development mode or with `--demos`,
//! their parameters bounded, their lifetime that of any connection.

use herald_protocol::payloads::{ChatDelta, ChatDone};
use serde_json::json;

use crate::support::{TestServer, eventually};

/// A server with the demos on.
pub async fn demo_server() -> TestServer {
    TestServer::start_with(|config| config.demos = true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countdown_sends_exactly_count_messages_then_ends() {
    let server = demo_server().await;
    let mut stream = server
        .get_stream("/demo/countdown?count=10&interval_ms=10")
        .await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    for n in 1..=10 {
        let event = stream.expect("customEvent").await;
        assert_eq!(
            serde_json::from_str::<String>(&event.data).unwrap(),
            format!("Message {n}")
        );
        assert_eq!(event.id, n.to_string());
    }
    stream.assert_ends().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countdown_resumes_after_the_last_event_id_and_says_when_it_is_over() {
    let server = demo_server().await;
    let response = server
        .http
        .get(server.url("/demo/countdown?count=5&interval_ms=10"))
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    let mut stream = crate::support::SseStream::new(response);
    assert_eq!(
        stream.expect("customEvent").await.data,
        json!("Message 4").to_string()
    );
    assert_eq!(
        stream.expect("customEvent").await.data,
        json!("Message 5").to_string()
    );
    stream.assert_ends().await;

    let response = server
        .http
        .get(server.url("/demo/countdown?count=5"))
        .header("Last-Event-ID", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        204,
        "204 tells EventSource to stop reconnecting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countdown_stops_producing_when_the_client_goes_away() {
    let server = demo_server().await;
    let cancelled = r#"herald_demo_streams_cancelled_total{demo="countdown"}"#;
    let mut stream = server
        .get_stream("/demo/countdown?count=1000&interval_ms=20")
        .await;
    stream.expect("customEvent").await;
    stream.expect("customEvent").await;
    drop(stream);
    eventually("the countdown notices", || async {
        server.metric(cancelled).await == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_deltas_then_done_then_the_done_sentinel() {
    let server = demo_server().await;
    let mut stream = server
        .get_stream("/demo/chat?prompt=What%20is%20Herald%3F&delay_ms=10")
        .await;
    let mut answer = String::new();
    let mut deltas = 0;
    let done = loop {
        let event = stream.next_event().await;
        match event.event.as_str() {
            "chat.delta" => {
                answer.push_str(&serde_json::from_str::<ChatDelta>(&event.data).unwrap().text);
                deltas += 1;
            }
            "chat.done" => break serde_json::from_str::<ChatDone>(&event.data).unwrap(),
            other => panic!("unexpected {other}"),
        }
    };
    assert!(deltas > 5, "the answer arrives in pieces, got {deltas}");
    assert!(answer.contains("What is Herald?"), "{answer}");
    assert_eq!(done.finish_reason, "stop");
    let sentinel = stream.next_event().await;
    assert_eq!(
        (sentinel.event.as_str(), sentinel.data.as_str()),
        ("message", "[DONE]")
    );
    stream.assert_ends().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_ends_the_chat_with_chat_error() {
    let server = demo_server().await;
    let mut stream = server
        .get_stream("/demo/chat?prompt=hello&delay_ms=10&fail_after=2")
        .await;
    stream.expect("chat.delta").await;
    stream.expect("chat.delta").await;
    let error = stream.expect("chat.error").await;
    let error: herald_protocol::payloads::ChatError = serde_json::from_str(&error.data).unwrap();
    assert_eq!(error.code, "upstream_error");
    stream.assert_ends().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_parameters_are_checked() {
    let server = demo_server().await;
    for path in [
        "/demo/countdown?count=0",
        "/demo/countdown?count=1001",
        "/demo/countdown?count=abc",
        "/demo/countdown?interval_ms=-1",
        "/demo/countdown?interval_ms=9",
        "/demo/countdown?interval_ms=600000",
        "/demo/chat?prompt=hi&delay_ms=0",
        "/demo/chat",
        "/demo/chat?prompt=%20",
        "/demo/chat?prompt=hi&delay_ms=x",
    ] {
        let (status, body) = server.get_json(path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    let long_prompt = "x".repeat(4097);
    let (status, _) = server
        .get_json(&format!("/demo/chat?prompt={long_prompt}"))
        .await;
    assert_eq!(status, 400, "a prompt is at most 4 KiB");
    let (status, _) = server
        .get_json(&format!("/demo/chat?prompt={}", "é".repeat(2049)))
        .await;
    assert_eq!(status, 400, "counted in bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_answer_as_a_response_stream_is_read_whole_from_any_point() {
    let server = demo_server().await;
    let response = server
        .post_json("/demo/chat", &json!({"prompt": "And now?", "delay_ms": 10}))
        .await;
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    let url = created["url"].as_str().unwrap().to_owned();
    let mut reader = server.get_stream(&url).await;
    let mut text = String::new();
    loop {
        let event = reader.next_event().await;
        let envelope: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        if event.event == "stream.end" {
            assert_eq!(
                envelope["data"],
                json!({"status": "done", "result": {"finish_reason": "stop"}})
            );
            break;
        }
        text.push_str(envelope["data"].as_str().unwrap());
    }
    assert!(
        text.starts_with("You asked: \u{201c}And now?\u{201d}."),
        "{text}"
    );
    // Read again after the end: the same answer, in one piece.
    let mut again = server.get_stream(&url).await;
    let whole: serde_json::Value = serde_json::from_str(&again.next_event().await.data).unwrap();
    assert_eq!(whole["data"], text.as_str());

    let response = server
        .post_json(
            "/demo/chat",
            &json!({"prompt": "fail", "delay_ms": 10, "fail_after": 2}),
        )
        .await;
    let created: serde_json::Value = response.json().await.unwrap();
    let mut failing = server.get_stream(created["url"].as_str().unwrap()).await;
    let end = loop {
        let event = failing.next_event().await;
        if event.event == "stream.end" {
            break event;
        }
    };
    let end: serde_json::Value = serde_json::from_str(&end.data).unwrap();
    assert_eq!(end["data"]["status"], "error");
    let response = server
        .post_json("/demo/chat", &json!({"prompt": "  "}))
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_resumed_by_last_event_id_skips_what_the_client_saw() {
    let server = demo_server().await;
    let url = server.url("/demo/chat?prompt=Again&delay_ms=10");
    let response = reqwest::Client::new()
        .get(&url)
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut resumed = crate::support::SseStream::new(response);
    let first = resumed.expect("chat.delta").await;
    assert_eq!(first.id, "4", "the frames after the third");
    let response = reqwest::Client::new()
        .get(&url)
        .header("Last-Event-ID", "1000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "everything was seen");
}
