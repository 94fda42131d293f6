//! Checks of a resolved [`Config`]: values every layer's parser accepts but Herald cannot run
//! with.

use std::time::Duration;

use std::path::PathBuf;

use super::Config;

/// The largest `stream_send_buffer` or `stream_unsent_limit` accepted: far beyond any kernel's
/// limit already.
const MAX_STREAM_BUFFER: usize = 64 * 1024 * 1024;
const DAY: Duration = Duration::from_secs(24 * 3600);
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why the settings could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line is wrong, or asks for help or the version: [`clap::Error::exit`]
    /// prints it and exits with the right status.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read the config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.check_limits()?;
        self.check_durations()?;
        self.check_redis()?;
        self.check_origins()?;
        self.protocols.check().map_err(ConfigError::Invalid)?;
        self.identity.check().map_err(ConfigError::Invalid)?;
        self.presence.check().map_err(ConfigError::Invalid)?;
        self.streams.check().map_err(ConfigError::Invalid)?;
        if self
            .jwt_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 32)
        {
            return Err(invalid(
                "jwt_secret must be at least 32 bytes; generate one with `openssl rand -hex 32`",
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

    fn check_limits(&self) -> Result<(), ConfigError> {
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
            ("max_connections", self.max_connections.unwrap_or(1)),
            ("max_concurrent_replays", self.max_concurrent_replays),
            ("new_client_burst", self.new_client_burst as usize),
            (
                "max_client_ids",
                usize::try_from(self.max_client_ids).unwrap_or(usize::MAX),
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
        if self.publish_byte_rate > 0 && self.publish_byte_burst < self.max_body_bytes as u64 {
            return Err(ConfigError::Invalid(format!(
                "publish_byte_burst ({}) must be at least max_body_bytes ({}): a publish of the \
                 largest body accepted could never pass",
                self.publish_byte_burst, self.max_body_bytes
            )));
        }
        for (name, bytes, zero) in [
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
            if bytes > MAX_STREAM_BUFFER {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be at most {MAX_STREAM_BUFFER} bytes ({zero}), not {bytes}"
                )));
            }
        }
        Ok(())
    }

    fn check_durations(&self) -> Result<(), ConfigError> {
        // (name, value, may it be zero, largest accepted)
        let durations = [
            ("heartbeat", self.heartbeat, false, DAY),
            ("retry", self.retry, true, DAY),
            ("write_timeout", self.write_timeout, false, DAY),
            ("retention_interval", self.retention_interval, false, DAY),
            ("shutdown_grace", self.shutdown_grace, true, DAY),
            ("header_timeout", self.header_timeout, false, DAY),
            ("body_timeout", self.body_timeout, false, DAY),
            ("tcp_keepalive", self.tcp_keepalive, true, DAY),
            ("history_max_age", self.history_max_age, false, CENTURY),
            ("client_ttl", self.client_ttl, false, CENTURY),
            ("dev_token_ttl", self.dev_token_ttl, false, CENTURY),
            (
                "jwt_leeway",
                self.jwt_leeway,
                true,
                Duration::from_secs(300),
            ),
            (
                "max_connection_lifetime",
                self.max_connection_lifetime,
                true,
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
        Ok(())
    }

    fn check_redis(&self) -> Result<(), ConfigError> {
        if self.redis_prefix.len() > 64 || self.redis_prefix.chars().any(char::is_control) {
            return Err(invalid(
                "redis_prefix must be at most 64 bytes without control characters",
            ));
        }
        if let Some(url) = &self.redis
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError::Invalid(format!(
                "--redis must be a redis:// (or, over TLS, rediss://) URL, not {:?}",
                url.split("://").next().unwrap_or_default()
            )));
        }
        if self.redis_ca.is_some()
            && !self
                .redis
                .as_ref()
                .is_some_and(|url| url.starts_with("rediss://"))
        {
            return Err(invalid(
                "redis_ca is the authority of a Redis spoken to over TLS: it needs a rediss:// --redis URL",
            ));
        }
        Ok(())
    }

    fn check_origins(&self) -> Result<(), ConfigError> {
        if self.cors_origins.len() > 1 && self.cors_origins.iter().any(|origin| origin == "*") {
            return Err(invalid(
                "cors_origins: \"*\" allows every origin without credentials and cannot be \
                 combined with named origins",
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
        Ok(())
    }
}

fn invalid(message: &str) -> ConfigError {
    ConfigError::Invalid(message.to_owned())
}

impl Config {
    /// An empty text or list entry means "none": `--redis=` and `--jwt-secret=` turn off what a
    /// file set, and an empty entry in a list is no entry.
    pub(super) fn normalize(&mut self) {
        self.jwt_secret = self.jwt_secret.take().filter(|secret| !secret.is_empty());
        self.redis = self.redis.take().filter(|url| !url.is_empty());
        self.static_dir = self
            .static_dir
            .take()
            .filter(|dir| !dir.as_os_str().is_empty());
        self.redis_ca = self
            .redis_ca
            .take()
            .filter(|path| !path.as_os_str().is_empty());
        self.private_topics.retain(|topic| !topic.is_empty());
        self.cors_origins.retain(|origin| !origin.is_empty());
        self.protocols.normalize();
        self.identity.normalize();
        self.mercure.normalize();
        self.streams
            .stream_upstream
            .retain(|prefix| !prefix.is_empty());
    }
}
