//! Response streams in this process's memory.

use std::collections::HashMap;
use std::sync::{MutexGuard, PoisonError};
use std::time::SystemTime;

use herald_protocol::streams::StreamStatus;
use serde_json::value::RawValue;

use super::MemoryStorage;
use crate::storage::streams::{
    Appended, Chunk, Created, Ended, NewChunk, NewResponseStream, ResponseStream, StreamLimits,
    StreamStore, compact, expires_at, within,
};
use crate::storage::{BoxFuture, StorageError};

/// Every stream: its record and, until it ends, its chunks.
pub(super) type Responses = HashMap<String, (ResponseStream, Vec<Chunk>)>;

impl MemoryStorage {
    fn responses(&self) -> MutexGuard<'_, Responses> {
        self.responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, Result<T, StorageError>> {
    Box::pin(async move { Ok(value) })
}

impl StreamStore for MemoryStorage {
    fn create_stream(
        &self,
        stream: NewResponseStream,
        max_open: usize,
    ) -> BoxFuture<'_, Result<Created, StorageError>> {
        let mut responses = self.responses();
        let open = responses
            .values()
            .filter(|(record, _)| {
                record.owner == stream.owner && record.status == StreamStatus::Open
            })
            .count();
        if open >= max_open {
            return ready(Created::TooMany);
        }
        let record = ResponseStream {
            id: stream.id.clone(),
            kind: stream.kind,
            owner: stream.owner,
            user: stream.user,
            private: stream.private,
            ttl: stream.ttl,
            created_at: stream.created_at,
            touched_at: stream.created_at,
            status: StreamStatus::Open,
            ended_at: None,
            chunks: 0,
            bytes: 0,
            last: 0,
            result: None,
            compacted: None,
        };
        responses.insert(stream.id, (record, Vec::new()));
        ready(Created::Created)
    }

    fn append_chunks<'a>(
        &'a self,
        id: &'a str,
        chunks: Vec<NewChunk>,
        limits: StreamLimits,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Appended, StorageError>> {
        let mut responses = self.responses();
        let Some((record, stored)) = responses.get_mut(id) else {
            return ready(Appended::NotFound);
        };
        if record.status != StreamStatus::Open {
            return ready(Appended::Ended(record.status));
        }
        if !within(record, &chunks, limits) {
            return ready(Appended::TooLong);
        }
        for chunk in chunks {
            record.last += chunk.advance;
            record.chunks += 1;
            record.bytes += chunk.data.get().len() as u64;
            stored.push(Chunk {
                position: record.last,
                data: chunk.data,
            });
        }
        record.touched_at = now;
        ready(Appended::Appended {
            last: record.last,
            chunks: record.chunks,
        })
    }

    fn end_stream<'a>(
        &'a self,
        id: &'a str,
        status: StreamStatus,
        result: Option<Box<RawValue>>,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Ended, StorageError>> {
        let mut responses = self.responses();
        let Some((record, stored)) = responses.get_mut(id) else {
            return ready(Ended::NotFound);
        };
        if record.status != StreamStatus::Open {
            return ready(Ended::Already(record.status));
        }
        record.compacted = Some(compact(record.kind, stored));
        stored.clear();
        stored.shrink_to_fit();
        record.status = status;
        record.result = result;
        record.ended_at = Some(now);
        ready(Ended::Ended(Box::new(record.clone())))
    }

    fn response_stream<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResponseStream>, StorageError>> {
        ready(self.responses().get(id).map(|(record, _)| record.clone()))
    }

    fn read_chunks<'a>(
        &'a self,
        id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Chunk>, StorageError>> {
        let responses = self.responses();
        let chunks = responses.get(id).map_or_else(Vec::new, |(_, stored)| {
            let start = stored.partition_point(|chunk| chunk.position <= after);
            stored[start..].iter().take(limit).cloned().collect()
        });
        ready(chunks)
    }

    fn expire_streams(&self, now: SystemTime) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        let mut responses = self.responses();
        let mut idle = Vec::new();
        responses.retain(|id, (record, stored)| {
            if expires_at(record) > now {
                return true;
            }
            if record.status != StreamStatus::Open {
                return false;
            }
            // Abandoned while open: it ends as an error, and goes after another ttl.
            record.compacted = Some(compact(record.kind, stored));
            stored.clear();
            record.status = StreamStatus::Error;
            record.result = RawValue::from_string(r#"{"reason":"idle"}"#.to_owned()).ok();
            record.ended_at = Some(now);
            idle.push(id.clone());
            true
        });
        ready(idle)
    }
}
