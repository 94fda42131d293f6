//! Settings: command-line flags, then environment variables, then an optional TOML file, then
//! defaults. Clap reads the first two; [`FileSettings`] the third.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The `herald` command line.
#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald, a real-time event hub: pushes events to browsers over Server-Sent Events.",
    long_about = "Herald, a real-time event hub: pushes events to browsers over Server-Sent \
                  Events.\n\nServing is the default command. Every setting can also come from an \
                  environment variable or a TOML file (--config); flags win over the environment, \
                  which wins over the file. Durations take a unit (15s, 500ms, 2h); a bare number \
                  is seconds.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the hub, the API and the web app (the default).
    Serve(ServeArgs),
    /// Print a token signed with the configured secret (or development key), for scripts.
    Token(TokenArgs),
}

/// The settings of `herald token`: the claims, and where the key comes from.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// A topic selector the token may publish to (`orders`, `rooms/*`, `*`); repeatable.
    #[arg(long, value_name = "SELECTOR")]
    pub publish: Vec<String>,
    /// A topic selector the token may subscribe to when private; repeatable.
    #[arg(long, value_name = "SELECTOR")]
    pub subscribe: Vec<String>,
    /// Allow the admin endpoints (list and close clients, broadcast).
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// The key settings, as for serving (`--jwt-secret`, `--dev`, `--data-dir`, `--config`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// The serve settings, whether given with or without the explicit `serve` command; for
    /// `token`, the settings that locate the key.
    pub fn into_serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => args,
            Some(Command::Token(args)) => args.serve,
            None => self.serve,
        }
    }
}

/// The settings of `herald serve`. Each is optional here so that a value from the file can fill
/// what neither a flag nor the environment gave.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free port (the bound address is logged as
    /// "listening on <addr:port>"). [default: 127.0.0.1:8080]
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory for Herald's data. [default: ./data]
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Directory of the built web app, served at `/`. [default: dist]
    #[arg(long, env = "HERALD_STATIC_DIR", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,

    /// Development mode: loopback only; without --jwt-secret, signs demo credentials with a key
    /// kept in the data directory, and offers them to the console (`POST /api/dev/token`).
    #[arg(long, env = "HERALD_DEV", value_parser = clap::builder::FalseyValueParser::new())]
    pub dev: bool,

    /// HS256 key for JSON Web Tokens.
    #[arg(
        long,
        env = "HERALD_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// PEM file with the RS256 or ES256 public key for JSON Web Tokens.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY", value_name = "PEM_FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// A topic selector (`admin/*`, `billing`) whose topics are private: subscribing needs a
    /// matching `subscribe` selector in the credential. Repeatable, or comma-separated.
    #[arg(
        long = "private-topic",
        env = "HERALD_PRIVATE_TOPICS",
        value_name = "SELECTOR",
        value_delimiter = ','
    )]
    pub private_topics: Vec<String>,

    /// An origin allowed to call Herald from a browser with credentials
    /// (`https://app.example.com`); repeatable, or comma-separated. `*` allows every origin
    /// without credentials. [default: none, same origin only]
    #[arg(
        long = "cors-origin",
        env = "HERALD_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Maximum simultaneous connections of one user. [default: 100]
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_USER", value_name = "N")]
    pub max_connections_per_user: Option<usize>,

    /// Maximum simultaneous connections from one address; 0 for no limit. [default: 1000]
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    pub max_connections_per_address: Option<usize>,

    /// Take the client's address from the last `X-Forwarded-For` entry: set it only behind a
    /// reverse proxy that sets that header, or clients can choose their own address.
    #[arg(long, env = "HERALD_TRUST_FORWARDED_FOR", value_parser = clap::builder::FalseyValueParser::new())]
    pub trust_forwarded_for: bool,

    /// Sustained publishes per second allowed to one credential (user); 0 for no limit.
    /// [default: 500]
    #[arg(long, env = "HERALD_PUBLISH_RATE", value_name = "PER_SECOND")]
    pub publish_rate: Option<u32>,

    /// Publishes one credential may make at once before the rate applies. [default: 1000]
    #[arg(long, env = "HERALD_PUBLISH_BURST", value_name = "N")]
    pub publish_burst: Option<u32>,

    /// How long the development credentials handed to the console are valid. [default: 1h]
    #[arg(long, env = "HERALD_DEV_TOKEN_TTL", value_parser = parse_duration, value_name = "DURATION")]
    pub dev_token_ttl: Option<Duration>,

    /// Notifications kept per user; the oldest go first. [default: 1000]
    #[arg(long, env = "HERALD_MAX_NOTIFICATIONS_PER_USER", value_name = "N")]
    pub max_notifications_per_user: Option<usize>,

    /// Cluster mode: keep the event log, client ids and inboxes in this Redis
    /// (`redis://[user:password@]host:port[/db]`) and share them with every node pointed at it.
    /// Replaces `--storage`.
    #[arg(long, env = "HERALD_REDIS_URL", value_name = "URL")]
    pub redis: Option<String>,

    /// Prefix of every Redis key Herald uses, so several deployments can share one Redis.
    /// [default: herald:]
    #[arg(long, env = "HERALD_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,

    /// TOML file with any of these settings, named as the long flags with `_` for `-`.
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Longest silence on an idle stream before a heartbeat comment is sent. [default: 15s]
    #[arg(long, env = "HERALD_HEARTBEAT", value_parser = parse_duration, value_name = "DURATION")]
    pub heartbeat: Option<Duration>,

    /// Base reconnection delay told to clients; each connection gets up to 50% more as jitter so
    /// a restart does not cause a reconnect storm. [default: 3s]
    #[arg(long, env = "HERALD_RETRY", value_parser = parse_duration, value_name = "DURATION")]
    pub retry: Option<Duration>,

    /// Events queued for one connection before it counts as a slow consumer and is closed with
    /// reason `slow_consumer`, to resume from its last event id. [default: 1024]
    #[arg(long, env = "HERALD_QUEUE_CAPACITY", value_name = "EVENTS")]
    pub queue_capacity: Option<usize>,

    /// The most data each event stream leaves unsent in the kernel (TCP_NOTSENT_LOWAT): once
    /// a subscriber's kernel holds this much that its peer has not yet taken, further events
    /// wait in the connection's queue and count toward `queue_capacity`. Without a limit a
    /// subscriber that stops reading soaks up its whole send buffer (up to 4 MiB on Linux), and
    /// copying events into the buffers of stalled subscribers costs every other subscriber
    /// time. Data in flight to a reading client is not limited. 0 removes the limit.
    /// [default: 16384]
    #[arg(long, env = "HERALD_STREAM_UNSENT_LIMIT", value_name = "BYTES")]
    pub stream_unsent_limit: Option<usize>,

    /// The kernel's send buffer for each event stream (SO_SNDBUF; Linux reserves twice this for
    /// its bookkeeping), which bounds unsent and unacknowledged data together, and with it the
    /// throughput of a distant client. 0 leaves it to the kernel's autotuning. [default: 0]
    #[arg(long, env = "HERALD_STREAM_SEND_BUFFER", value_name = "BYTES")]
    pub stream_send_buffer: Option<usize>,

    /// Maximum lifetime of one connection, after which it is closed with reason `max_lifetime`
    /// and the client reconnects; 0 for no limit. [default: 1h]
    #[arg(long, env = "HERALD_MAX_CONNECTION_LIFETIME", value_parser = parse_duration, value_name = "DURATION")]
    pub max_connection_lifetime: Option<Duration>,

    /// Maximum topics one connection may subscribe to. [default: 64]
    #[arg(long, env = "HERALD_MAX_TOPICS_PER_CONNECTION", value_name = "N")]
    pub max_topics_per_connection: Option<usize>,

    /// Maximum simultaneous connections holding one client id. [default: 32]
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_CLIENT", value_name = "N")]
    pub max_connections_per_client: Option<usize>,

    /// Maximum topics one publish may name. [default: 64]
    #[arg(long, env = "HERALD_MAX_TOPICS_PER_PUBLISH", value_name = "N")]
    pub max_topics_per_publish: Option<usize>,

    /// Largest request body accepted, in bytes. [default: 1048576]
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Events kept for replay per topic (and per client stream). [default: 1000]
    #[arg(long, env = "HERALD_HISTORY_MAX_EVENTS", value_name = "N")]
    pub history_max_events: Option<usize>,

    /// How long events are kept for replay. [default: 1h]
    #[arg(long, env = "HERALD_HISTORY_MAX_AGE", value_parser = parse_duration, value_name = "DURATION")]
    pub history_max_age: Option<Duration>,

    /// How long a client id stays valid after its last connection ends. [default: 24h]
    #[arg(long, env = "HERALD_CLIENT_TTL", value_parser = parse_duration, value_name = "DURATION")]
    pub client_ttl: Option<Duration>,

    /// Where events and client ids are kept: `sqlite` (durable, in the data directory) or
    /// `memory` (lost on restart). [default: sqlite]
    #[arg(long, env = "HERALD_STORAGE", value_name = "KIND")]
    pub storage: Option<StorageKind>,

    /// Largest size of the SQLite database in bytes; past it publishes fail with 503 as on a full
    /// disk. 0 for no limit. [default: 0]
    #[arg(long, env = "HERALD_STORAGE_MAX_BYTES", value_name = "BYTES")]
    pub storage_max_bytes: Option<u64>,

    /// How often history retention and client expiry run. [default: 10s]
    #[arg(long, env = "HERALD_RETENTION_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
    pub retention_interval: Option<Duration>,

    /// How long a write to a client may make no progress before the connection is dropped:
    /// a subscriber that stops reading cannot hold its connection open. [default: 30s]
    #[arg(long, env = "HERALD_WRITE_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub write_timeout: Option<Duration>,

    /// How long shutdown waits for streams to flush their `herald.closing` frame before the
    /// process exits regardless. [default: 1s]
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Option<Duration>,
}

/// Where the event log and the client directory live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// An SQLite database in the data directory: survives restarts and crashes.
    Sqlite,
    /// This process's memory: fast, lost on restart.
    Memory,
}

/// The file form of [`ServeArgs`]: the same names, snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    static_dir: Option<PathBuf>,
    dev: Option<bool>,
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    private_topics: Option<Vec<String>>,
    cors_origins: Option<Vec<String>>,
    max_connections_per_user: Option<usize>,
    max_connections_per_address: Option<usize>,
    trust_forwarded_for: Option<bool>,
    publish_rate: Option<u32>,
    publish_burst: Option<u32>,
    dev_token_ttl: Option<FileDuration>,
    max_notifications_per_user: Option<usize>,
    redis: Option<String>,
    redis_prefix: Option<String>,
    heartbeat: Option<FileDuration>,
    retry: Option<FileDuration>,
    queue_capacity: Option<usize>,
    stream_unsent_limit: Option<usize>,
    stream_send_buffer: Option<usize>,
    max_connection_lifetime: Option<FileDuration>,
    max_topics_per_connection: Option<usize>,
    max_connections_per_client: Option<usize>,
    max_topics_per_publish: Option<usize>,
    max_body_bytes: Option<usize>,
    history_max_events: Option<usize>,
    history_max_age: Option<FileDuration>,
    client_ttl: Option<FileDuration>,
    storage: Option<StorageKind>,
    storage_max_bytes: Option<u64>,
    retention_interval: Option<FileDuration>,
    write_timeout: Option<FileDuration>,
    shutdown_grace: Option<FileDuration>,
}

/// A duration in the file: a string with a unit, or a number of seconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "toml::Value")]
struct FileDuration(Duration);

impl TryFrom<toml::Value> for FileDuration {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        match value {
            toml::Value::String(text) => parse_duration(&text).map(Self),
            toml::Value::Integer(secs) if secs >= 0 => {
                Ok(Self(Duration::from_secs(secs.unsigned_abs())))
            }
            other => Err(format!(
                "expected a duration such as \"15s\", found {}",
                other.type_str()
            )),
        }
    }
}

/// Parses `15s`, `500ms`, `1h 30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|err| format!("invalid duration {text:?}: {err}"))
}

/// Why the settings could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub static_dir: PathBuf,
    pub dev: bool,
    /// HS256 key.
    pub jwt_secret: Option<String>,
    /// PEM file with an RS256 or ES256 public key.
    pub jwt_public_key: Option<PathBuf>,
    /// Selectors of the topics that need a `subscribe` grant.
    pub private_topics: Vec<String>,
    /// Origins allowed to call with credentials, or `["*"]` for any origin without them.
    pub cors_origins: Vec<String>,
    pub max_connections_per_user: usize,
    /// `None` means no limit.
    pub max_connections_per_address: Option<usize>,
    pub trust_forwarded_for: bool,
    /// Per second; 0 means no limit.
    pub publish_rate: u32,
    pub publish_burst: u32,
    pub dev_token_ttl: Duration,
    pub max_notifications_per_user: usize,
    pub heartbeat: Duration,
    pub retry: Duration,
    pub queue_capacity: usize,
    /// `None`: no limit on the unsent data of event streams.
    pub stream_unsent_limit: Option<usize>,
    /// `None` leaves the send buffer of event streams to the kernel.
    pub stream_send_buffer: Option<usize>,
    /// `None` means connections may live forever.
    pub max_connection_lifetime: Option<Duration>,
    pub max_topics_per_connection: usize,
    pub max_connections_per_client: usize,
    pub max_topics_per_publish: usize,
    pub max_body_bytes: usize,
    pub history_max_events: usize,
    pub history_max_age: Duration,
    pub client_ttl: Duration,
    pub storage: StorageKind,
    /// `None` means no limit.
    pub storage_max_bytes: Option<u64>,
    /// Cluster mode: the Redis URL; then `storage` is unused.
    pub redis: Option<String>,
    pub redis_prefix: String,
    pub retention_interval: Duration,
    pub write_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// The largest `stream_send_buffer` or `stream_unsent_limit` accepted: far beyond any kernel's
/// limit already.
const MAX_STREAM_BUFFER: usize = 64 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            static_dir: PathBuf::from("dist"),
            dev: false,
            jwt_secret: None,
            jwt_public_key: None,
            private_topics: Vec::new(),
            cors_origins: Vec::new(),
            max_connections_per_user: 100,
            max_connections_per_address: Some(1000),
            trust_forwarded_for: false,
            publish_rate: 500,
            publish_burst: 1000,
            dev_token_ttl: Duration::from_secs(3600),
            max_notifications_per_user: 1000,
            heartbeat: Duration::from_secs(15),
            retry: Duration::from_secs(3),
            queue_capacity: 1024,
            stream_unsent_limit: Some(16 * 1024),
            stream_send_buffer: None,
            max_connection_lifetime: Some(Duration::from_secs(3600)),
            max_topics_per_connection: 64,
            max_connections_per_client: 32,
            max_topics_per_publish: 64,
            max_body_bytes: 1024 * 1024,
            history_max_events: 1000,
            history_max_age: Duration::from_secs(3600),
            client_ttl: Duration::from_secs(24 * 3600),
            storage: StorageKind::Sqlite,
            storage_max_bytes: None,
            redis: None,
            redis_prefix: "herald:".into(),
            retention_interval: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Layers flags and environment (already merged by clap) over the file over the defaults,
    /// then checks the result.
    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let defaults = Self::default();
        let lifetime = args
            .max_connection_lifetime
            .or(file.max_connection_lifetime.map(|d| d.0))
            .or(defaults.max_connection_lifetime);
        let mut config = Self {
            listen: args.listen.or(file.listen).unwrap_or(defaults.listen),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
            static_dir: args
                .static_dir
                .or(file.static_dir)
                .unwrap_or(defaults.static_dir),
            dev: args.dev || file.dev.unwrap_or(false),
            jwt_secret: args
                .jwt_secret
                .or(file.jwt_secret)
                .filter(|s| !s.is_empty()),
            jwt_public_key: args.jwt_public_key.or(file.jwt_public_key),
            private_topics: non_empty(args.private_topics)
                .or(file.private_topics)
                .unwrap_or_default(),
            cors_origins: non_empty(args.cors_origins)
                .or(file.cors_origins)
                .unwrap_or_default(),
            max_connections_per_user: args
                .max_connections_per_user
                .or(file.max_connections_per_user)
                .unwrap_or(defaults.max_connections_per_user),
            max_connections_per_address: match args
                .max_connections_per_address
                .or(file.max_connections_per_address)
            {
                Some(0) => None,
                Some(n) => Some(n),
                None => defaults.max_connections_per_address,
            },
            trust_forwarded_for: args.trust_forwarded_for
                || file.trust_forwarded_for.unwrap_or(false),
            publish_rate: args
                .publish_rate
                .or(file.publish_rate)
                .unwrap_or(defaults.publish_rate),
            publish_burst: args
                .publish_burst
                .or(file.publish_burst)
                .unwrap_or(defaults.publish_burst),
            dev_token_ttl: pick(
                args.dev_token_ttl,
                file.dev_token_ttl,
                defaults.dev_token_ttl,
            ),
            max_notifications_per_user: args
                .max_notifications_per_user
                .or(file.max_notifications_per_user)
                .unwrap_or(defaults.max_notifications_per_user),
            heartbeat: pick(args.heartbeat, file.heartbeat, defaults.heartbeat),
            retry: pick(args.retry, file.retry, defaults.retry),
            queue_capacity: args
                .queue_capacity
                .or(file.queue_capacity)
                .unwrap_or(defaults.queue_capacity),
            stream_unsent_limit: match args.stream_unsent_limit.or(file.stream_unsent_limit) {
                Some(0) => None,
                Some(bytes) => Some(bytes),
                None => defaults.stream_unsent_limit,
            },
            stream_send_buffer: match args.stream_send_buffer.or(file.stream_send_buffer) {
                Some(0) => None,
                Some(bytes) => Some(bytes),
                None => defaults.stream_send_buffer,
            },
            max_connection_lifetime: lifetime.filter(|d| !d.is_zero()),
            max_topics_per_connection: args
                .max_topics_per_connection
                .or(file.max_topics_per_connection)
                .unwrap_or(defaults.max_topics_per_connection),
            max_connections_per_client: args
                .max_connections_per_client
                .or(file.max_connections_per_client)
                .unwrap_or(defaults.max_connections_per_client),
            max_topics_per_publish: args
                .max_topics_per_publish
                .or(file.max_topics_per_publish)
                .unwrap_or(defaults.max_topics_per_publish),
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(defaults.max_body_bytes),
            history_max_events: args
                .history_max_events
                .or(file.history_max_events)
                .unwrap_or(defaults.history_max_events),
            history_max_age: pick(
                args.history_max_age,
                file.history_max_age,
                defaults.history_max_age,
            ),
            client_ttl: pick(args.client_ttl, file.client_ttl, defaults.client_ttl),
            storage: args.storage.or(file.storage).unwrap_or(defaults.storage),
            storage_max_bytes: args
                .storage_max_bytes
                .or(file.storage_max_bytes)
                .filter(|bytes| *bytes > 0),
            redis: None,
            redis_prefix: defaults.redis_prefix.clone(),
            retention_interval: pick(
                args.retention_interval,
                file.retention_interval,
                defaults.retention_interval,
            ),
            write_timeout: pick(
                args.write_timeout,
                file.write_timeout,
                defaults.write_timeout,
            ),
            shutdown_grace: pick(
                args.shutdown_grace,
                file.shutdown_grace,
                defaults.shutdown_grace,
            ),
        };
        let storage_named = args.storage.or(file.storage).is_some();
        config.redis = args.redis.or(file.redis).filter(|url| !url.is_empty());
        if let Some(prefix) = args.redis_prefix.or(file.redis_prefix) {
            config.redis_prefix = prefix;
        }
        if config.redis.is_some() && storage_named {
            return Err(ConfigError::Invalid(
                "--redis and --storage name two different stores: cluster mode keeps everything in Redis, so leave --storage out".into(),
            ));
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("queue_capacity", self.queue_capacity),
            ("max_topics_per_connection", self.max_topics_per_connection),
            (
                "max_connections_per_client",
                self.max_connections_per_client,
            ),
            ("max_topics_per_publish", self.max_topics_per_publish),
            ("max_body_bytes", self.max_body_bytes),
            ("history_max_events", self.history_max_events),
            ("max_connections_per_user", self.max_connections_per_user),
            (
                "max_notifications_per_user",
                self.max_notifications_per_user,
            ),
            ("publish_burst", self.publish_burst as usize),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
        for (name, value, zero) in [
            (
                "stream_unsent_limit",
                self.stream_unsent_limit,
                "0 for no limit",
            ),
            (
                "stream_send_buffer",
                self.stream_send_buffer,
                "0 leaves it to the kernel",
            ),
        ] {
            if let Some(bytes) = value
                && bytes > MAX_STREAM_BUFFER
            {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be at most {MAX_STREAM_BUFFER} bytes ({zero}), not {bytes}"
                )));
            }
        }
        if self.redis_prefix.len() > 64 || self.redis_prefix.chars().any(char::is_control) {
            return Err(ConfigError::Invalid(
                "redis_prefix must be at most 64 bytes without control characters".into(),
            ));
        }
        if let Some(url) = &self.redis
            && !url.starts_with("redis://")
        {
            return Err(ConfigError::Invalid(format!(
                "--redis must be a redis:// URL, not {:?}",
                url.split("://").next().unwrap_or_default()
            )));
        }
        const DAY: Duration = Duration::from_secs(24 * 3600);
        const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        // (name, value, may it be zero, largest accepted)
        let durations = [
            ("heartbeat", self.heartbeat, false, DAY),
            ("retry", self.retry, true, DAY),
            ("write_timeout", self.write_timeout, false, DAY),
            ("retention_interval", self.retention_interval, false, DAY),
            ("shutdown_grace", self.shutdown_grace, true, DAY),
            ("history_max_age", self.history_max_age, false, CENTURY),
            ("client_ttl", self.client_ttl, false, CENTURY),
            ("dev_token_ttl", self.dev_token_ttl, false, CENTURY),
            (
                "max_connection_lifetime",
                self.max_connection_lifetime.unwrap_or(DAY),
                false,
                CENTURY,
            ),
        ];
        for (name, value, zero_allowed, max) in durations {
            if value.is_zero() && !zero_allowed {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be longer than zero"
                )));
            }
            if value > max {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be at most {}",
                    humantime::format_duration(max)
                )));
            }
        }
        if self.cors_origins.len() > 1 && self.cors_origins.iter().any(|origin| origin == "*") {
            return Err(ConfigError::Invalid(
                "cors_origins: \"*\" allows every origin without credentials and cannot be \
                 combined with named origins"
                    .into(),
            ));
        }
        for origin in &self.cors_origins {
            let valid = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/')
                    && axum::http::HeaderValue::from_str(origin).is_ok());
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "cors_origins: {origin:?} is not an origin such as https://app.example.com"
                )));
            }
        }
        if self
            .jwt_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 32)
        {
            return Err(ConfigError::Invalid(
                "jwt_secret must be at least 32 bytes; generate one with `openssl rand -hex 32`"
                    .into(),
            ));
        }
        if self.dev && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "development mode only listens on loopback, not {}",
                self.listen
            )));
        }
        Ok(())
    }
}

fn non_empty(values: Vec<String>) -> Option<Vec<String>> {
    (!values.is_empty()).then_some(values)
}

fn pick(flag: Option<Duration>, file: Option<FileDuration>, default: Duration) -> Duration {
    flag.or(file.map(|d| d.0)).unwrap_or(default)
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("herald").chain(args.iter().copied()))
            .expect("arguments parse")
            .into_serve_args()
    }

    #[test]
    fn defaults_bind_loopback_8080() {
        let config = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.static_dir, PathBuf::from("dist"));
        assert_eq!(config.heartbeat, Duration::from_secs(15));
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("herald-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("herald.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nheartbeat = \"2s\"\nqueue_capacity = 7\n",
        )
        .unwrap();
        let args = parse(&["--config", file.to_str().unwrap(), "--heartbeat", "500ms"]);
        let config = Config::resolve(args).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.heartbeat, Duration::from_millis(500));
        assert_eq!(config.queue_capacity, 7);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn explicit_serve_command_takes_the_same_flags() {
        let args = parse(&["serve", "--listen", "127.0.0.1:0"]);
        assert_eq!(args.listen, Some("127.0.0.1:0".parse().unwrap()));
    }

    #[test]
    fn the_example_configuration_file_is_valid() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/herald.example.toml"
        );
        let config = Config::resolve(parse(&["--config", example])).expect("the example resolves");
        assert_eq!(config.listen, Config::default().listen);
        assert_eq!(config.storage, StorageKind::Sqlite);
    }

    #[test]
    fn redis_switches_to_cluster_mode_with_a_prefix() {
        let config = Config::resolve(parse(&[
            "--redis",
            "redis://10.0.0.5:6379/2",
            "--redis-prefix",
            "shop:",
        ]))
        .unwrap();
        assert_eq!(config.redis.as_deref(), Some("redis://10.0.0.5:6379/2"));
        assert_eq!(config.redis_prefix, "shop:");
        assert_eq!(Config::default().redis_prefix, "herald:");
        let bad_prefix = parse(&["--redis", "redis://h:1", "--redis-prefix", "a\nb"]);
        assert!(Config::resolve(bad_prefix).is_err());
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = toml::from_str::<FileSettings>("listn = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn development_mode_stays_on_loopback() {
        let args = parse(&["--dev", "--listen", "0.0.0.0:8080"]);
        assert!(matches!(
            Config::resolve(args),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn absurd_durations_are_refused() {
        for args in [
            &["--heartbeat", "1000d"][..],
            &["--retry", "1000000h"],
            &["--write-timeout", "0"],
        ] {
            assert!(
                matches!(Config::resolve(parse(args)), Err(ConfigError::Invalid(_))),
                "{args:?}"
            );
        }
    }

    #[test]
    fn zero_limits_are_refused() {
        let args = parse(&["--queue-capacity", "0"]);
        assert!(matches!(
            Config::resolve(args),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn stream_buffers_default_to_a_small_unsent_limit_and_take_zero_for_the_kernel() {
        let config = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(config.stream_unsent_limit, Some(16 * 1024));
        assert_eq!(config.stream_send_buffer, None);
        let args = parse(&[
            "--stream-unsent-limit",
            "0",
            "--stream-send-buffer",
            "262144",
        ]);
        let config = Config::resolve(args).unwrap();
        assert_eq!(config.stream_unsent_limit, None);
        assert_eq!(config.stream_send_buffer, Some(262_144));
        for flag in ["--stream-unsent-limit", "--stream-send-buffer"] {
            let args = parse(&[flag, "68719476736"]);
            assert!(
                matches!(Config::resolve(args), Err(ConfigError::Invalid(_))),
                "{flag}"
            );
        }
    }
}
