//! [`StreamLimits`]: how long response streams are kept and how large they may grow.

use std::time::Duration;

use clap::Args;

use super::parse_duration;

/// Response streams (`POST /api/streams`).
#[derive(Debug, Clone, Args)]
pub struct StreamLimits {
    /// How long a response stream is kept after it ends (and while nothing is appended to it),
    /// when its creator does not say.
    #[arg(
        long,
        env = "HERALD_STREAM_TTL",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = parse_duration
    )]
    pub stream_ttl: Duration,

    /// The longest ttl a creator may ask for.
    #[arg(
        long,
        env = "HERALD_STREAM_MAX_TTL",
        value_name = "DURATION",
        default_value = "7days",
        value_parser = parse_duration
    )]
    pub stream_max_ttl: Duration,

    /// The largest chunk, in bytes of JSON; a larger one is refused with 413.
    #[arg(
        long,
        env = "HERALD_STREAM_MAX_CHUNK",
        value_name = "BYTES",
        default_value = "65536"
    )]
    pub stream_max_chunk: usize,

    /// The most chunks one stream holds; appending past it is refused with 413.
    #[arg(
        long,
        env = "HERALD_STREAM_MAX_CHUNKS",
        value_name = "COUNT",
        default_value = "100000"
    )]
    pub stream_max_chunks: u64,

    /// The most bytes (of JSON) one stream holds; appending past it is refused with 413.
    #[arg(
        long,
        env = "HERALD_STREAM_MAX_BYTES",
        value_name = "BYTES",
        default_value = "16777216"
    )]
    pub stream_max_bytes: u64,

    /// The most open streams one publisher (a credential's `sub`) may hold; creating another
    /// is refused with 429.
    #[arg(
        long,
        env = "HERALD_STREAM_MAX_OPEN",
        value_name = "COUNT",
        default_value = "100"
    )]
    pub stream_max_open: usize,

    /// URL prefixes of the OpenAI-compatible endpoints streams may relay
    /// (`https://api.openai.com/v1/`, `http://127.0.0.1:11434/v1/`); repeat or separate with
    /// commas. None by default: relay mode is off until an operator allows an upstream.
    #[arg(
        long,
        env = "HERALD_STREAM_UPSTREAM",
        value_name = "URL_PREFIX",
        value_delimiter = ','
    )]
    pub stream_upstream: Vec<String>,

    /// How long a relayed upstream may stay silent (before answering, or between two pieces)
    /// before the stream ends as an error.
    #[arg(
        long,
        env = "HERALD_STREAM_UPSTREAM_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub stream_upstream_timeout: Duration,
}

impl StreamLimits {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.stream_ttl.is_zero() || self.stream_ttl > self.stream_max_ttl {
            return Err("stream_ttl must be above 0 and at most stream_max_ttl".into());
        }
        if self.stream_max_chunk == 0 || self.stream_max_chunks == 0 || self.stream_max_bytes == 0 {
            return Err(
                "stream_max_chunk, stream_max_chunks and stream_max_bytes must be above 0".into(),
            );
        }
        if self.stream_max_open == 0 {
            return Err("stream_max_open must be above 0".into());
        }
        for prefix in &self.stream_upstream {
            let parsed = reqwest::Url::parse(prefix)
                .map_err(|err| format!("stream_upstream {prefix:?} is not a URL: {err}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!(
                    "stream_upstream {prefix:?} must be an http(s) URL with a host"
                ));
            }
        }
        if self.stream_upstream_timeout.is_zero() {
            return Err("stream_upstream_timeout must be above 0".into());
        }
        Ok(())
    }
}
