//! Redis over TLS (`rediss://`), as managed Redis services require: nodes on a `redis-server`
//! that speaks TLS only, its certificate issued by a certificate authority made at test time.

use serde_json::json;

use crate::support::services::RedisServer;
use crate::support::{TestServer, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_events_through_a_redis_that_speaks_tls_only() {
    let redis = RedisServer::start_tls().await;
    assert!(redis.url().starts_with("rediss://"));
    let ca = redis.tls_ca().to_owned();
    let trusting = |config: &mut herald_server::Config| config.redis_ca = Some(ca.clone());
    let a = TestServer::start_node(&redis.url(), trusting).await;
    let b = TestServer::start_node(&redis.url(), trusting).await;
    let mut on_b = b.connected_streams(&["orders"]).await.remove(0);
    let mut on_a = a.connected_streams(&["orders"]).await.remove(0);
    let published = a.publish("orders", "created", json!({"n": 1})).await;
    for stream in [&mut on_a, &mut on_b] {
        let envelope = stream.envelope().await;
        assert_eq!(envelope.id, published.id);
        assert_eq!(envelope.data, json!({"n": 1}));
    }
    // Stored in that Redis: a client resuming on the other node gets what it missed replayed.
    let missed = a.publish("orders", "created", json!({"n": 2})).await;
    let mut resumed = b.subscribe_after("topic=orders", Some(&published.id)).await;
    resumed.connected().await;
    assert_eq!(resumed.envelope().await.id, missed.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_certificate_from_an_unknown_authority_is_refused() {
    let redis = RedisServer::start_tls().await;
    // No --redis-ca: the certificate is checked against the system's and the public roots,
    // which do not hold the test's authority.
    let node = TestServer::launch_node(&redis.url(), |_| {}).await;
    eventually("the node answers /readyz", || async {
        node.http.get(node.url("/readyz")).send().await.is_ok()
    })
    .await;
    let ready = node.http.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without a trusted Redis");
    let response = node
        .post_json("/api/publish", &json!({"topic": "orders", "data": 1}))
        .await;
    assert_eq!(response.status(), 503, "nothing is acknowledged");
}
