//! The hub's figures for administrators: `GET /api/stats` (counts now, rates and publish
//! latency over the last minute, every node of a cluster) and `GET /api/stats/stream`.

use serde_json::{Value, json};

use crate::support::services::RedisServer;
use crate::support::{SseStream, TestServer, client_with_token, eventually, token};

async fn stats(server: &TestServer) -> Value {
    let response = server
        .http
        .get(server.url("/api/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_figures_count_connections_and_measure_publishes() {
    let server = TestServer::start().await;
    let _streams = server.connected_streams(&["a", "b"]).await;
    for n in 0..5 {
        server.publish("a", "n", json!(n)).await;
    }
    eventually("the publishes show in the rates", || async {
        stats(&server).await["nodes"][0]["publishes_per_second"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0)
    })
    .await;
    let figures = stats(&server).await;
    let node = &figures["nodes"][0];
    assert_eq!(node["node"], "local");
    assert_eq!(node["connections"], 2);
    assert_eq!(node["topics"], 2);
    assert!(
        node["deliveries_per_second"].as_f64().unwrap() > 0.0,
        "{node}"
    );
    let latency = &node["publish_latency_ms"];
    let (p50, p99, max) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{latency}");
    assert!(
        node["storage_bytes"].as_u64().unwrap() > 0,
        "the SQLite log has a size"
    );
    assert_eq!(node["slow_consumer_closes"], 0);

    let someone = client_with_token(&token("someone", &["*"], &["*"], false));
    let refused = someone.get(server.url("/api/stats")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let anonymous = reqwest::get(server.url("/api/stats")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_can_watch_the_figures_every_second() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("/api/stats/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = SseStream::new(response);
    let mut times = Vec::new();
    for _ in 0..2 {
        let event = stream.expect("herald.stats").await;
        let figures: Value = serde_json::from_str(&event.data).unwrap();
        times.push(figures["nodes"][0]["time"].as_str().unwrap().to_owned());
    }
    assert!(times[0] < times[1], "{times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_of_a_cluster_is_listed() {
    let redis = RedisServer::start().await;
    let nodes = crate::cluster::nodes(&redis, 2, |_| {}).await;
    let _on_b = nodes[1].connected_streams(&["lobby"]).await;
    eventually("node A lists both nodes", || async {
        let figures = stats(&nodes[0]).await;
        let listed = figures["nodes"].as_array().cloned().unwrap_or_default();
        listed.len() == 2
            && listed
                .iter()
                .map(|node| node["connections"].as_u64())
                .sum::<Option<u64>>()
                == Some(1)
    })
    .await;
    let figures = stats(&nodes[0]).await;
    assert_ne!(figures["nodes"][0]["node"], figures["nodes"][1]["node"]);
    assert_eq!(
        figures["nodes"][0]["storage_bytes"],
        Value::Null,
        "Redis has no file"
    );
}
