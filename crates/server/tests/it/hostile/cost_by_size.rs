//! Cost by size: a publish is metered by the bytes it stores (its data once for each stream)
//! as well as by requests, so that one credential cannot make Herald store and frame hundreds
//! of megabytes a second.

use serde_json::{Value, json};

use crate::support::{TestServer, client_with_token, token};

async fn publish(
    server: &TestServer,
    http: &reqwest::Client,
    topics: &[String],
    data: &str,
) -> (u16, Value, Option<String>) {
    let response = http
        .post(server.url("/api/publish"))
        .json(&json!({"topics": topics, "type": "blob", "data": data}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].clone(), retry_after)
}

fn topics(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("t{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_to_many_topics_is_refused_whole() {
    // The defaults: bodies up to 1 MiB, 64 topics, 16 MiB at once (test servers otherwise
    // lift the byte rate).
    let server = TestServer::start_with(|config| {
        config.publish_byte_rate = herald_server::Config::default().publish_byte_rate;
    })
    .await;
    let http = client_with_token(&token("publisher", &["*"], &[], false));
    let mebibyte = "x".repeat(1024 * 1024 - 1024);
    let (status, code, _) = publish(&server, &http, &topics(64), &mebibyte).await;
    assert_eq!(status, 413);
    assert_eq!(code, "publish_too_large");
    // The same body to a handful of topics passes.
    let (status, _, _) = publish(&server, &http, &topics(4), &mebibyte).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_rate_limited_per_credential() {
    const BODY: usize = 40_000;
    let server = TestServer::start_with(|config| {
        config.max_body_bytes = 64 * 1024;
        config.publish_byte_rate = 10_000;
        config.publish_byte_burst = 100_000;
    })
    .await;
    let heavy = client_with_token(&token("heavy", &["*"], &[], false));
    let data = "x".repeat(BODY);
    // Two fit in the burst of 100,000 bytes; the third would take it past.
    for _ in 0..2 {
        let (status, _, _) = publish(&server, &heavy, &topics(1), &data).await;
        assert_eq!(status, 200);
    }
    let (status, code, retry_after) = publish(&server, &heavy, &topics(1), &data).await;
    assert_eq!(status, 429);
    assert_eq!(code, "rate_limited");
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=4).contains(&wait), "Retry-After: {wait}");
    // Counted per credential: another publishes as before.
    let other = client_with_token(&token("other", &["*"], &[], false));
    let (status, _, _) = publish(&server, &other, &topics(2), &data).await;
    assert_eq!(status, 200);
}
