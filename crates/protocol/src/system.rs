//! The events Herald sends on its own account. Their names begin with `herald.`.

use serde::{Deserialize, Serialize};

/// Event name of the first frame of every subscription.
pub const CONNECTED: &str = "herald.connected";
/// Event name announcing that history could not be replayed: a gap, said out loud.
pub const RESET: &str = "herald.reset";
/// Event name sent just before the server ends a stream on purpose.
pub const CLOSING: &str = "herald.closing";
/// Event name of a user coming to or leaving a topic (`presence=true`).
pub const PRESENCE: &str = "herald.presence";

/// Data of `herald.presence`: a user's first connection to a topic opened (`joined`), or its
/// last closed (`left`), each with its time (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PresenceChange {
    pub topic: String,
    pub user: String,
    /// The client of that first or last connection.
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
}

/// Data of `herald.connected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Connected {
    /// The client id to reconnect with (`client_id=` query parameter) to keep this identity.
    pub client_id: String,
    /// Identifies this one connection, for example in `GET /api/clients`.
    pub connection_id: String,
    /// The topics this connection is subscribed to.
    pub topics: Vec<String>,
    /// The reconnection delay this stream's `retry:` field set, in milliseconds, for clients
    /// that cannot read that field (`EventSource` does not show it).
    #[serde(default)]
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub retry_ms: u64,
}

/// Data of `herald.reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Reset {
    pub reason: ResetReason,
    /// The newest event id at the time of the reset; live events follow it.
    pub latest_id: String,
}

/// Why history could not be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The last event id was never issued by this server (or by a previous, forgotten history).
    UnknownId,
    /// Events after the last event id were already removed from the retained history.
    HistoryExpired,
}

/// Data of `herald.closing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Closing {
    pub reason: CloseReason,
    /// Whether the client should reconnect (with its last event id) or stay away.
    pub reconnect: bool,
}

/// Why the server ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The server is shutting down.
    Shutdown,
    /// An administrator closed the client (`DELETE /api/clients/{id}`).
    AdminClose,
    /// The subscriber fell further behind than its queue holds.
    SlowConsumer,
    /// The connection reached its configured maximum lifetime.
    MaxLifetime,
    /// The credential the connection was opened with expired.
    CredentialExpired,
    /// The event store stopped answering while the stream was replaying history.
    StorageUnavailable,
    /// In cluster mode, this node missed part of the shared log (it was cut off from Redis
    /// longer than the feed reaches back, or Redis lost data): reconnect with the last event id
    /// to replay what was missed, or to be told of the gap with `herald.reset`.
    Resync,
}

impl CloseReason {
    /// Whether a client closed for this reason is told to come back.
    pub fn reconnect(self) -> bool {
        !matches!(self, Self::AdminClose | Self::CredentialExpired)
    }

    /// The snake_case name used on the wire and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::AdminClose => "admin_close",
            Self::SlowConsumer => "slow_consumer",
            Self::MaxLifetime => "max_lifetime",
            Self::CredentialExpired => "credential_expired",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Resync => "resync",
        }
    }
}

impl From<CloseReason> for Closing {
    fn from(reason: CloseReason) -> Self {
        Self {
            reason,
            reconnect: reason.reconnect(),
        }
    }
}
