//! Response streams kept beside the event log: the types the [`StreamStore`] boundary speaks.
//!
//! A stream is a record (who made it, for whom, its kind and status) and its chunks, in order.
//! Each chunk has a position: a text stream's is the length in bytes of the text through it, a
//! progress stream's its number. Positions are the chunks' event ids, so after the stream ends
//! and its chunks are compacted into one text, a reader resuming after any of them is given the
//! rest of the text from that byte on.

use std::time::{Duration, SystemTime};

use herald_protocol::streams::{StreamKind, StreamStatus};
use serde_json::value::RawValue;

use super::{BoxFuture, StorageError};

/// A stream to create.
#[derive(Debug, Clone)]
pub struct NewResponseStream {
    pub id: String,
    pub kind: StreamKind,
    /// The `sub` of the publisher that created it: it alone appends, ends and cancels.
    pub owner: String,
    /// The user it belongs to, who may read it.
    pub user: Option<String>,
    pub private: bool,
    pub ttl: Duration,
    pub created_at: SystemTime,
}

/// A stored stream's record.
#[derive(Debug, Clone)]
pub struct ResponseStream {
    pub id: String,
    pub kind: StreamKind,
    pub owner: String,
    pub user: Option<String>,
    pub private: bool,
    pub ttl: Duration,
    pub created_at: SystemTime,
    /// The last append (or the creation).
    pub touched_at: SystemTime,
    pub status: StreamStatus,
    pub ended_at: Option<SystemTime>,
    pub chunks: u64,
    /// Bytes of chunk data stored (as JSON).
    pub bytes: u64,
    /// The position of the last chunk; 0 before the first.
    pub last: u64,
    pub result: Option<Box<RawValue>>,
    /// After the end: the whole text (a JSON string) or the last value; the chunks are gone.
    pub compacted: Option<Box<RawValue>>,
}

/// A chunk and its position.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub position: u64,
    pub data: Box<RawValue>,
}

/// A chunk to append: how far it moves the position (its text's length in bytes, or 1), and
/// its data.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub advance: u64,
    pub data: Box<RawValue>,
}

/// How long one stream may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_chunks: u64,
    pub max_bytes: u64,
}

/// The outcome of creating a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The owner already holds this many open streams.
    TooMany,
}

/// The outcome of appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Appended {
        last: u64,
        chunks: u64,
    },
    NotFound,
    Ended(StreamStatus),
    /// The chunks would take the stream past a limit; nothing was appended.
    TooLong,
}

/// The outcome of ending.
#[derive(Debug, Clone)]
pub enum Ended {
    Ended(Box<ResponseStream>),
    NotFound,
    Already(StreamStatus),
}

/// The response streams, kept by the same store as the log.
pub trait StreamStore: Send + Sync {
    /// Creates a stream unless its owner already holds `max_open` open ones.
    fn create_stream(
        &self,
        stream: NewResponseStream,
        max_open: usize,
    ) -> BoxFuture<'_, Result<Created, StorageError>>;

    /// Appends `chunks` in order, all or none; `now` is the stream's new `touched_at`.
    fn append_chunks<'a>(
        &'a self,
        id: &'a str,
        chunks: Vec<NewChunk>,
        limits: StreamLimits,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Appended, StorageError>>;

    /// Ends an open stream with `status`, compacting its chunks.
    fn end_stream<'a>(
        &'a self,
        id: &'a str,
        status: StreamStatus,
        result: Option<Box<RawValue>>,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Ended, StorageError>>;

    fn response_stream<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResponseStream>, StorageError>>;

    /// Up to `limit` chunks after position `after`, in order (none once compacted).
    fn read_chunks<'a>(
        &'a self,
        id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Chunk>, StorageError>>;

    /// Removes the streams ended more than their ttl before `now`, and those open with nothing
    /// appended for their ttl (which their readers see end as `error`); returns the latter.
    fn expire_streams(&self, now: SystemTime) -> BoxFuture<'_, Result<Vec<String>, StorageError>>;

    /// The ids of streams other nodes sharing this store changed, as they announce them (a
    /// store shared by a cluster); `None` for a store this node alone uses.
    fn stream_notices(&self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        None
    }
}

/// The compacted form of a stream's chunks: a text stream's whole text as one JSON string, a
/// progress stream's last value (`null` when there is none).
pub fn compact(kind: StreamKind, chunks: &[Chunk]) -> Box<RawValue> {
    let json = match kind {
        StreamKind::Text => {
            let text: String = chunks
                .iter()
                .filter_map(|chunk| serde_json::from_str::<String>(chunk.data.get()).ok())
                .collect();
            serde_json::to_string(&text).unwrap_or_else(|_| "\"\"".to_owned())
        }
        StreamKind::Progress => chunks
            .last()
            .map_or_else(|| "null".to_owned(), |chunk| chunk.data.get().to_owned()),
    };
    RawValue::from_string(json).unwrap_or_else(|_| null())
}

/// JSON `null`.
pub fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_default()
}

/// Whether appending `chunks` to `stream` keeps it within `limits`.
pub fn within(stream: &ResponseStream, chunks: &[NewChunk], limits: StreamLimits) -> bool {
    let bytes: u64 = chunks
        .iter()
        .map(|chunk| chunk.data.get().len() as u64)
        .sum();
    stream.chunks + chunks.len() as u64 <= limits.max_chunks
        && stream.bytes + bytes <= limits.max_bytes
}

/// When a stream is due to go: `ttl` after its end, or after its last append while open.
pub fn expires_at(stream: &ResponseStream) -> SystemTime {
    stream.ended_at.unwrap_or(stream.touched_at) + stream.ttl
}
