//! Storage benchmark: acknowledged publishes per second with 1 and 8 concurrent publishers, the
//! time to replay 10,000 missed events, and new subscriptions per second (each registering a new
//! client id) with 8 at once, for the durable SQLite log and for memory.
//!
//! Run: `cargo bench -p herald-server --bench storage` (`HERALD_BENCH_SECS` sets the length of
//! each throughput run, default 5). Herald and the load run in this one process over loopback
//! HTTP, so the figures include HTTP parsing on both sides and share the machine's cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_protocol::auth::Grants;
use herald_protocol::sse::{Decoder, Item};
use herald_server::Config;
use herald_server::auth::{Authenticator, claims_for};
use herald_server::config::StorageKind;
use serde_json::json;
use tokio::net::TcpListener;

const REPLAY_EVENTS: usize = 10_000;
const SECRET: &str = "benchmark-secret-of-at-least-32-bytes";

/// An HTTP client holding a credential that may publish anywhere.
fn publisher() -> reqwest::Client {
    let grants = Grants {
        publish: vec!["*".into()],
        subscribe: vec!["*".into()],
        admin: true,
    };
    let token = Authenticator::with_secret(SECRET)
        .sign(&claims_for("bench", grants, Duration::from_secs(24 * 3600)))
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

struct Bench {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    data_dir: std::path::PathBuf,
}

impl Bench {
    async fn start(storage: StorageKind) -> Self {
        let data_dir =
            std::env::temp_dir().join(format!("herald-bench-{}-{storage:?}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let config = Config {
            data_dir: data_dir.clone(),
            static_dir: Some(data_dir.join("none")),
            storage,
            history_max_events: 1_000_000,
            jwt_secret: Some(SECRET.into()),
            publish_rate: 0,
            max_connections_per_address: 0,
            new_client_rate: 0,
            ..Config::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(herald_server::run(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: publisher(),
            stop: Some(stop),
            data_dir,
        }
    }

    async fn publish(&self, topic: &str, n: u64) -> String {
        let body =
            json!({"topic": topic, "data": {"n": n, "text": "a typical small event payload"}});
        let response = self
            .http
            .post(format!("{}/api/publish", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let ack: serde_json::Value = response.json().await.unwrap();
        ack["id"].as_str().unwrap().to_owned()
    }

    /// Acknowledged publishes per second with `publishers` concurrent keep-alive publishers.
    async fn throughput(self: &Arc<Self>, publishers: usize, length: Duration) -> (f64, Duration) {
        let done = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let latency_total = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..publishers)
            .map(|p| {
                let (bench, done, count, latency_total) = (
                    Arc::clone(self),
                    Arc::clone(&done),
                    Arc::clone(&count),
                    Arc::clone(&latency_total),
                );
                tokio::spawn(async move {
                    let topic = format!("throughput/{p}");
                    while !done.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        bench.publish(&topic, count.load(Ordering::Relaxed)).await;
                        latency_total.fetch_add(
                            u64::try_from(sent.elapsed().as_micros()).unwrap(),
                            Ordering::Relaxed,
                        );
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(length).await;
        done.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let acks = count.load(Ordering::Relaxed);
        let mean = Duration::from_micros(latency_total.load(Ordering::Relaxed) / acks.max(1));
        (acks as f64 / elapsed, mean)
    }

    /// New subscriptions per second (each gets a new client id, then disconnects) with
    /// `connectors` concurrent clients.
    async fn connect_rate(self: &Arc<Self>, connectors: usize, length: Duration) -> f64 {
        let done = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..connectors)
            .map(|_| {
                let (bench, done, count) =
                    (Arc::clone(self), Arc::clone(&done), Arc::clone(&count));
                tokio::spawn(async move {
                    while !done.load(Ordering::Relaxed) {
                        let mut response = bench
                            .http
                            .get(format!("{}/events?topic=connect", bench.base))
                            .send()
                            .await
                            .unwrap();
                        let mut decoder = Decoder::new();
                        'greeting: while let Some(chunk) = response.chunk().await.unwrap() {
                            for item in decoder.feed(&chunk) {
                                if matches!(item, Item::Event(e) if e.event == "herald.connected") {
                                    break 'greeting;
                                }
                            }
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(length).await;
        done.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    }

    /// Publishes `REPLAY_EVENTS` after a subscriber's position, then times a reconnect that
    /// replays them all.
    async fn replay(&self) -> Duration {
        let response = self
            .http
            .get(format!("{}/events?topic=replay", self.base))
            .send()
            .await
            .unwrap();
        let mut decoder = Decoder::new();
        let mut response = response;
        let start_id = loop {
            let chunk = response.chunk().await.unwrap().unwrap();
            if decoder
                .feed(&chunk)
                .iter()
                .any(|item| matches!(item, Item::Event(e) if e.event == "herald.connected"))
            {
                break decoder.last_event_id().to_owned();
            }
        };
        drop(response);
        for n in 0..REPLAY_EVENTS {
            self.publish("replay", n as u64).await;
        }
        let started = Instant::now();
        let mut response = self
            .http
            .get(format!("{}/events?topic=replay", self.base))
            .header("Last-Event-ID", start_id)
            .send()
            .await
            .unwrap();
        let mut decoder = Decoder::new();
        let mut received = 0;
        while received < REPLAY_EVENTS {
            let chunk = response.chunk().await.unwrap().expect("the replay goes on");
            received += decoder
                .feed(&chunk)
                .iter()
                .filter(|item| matches!(item, Item::Event(e) if e.event == "message"))
                .count();
        }
        started.elapsed()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("HERALD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let length = Duration::from_secs(seconds);
    println!(
        "Herald storage benchmark ({seconds} s per throughput run, server and load in one process, {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<8} {:>11} {:>16} {:>12} {:>24} {:>22}",
        "storage",
        "publishers",
        "acks/s",
        "mean ack",
        "replay 10,000 missed",
        "connects/s (8 at once)"
    );
    for storage in [StorageKind::Sqlite, StorageKind::Memory] {
        let bench = Arc::new(Bench::start(storage).await);
        // Let the server finish starting (it answers /healthz once serving).
        while bench
            .http
            .get(format!("{}/healthz", bench.base))
            .send()
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut rows = Vec::new();
        for publishers in [1, 8] {
            rows.push((publishers, bench.throughput(publishers, length).await));
        }
        let replay = bench.replay().await;
        let connects = bench.connect_rate(8, length).await;
        for (publishers, (rate, mean)) in rows {
            let (replay_text, connect_text) = if publishers == 1 {
                let replay_ms = replay.as_secs_f64() * 1000.0;
                let replay_rate = REPLAY_EVENTS as f64 / replay.as_secs_f64();
                (
                    format!("{replay_ms:.0} ms ({replay_rate:.0} events/s)"),
                    format!("{connects:.0}"),
                )
            } else {
                (String::new(), String::new())
            };
            println!(
                "{:<8} {:>11} {:>16.0} {:>10.2}ms {:>24} {:>22}",
                format!("{storage:?}").to_lowercase(),
                publishers,
                rate,
                mean.as_secs_f64() * 1000.0,
                replay_text,
                connect_text
            );
        }
    }
}
