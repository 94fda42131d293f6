//! Health, readiness, metrics, the OpenAPI document, and behaviour when storage fails.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use herald_server::ids::ClientId;
use herald_server::storage::{
    BoxFuture, InboxItem, InboxPage, InboxQuery, MemoryStorage, NewEvent, NewInboxItem, ReadChange,
    ReadTarget, Replay, Seq, Storage, StorageError, StoredEvent, StreamKey,
};
use serde_json::json;
use support::TestServer;

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

/// Memory storage whose writes and pings fail while `down` is set, standing in for a database
/// that became unavailable.
#[derive(Debug)]
struct Unreliable {
    inner: MemoryStorage,
    down: AtomicBool,
}

impl Unreliable {
    fn check(&self) -> Result<(), StorageError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StorageError::unavailable("disk unavailable"))
        } else {
            Ok(())
        }
    }
}

impl Storage for Unreliable {
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<Arc<StoredEvent>>, StorageError>> {
        match self.check() {
            Ok(()) => self.inner.append(events),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
    fn latest(&self) -> BoxFuture<'_, Result<Seq, StorageError>> {
        self.inner.latest()
    }
    fn read_after<'a>(
        &'a self,
        streams: &'a [StreamKey],
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, StorageError>> {
        self.inner.read_after(streams, after, limit)
    }
    fn register_client<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.inner.register_client(client)
    }
    fn client_exists<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        self.inner.client_exists(client)
    }
    fn touch_clients<'a>(
        &'a self,
        clients: &'a [ClientId],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.inner.touch_clients(clients)
    }
    fn expire(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        self.inner.expire(cutoff, oldest_kept)
    }
    fn add_notification<'a>(
        &'a self,
        user: &'a str,
        item: NewInboxItem,
        keep: usize,
    ) -> BoxFuture<'a, Result<InboxItem, StorageError>> {
        match self.check() {
            Ok(()) => self.inner.add_notification(user, item, keep),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
    fn notifications<'a>(
        &'a self,
        user: &'a str,
        query: InboxQuery,
    ) -> BoxFuture<'a, Result<InboxPage, StorageError>> {
        self.inner.notifications(user, query)
    }
    fn mark_read<'a>(
        &'a self,
        user: &'a str,
        target: ReadTarget,
    ) -> BoxFuture<'a, Result<Option<ReadChange>, StorageError>> {
        match self.check() {
            Ok(()) => self.inner.mark_read(user, target),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        let result = self.check();
        Box::pin(async move { result })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_is_503_and_subscribers_stay_connected() {
    let storage = Arc::new(Unreliable {
        inner: MemoryStorage::new(100),
        down: AtomicBool::new(false),
    });
    let server = TestServer::start_on(
        TestServer::config(),
        Arc::clone(&storage) as Arc<dyn Storage>,
    )
    .await;
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
