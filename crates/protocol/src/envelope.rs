//! The envelope every published event is delivered in.

use serde::{Deserialize, Serialize};

/// The JSON carried in the `data:` field of every published event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
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

/// The borrowed form of [`Envelope`] the server writes, with `data` already encoded as JSON so an
/// event is serialised without parsing the publisher's data again.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EnvelopeRef<'a> {
    pub id: &'a str,
    pub topic: Option<&'a str>,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub data: &'a serde_json::value::RawValue,
    pub time: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowed_form_reads_back_as_an_envelope() {
        let data = serde_json::value::to_raw_value(&serde_json::json!({"n": [1, 2]})).unwrap();
        let written = serde_json::to_string(&EnvelopeRef {
            id: "42",
            topic: Some("rooms/1"),
            kind: "message",
            data: &data,
            time: "2026-11-21T06:00:00.000Z",
        })
        .unwrap();
        let read: Envelope = serde_json::from_str(&written).unwrap();
        assert_eq!(
            read,
            Envelope {
                id: "42".into(),
                topic: Some("rooms/1".into()),
                kind: "message".into(),
                data: serde_json::json!({"n": [1, 2]}),
                time: "2026-11-21T06:00:00.000Z".into(),
            }
        );
        assert!(written.contains("\"type\":\"message\""), "{written}");
    }
}
