//! Cluster mode: several Herald nodes sharing a real `redis-server`. Events published on any node
//! reach subscribers on every node exactly once and in order; a client resumes on another node;
//! Redis and nodes fail and come back without losing an acknowledged event; nginx in front
//! streams unbuffered.

mod delivery;
mod failures;
mod tls;

use crate::support::services::RedisServer;
use crate::support::{HeraldProcess, SseStream, TestServer, eventually};

/// `n` nodes on one Redis, each ready.
pub(super) async fn nodes(
    redis: &RedisServer,
    n: usize,
    adjust: impl Fn(&mut herald_server::Config),
) -> Vec<TestServer> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(TestServer::start_node(&redis.url(), &adjust).await);
    }
    nodes
}

pub(super) fn seq(id: &str) -> u64 {
    id.parse()
        .unwrap_or_else(|_| panic!("event id {id:?} is a number"))
}

/// Reads envelopes until every id of `expected` arrived; fails on an unexpected id, a duplicate
/// or an id out of order.
pub(super) async fn receive_exactly(stream: &mut SseStream, expected: &[String], who: &str) {
    let mut last = 0;
    for want in expected {
        let envelope = stream.envelope().await;
        assert_eq!(&envelope.id, want, "{who}: the next event in log order");
        assert!(seq(&envelope.id) > last, "{who}: ids increase");
        last = seq(&envelope.id);
    }
}

/// A node running as its own process, ready to serve.
pub(super) async fn node_process(redis: &RedisServer) -> HeraldProcess {
    let node = HeraldProcess::start_fresh(&["--redis", &redis.url()]).await;
    let http = reqwest::Client::new();
    eventually("the node is ready", || async {
        http.get(node.url("/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
    node
}
