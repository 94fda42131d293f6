//! Request and response bodies of the HTTP API (see the OpenAPI document at `/api/openapi.json`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `POST /api/publish`: one event to one or several topics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// A single topic; give this or `topics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Several topics; the event gets one id and each subscriber receives it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// The event type, `message` when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Any JSON, `null` when absent; delivered exactly as sent (numbers keep every digit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Option<Box<RawValue>>,
    /// A private event reaches only connections whose credential may subscribe to its topic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// Answer to `POST /api/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishResponse {
    pub id: String,
    pub topics: Vec<String>,
}

/// Body of a batch publish (`POST /api/publish` with `events`): stored together, in order, all
/// or none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishBatch {
    pub events: Vec<PublishRequest>,
}

/// Answer to a batch publish: each event's id and topics, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishBatchResponse {
    pub events: Vec<PublishResponse>,
}

/// What `POST /api/publish` takes: one event, or a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum PublishBody {
    Batch(PublishBatch),
    One(PublishRequest),
}

/// What `POST /api/publish` answers: for one event, or for a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum PublishAnswer {
    Batch(PublishBatchResponse),
    One(PublishResponse),
}

/// Body of the sends that name their audience in the path: to a client, a user, or everyone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The event type, `message` when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Any JSON, `null` when absent; delivered exactly as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Option<Box<RawValue>>,
}

/// Answer to a send to a client, a user or everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendResponse {
    pub id: String,
}

/// One live connection in `GET /api/clients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientInfo {
    pub client_id: String,
    pub connection_id: String,
    /// The authenticated user, `null` for anonymous connections.
    pub user: Option<String>,
    pub topics: Vec<String>,
    /// RFC 3339 in UTC.
    pub connected_at: String,
    /// In cluster mode, the node holding the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `GET /api/topics/{topic}/presence`: who receives a topic right now, on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Presence {
    pub topic: String,
    /// Open event streams receiving the topic.
    pub connections: usize,
    /// Distinct clients among them (the tabs sharing one client id count once).
    pub clients: usize,
    /// The users among them, each with its connections, by user id; anonymous connections are
    /// counted above only. Present only for a caller whose `subscribe` selector matches the
    /// topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserPresence>>,
}

/// One user receiving a topic, in [`Presence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserPresence {
    pub user: String,
    pub connections: usize,
}

/// `GET /api/stats`: how the hub is doing, node by node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// One entry per live node (one without a cluster), by node name.
    pub nodes: Vec<NodeStats>,
}

/// One node's figures: counts now, and rates and latencies over the last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStats {
    /// The node's name in the cluster; `local` without one.
    pub node: String,
    /// When the figures were taken, RFC 3339.
    pub time: String,
    /// Open event streams.
    pub connections: u64,
    /// Topics some stream of this node receives.
    pub topics: u64,
    /// Events published through this node per second, over the last minute.
    pub publishes_per_second: f64,
    /// Events written to this node's streams per second, over the last minute.
    pub deliveries_per_second: f64,
    /// Time from receiving a publish to acknowledging it, over the last minute, in
    /// milliseconds; `null` without a publish.
    pub publish_latency_ms: Option<LatencyPercentiles>,
    /// Events replayed since the node started.
    pub replays: u64,
    /// Streams closed as slow consumers since the node started.
    pub slow_consumer_closes: u64,
    /// The size of the event log on disk (SQLite), in bytes; `null` for other stores.
    pub storage_bytes: Option<u64>,
}

/// Percentiles of a latency, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencyPercentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One live topic in `GET /api/topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicSummary {
    pub topic: String,
    pub connections: usize,
    pub clients: usize,
    /// Distinct authenticated users.
    pub users: usize,
}

/// `POST /api/users/{user_id}/notifications`: a notification for one user's inbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewNotification {
    /// 1 to 200 characters.
    pub title: String,
    /// Up to 2,000 characters.
    #[serde(default)]
    pub body: String,
    /// Opened when the notification is clicked: an `http(s)` URL or a path starting with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A category for the client to style or filter by, with the rules of an event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Answer to `GET /api/notifications`: one page of the inbox, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationPage {
    pub items: Vec<crate::payloads::Notification>,
    /// Unread notifications in the whole inbox, not only this page.
    pub unread_count: u64,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_before: Option<String>,
}

/// `POST /api/dev/token` (development mode): a credential for a demo user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    /// One of the demo users listed by `GET /api/dev/users`.
    pub user: String,
}

/// A demo user of development mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevUser {
    pub id: String,
    pub name: String,
    /// Whether this user's token carries `admin: true`.
    pub admin: bool,
}

/// A signed credential and what it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// The JSON Web Token, for `Authorization: Bearer` or the `access_token` query parameter.
    pub token: String,
    pub claims: crate::auth::Claims,
}

/// Answer to `GET /api/me`: who the credential in the request names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Identity {
    /// `null` for an anonymous request.
    pub user: Option<String>,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    pub admin: bool,
    /// When the credential expires, RFC 3339; `null` for an anonymous request.
    pub expires_at: Option<String>,
    /// Whether the server runs in development mode (demo users and their credentials at
    /// `/api/dev/…`).
    #[serde(default)]
    pub development: bool,
}

/// Data of `order.placed`, the event of the administrators' demo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderPlaced {
    pub order_id: String,
    pub customer: String,
    pub total_cents: u64,
}

/// Answer to `POST /demo/orders`: the order placed and the administrators notified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderReceipt {
    pub order: OrderPlaced,
    /// The connected administrators who got a notification in their inbox.
    pub notified_admins: Vec<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable snake_case code for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Answer to `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthStatus {
    /// `"ok"`, or `"unavailable"` when a backing service does not answer.
    pub status: String,
}
