//! [`Operations`]: how Herald reports on itself: its log lines and where its metrics are served.

use std::net::SocketAddr;

use clap::Args;

/// The log and the metrics.
#[derive(Debug, Clone, Args)]
pub struct Operations {
    /// How log lines are written to stderr: `text` for people, or `json` for log collectors (one
    /// object per line, with the request's id, route and, for an event stream, its client id).
    #[arg(
        long,
        env = "HERALD_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// An address (`127.0.0.1:9090`) for an internal listener serving `/metrics`, `/healthz` and
    /// `/readyz`; `/metrics` is then not served on the public listener.
    #[arg(long, env = "HERALD_METRICS_LISTEN", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
