//! Hostile input: every class of client mistake gets its status and the JSON error body, never
//! a panic or a 500.

use crate::support::TestServer;
use serde_json::{Value, json};

/// Checks status, the error body's shape and its code.
#[track_caller]
fn assert_error(status: u16, body: &Value, expected_status: u16, expected_code: &str) {
    assert_eq!(status, expected_status, "body: {body}");
    assert_eq!(body["error"]["code"], expected_code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
}

/// Checks a response's status and error code, as [`assert_error`] does.
async fn assert_error_response(
    response: reqwest::Response,
    expected_status: u16,
    expected_code: &str,
) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    assert_error(status, &body, expected_status, expected_code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_400() {
    let server = TestServer::start().await;
    let json = Some("application/json");
    let cases: &[(&str, &str, &str)] = &[
        ("/api/publish", "{", "invalid_json"),
        ("/api/publish", "", "invalid_json"),
        ("/api/publish", "[1, 2]", "invalid_body"),
        ("/api/publish", r#"{"topic": 5}"#, "invalid_body"),
        (
            "/api/publish",
            r#"{"topic": "a", "tpoic": "typo"}"#,
            "invalid_body",
        ),
        ("/api/publish", r#"{"data": 1}"#, "missing_topic"),
        ("/api/publish", r#"{"topics": []}"#, "missing_topic"),
        (
            "/api/publish",
            r#"{"topic": "a", "topics": ["b"]}"#,
            "invalid_body",
        ),
        ("/api/publish", r#"{"topic": ""}"#, "invalid_topic"),
        ("/api/publish", r#"{"topic": "a\nb"}"#, "invalid_topic"),
        ("/api/publish", r#"{"topic": "a\u0000b"}"#, "invalid_topic"),
        (
            "/api/publish",
            r#"{"topic": "a", "type": "has space"}"#,
            "invalid_type",
        ),
        (
            "/api/publish",
            r#"{"topic": "a", "type": "line\r\nbreak"}"#,
            "invalid_type",
        ),
        (
            "/api/publish",
            r#"{"topic": "a", "type": ""}"#,
            "invalid_type",
        ),
        (
            "/api/publish",
            r#"{"topic": "a", "type": "herald.connected"}"#,
            "invalid_type",
        ),
        (
            "/api/broadcast",
            r#"{"type": "herald.closing"}"#,
            "invalid_type",
        ),
        ("/api/broadcast", "nope", "invalid_json"),
    ];
    for (path, body, code) in cases {
        let (status, response) = server.post_raw(path, json, body.to_string()).await;
        assert_error(status, &response, 400, code);
    }
    let long_topic = "t".repeat(257);
    let (status, body) = server
        .get_json(&format!("/events?topic={long_topic}"))
        .await;
    assert_error(status, &body, 400, "invalid_topic");
    let (status, body) = server.get_json("/events?topic=a%0Db").await;
    assert_error(status, &body, 400, "invalid_topic");
    let (status, body) = server.get_json("/events?topic=a&client_id=..%2F..").await;
    assert_error(status, &body, 400, "unknown_client_id");
    let too_many: String = (0..65).map(|n| format!("topic=t{n}&")).collect();
    let (status, body) = server.get_json(&format!("/events?{too_many}")).await;
    assert_error(status, &body, 400, "too_many_topics");
    let topics: Vec<String> = (0..65).map(|n| format!("t{n}")).collect();
    let response = server
        .post_json("/api/publish", &json!({"topics": topics}))
        .await;
    assert_error_response(response, 400, "too_many_topics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_resources_are_404() {
    let server = TestServer::start().await;
    let (status, body) = server.get_json("/api/nothing-here").await;
    assert_error(status, &body, 404, "not_found");
    let response = server
        .post_json("/api/clients/not-a-client/events", &json!({}))
        .await;
    assert_error_response(response, 404, "client_not_found").await;
    let response = server
        .http
        .delete(server.url(&format!("/api/clients/{}", "0".repeat(32))))
        .send()
        .await
        .unwrap();
    assert_error_response(response, 404, "client_not_connected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_api_that_match_no_file_are_json_404s() {
    let server = TestServer::start().await;
    for path in [
        "/no-such-page.js".to_owned(),
        format!("/{}", "a".repeat(300)),
        "/%00".to_owned(),
    ] {
        let (status, body) = server.get_json(&path).await;
        assert_error(status, &body, 404, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("/api/publish"))
        .send()
        .await
        .unwrap();
    assert_error_response(response, 405, "method_not_allowed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_limit_is_413() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 1024).await;
    let body = json!({"topic": "a", "data": "x".repeat(2048)}).to_string();
    let (status, response) = server
        .post_raw("/api/publish", Some("application/json"), body)
        .await;
    assert_error(status, &response, 413, "payload_too_large");
    let body = json!({"topic": "a", "data": "x".repeat(512)}).to_string();
    let (status, _) = server
        .post_raw("/api/publish", Some("application/json"), body)
        .await;
    assert_eq!(status, 200, "a body within the limit is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_415() {
    let server = TestServer::start().await;
    let body = r#"{"topic": "a"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, response) = server.post_raw("/api/publish", content_type, body).await;
        assert_error(status, &response, 415, "unsupported_media_type");
    }
    let (status, _) = server
        .post_raw(
            "/api/publish",
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_for_one_client_is_429() {
    let server = TestServer::start_with(|config| config.max_connections_per_client = 2).await;
    let mut first = server.subscribe("topic=a").await;
    let client_id = first.connected().await.client_id;
    let _second = server
        .subscribe(&format!("topic=a&client_id={client_id}"))
        .await;
    let (status, body) = server
        .get_json(&format!("/events?topic=a&client_id={client_id}"))
        .await;
    assert_error(status, &body, 429, "too_many_connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_bytes_in_the_query_and_headers_never_break_the_server() {
    let server = TestServer::start().await;
    // Percent-encoded invalid UTF-8 decodes to replacement characters: a valid topic.
    let mut stream = server.subscribe("topic=%FF%FE").await;
    assert_eq!(stream.connected().await.topics, ["\u{FFFD}\u{FFFD}"]);
    let response = server
        .http
        .get(server.url("/events?topic=a"))
        .header(
            "Last-Event-ID",
            reqwest::header::HeaderValue::from_bytes(b"\xFF\xFE").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = crate::support::SseStream::new(response);
    stream.connected().await;
    stream.expect("herald.reset").await;
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200, "still serving");
}
