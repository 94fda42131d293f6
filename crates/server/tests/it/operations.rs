//! Health, readiness, metrics, the OpenAPI document, and behaviour when storage fails.

use std::sync::atomic::Ordering;

use crate::support::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer() {
    let server = TestServer::start().await;
    assert_eq!(
        server.get_json("/healthz").await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        server.get_json("/readyz").await,
        (200, json!({"status": "ok"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_publishes_and_deliveries() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=a").await;
    stream.connected().await;
    server.publish("a", "message", json!(1)).await;
    stream.envelope().await;
    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let openmetrics = server
        .http
        .get(server.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        openmetrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert_eq!(server.metric("herald_connections").await, 1.0);
    assert_eq!(server.metric("herald_events_published_total").await, 1.0);
    assert_eq!(server.metric("herald_events_delivered_total").await, 1.0);
    assert_eq!(
        server.metric("herald_publish_latency_seconds_count").await,
        1.0
    );
    // Storage operations are timed: the one append of the publish among them.
    assert_eq!(
        server
            .metric("herald_storage_operation_duration_seconds_count{operation=\"append\"}")
            .await,
        1.0
    );
    assert!(
        server
            .metric(
                "herald_storage_operation_duration_seconds_count{operation=\"register_client\"}"
            )
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_api() {
    let server = TestServer::start().await;
    let (status, document) = server.get_json("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/events",
        "/api/publish",
        "/api/broadcast",
        "/api/clients",
        "/api/clients/{client_id}",
        "/api/clients/{client_id}/events",
        "/api/users/{user_id}/events",
        "/api/users/{user_id}/notifications",
        "/api/notifications",
        "/api/notifications/{id}/read",
        "/api/notifications/read-all",
        "/api/me",
        "/api/dev/token",
        "/demo/orders",
        "/demo/countdown",
        "/demo/chat",
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/mercure",
        "/.well-known/mercure/subscriptions",
        "/api/topics",
        "/api/topics/{topic}/presence",
        "/api/stats",
        "/api/stats/stream",
        "/api/streams",
        "/api/streams/{id}",
        "/api/streams/{id}/append",
        "/api/streams/{id}/end",
        "/streams/{id}",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        document["paths"]["/api/publish"]["post"]["security"][0]["bearer"],
        serde_json::json!([])
    );
    for schema in [
        "Envelope",
        "Connected",
        "Reset",
        "Closing",
        "ErrorBody",
        "PublishRequest",
        "Claims",
        "NewNotification",
        "NotificationPage",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema} is documented"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_is_503_and_subscribers_stay_connected() {
    let (server, storage) = TestServer::start_instrumented().await;
    let mut stream = server.subscribe("topic=a").await;
    stream.connected().await;

    storage.down.store(true, Ordering::SeqCst);
    let response = server
        .post_json("/api/publish", &json!({"topic": "a", "data": "lost?"}))
        .await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_unavailable");
    assert_eq!(
        server.get_json("/readyz").await,
        (503, json!({"status": "unavailable"}))
    );
    assert_eq!(
        server
            .metric("herald_storage_operation_errors_total{operation=\"append\"}")
            .await,
        1.0,
        "the failed append is counted"
    );

    storage.down.store(false, Ordering::SeqCst);
    assert_eq!(server.get_json("/readyz").await.0, 200);
    server
        .publish("a", "message", json!("after recovery"))
        .await;
    assert_eq!(
        stream.envelope().await.data,
        json!("after recovery"),
        "the subscriber stayed connected"
    );
}

#[tokio::test]
async fn metrics_listen_serves_operations_apart_and_requests_are_counted_by_route() {
    let internal = crate::support::services::free_port();
    let server = TestServer::start_with(|config| {
        config.operations.metrics_listen = Some(([127, 0, 0, 1], internal).into());
    })
    .await;
    let ops = |path: &str| format!("http://127.0.0.1:{internal}{path}");
    assert_eq!(server.get_json("/metrics").await.0, 404, "not public");
    let published = server
        .post_json("/api/publish", &json!({"topic": "t", "data": 1}))
        .await;
    assert_eq!(published.status(), 200);
    let request_id = published.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(request_id.len(), 16, "a new id: {request_id}");
    let echoed = server
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");

    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let answer = http.get(ops(path)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    let metrics = http
        .get(ops("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "herald_http_requests_total{route=\"/api/publish\",method=\"POST\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_http_request_duration_seconds_count{route=\"/api/publish\"} 1"),
        "{metrics}"
    );
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        sample("herald_process_resident_memory_bytes") > 1e6,
        "{metrics}"
    );
    assert!(sample("herald_process_open_fds") >= 3.0, "{metrics}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_and_client_ids() {
    use tokio::io::AsyncBufReadExt;
    let dir = crate::support::fresh_data_dir();
    let mut herald = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(&dir)
        .arg("--static-dir")
        .arg(dir.join("no-web-app"))
        .env("HERALD_LOG", "herald_server=debug")
        .env("HERALD_JWT_SECRET", crate::support::TEST_SECRET)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(herald.stderr.take().unwrap()).lines();
    let mut next = async || -> serde_json::Value {
        let line = tokio::time::timeout(crate::support::TIMEOUT, lines.next_line())
            .await
            .expect("a log line in time")
            .unwrap()
            .expect("the log goes on");
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
    };
    let address = loop {
        let line = next().await;
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        if let Some(address) = line["message"]
            .as_str()
            .and_then(|message| message.strip_prefix("listening on "))
        {
            break address.to_owned();
        }
    };
    let stream = reqwest::Client::new()
        .get(format!("http://{address}/events?topic=logs"))
        .header("x-request-id", "log-me")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let opened = loop {
        let line = next().await;
        if line["message"] == "event stream opened" {
            break line;
        }
    };
    assert_eq!(opened["span"]["request_id"], "log-me", "{opened}");
    assert_eq!(opened["span"]["route"], "/events", "{opened}");
    assert_eq!(
        opened["span"]["client_id"].as_str().map(str::len),
        Some(32),
        "{opened}"
    );
    drop(stream);
    drop(herald);
    let _ = std::fs::remove_dir_all(&dir);
}
