//! Response streams: creating, appending, ending and reading them. The store holds every
//! chunk and the streams' records; this node wakes its readers when a stream it serves grows or
//! ends, and reads again from the store, so what a reader is sent is what was stored, in order,
//! once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::Stream;
use herald_protocol::sse::Frame;
use herald_protocol::streams::{END_ID, StreamInfo, StreamKind, StreamStatus};
use tokio::sync::{mpsc, watch};

use super::stream_frames::{Framer, StreamFrames};
use super::{App, AppError, Rejection};
use crate::storage::streams::{
    Appended, Created, Ended, NewChunk, NewResponseStream, ResponseStream, StreamLimits,
    StreamStore, compact,
};

/// How response streams are limited.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    /// The largest chunk, as JSON.
    pub max_chunk_bytes: usize,
    pub limits: StreamLimits,
    /// Open streams one publisher may hold.
    pub max_open: usize,
    /// Longest silence on a reader's stream before a heartbeat.
    pub heartbeat: Duration,
    /// How often streams past their ttl are looked for.
    pub expiry_interval: Duration,
}

/// Chunks read from the store at once for a reader.
const PAGE: usize = 256;

/// Wakes the readers of each stream this node serves.
#[derive(Debug, Default)]
pub(super) struct Wakers {
    streams: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Wakers {
    fn subscribe(&self, id: &str) -> Wake<'_> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = streams
            .entry(id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Wake {
            wakers: self,
            id: id.to_owned(),
            receiver: Some(receiver),
        }
    }

    /// Tells the readers of `id` to read again.
    pub(super) fn wake(&self, id: &str) {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = streams.get(id) {
            sender.send_modify(|version| *version += 1);
        }
    }
}

/// One reader's wake-ups; the last reader of a stream to go takes its entry with it.
struct Wake<'a> {
    wakers: &'a Wakers,
    id: String,
    receiver: Option<watch::Receiver<u64>>,
}

impl Wake<'_> {
    fn receiver(&mut self) -> &mut watch::Receiver<u64> {
        self.receiver.get_or_insert_with(|| watch::channel(0).1)
    }
}

impl Drop for Wake<'_> {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut streams = self
            .wakers
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if streams
            .get(&self.id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            streams.remove(&self.id);
        }
    }
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Start,
    /// After the chunk at this position.
    After(u64),
    /// After the end: nothing is left to send.
    End,
}

impl ReadFrom {
    /// Reads a `Last-Event-ID`.
    pub fn parse(id: Option<&str>) -> Result<Self, AppError> {
        match id.map(str::trim) {
            None | Some("") => Ok(Self::Start),
            Some(END_ID) => Ok(Self::End),
            Some(text) => text.parse().map(Self::After).map_err(|_| {
                AppError::invalid(
                    "invalid_last_event_id",
                    "the last event id is not a position of this stream",
                )
            }),
        }
    }
}

/// What a caller may do with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Its owner, or an administrator: everything.
    Owner,
    Read,
    None,
}

/// Who asks, as far as streams care.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user: Option<&'a str>,
    pub admin: bool,
    /// Whether the caller's `subscribe` selectors match `streams/{id}`.
    pub may_subscribe: bool,
}

/// What `caller` may do with `stream`.
pub fn access(stream: &ResponseStream, caller: Caller<'_>) -> Access {
    if caller.admin || caller.user == Some(stream.owner.as_str()) {
        return Access::Owner;
    }
    let own = stream.user.is_some() && caller.user == stream.user.as_deref();
    let open_to_all = !stream.private && stream.user.is_none();
    if own || open_to_all || caller.may_subscribe {
        Access::Read
    } else {
        Access::None
    }
}

/// Reads a ttl given as seconds or as a duration (`"10m"`).
fn ttl_of(
    value: Option<&serde_json::Value>,
    settings: &StreamSettings,
) -> Result<Duration, AppError> {
    let invalid = || {
        AppError::invalid(
            "invalid_ttl",
            format!(
                "ttl must be a number of seconds or a duration (\"10m\"), from 1s to {}",
                humantime::format_duration(settings.max_ttl)
            ),
        )
    };
    let ttl = match value {
        None | Some(serde_json::Value::Null) => return Ok(settings.default_ttl),
        Some(serde_json::Value::Number(secs)) => {
            Duration::from_secs(secs.as_u64().ok_or_else(invalid)?)
        }
        Some(serde_json::Value::String(text)) => {
            crate::config::parse_duration(text).map_err(|_| invalid())?
        }
        Some(_) => return Err(invalid()),
    };
    if ttl < Duration::from_secs(1) || ttl > settings.max_ttl {
        return Err(invalid());
    }
    Ok(ttl)
}

impl App {
    fn stream_store(&self) -> Result<&dyn StreamStore, AppError> {
        self.inner.storage.streams().ok_or_else(|| {
            AppError::rejected(
                Rejection::Unavailable,
                "streams_unavailable",
                "response streams are not kept by this store",
            )
        })
    }

    fn stream_settings(&self) -> &StreamSettings {
        &self.inner.settings.streams
    }

    /// The stream `id`, or 404.
    pub async fn response_stream(&self, id: &str) -> Result<ResponseStream, AppError> {
        let unknown = || AppError::not_found("unknown_stream", format!("no stream {id:?}"));
        // Only ids Herald issues are looked up: anything else names no stream, and never
        // reaches the store as a key.
        if crate::ids::ClientId::parse(id).is_none() {
            return Err(unknown());
        }
        self.stream_store()?
            .response_stream(id)
            .await?
            .ok_or_else(unknown)
    }

    /// Creates a stream owned by `owner`; its id.
    pub async fn create_stream(
        &self,
        id: String,
        owner: &str,
        request: &herald_protocol::streams::CreateStream,
    ) -> Result<String, AppError> {
        let settings = *self.stream_settings();
        let stream = NewResponseStream {
            id: id.clone(),
            kind: request.kind,
            owner: owner.to_owned(),
            user: request.user.clone(),
            private: request.private,
            ttl: ttl_of(request.ttl.as_ref(), &settings)?,
            created_at: SystemTime::now(),
        };
        match self
            .stream_store()?
            .create_stream(stream, settings.max_open)
            .await?
        {
            Created::Created => Ok(id),
            Created::TooMany => Err(AppError::rejected(
                Rejection::Limited,
                "too_many_streams",
                format!(
                    "this publisher already holds {} open streams; end some first",
                    settings.max_open
                ),
            )),
        }
    }

    /// Appends chunks to an open stream, once stored; the last position and the chunk count.
    pub async fn append_chunks(
        &self,
        id: &str,
        kind: StreamKind,
        chunks: Vec<serde_json::Value>,
    ) -> Result<(u64, u64), AppError> {
        let settings = *self.stream_settings();
        let chunks = checked_chunks(kind, chunks, settings.max_chunk_bytes)?;
        let appended = self
            .stream_store()?
            .append_chunks(id, chunks, settings.limits, SystemTime::now())
            .await?;
        match appended {
            Appended::Appended { last, chunks } => {
                self.inner.wakers.wake(id);
                Ok((last, chunks))
            }
            Appended::NotFound => Err(AppError::not_found(
                "unknown_stream",
                format!("no stream {id:?}"),
            )),
            Appended::Ended(status) => Err(already_ended(status)),
            Appended::TooLong => Err(AppError::rejected(
                Rejection::TooLarge,
                "stream_too_long",
                format!(
                    "a stream holds at most {} chunks and {} bytes",
                    settings.limits.max_chunks, settings.limits.max_bytes
                ),
            )),
        }
    }

    /// Ends an open stream.
    pub async fn end_stream(
        &self,
        id: &str,
        status: StreamStatus,
        result: Option<serde_json::Value>,
    ) -> Result<ResponseStream, AppError> {
        let result = result
            .map(|result| serde_json::value::to_raw_value(&result))
            .transpose()
            .map_err(|err| AppError::invalid("invalid_result", err.to_string()))?;
        let ended = self
            .stream_store()?
            .end_stream(id, status, result, SystemTime::now())
            .await?;
        match ended {
            Ended::Ended(stream) => {
                self.inner.wakers.wake(id);
                if status == StreamStatus::Cancelled {
                    self.inner.relays.abort(id);
                }
                Ok(*stream)
            }
            Ended::NotFound => Err(AppError::not_found(
                "unknown_stream",
                format!("no stream {id:?}"),
            )),
            Ended::Already(status) => Err(already_ended(status)),
        }
    }

    /// Where a stream stands, with all of it so far.
    pub async fn stream_info(&self, stream: &ResponseStream) -> Result<StreamInfo, AppError> {
        let whole = match &stream.compacted {
            Some(compacted) => compacted.clone(),
            None => {
                let chunks = self
                    .stream_store()?
                    .read_chunks(&stream.id, 0, usize::MAX)
                    .await?;
                compact(stream.kind, &chunks)
            }
        };
        let (text, value) = match stream.kind {
            StreamKind::Text => (serde_json::from_str(whole.get()).ok(), None),
            StreamKind::Progress => (None, serde_json::from_str(whole.get()).ok()),
        };
        Ok(StreamInfo {
            id: stream.id.clone(),
            kind: stream.kind,
            status: stream.status,
            text,
            value,
            chunks: stream.chunks,
            last_id: (stream.last > 0).then(|| stream.last.to_string()),
            result: stream
                .result
                .as_ref()
                .and_then(|result| serde_json::from_str(result.get()).ok()),
            created_at: crate::time::rfc3339(stream.created_at),
            ended_at: stream.ended_at.map(crate::time::rfc3339),
        })
    }

    /// The frames of a stream for a reader, from `from`: every chunk, live as they come, then
    /// `stream.end`, after which the body ends.
    pub fn read_stream(
        &self,
        stream: ResponseStream,
        from: ReadFrom,
        retry_ms: u64,
    ) -> impl Stream<Item = Bytes> + Send + 'static {
        let mut greeting = Vec::new();
        let _ = Frame::new()
            .comment("")
            .retry(retry_ms)
            .encode_into(&mut greeting);
        let after = match from {
            ReadFrom::Start | ReadFrom::End => 0,
            ReadFrom::After(position) => position,
        };
        self.read_with(stream, after, greeting.into(), StreamFrames)
    }

    /// A reader of `stream` after position `after`, its frames written by `framer`, after
    /// `greeting`.
    pub(super) fn read_with(
        &self,
        stream: ResponseStream,
        after: u64,
        greeting: Bytes,
        framer: impl Framer,
    ) -> impl Stream<Item = Bytes> + Send + 'static {
        let (sender, receiver) = mpsc::channel::<Bytes>(16);
        let app = self.clone();
        tokio::spawn(async move {
            let shutdown = app.inner.shutdown.clone();
            tokio::select! {
                () = app.follow(stream, after, greeting, framer, &sender) => {}
                () = shutdown.cancelled() => {}
                () = sender.closed() => {}
            }
        });
        futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|bytes| (bytes, receiver))
        })
    }

    async fn follow(
        &self,
        stream: ResponseStream,
        mut after: u64,
        greeting: Bytes,
        mut framer: impl Framer,
        out: &mpsc::Sender<Bytes>,
    ) {
        if out.send(greeting).await.is_err() {
            return;
        }
        let id = stream.id;
        let mut wake = self.inner.wakers.subscribe(&id);
        let heartbeat = self.stream_settings().heartbeat;
        loop {
            wake.receiver().borrow_and_update();
            // The chunks first: the record is read only when none is left, to see whether the
            // stream ended (its chunks are compacted away in the same change as its end).
            let Ok(chunks) = self.read_page(&id, after).await else {
                return;
            };
            if !chunks.is_empty() {
                for chunk in chunks {
                    after = chunk.position;
                    let Some(frame) = framer.chunk(chunk.position, &chunk.data) else {
                        continue;
                    };
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            let Ok(Some(now)) = self.read_record(&id).await else {
                return;
            };
            if now.status != StreamStatus::Open {
                for frame in framer.end(&now, after) {
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
                return;
            }
            tokio::select! {
                changed = wake.receiver().changed() => if changed.is_err() { return },
                () = tokio::time::sleep(heartbeat) => {
                    if out.send(Bytes::from_static(b": heartbeat\n\n")).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn read_record(&self, id: &str) -> Result<Option<ResponseStream>, AppError> {
        Ok(self.stream_store()?.response_stream(id).await?)
    }

    async fn read_page(
        &self,
        id: &str,
        after: u64,
    ) -> Result<Vec<crate::storage::streams::Chunk>, AppError> {
        Ok(self.stream_store()?.read_chunks(id, after, PAGE).await?)
    }

    /// Wakes this node's readers of the streams other nodes change (in a cluster), until
    /// shutdown.
    pub async fn follow_stream_notices(self) {
        let Some(mut notices) = self
            .inner
            .storage
            .streams()
            .and_then(StreamStore::stream_notices)
        else {
            return;
        };
        let shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Some(id) => self.inner.wakers.wake(&id),
                    None => return,
                },
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Ends the streams left open past their ttl and forgets those ended past it, every
    /// `expiry_interval`, until shutdown.
    pub async fn expire_streams(self) {
        let every = self.stream_settings().expiry_interval;
        let shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            let Ok(store) = self.stream_store() else {
                return;
            };
            match store.expire_streams(SystemTime::now()).await {
                Ok(idle) => {
                    for id in idle {
                        self.inner.wakers.wake(&id);
                    }
                }
                Err(err) => tracing::warn!(%err, "expiring response streams failed; will retry"),
            }
        }
    }
}

fn already_ended(status: StreamStatus) -> AppError {
    let status = serde_json::to_value(status)
        .ok()
        .and_then(|status| status.as_str().map(str::to_owned))
        .unwrap_or_default();
    AppError::rejected(
        Rejection::Conflict,
        "stream_ended",
        format!("the stream has ended ({status})"),
    )
}

/// Checks each chunk: a non-empty string for a text stream, any JSON for progress, none larger
/// than `max_bytes`.
fn checked_chunks(
    kind: StreamKind,
    chunks: Vec<serde_json::Value>,
    max_bytes: usize,
) -> Result<Vec<NewChunk>, AppError> {
    if chunks.is_empty() {
        return Err(AppError::invalid(
            "missing_chunks",
            "chunks must hold at least one chunk",
        ));
    }
    let mut checked = Vec::with_capacity(chunks.len());
    for (n, chunk) in chunks.into_iter().enumerate() {
        let advance = match (kind, &chunk) {
            (StreamKind::Text, serde_json::Value::String(text)) if !text.is_empty() => {
                text.len() as u64
            }
            (StreamKind::Text, _) => {
                return Err(AppError::invalid(
                    "invalid_chunk",
                    format!("chunk {n}: a text stream's chunks are non-empty strings"),
                ));
            }
            (StreamKind::Progress, _) => 1,
        };
        let data = serde_json::value::to_raw_value(&chunk)
            .map_err(|err| AppError::invalid("invalid_chunk", err.to_string()))?;
        if data.get().len() > max_bytes {
            return Err(AppError::rejected(
                Rejection::TooLarge,
                "chunk_too_large",
                format!("chunk {n} is larger than {max_bytes} bytes"),
            ));
        }
        checked.push(NewChunk { advance, data });
    }
    Ok(checked)
}
