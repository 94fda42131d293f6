//! The envelope every published event is delivered in.

use serde::{Deserialize, Serialize};

/// The JSON carried in the `data:` field of every published event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope {
    /// The event id, the same as the frame's `id:` field.
    pub id: String,
    /// The topic the event was published to and the subscriber matched; `null` for events sent to
    /// a client, a user or everyone.
    pub topic: Option<String>,
    /// The event type, the same as the frame's `event:` field.
    #[serde(rename = "type")]
    pub kind: String,
    /// The publisher's data, any JSON value.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    /// When the server accepted the event, RFC 3339 in UTC.
    pub time: String,
}
