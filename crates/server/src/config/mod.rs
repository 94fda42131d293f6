//! Settings: command-line flags, then environment variables, then an optional TOML file, then
//! defaults.
//!
//! Each setting is declared once, as a field of [`Config`]: its flag, environment variable,
//! default and help come from that one `#[arg]`, and its key in the file is the field's name.
//! The file is read as one more layer of the same arguments ([`file`]), so every value goes
//! through the same parser whichever layer it comes from; [`cli`] puts the layers together and
//! [`validate`] checks the result.

mod cli;
mod derived;
mod file;
mod identity;
mod mercure;
mod operations;
mod presence;
mod protocol;
mod show;
mod streams;
#[cfg(test)]
mod tests;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, FromArgMatches};

pub use cli::{Cli, Command, ConfigCommand, Invocation, ServeArgs, TokenArgs, load, load_from};
pub use identity::Identity;
pub use mercure::MercureSettings;
pub use operations::{LogFormat, Operations};
pub use presence::PresenceSettings;
pub use protocol::Protocols;
pub use show::defaults as defaults_toml;
pub use streams::StreamLimits;
pub use validate::ConfigError;

/// The settings the server runs with. A limit of 0 means "no limit" where its help says so.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port to listen on; port 0 picks a free port (the bound address is logged as
    /// "listening on <addr:port>").
    #[arg(
        long,
        env = "HERALD_LISTEN",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Directory for Herald's data.
    #[arg(
        long,
        env = "HERALD_DATA_DIR",
        value_name = "DIR",
        default_value = "data"
    )]
    pub data_dir: PathBuf,

    /// Directory of a built web console (`trunk build` writes `dist/`) served at `/` in place
    /// of the one built into the binary: for working on the console.
    #[arg(long, env = "HERALD_STATIC_DIR", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,

    /// Development mode: loopback only; without --jwt-secret, signs demo credentials with a key
    /// kept in the data directory, and offers them to the console (`POST /api/dev/token`).
    /// `--dev=false` turns off what a file turned on.
    #[arg(
        long,
        env = "HERALD_DEV",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub dev: bool,

    /// Serve the demos (`/demo/countdown`, `/demo/chat`, `/demo/orders`) outside development
    /// mode too; development mode always serves them.
    #[arg(
        long,
        env = "HERALD_DEMOS",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub demos: bool,

    /// HS256 key for JSON Web Tokens.
    #[arg(
        long,
        env = "HERALD_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// How far a token's `exp`, `nbf` and `iat` may be off for clocks that disagree: a token is
    /// accepted this long after it expired (and its stream closed then), or this long before
    /// it becomes valid. At most 5 minutes.
    #[arg(
        long,
        env = "HERALD_JWT_LEEWAY",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub jwt_leeway: Duration,

    /// Tokens verified with public keys: a PEM file, or an identity provider's key set.
    #[command(flatten)]
    pub identity: Identity,

    /// A topic selector (`admin/*`, `billing`) whose topics are private: subscribing needs a
    /// matching `subscribe` selector in the credential. Repeatable, or comma-separated.
    #[arg(
        id = "private_topic",
        long = "private-topic",
        env = "HERALD_PRIVATE_TOPIC",
        value_name = "SELECTOR",
        value_delimiter = ','
    )]
    pub private_topics: Vec<String>,

    /// An origin allowed to call Herald from a browser with credentials
    /// (`https://app.example.com`); repeatable, or comma-separated. `*` allows every origin
    /// without credentials. Without any, only the same origin.
    #[arg(
        id = "cors_origin",
        long = "cors-origin",
        env = "HERALD_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Maximum simultaneous connections of one user.
    #[arg(
        long,
        env = "HERALD_MAX_CONNECTIONS_PER_USER",
        value_name = "N",
        default_value = "100"
    )]
    pub max_connections_per_user: usize,

    /// Most connections Herald holds at once, of every kind; one more is refused at once (503
    /// with `Retry-After`). By default the open-files limit less a reserve of 256 (or a quarter,
    /// if less) for the database, logs and the like: Herald never runs out of files.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Maximum simultaneous connections from one address, every connection counted (an IPv6
    /// /64 counts as one address); 0 for no limit. Behind a proxy (`--trust-forwarded-for`)
    /// only event streams are counted, by the forwarded address.
    #[arg(
        long,
        env = "HERALD_MAX_CONNECTIONS_PER_ADDRESS",
        value_name = "N",
        default_value = "1000"
    )]
    pub max_connections_per_address: usize,

    /// Take the client's address from the last `X-Forwarded-For` entry: set it only behind a
    /// reverse proxy that sets that header, or clients can choose their own address.
    #[arg(
        long,
        env = "HERALD_TRUST_FORWARDED_FOR",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub trust_forwarded_for: bool,

    /// Pages of history (replays after a reconnect) read from storage at once; more wait
    /// their turn.
    #[arg(
        long,
        env = "HERALD_MAX_CONCURRENT_REPLAYS",
        value_name = "N",
        default_value = "8"
    )]
    pub max_concurrent_replays: usize,

    /// Pages of history read at once for connections from one address; 0 for no limit.
    #[arg(
        long,
        env = "HERALD_MAX_REPLAYS_PER_ADDRESS",
        value_name = "N",
        default_value = "2"
    )]
    pub max_replays_per_address: usize,

    /// Sustained publishes per second allowed to one credential (user); 0 for no limit.
    #[arg(
        long,
        env = "HERALD_PUBLISH_RATE",
        value_name = "PER_SECOND",
        default_value = "500"
    )]
    pub publish_rate: u32,

    /// Publishes one credential may make at once before the rate applies.
    #[arg(
        long,
        env = "HERALD_PUBLISH_BURST",
        value_name = "N",
        default_value = "1000"
    )]
    pub publish_burst: u32,

    /// Sustained bytes per second one credential may publish, counting an event's data once
    /// for each stream it is stored in (each topic of a publish); 0 for no limit.
    #[arg(
        long,
        env = "HERALD_PUBLISH_BYTE_RATE",
        value_name = "BYTES",
        default_value = "4194304"
    )]
    pub publish_byte_rate: u64,

    /// Bytes one credential may publish at once before the byte rate applies; a larger single
    /// publish is refused (413 `publish_too_large`). At least `max_body_bytes`.
    #[arg(
        long,
        env = "HERALD_PUBLISH_BYTE_BURST",
        value_name = "BYTES",
        default_value = "16777216"
    )]
    pub publish_byte_burst: u64,

    /// How long the development credentials handed to the console are valid.
    #[arg(
        long,
        env = "HERALD_DEV_TOKEN_TTL",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = parse_duration
    )]
    pub dev_token_ttl: Duration,

    /// Notifications kept per user; the oldest go first.
    #[arg(
        long,
        env = "HERALD_MAX_NOTIFICATIONS_PER_USER",
        value_name = "N",
        default_value = "1000"
    )]
    pub max_notifications_per_user: usize,

    /// Cluster mode: keep the event log, client ids and inboxes in this Redis
    /// (`redis://[user:password@]host:port[/db]`, or `rediss://` over TLS) and share them with
    /// every node pointed at it. Replaces `--storage`.
    #[arg(long, env = "HERALD_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// PEM file with the certificate authority a `rediss://` Redis's certificate is checked
    /// against, in place of the system's and the public ones (for a Redis with a private CA).
    #[arg(long, env = "HERALD_REDIS_CA", value_name = "PEM_FILE")]
    pub redis_ca: Option<PathBuf>,

    /// Prefix of every Redis key Herald uses, so several deployments can share one Redis.
    #[arg(
        long,
        env = "HERALD_REDIS_PREFIX",
        value_name = "PREFIX",
        default_value = "herald:"
    )]
    pub redis_prefix: String,

    /// Longest silence on an idle stream before a heartbeat comment is sent.
    #[arg(
        long,
        env = "HERALD_HEARTBEAT",
        value_name = "DURATION",
        default_value = "15s",
        value_parser = parse_duration
    )]
    pub heartbeat: Duration,

    /// Base reconnection delay told to clients; each connection gets up to 50% more as jitter so
    /// a restart does not cause a reconnect storm.
    #[arg(
        long,
        env = "HERALD_RETRY",
        value_name = "DURATION",
        default_value = "3s",
        value_parser = parse_duration
    )]
    pub retry: Duration,

    /// Events queued for one connection before it counts as a slow consumer and is closed with
    /// reason `slow_consumer`, to resume from its last event id.
    #[arg(
        long,
        env = "HERALD_QUEUE_CAPACITY",
        value_name = "EVENTS",
        default_value = "1024"
    )]
    pub queue_capacity: usize,

    /// The most data each event stream leaves unsent in the kernel (TCP_NOTSENT_LOWAT): once
    /// a subscriber's kernel holds this much that its peer has not yet taken, further events
    /// wait in the connection's queue and count toward `queue_capacity`. Without a limit a
    /// subscriber that stops reading soaks up its whole send buffer (up to 4 MiB on Linux), and
    /// copying events into the buffers of stalled subscribers costs every other subscriber
    /// time. Data in flight to a reading client is not limited. 0 removes the limit.
    #[arg(
        long,
        env = "HERALD_STREAM_UNSENT_LIMIT",
        value_name = "BYTES",
        default_value = "16384"
    )]
    pub stream_unsent_limit: usize,

    /// The kernel's send buffer for each event stream (SO_SNDBUF; Linux reserves twice this for
    /// its bookkeeping), which bounds unsent and unacknowledged data together, and with it the
    /// throughput of a distant client. 0 leaves it to the kernel's autotuning.
    #[arg(
        long,
        env = "HERALD_STREAM_SEND_BUFFER",
        value_name = "BYTES",
        default_value = "0"
    )]
    pub stream_send_buffer: usize,

    /// Maximum lifetime of one connection, after which it is closed with reason `max_lifetime`
    /// and the client reconnects; 0 for no limit.
    #[arg(
        long,
        env = "HERALD_MAX_CONNECTION_LIFETIME",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = parse_duration
    )]
    pub max_connection_lifetime: Duration,

    /// Maximum topics one connection may subscribe to.
    #[arg(
        long,
        env = "HERALD_MAX_TOPICS_PER_CONNECTION",
        value_name = "N",
        default_value = "64"
    )]
    pub max_topics_per_connection: usize,

    /// Maximum simultaneous connections holding one client id.
    #[arg(
        long,
        env = "HERALD_MAX_CONNECTIONS_PER_CLIENT",
        value_name = "N",
        default_value = "32"
    )]
    pub max_connections_per_client: usize,

    /// Maximum topics one publish may name.
    #[arg(
        long,
        env = "HERALD_MAX_TOPICS_PER_PUBLISH",
        value_name = "N",
        default_value = "64"
    )]
    pub max_topics_per_publish: usize,

    /// Largest request body accepted, in bytes.
    #[arg(
        long,
        env = "HERALD_MAX_BODY_BYTES",
        value_name = "BYTES",
        default_value = "1048576"
    )]
    pub max_body_bytes: usize,

    /// Events kept for replay per topic (and per client stream).
    #[arg(
        long,
        env = "HERALD_HISTORY_MAX_EVENTS",
        value_name = "N",
        default_value = "1000"
    )]
    pub history_max_events: usize,

    /// How long events are kept for replay.
    #[arg(
        long,
        env = "HERALD_HISTORY_MAX_AGE",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = parse_duration
    )]
    pub history_max_age: Duration,

    /// New client ids one address (an IPv6 /64) may be issued per second; past it a connection
    /// without a client id is refused with 429. 0 for no limit.
    #[arg(
        long,
        env = "HERALD_NEW_CLIENT_RATE",
        value_name = "PER_SECOND",
        default_value = "10"
    )]
    pub new_client_rate: u32,

    /// New client ids one address may be issued at once before the rate applies.
    #[arg(
        long,
        env = "HERALD_NEW_CLIENT_BURST",
        value_name = "N",
        default_value = "100"
    )]
    pub new_client_burst: u32,

    /// Most client ids kept: past it, retention forgets those seen longest ago (never one with
    /// a live connection), with their streams.
    #[arg(
        long,
        env = "HERALD_MAX_CLIENT_IDS",
        value_name = "N",
        default_value = "1000000"
    )]
    pub max_client_ids: u64,

    /// How long a client id stays valid after its last connection ends.
    #[arg(
        long,
        env = "HERALD_CLIENT_TTL",
        value_name = "DURATION",
        default_value = "24h",
        value_parser = parse_duration
    )]
    pub client_ttl: Duration,

    /// Where events and client ids are kept: `sqlite` (durable, in the data directory) or
    /// `memory` (lost on restart).
    #[arg(
        long,
        env = "HERALD_STORAGE",
        value_name = "KIND",
        default_value = "sqlite"
    )]
    pub storage: StorageKind,

    /// Largest size of the SQLite database in bytes; past it publishes fail with 503 as on a full
    /// disk until retention frees room. 0 for no limit.
    #[arg(
        long,
        env = "HERALD_STORAGE_MAX_BYTES",
        value_name = "BYTES",
        default_value = "4294967296"
    )]
    pub storage_max_bytes: u64,

    /// How often history retention and client expiry run.
    #[arg(
        long,
        env = "HERALD_RETENTION_INTERVAL",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub retention_interval: Duration,

    /// How long a write to a client may make no progress before the connection is dropped:
    /// a subscriber that stops reading cannot hold its connection open.
    #[arg(
        long,
        env = "HERALD_WRITE_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub write_timeout: Duration,

    /// How long a client has to send a request's head: from connecting for its first request,
    /// and from the end of the previous answer for the next (which bounds an idle keep-alive
    /// connection too).
    #[arg(
        long,
        env = "HERALD_HEADER_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub header_timeout: Duration,

    /// How long a request body may make no progress before the request fails (408).
    #[arg(
        long,
        env = "HERALD_BODY_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub body_timeout: Duration,

    /// Idle time after which the kernel probes a connection to find a peer that vanished; 0
    /// turns TCP keepalive off.
    #[arg(
        long,
        env = "HERALD_TCP_KEEPALIVE",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub tcp_keepalive: Duration,

    /// How long shutdown waits for streams to flush their `herald.closing` frame before the
    /// process exits regardless.
    #[arg(
        long,
        env = "HERALD_SHUTDOWN_GRACE",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = parse_duration
    )]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub protocols: Protocols,

    #[command(flatten)]
    pub operations: Operations,

    #[command(flatten)]
    pub mercure: MercureSettings,

    #[command(flatten)]
    pub presence: PresenceSettings,

    #[command(flatten)]
    pub streams: StreamLimits,
}

/// Where the event log and the client directory live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    /// An SQLite database in the data directory: survives restarts and crashes.
    Sqlite,
    /// This process's memory: fast, lost on restart.
    Memory,
}

impl Default for Config {
    /// Every setting at its declared default, whatever the environment holds.
    fn default() -> Self {
        let command = settings_command();
        // Every declared default parses (the `defaults_parse` test checks it), so this cannot
        // fail; there is no other source to fall back on if it did.
        #[allow(clippy::expect_used)]
        let matches = command
            .try_get_matches_from(std::iter::empty::<String>())
            .expect("the declared defaults parse");
        #[allow(clippy::expect_used)]
        Self::from_arg_matches(&matches).expect("the declared defaults parse")
    }
}

/// The settings alone, parsing nothing but what they are given: no environment, no program
/// name, no subcommands.
fn settings_command() -> clap::Command {
    Config::augment_args(clap::Command::new("herald"))
        .mut_args(|arg| arg.env(None))
        .no_binary_name(true)
}

/// Parses `15s`, `500ms`, `1h 30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|err| format!("invalid duration {text:?}: {err}"))
}
