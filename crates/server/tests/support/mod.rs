//! Test helpers: a real Herald on `127.0.0.1:0` and a native SSE client built on the protocol's
//! decoder. Every wait is bounded by a deadline and ends as soon as its condition holds.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc
)]

pub mod services;
pub mod storage;

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_protocol::Envelope;
use herald_protocol::api::PublishResponse;
use herald_protocol::auth::Grants;
use herald_protocol::sse::{Decoder, Item, SseEvent};
use herald_protocol::system::{self, Closing, Connected};
use herald_server::Config;
use herald_server::auth::{Authenticator, claims_for};
use herald_server::storage::Storage;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The HS256 key every test server verifies tokens with.
pub const TEST_SECRET: &str = "test-secret-of-at-least-thirty-two-bytes";

/// A token signed with [`TEST_SECRET`] for `sub`, valid for `ttl`.
pub fn token_with(sub: &str, grants: Grants, ttl: Duration) -> String {
    Authenticator::with_secret(TEST_SECRET)
        .sign(&claims_for(sub, grants, ttl))
        .unwrap()
}

/// A token valid for an hour.
pub fn token(sub: &str, publish: &[&str], subscribe: &[&str], admin: bool) -> String {
    let grants = Grants {
        publish: publish.iter().map(ToString::to_string).collect(),
        subscribe: subscribe.iter().map(ToString::to_string).collect(),
        admin,
    };
    token_with(sub, grants, Duration::from_secs(3600))
}

/// An HTTP client that sends `token` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
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

/// A client holding an operator's credential: publish and subscribe anywhere, admin. What tests
/// about everything but authorization use.
pub fn operator_client() -> reqwest::Client {
    client_with_token(&token("operator", &["*"], &["*"], true))
}

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
    /// [`TEST_SECRET`], and no publish rate limit (tests publish in bursts).
    pub fn config() -> Config {
        let data_dir = fresh_data_dir();
        Config {
            static_dir: data_dir.join("no-web-app"),
            data_dir,
            jwt_secret: Some(TEST_SECRET.into()),
            publish_rate: 0,
            ..Config::default()
        }
    }

    pub async fn start_on(config: Config, storage: Arc<dyn Storage>) -> Self {
        Self::launch(config, |listener, config, signal| {
            herald_server::run_with_storage(listener, config, storage, signal)
        })
        .await
    }

    /// A server on memory storage wrapped in [`storage::Instrumented`], to inject faults.
    pub async fn start_instrumented() -> (Self, Arc<storage::Instrumented>) {
        let storage = Arc::new(storage::Instrumented::new(
            herald_server::storage::MemoryStorage::new(100),
        ));
        let server = Self::start_on(Self::config(), Arc::clone(&storage) as Arc<dyn Storage>).await;
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
        let mut config = Self::config();
        config.redis = Some(redis_url.to_owned());
        adjust(&mut config);
        let node = Self::launch(config, herald_server::run).await;
        node.wait_ready().await;
        node
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let url = self.url("/readyz");
        self.eventually("the server is ready", || async {
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
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `check` holds, re-checking as the server's state changes.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + TIMEOUT;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

/// A data directory of its own for each server a test starts.
pub fn fresh_data_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "herald-test-{}-{n}-{}",
        std::process::id(),
        herald_server::ids::random_u32()
    ))
}

/// A native SSE client reading one response.
pub struct SseStream {
    pub headers: reqwest::header::HeaderMap,
    response: reqwest::Response,
    decoder: Decoder,
    items: VecDeque<Item>,
    /// The id in force at the last event handed to the test: what a client that stopped here
    /// would send as `Last-Event-ID` (the decoder may have read further ahead).
    last_event_id: String,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            headers: response.headers().clone(),
            response,
            decoder: Decoder::new(),
            items: VecDeque::new(),
            last_event_id: String::new(),
        }
    }

    /// The next item, or `None` when the server ended the stream.
    pub async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.items.pop_front() {
                if let Item::Event(event) = &item {
                    self.last_event_id.clone_from(&event.id);
                }
                return Some(item);
            }
            let chunk = tokio::time::timeout(TIMEOUT, self.response.chunk())
                .await
                .expect("a frame within the timeout")
                .expect("the stream reads cleanly")?;
            self.items.extend(self.decoder.feed(&chunk));
        }
    }

    /// The next event, or `None` when the stream ends or breaks (its server died, say).
    pub async fn next_event_or_end(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(item) = self.items.pop_front() {
                if let Item::Event(event) = item {
                    self.last_event_id.clone_from(&event.id);
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(TIMEOUT, self.response.chunk())
                .await
                .expect("a frame or the end within the timeout");
            match chunk {
                Ok(Some(chunk)) => self.items.extend(self.decoder.feed(&chunk)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event, skipping comments and `retry`; fails if the stream ends.
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            match self.next_item().await.expect("the stream to go on") {
                Item::Event(event) => return event,
                Item::Comment(_) | Item::Retry(_) => {}
            }
        }
    }

    /// The next event, which must have type `kind`.
    pub async fn expect(&mut self, kind: &str) -> SseEvent {
        let event = self.next_event().await;
        assert_eq!(event.event, kind, "unexpected event: {event:?}");
        event
    }

    pub async fn connected(&mut self) -> Connected {
        serde_json::from_str(&self.expect(system::CONNECTED).await.data).unwrap()
    }

    /// The next event as an envelope, checking that the frame and the envelope agree.
    pub async fn envelope(&mut self) -> Envelope {
        let event = self.next_event().await;
        let envelope: Envelope = serde_json::from_str(&event.data)
            .unwrap_or_else(|err| panic!("event {event:?} carries an envelope: {err}"));
        assert_eq!(envelope.id, event.id, "frame id and envelope id agree");
        assert_eq!(
            envelope.kind, event.event,
            "frame event and envelope type agree"
        );
        envelope
    }

    pub async fn closing(&mut self) -> Closing {
        serde_json::from_str(&self.expect(system::CLOSING).await.data).unwrap()
    }

    /// Asserts the server ends the stream without sending another event.
    pub async fn assert_ends(mut self) {
        while let Some(item) = self.next_item().await {
            assert!(
                !matches!(item, Item::Event(_)),
                "expected the end of the stream, got {item:?}"
            );
        }
    }

    /// What this client would send as `Last-Event-ID` if it reconnected now.
    pub fn last_event_id(&self) -> &str {
        if self.items.is_empty() {
            // Everything decoded was handed out, so the decoder's answer is exact; it includes
            // frames that carry only an id.
            self.decoder.last_event_id()
        } else {
            &self.last_event_id
        }
    }
}

/// The real `herald` binary running in a child process.
pub struct HeraldProcess {
    pub base: String,
    pub child: tokio::process::Child,
}

impl HeraldProcess {
    /// Starts `herald --listen 127.0.0.1:0 --data-dir <data_dir> ARGS` and waits until it listens.
    pub async fn start(data_dir: &std::path::Path, args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--static-dir")
            .arg(data_dir.join("no-web-app"))
            .args(args)
            .env("HERALD_LOG", "info")
            .env("HERALD_JWT_SECRET", TEST_SECRET)
            .env("HERALD_PUBLISH_RATE", "0")
            .env("HERALD_MAX_CONNECTIONS_PER_ADDRESS", "0")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = tokio::time::timeout(TIMEOUT, log.next_line())
                .await
                .expect("herald logs in time")
                .unwrap()
                .expect("herald starts listening before its log ends");
            if let Some((_, address)) = line.split_once("listening on ") {
                break address.trim().to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        Self {
            base: format!("http://{address}"),
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Resident memory of the process, in KiB, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it to be gone.
    pub async fn crash(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }
}

/// Runs `herald ARGS` (with [`TEST_SECRET`] as its key) expecting it to refuse to start;
/// returns what it printed on stderr.
pub async fn herald_refuses(args: &[&str]) -> String {
    herald_refuses_with(args, &[("HERALD_JWT_SECRET", TEST_SECRET)]).await
}

/// Runs `herald ARGS` with only the environment variables `env` of Herald's own, expecting it
/// to refuse to start; returns what it printed on stderr.
pub async fn herald_refuses_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    for (name, _) in std::env::vars() {
        if name.starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("HERALD_LOG", "info")
        .envs(env.iter().copied());
    let output = tokio::time::timeout(TIMEOUT, command.output())
        .await
        .expect("herald exits in time")
        .unwrap();
    assert!(!output.status.success(), "herald started with {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
