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
