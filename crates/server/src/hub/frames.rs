//! Encoding of the frames the hub sends. Every byte goes through the protocol's [`Frame`].

use bytes::Bytes;
use herald_protocol::EnvelopeRef;
use herald_protocol::sse::Frame;
use herald_protocol::system::{self, CloseReason, Closing, Connected, Reset, ResetReason};

use crate::storage::{StoredEvent, StreamKey};
use crate::time::rfc3339;

/// The frame of `event` as delivered through `stream`: `id`, `event` (unless not `named`: then
/// the browser dispatches it as `message`, and only the envelope names its type) and the
/// envelope as `data`.
pub fn event_frame(event: &StoredEvent, stream: &StreamKey, named: bool) -> Bytes {
    // Herald's own: its name and its data, whatever the connection's framing.
    if matches!(stream, StreamKey::Presence(_)) {
        return encode(
            Frame::new()
                .id(&event.id)
                .event(system::PRESENCE)
                .data(event.data.get()),
        );
    }
    let time = rfc3339(event.time);
    let envelope = EnvelopeRef {
        id: &event.id,
        topic: stream.topic(),
        kind: &event.kind,
        data: &event.data,
        time: &time,
    };
    let data = to_json(&envelope);
    let frame = Frame::new().id(&event.id).data(&data);
    encode(if named {
        frame.event(&event.kind)
    } else {
        frame
    })
}

/// The frame of `event` for a Mercure subscriber: `id` (the update's Mercure id, or Herald's),
/// `event` unless it was published without a type, `retry` when the publisher gave one, and
/// the data as it was published: the text of an update published through Mercure, the JSON of
/// one published through Herald.
pub fn mercure_event(event: &StoredEvent) -> Bytes {
    let Some(fields) = event.mercure.as_deref() else {
        return encode(
            Frame::new()
                .id(&event.id)
                .event(&event.kind)
                .data(event.data.get()),
        );
    };
    let text: String = serde_json::from_str(event.data.get()).unwrap_or_else(|err| {
        tracing::error!(%err, seq = event.seq, "a Mercure update's data is not a JSON string");
        String::new()
    });
    let mut frame = Frame::new().id(&fields.id).data(&text);
    if !fields.untyped {
        frame = frame.event(&event.kind);
    }
    if let Some(retry) = fields.retry {
        frame = frame.retry(retry);
    }
    encode(frame)
}

/// The first frame of a Mercure subscription: a comment, so the headers and a first byte
/// leave at once, the reconnection delay, and (when the stream starts live) the position it
/// starts from, which the subscriber resumes from if it reconnects before the first update.
pub fn mercure_greeting(retry_ms: u64, id: Option<&str>) -> Bytes {
    let frame = Frame::new().comment("").retry(retry_ms);
    encode(match id {
        Some(id) => frame.id(id),
        None => frame,
    })
}

/// The first frame of a subscription: the reconnection delay and `herald.connected`. `id` is the
/// position the stream starts from when the client gave none, so a reconnect before the first
/// event still resumes from here.
pub fn greeting(retry_ms: u64, id: Option<&str>, connected: &Connected) -> Bytes {
    let data = to_json(connected);
    let mut frame = Frame::new()
        .retry(retry_ms)
        .event(system::CONNECTED)
        .data(&data);
    if let Some(id) = id {
        frame = frame.id(id);
    }
    encode(frame)
}

/// `herald.reset`, carrying the id live events continue from so the client's last event id moves
/// past the gap.
pub fn reset(reason: ResetReason, latest_id: &str) -> Bytes {
    let data = to_json(&Reset {
        reason,
        latest_id: latest_id.to_owned(),
    });
    encode(Frame::new().id(latest_id).event(system::RESET).data(&data))
}

/// `herald.closing`; `id` moves the client's last event id to the position it has fully
/// received, when that is past its last event.
pub fn closing(reason: CloseReason, id: Option<&str>) -> Bytes {
    let data = to_json(&Closing::from(reason));
    let frame = Frame::new().event(system::CLOSING).data(&data);
    encode(match id {
        Some(id) => frame.id(id),
        None => frame,
    })
}

/// A heartbeat comment. With `id`, the frame also moves the client's last event id (a frame
/// with an id and no data sets it without firing an event), so a subscriber to quiet topics
/// resumes from a recent position instead of one that may have left the history.
pub fn heartbeat(id: Option<&str>) -> Bytes {
    let frame = Frame::new().comment("heartbeat");
    encode(match id {
        Some(id) => frame.id(id),
        None => frame,
    })
}

/// Serialises a protocol type. These types hold only strings, numbers and JSON already checked,
/// so serialisation cannot fail; an empty object is the safe fallback if it ever did.
pub fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|err| {
        tracing::error!(%err, "serialising a frame failed");
        "{}".to_owned()
    })
}

/// Encodes a frame whose `id` and `event` were validated when they entered the server (event
/// types by the protocol's name rules, ids issued by storage); a frame that still fails is
/// dropped with an error log rather than corrupting the stream.
pub fn encode(frame: Frame<'_>) -> Bytes {
    match frame.encode() {
        Ok(bytes) => Bytes::from(bytes),
        Err(err) => {
            tracing::error!(%err, "refusing to write an invalid frame");
            Bytes::new()
        }
    }
}
