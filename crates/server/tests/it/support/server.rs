//! [`TestServer`]: a real Herald on `127.0.0.1:0` in the test's own runtime, on the storage a
//! test asks for, with helpers for the requests tests make.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_protocol::api::PublishResponse;
use herald_server::Config;
use herald_server::storage::Storage;
use herald_server::storage::testing::Instrumented;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::sse::SseStream;
use super::tls::{TestCertificate, https_builder, https_url};
use super::tokens::{TEST_SECRET, bearer, operator_client, operator_token};
use super::{TIMEOUT, eventually, fresh_data_dir, services};

/// A Herald server running in this test's runtime.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    data_dir: PathBuf,
    /// The Redis this server was given for itself alone, stopped with it.
    own_redis: Option<services::RedisServer>,
}

/// Where a test server keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Memory,
    /// A Redis of the server's own, started for it: cluster mode with one node.
    Redis,
}

impl Store {
    pub const ALL: [Self; 3] = [Self::Sqlite, Self::Memory, Self::Redis];
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with the default (durable) storage in a fresh data directory, adjusted by
    /// `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Self::config();
        adjust(&mut config);
        let storage = herald_server::open_storage(&config).expect("storage opens");
        Self::start_on(config, storage).await
    }

    /// Settings for a test server: a fresh data directory, no web app, tokens signed with
    /// [`TEST_SECRET`] and checked to the second (the tests sign with the server's own clock),
    /// and no limit on the rate of publishes (requests or bytes) or of new clients (tests
    /// publish and connect in bursts, all from one address).
    pub fn config() -> Config {
        let data_dir = fresh_data_dir();
        Config {
            static_dir: Some(data_dir.join("no-web-app")),
            data_dir,
            jwt_secret: Some(TEST_SECRET.into()),
            jwt_leeway: Duration::ZERO,
            publish_rate: 0,
            publish_byte_rate: 0,
            new_client_rate: 0,
            ..Config::default()
        }
    }

    pub async fn start_on(config: Config, storage: Arc<dyn Storage>) -> Self {
        Self::launch(config, |listener, config, signal| {
            herald_server::run_with_storage(listener, config, storage, signal)
        })
        .await
    }

    /// A server on memory storage wrapped in [`Instrumented`], to inject faults.
    pub async fn start_instrumented() -> (Self, Arc<Instrumented>) {
        Self::start_instrumented_with(|_| {}).await
    }

    /// [`TestServer::start_instrumented`], adjusted by `adjust`.
    pub async fn start_instrumented_with(
        adjust: impl FnOnce(&mut Config),
    ) -> (Self, Arc<Instrumented>) {
        let mut config = Self::config();
        adjust(&mut config);
        let storage = Arc::new(Instrumented::new(
            herald_server::storage::MemoryStorage::new(100),
        ));
        let server = Self::start_on(config, Arc::clone(&storage) as Arc<dyn Storage>).await;
        (server, storage)
    }

    /// Binds `127.0.0.1:0` and spawns `serve` on it with a shutdown signal the server holds.
    async fn launch<F>(
        config: Config,
        serve: impl FnOnce(TcpListener, Config, futures_util::future::BoxFuture<'static, ()>) -> F,
    ) -> Self
    where
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let data_dir = config.data_dir.clone();
        let (shutdown, signal) = oneshot::channel::<()>();
        let signal = Box::pin(async {
            let _ = signal.await;
        });
        let task = tokio::spawn(serve(listener, config, signal));
        Self {
            base: format!("http://{address}"),
            http: operator_client(),
            shutdown: Some(shutdown),
            task: Some(task),
            data_dir,
            own_redis: None,
        }
    }

    /// A server keeping its state in `store`, adjusted by `adjust`.
    pub async fn start_in(store: Store, adjust: impl FnOnce(&mut Config)) -> Self {
        match store {
            Store::Sqlite => Self::start_with(adjust).await,
            Store::Memory => {
                Self::start_with(|config| {
                    config.storage = herald_server::config::StorageKind::Memory;
                    adjust(config);
                })
                .await
            }
            Store::Redis => {
                let redis = services::RedisServer::start().await;
                let mut server = Self::start_node(&redis.url(), adjust).await;
                server.own_redis = Some(redis);
                server
            }
        }
    }

    /// A cluster node keeping its state in the Redis at `redis_url`, running as `herald --redis`
    /// does; returns once it is ready (following the shared log).
    pub async fn start_node(redis_url: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        let node = Self::launch_node(redis_url, adjust).await;
        node.wait_ready().await;
        node
    }

    /// [`TestServer::start_node`] without waiting for it to be ready.
    pub async fn launch_node(redis_url: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Self::config();
        config.redis = Some(redis_url.to_owned());
        adjust(&mut config);
        Self::launch(config, herald_server::run).await
    }

    /// A server speaking HTTPS with `certificate`, adjusted by `adjust`; its `base` and `http`
    /// are HTTPS (HTTP/2 negotiated), so every helper goes over TLS.
    pub async fn start_https(
        certificate: &TestCertificate,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut server = Self::start_with(|config| {
            certificate.configure(config);
            adjust(config);
        })
        .await;
        server.base = https_url(&server, "");
        server.http = https_builder(&server, &certificate.pem)
            .default_headers(bearer(&operator_token()))
            .build()
            .unwrap();
        server
    }

    /// The address the server listens on.
    pub fn address(&self) -> std::net::SocketAddr {
        let host = self.base.rsplit('/').next().unwrap();
        let port: u16 = host.rsplit(':').next().unwrap().parse().unwrap();
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let url = self.url("/readyz");
        eventually("the server is ready", || async {
            let response = self.http.get(&url).send().await;
            response.is_ok_and(|response| response.status() == 200)
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens `GET /events?{query}` and checks it answered 200.
    pub async fn subscribe(&self, query: &str) -> SseStream {
        self.subscribe_after(query, None).await
    }

    /// One stream per topic, each past its `herald.connected`.
    pub async fn connected_streams(&self, topics: &[&str]) -> Vec<SseStream> {
        let mut streams = Vec::with_capacity(topics.len());
        for topic in topics {
            let mut stream = self.subscribe(&format!("topic={topic}")).await;
            stream.connected().await;
            streams.push(stream);
        }
        streams
    }

    /// Opens `GET /events?{query}` as the holder of `http`'s credential (a plain client is
    /// anonymous) and waits for its `herald.connected`.
    pub async fn connected_as(&self, http: &reqwest::Client, query: &str) -> SseStream {
        let mut stream = Self::open(http, &self.url(&format!("/events?{query}")), None).await;
        stream.connected().await;
        stream
    }

    /// Opens `GET /events?{query}` with a `Last-Event-ID` header.
    pub async fn subscribe_after(&self, query: &str, last_event_id: Option<&str>) -> SseStream {
        Self::open(
            &self.http,
            &self.url(&format!("/events?{query}")),
            last_event_id,
        )
        .await
    }

    /// Opens a stream at `url` and checks it answered 200.
    async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> SseStream {
        let mut request = http.get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = tokio::time::timeout(TIMEOUT, request.send())
            .await
            .expect("headers in time")
            .unwrap();
        assert_eq!(response.status(), 200, "GET {url}");
        SseStream::new(response)
    }

    pub async fn get_stream(&self, path: &str) -> SseStream {
        let response = tokio::time::timeout(TIMEOUT, self.http.get(self.url(path)).send())
            .await
            .expect("headers in time")
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        SseStream::new(response)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Publishes and returns the acknowledgement, failing the test on any other answer.
    pub async fn publish(&self, topic: &str, kind: &str, data: Value) -> PublishResponse {
        let response = self
            .post_json(
                "/api/publish",
                &json!({"topic": topic, "type": kind, "data": data}),
            )
            .await;
        assert_eq!(response.status(), 200, "publish to {topic}");
        response.json().await.unwrap()
    }

    /// Posts `body` as is, with `content_type` if given; returns the status and the JSON answer.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = self.http.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// How many connections `GET /api/clients` lists.
    pub async fn live_connections(&self) -> usize {
        self.get_json("/api/clients")
            .await
            .1
            .as_array()
            .unwrap()
            .len()
    }

    /// The value of one sample line of `/metrics`, such as `herald_connections` or
    /// `herald_demo_streams_cancelled_total{demo="countdown"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.try_metric(sample).await.expect("/metrics answers")
    }

    /// [`TestServer::metric`], or `None` when `/metrics` cannot be read (the server refuses
    /// connections past a limit, say).
    pub async fn try_metric(&self, sample: &str) -> Option<f64> {
        let response = self.http.get(self.url("/metrics")).send().await.ok()?;
        let text = response.text().await.ok()?;
        Some(
            text.lines()
                .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0.0),
        )
    }

    /// Signals shutdown and waits for the server to return; returns how long that took.
    pub async fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.shutdown.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
