//! Response streams: an answer or a job's progress, pushed piece by piece and kept whole, so a
//! reader that joins late or reloads mid-way sees all of it exactly once.
//!
//! A publisher creates a stream (`POST /api/streams`), appends chunks, and ends it; readers
//! follow it at `GET /streams/{id}` as `event: stream.chunk` frames (the envelope's `data` is
//! the chunk) and a final `event: stream.end`.

use serde::{Deserialize, Serialize};

/// Event name of a piece of a response stream; the envelope's `data` is the chunk.
pub const STREAM_CHUNK: &str = "stream.chunk";
/// Event name of the end of a response stream; the envelope's `data` is a [`StreamEnd`].
pub const STREAM_END: &str = "stream.end";
/// The `id:` of the `stream.end` frame. A reader reconnecting with it is answered 204, which
/// tells `EventSource` not to come back.
pub const END_ID: &str = "end";

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Pieces of text (strings), read as one text.
    #[default]
    Text,
    /// Any JSON values, each superseding the last (a job's progress).
    Progress,
}

/// Where a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Chunks may still be appended.
    Open,
    Done,
    Error,
    /// Deleted by its publisher before it ended.
    Cancelled,
}

impl StreamKind {
    /// The name on the wire and in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Progress => "progress",
        }
    }

    /// The kind a name written by [`StreamKind::as_str`] stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "progress" => Some(Self::Progress),
            _ => None,
        }
    }
}

impl StreamStatus {
    /// The name on the wire and in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Done => "done",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status a name written by [`StreamStatus::as_str`] stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "open" => Some(Self::Open),
            "done" => Some(Self::Done),
            "error" => Some(Self::Error),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// How a stream ends (`POST /api/streams/{id}/end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    Done,
    Error,
}

impl From<EndStatus> for StreamStatus {
    fn from(status: EndStatus) -> Self {
        match status {
            EndStatus::Done => Self::Done,
            EndStatus::Error => Self::Error,
        }
    }
}

/// Body of `POST /api/streams`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// `text` (the default) or `progress`.
    #[serde(default)]
    pub kind: StreamKind,
    /// How long the stream is kept after it ends (and while nothing is appended), in seconds
    /// or as a duration (`"10m"`); the server's `--stream-ttl` when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10m"))]
    pub ttl: Option<serde_json::Value>,
    /// Only readers whose `subscribe` selectors match `streams/{id}` (and the owning user, if
    /// any) may read it.
    #[serde(default)]
    pub private: bool,
    /// The user the stream belongs to: that user may read it (a credential with this `sub`).
    #[serde(default)]
    pub user: Option<String>,
    /// Relay mode: Herald itself calls this OpenAI-compatible streaming endpoint and appends
    /// each piece of the answer as it arrives (a `text` stream only).
    #[serde(default)]
    pub upstream: Option<StreamUpstream>,
}

/// An OpenAI-compatible streaming endpoint to relay (`/v1/chat/completions`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StreamUpstream {
    /// The endpoint; it must start with an entry of the server's `--stream-upstream`.
    pub url: String,
    /// Headers to send (`Authorization` for the provider's key, say).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The request's JSON body (`model`, `messages`, ...); `"stream": true` is set.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: serde_json::Value,
}

/// Answer of `POST /api/streams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamCreated {
    pub id: String,
    /// Where readers follow it: `/streams/{id}`.
    pub url: String,
}

/// Body of `POST /api/streams/{id}/append`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppendChunks {
    /// One or more chunks, in order: strings for a `text` stream, any JSON for `progress`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub chunks: Vec<serde_json::Value>,
}

/// Answer of `POST /api/streams/{id}/append`, once the chunks are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Appended {
    /// The id of the last chunk appended (its frame's `id:`).
    pub last_id: String,
    /// Chunks in the stream so far.
    pub chunks: u64,
}

/// Body of `POST /api/streams/{id}/end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EndStream {
    pub status: EndStatus,
    /// Anything to hand readers with the end: a finish reason, usage, an error's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<serde_json::Value>,
}

/// Data of `stream.end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct StreamEnd {
    pub status: StreamStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    #[cfg_attr(feature = "typescript", ts(optional, type = "JsonValue"))]
    pub result: Option<serde_json::Value>,
}

/// Answer of `GET /api/streams/{id}`: where the stream stands, and all of it so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct StreamInfo {
    pub id: String,
    pub kind: StreamKind,
    pub status: StreamStatus,
    /// A `text` stream's text so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "typescript", ts(optional))]
    pub text: Option<String>,
    /// A `progress` stream's latest value (`null` before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    #[cfg_attr(feature = "typescript", ts(optional, type = "JsonValue"))]
    pub value: Option<serde_json::Value>,
    /// Chunks appended.
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub chunks: u64,
    /// The id of the last chunk, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "typescript", ts(optional))]
    pub last_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    #[cfg_attr(feature = "typescript", ts(optional, type = "JsonValue"))]
    pub result: Option<serde_json::Value>,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "typescript", ts(optional))]
    pub ended_at: Option<String>,
}
