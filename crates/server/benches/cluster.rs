//! Cluster benchmark: publish → receive latency and publish throughput, in one run, for
//! - `sqlite`: one node on the default embedded log;
//! - `redis, same node`: cluster mode, publishers and subscribers on one node;
//! - `redis, across nodes`: publishers on node A, subscribers on node B, both on one Redis.
//!
//! Run: `cargo bench -p herald-server --bench cluster` (needs `redis-server`; `HERALD_BENCH_SECS`
//! sets the length of each throughput run, default 5). Redis writes its append-only file with
//! `appendfsync always`, so an acknowledged publish is on disk in Redis as it is in SQLite. The
//! nodes, Redis's client side and the load share this process and the machine's cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(
    dead_code,
    unused_imports,
    reason = "the benchmark starts servers as the integration tests do, with a few of their helpers"
)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::TestServer;
use support::services::RedisServer;

/// Subscribers reading the benchmark topic.
const SUBSCRIBERS: usize = 4;
/// Events published one after another, each awaited, for the latency figures.
const LATENCY_EVENTS: u64 = 1000;
/// Concurrent publishers for the throughput figures.
const PUBLISHERS: usize = 8;

/// The clock every send and receive time is read from.
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_us() -> u64 {
    u64::try_from(ORIGIN.elapsed().as_micros()).unwrap()
}

/// What the subscribers saw: publish → receive latencies of the latency phase, and how many
/// events of the load phase arrived.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    loaded: u64,
    last_at: Option<Instant>,
}

struct Row {
    setup: &'static str,
    p50: Duration,
    p99: Duration,
    max: Duration,
    acks_per_sec: f64,
    deliveries_per_sec: f64,
}

async fn measure(
    setup: &'static str,
    publish_on: &TestServer,
    subscribe_on: &TestServer,
    length: Duration,
) -> Row {
    let topic = "bench";
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut stream = subscribe_on.subscribe(&format!("topic={topic}")).await;
        stream.connected().await;
        let seen = Arc::clone(&seen);
        readers.push(tokio::spawn(async move {
            loop {
                let envelope = stream.envelope().await;
                let received = now_us();
                let mut seen = seen.lock().unwrap();
                if envelope.data["phase"] == "latency" {
                    let sent = envelope.data["sent_us"].as_u64().unwrap();
                    seen.latencies.push(Duration::from_micros(received - sent));
                } else {
                    seen.loaded += 1;
                    seen.last_at = Some(Instant::now());
                }
            }
        }));
    }

    // Latency: one publisher, each event awaited before the next.
    for _ in 0..LATENCY_EVENTS {
        publish_on
            .publish(
                topic,
                "tick",
                json!({"phase": "latency", "sent_us": now_us()}),
            )
            .await;
    }
    let expected = LATENCY_EVENTS as usize * SUBSCRIBERS;
    while seen.lock().unwrap().latencies.len() < expected {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Throughput: concurrent publishers for `length`.
    let started = Instant::now();
    let deadline = started + length;
    let counts = futures_util::future::join_all((0..PUBLISHERS).map(|_| async {
        let mut acked = 0u64;
        while Instant::now() < deadline {
            publish_on
                .publish(topic, "tick", json!({"phase": "load", "sent_us": now_us()}))
                .await;
            acked += 1;
        }
        acked
    }))
    .await;
    let acked: u64 = counts.iter().sum();
    let acks_per_sec = acked as f64 / started.elapsed().as_secs_f64();
    let wanted = acked * SUBSCRIBERS as u64;
    let wait_until = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().loaded < wanted {
        assert!(Instant::now() < wait_until, "{setup}: every event arrives");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for reader in readers {
        reader.abort();
    }
    let seen = seen.lock().unwrap();
    let delivered_for = seen.last_at.unwrap().duration_since(started).as_secs_f64();
    let mut latencies = seen.latencies.clone();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Row {
        setup,
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
        acks_per_sec,
        deliveries_per_sec: wanted as f64 / delivered_for,
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("HERALD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let length = Duration::from_secs(seconds);
    LazyLock::force(&ORIGIN);
    println!(
        "Herald cluster benchmark: {SUBSCRIBERS} subscribers; latency over {LATENCY_EVENTS} events published one at a time; \
         throughput with {PUBLISHERS} publishers for {seconds} s; {} cores, one process",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    {
        let node = TestServer::start().await;
        rows.push(measure("sqlite, one node", &node, &node, length).await);
    }
    {
        let redis = RedisServer::start().await;
        let node = TestServer::start_node(&redis.url(), |_| {}).await;
        rows.push(measure("redis, same node", &node, &node, length).await);
    }
    {
        let redis = RedisServer::start().await;
        let a = TestServer::start_node(&redis.url(), |_| {}).await;
        let b = TestServer::start_node(&redis.url(), |_| {}).await;
        rows.push(measure("redis, across nodes", &a, &b, length).await);
    }
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>12} {:>16}",
        "setup", "p50", "p99", "max", "acks/s", "deliveries/s"
    );
    for row in rows {
        println!(
            "{:<20} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>12.0} {:>16.0}",
            row.setup,
            row.p50.as_secs_f64() * 1000.0,
            row.p99.as_secs_f64() * 1000.0,
            row.max.as_secs_f64() * 1000.0,
            row.acks_per_sec,
            row.deliveries_per_sec,
        );
    }
}
