//! How a response stream's reader is written to: the frames of `GET /streams/{id}`, and the
//! [`Framer`] the chat demo writes its own with.

use std::time::SystemTime;

use bytes::Bytes;
use herald_protocol::EnvelopeRef;
use herald_protocol::sse::Frame;
use herald_protocol::streams::{END_ID, STREAM_CHUNK, STREAM_END, StreamEnd, StreamKind};
use serde_json::value::RawValue;

use crate::storage::streams::ResponseStream;

/// After the end, what a reader at `after` has not had: the rest of the text, or the last
/// value.
pub(super) fn rest(stream: &ResponseStream, after: u64) -> Option<Box<RawValue>> {
    if after >= stream.last {
        return None;
    }
    let compacted = stream.compacted.as_ref()?;
    match stream.kind {
        StreamKind::Text => {
            let text: String = serde_json::from_str(compacted.get()).ok()?;
            let rest = text.get(usize::try_from(after).ok()?..)?;
            serde_json::value::to_raw_value(rest).ok()
        }
        StreamKind::Progress => Some(compacted.clone()),
    }
}

/// How a reader's frames are written.
pub(super) trait Framer: Send + 'static {
    /// The frame of one chunk, if any.
    fn chunk(&mut self, position: u64, data: &RawValue) -> Option<Bytes>;
    /// The frames that end the stream: what a reader at `after` has not had of the compacted
    /// answer, then the end.
    fn end(&mut self, stream: &ResponseStream, after: u64) -> Vec<Bytes>;
}

/// `GET /streams/{id}`'s frames: `stream.chunk` and `stream.end`.
pub(super) struct StreamFrames;

impl Framer for StreamFrames {
    fn chunk(&mut self, position: u64, data: &RawValue) -> Option<Bytes> {
        Some(chunk_frame(&position.to_string(), data))
    }

    fn end(&mut self, stream: &ResponseStream, after: u64) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(2);
        if let Some(rest) = rest(stream, after) {
            frames.push(chunk_frame(&stream.last.to_string(), &rest));
        }
        frames.push(end_frame(stream));
        frames
    }
}

fn envelope_frame(id: &str, event: &str, data: &RawValue) -> Bytes {
    let time = crate::time::rfc3339(SystemTime::now());
    let envelope = EnvelopeRef {
        id,
        topic: None,
        kind: event,
        data,
        time: &time,
    };
    let json = serde_json::to_string(&envelope).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + 64);
    let _ = Frame::new()
        .id(id)
        .event(event)
        .data(&json)
        .encode_into(&mut out);
    out.into()
}

fn chunk_frame(id: &str, data: &RawValue) -> Bytes {
    envelope_frame(id, STREAM_CHUNK, data)
}

fn end_frame(stream: &ResponseStream) -> Bytes {
    let end = StreamEnd {
        status: stream.status,
        result: stream
            .result
            .as_ref()
            .and_then(|result| serde_json::from_str(result.get()).ok()),
    };
    let data =
        serde_json::value::to_raw_value(&end).unwrap_or_else(|_| crate::storage::streams::null());
    envelope_frame(END_ID, STREAM_END, &data)
}
