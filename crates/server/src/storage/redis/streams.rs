//! Response streams in Redis, readable live from every node:
//!
//! - `rs:{id}`: the stream's record (a hash);
//! - `rs:{id}:c`: its chunks until it ends, scored by position (members `position:data`);
//! - `rs-open:{owner}`: the owner's open streams, to count them;
//! - `rs-expiry`: every stream by when its ttl runs out.
//!
//! A node that appends to or ends a stream says so on the channel `rs-wake`; every node wakes
//! its readers of that stream, which read the store again.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use herald_protocol::streams::{StreamKind, StreamStatus};
use redis::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::RedisStorage;
use crate::storage::streams::{
    Appended, Chunk, Created, Ended, NewChunk, NewResponseStream, ResponseStream, StreamLimits,
    StreamStore, compact,
};
use crate::storage::{BoxFuture, StorageError};

/// The status a stored name stands for (an unknown one as an error).
fn status_of(name: &str) -> StreamStatus {
    StreamStatus::from_name(name).unwrap_or(StreamStatus::Error)
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn at(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

/// A record read with `HGETALL`.
fn record(id: &str, fields: &HashMap<String, String>) -> Option<ResponseStream> {
    let text = |name: &str| fields.get(name).map(String::as_str);
    let number = |name: &str| text(name).and_then(|value| value.parse::<u64>().ok());
    let raw = |name: &str| {
        text(name)
            .filter(|value| !value.is_empty())
            .and_then(|value| RawValue::from_string(value.to_owned()).ok())
    };
    Some(ResponseStream {
        id: id.to_owned(),
        kind: StreamKind::from_name(text("kind")?)?,
        owner: text("owner")?.to_owned(),
        user: text("user")
            .filter(|user| !user.is_empty())
            .map(str::to_owned),
        private: text("private") == Some("1"),
        ttl: Duration::from_millis(number("ttl")?),
        created_at: at(number("created")?),
        touched_at: at(number("touched")?),
        status: status_of(text("status")?),
        ended_at: number("ended").map(at),
        chunks: number("chunks")?,
        bytes: number("bytes")?,
        last: number("last")?,
        result: raw("result"),
        compacted: raw("compacted"),
    })
}

impl RedisStorage {
    fn stream_key(&self, id: &str) -> String {
        format!("{}rs:{id}", self.keys().prefix)
    }

    fn chunks_key(&self, id: &str) -> String {
        format!("{}rs:{id}:c", self.keys().prefix)
    }

    fn open_key(&self, owner: &str) -> String {
        format!("{}rs-open:{owner}", self.keys().prefix)
    }

    fn expiry_key(&self) -> String {
        format!("{}rs-expiry", self.keys().prefix)
    }

    fn wake_channel(&self) -> String {
        format!("{}rs-wake", self.keys().prefix)
    }

    async fn find_stream(&self, id: &str) -> Result<Option<ResponseStream>, StorageError> {
        let mut connection = self.connection();
        let fields: HashMap<String, String> = Self::call(
            "reading a stream",
            redis::cmd("HGETALL")
                .arg(self.stream_key(id))
                .query_async(&mut connection),
        )
        .await?;
        Ok(record(id, &fields))
    }

    async fn chunks(&self, id: &str, after: u64, limit: usize) -> Result<Vec<Chunk>, StorageError> {
        let mut connection = self.connection();
        let members: Vec<String> = Self::call(
            "reading a stream's chunks",
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.chunks_key(id))
                .arg(format!("({after}"))
                .arg("+inf")
                .arg("LIMIT")
                .arg(0)
                .arg(i64::try_from(limit).unwrap_or(i64::MAX))
                .query_async(&mut connection),
        )
        .await?;
        Ok(members
            .into_iter()
            .filter_map(|member| {
                let (position, data) = member.split_once(':')?;
                Some(Chunk {
                    position: position.parse().ok()?,
                    data: RawValue::from_string(data.to_owned()).ok()?,
                })
            })
            .collect())
    }

    async fn create(
        &self,
        stream: NewResponseStream,
        max_open: usize,
    ) -> Result<Created, StorageError> {
        let mut invocation = self.scripts().stream_create.prepare_invoke();
        invocation
            .key(self.stream_key(&stream.id))
            .key(self.open_key(&stream.owner))
            .key(self.expiry_key())
            .arg(&stream.id)
            .arg(stream.kind.as_str())
            .arg(&stream.owner)
            .arg(stream.user.as_deref().unwrap_or(""))
            .arg(if stream.private { "1" } else { "0" })
            .arg(u64::try_from(stream.ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(millis(stream.created_at))
            .arg(max_open);
        let mut connection = self.connection();
        let created: i64 = Self::call(
            "creating a stream",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        Ok(if created == 1 {
            Created::Created
        } else {
            Created::TooMany
        })
    }

    async fn append(
        &self,
        id: &str,
        chunks: Vec<NewChunk>,
        limits: StreamLimits,
        now: SystemTime,
    ) -> Result<Appended, StorageError> {
        let mut invocation = self.scripts().stream_append.prepare_invoke();
        invocation
            .key(self.stream_key(id))
            .key(self.chunks_key(id))
            .key(self.expiry_key())
            .arg(id)
            .arg(millis(now))
            .arg(limits.max_chunks)
            .arg(limits.max_bytes)
            .arg(chunks.len());
        for chunk in &chunks {
            invocation.arg(chunk.advance).arg(chunk.data.get());
        }
        let mut connection = self.connection();
        let answer: Vec<String> = Self::call(
            "appending to a stream",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        let number = |n: usize| {
            answer
                .get(n)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        let appended = match answer.first().map(String::as_str) {
            Some("ok") => Appended::Appended {
                last: number(1),
                chunks: number(2),
            },
            Some("ended") => Appended::Ended(status_of(answer.get(1).map_or("", String::as_str))),
            Some("long") => Appended::TooLong,
            _ => Appended::NotFound,
        };
        if matches!(appended, Appended::Appended { .. }) {
            self.wake_nodes(id).await;
        }
        Ok(appended)
    }

    async fn end(
        &self,
        id: &str,
        status: StreamStatus,
        result: Option<&RawValue>,
        now: SystemTime,
    ) -> Result<Ended, StorageError> {
        loop {
            let Some(stream) = self.find_stream(id).await? else {
                return Ok(Ended::NotFound);
            };
            if stream.status != StreamStatus::Open {
                return Ok(Ended::Already(stream.status));
            }
            let chunks = self.chunks(id, 0, usize::MAX).await?;
            let compacted = compact(stream.kind, &chunks);
            let mut invocation = self.scripts().stream_end.prepare_invoke();
            invocation
                .key(self.stream_key(id))
                .key(self.chunks_key(id))
                .key(self.open_key(&stream.owner))
                .key(self.expiry_key())
                .arg(id)
                .arg(status.as_str())
                .arg(result.map_or("", RawValue::get))
                .arg(compacted.get())
                .arg(millis(now))
                .arg(stream.last);
            let mut connection = self.connection();
            let answer: Vec<String> =
                Self::call("ending a stream", invocation.invoke_async(&mut connection)).await?;
            match answer.first().map(String::as_str) {
                Some("ok") => break,
                Some("ended") => {
                    return Ok(Ended::Already(status_of(
                        answer.get(1).map_or("", String::as_str),
                    )));
                }
                Some("moved") => {}
                _ => return Ok(Ended::NotFound),
            }
        }
        self.wake_nodes(id).await;
        Ok(self
            .find_stream(id)
            .await?
            .map_or(Ended::NotFound, |stream| Ended::Ended(Box::new(stream))))
    }

    async fn expire(&self, now: SystemTime) -> Result<Vec<String>, StorageError> {
        let mut connection = self.connection();
        let due: Vec<String> = Self::call(
            "listing expired streams",
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.expiry_key())
                .arg("-inf")
                .arg(millis(now))
                .arg("LIMIT")
                .arg(0)
                .arg(500)
                .query_async(&mut connection),
        )
        .await?;
        let mut idle = Vec::new();
        for id in due {
            match self.find_stream(&id).await? {
                Some(stream) if stream.status == StreamStatus::Open => {
                    let reason = RawValue::from_string(r#"{"reason":"idle"}"#.to_owned()).ok();
                    self.end(&id, StreamStatus::Error, reason.as_deref(), now)
                        .await?;
                    idle.push(id);
                }
                _ => {
                    let _: Value = Self::call(
                        "removing a stream",
                        redis::pipe()
                            .atomic()
                            .cmd("DEL")
                            .arg(self.stream_key(&id))
                            .arg(self.chunks_key(&id))
                            .ignore()
                            .cmd("ZREM")
                            .arg(self.expiry_key())
                            .arg(&id)
                            .ignore()
                            .query_async(&mut connection),
                    )
                    .await?;
                }
            }
        }
        Ok(idle)
    }

    /// Tells every node that stream `id` changed. A lost message only delays its readers on
    /// other nodes until their next heartbeat, when they read again anyway.
    async fn wake_nodes(&self, id: &str) {
        let mut connection = self.connection();
        let published: Result<i64, _> = Self::call(
            "announcing a stream's change",
            redis::cmd("PUBLISH")
                .arg(self.wake_channel())
                .arg(id)
                .query_async(&mut connection),
        )
        .await;
        if let Err(err) = published {
            tracing::debug!(%err, "could not announce a stream's change");
        }
    }

    /// Follows the channel on which nodes announce changed streams, reconnecting after a
    /// failure, until `notices` is closed.
    async fn follow_wakes(self, notices: mpsc::Sender<String>) {
        let channel = self.wake_channel();
        let mut delay = Duration::from_millis(100);
        while !notices.is_closed() {
            match self.shared.client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if pubsub.subscribe(&channel).await.is_ok() {
                        delay = Duration::from_millis(100);
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            if let Ok(id) = message.get_payload::<String>()
                                && notices.send(id).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                Err(err) => tracing::debug!(%err, "cannot follow stream changes; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

impl StreamStore for RedisStorage {
    fn create_stream(
        &self,
        stream: NewResponseStream,
        max_open: usize,
    ) -> BoxFuture<'_, Result<Created, StorageError>> {
        Box::pin(self.create(stream, max_open))
    }

    fn append_chunks<'a>(
        &'a self,
        id: &'a str,
        chunks: Vec<NewChunk>,
        limits: StreamLimits,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Appended, StorageError>> {
        Box::pin(self.append(id, chunks, limits, now))
    }

    fn end_stream<'a>(
        &'a self,
        id: &'a str,
        status: StreamStatus,
        result: Option<Box<RawValue>>,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Ended, StorageError>> {
        Box::pin(async move { self.end(id, status, result.as_deref(), now).await })
    }

    fn response_stream<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResponseStream>, StorageError>> {
        Box::pin(self.find_stream(id))
    }

    fn read_chunks<'a>(
        &'a self,
        id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Chunk>, StorageError>> {
        Box::pin(self.chunks(id, after, limit))
    }

    fn expire_streams(&self, now: SystemTime) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        Box::pin(self.expire(now))
    }

    fn stream_notices(&self) -> Option<mpsc::Receiver<String>> {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(self.clone().follow_wakes(sender));
        Some(receiver)
    }
}
