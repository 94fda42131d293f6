//! The Server-Sent Events wire codec.
//!
//! [`Frame`] is the only way Herald writes SSE: it owns the framing rules (multi-line data split
//! into `data:` lines, no CR or LF in `id`/`event`, no NUL in `id`). [`Decoder`] reads a stream
//! incrementally, following the WHATWG EventSource parsing rules.

mod decoder;
mod encoder;

pub use decoder::{Decoder, Item, SseEvent};
pub use encoder::{EncodeError, Frame};

/// The `Content-Type` of an event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";
