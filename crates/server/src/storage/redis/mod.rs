//! [`RedisStorage`]: the event log, client directory and inboxes in Redis, shared by every node
//! of a cluster.
//!
//! Layout (every key starts with the configured prefix, `herald:` by default):
//! - `seq`: the last sequence number. One counter for the whole cluster, so an event has the same
//!   id on every node. It starts at the current time in microseconds (`floor`), as in SQLite, so
//!   ids from before Redis lost its data are older than the log and announce a reset.
//! - `s:<stream key>`: one Redis Stream per [`StreamKey`] with entry ids `<seq>-0`, trimmed to
//!   the configured length on append and by age in the background; Redis records the newest
//!   trimmed id (`max-deleted-entry-id`), which is how a replay from before it is refused.
//! - `feed`: every event (and every control message for the nodes) in log order, which each node
//!   follows on its own connection to deliver events to its subscribers.
//! - `clock`: the first sequence number of each second, for retention by age.
//! - `clients`, `nodes`, `node:<id>`, `inbox:…`: the client directory (id → last seen), the live
//!   nodes and the connections each one holds, and each user's notifications.
//!
//! Every multi-key change runs as one Lua script, so it is atomic. The scripts name keys they
//! build from arguments, which a single Redis server (with replicas or Sentinel) allows and
//! Redis Cluster does not: Herald needs one primary.

mod clients;
mod codec;
mod inbox;
mod mercure;
mod node;
mod presence;
mod scripts;
mod streams;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Value};

use super::{
    BoxFuture, InboxItem, InboxPage, InboxQuery, MercureFields, NewEvent, NewInboxItem, ReadChange,
    ReadTarget, Replay, Seq, Storage, StorageError, StorageErrorKind, StoredEvent, StreamKey,
};
use crate::ids::ClientId;
use crate::time;

use scripts::Scripts;

pub use codec::FeedEntry;
pub use node::{FeedReader, MercureRecord, NodeRecord};
pub use presence::{PresenceOperation, PresenceStep};

/// How long any one Redis operation may take before it fails: a publish fails fast with 503
/// rather than waiting for a Redis that does not answer.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// Client ids expired or streams trimmed per round trip during retention.
const RETENTION_CHUNK: usize = 500;

/// What a Redis-backed node is configured with.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// For a `rediss://` URL: the certificate authority (PEM) Redis's certificate is checked
    /// against, in place of the system's and the public ones.
    pub tls_ca: Option<Vec<u8>>,
    pub prefix: String,
    pub max_events_per_stream: usize,
    /// Entries kept in the feed: a node that falls further behind than this (cut off from Redis
    /// while others publish) tells its subscribers to resume from the per-stream history.
    pub feed_max_len: usize,
    /// How often retention runs on each node; one node a round does the work.
    pub retention_interval: Duration,
}

/// A handle to the shared store; clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisStorage {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: redis::Client,
    /// Commands from every task share one multiplexed connection, re-established with backoff
    /// when it breaks.
    connection: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    max_events_per_stream: usize,
    feed_max_len: usize,
    retention_interval: Duration,
    /// The newest position this node has seen Redis issue. Redis having less means it lost
    /// data; the scripts then restart the sequence past it rather than issue an id twice.
    seen: AtomicU64,
}

/// The names of Herald's keys.
#[derive(Debug)]
struct Keys {
    prefix: String,
    seq: String,
    floor: String,
    feed: String,
    streams: String,
    clock: String,
    clock_second: String,
    forgotten: String,
    clients: String,
    notification_seq: String,
    nodes: String,
    retention_lock: String,
    /// Mercure ids, each scored by the position of the newest event holding it.
    mercure_ids: String,
    /// The prefix of the per-stream keys: `<prefix>s:`.
    stream_prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let key = |name: &str| format!("{prefix}{name}");
        Self {
            prefix: prefix.to_owned(),
            seq: key("seq"),
            floor: key("floor"),
            feed: key("feed"),
            streams: key("streams"),
            clock: key("clock"),
            clock_second: key("clock:second"),
            forgotten: key("forgotten"),
            clients: key("clients"),
            notification_seq: key("notification:seq"),
            nodes: key("nodes"),
            retention_lock: key("retention:lock"),
            mercure_ids: key("mercure:ids"),
            stream_prefix: key("s:"),
        }
    }

    fn stream(&self, stream: &StreamKey) -> String {
        format!("{}{}", self.stream_prefix, stream.encode())
    }

    /// A user's inbox: all ids, unread ids and the items. The user id comes last, so no user id
    /// can name another user's keys.
    fn inbox(&self, user: &str) -> [String; 3] {
        let prefix = &self.prefix;
        [
            format!("{prefix}inbox:all:{user}"),
            format!("{prefix}inbox:unread:{user}"),
            format!("{prefix}inbox:items:{user}"),
        ]
    }

    fn node(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }
}

impl RedisStorage {
    /// Prepares the connection without waiting for Redis: a node starts (and reports itself not
    /// ready) while Redis is down, and connects as soon as it answers. A malformed URL is an
    /// error here.
    pub fn open(settings: RedisSettings) -> Result<Self, StorageError> {
        let client = match &settings.tls_ca {
            Some(authority) => redis::Client::build_with_tls(
                settings.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(authority.clone()),
                },
            ),
            None => redis::Client::open(settings.url.as_str()),
        }
        .map_err(|err| StorageError::unavailable(format!("the Redis URL is not usable: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OPERATION_TIMEOUT / 2))
            .set_response_timeout(Some(OPERATION_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|err| redis_error("connecting", &err))?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                connection,
                keys: Keys::new(&settings.prefix),
                scripts: Scripts::new(),
                max_events_per_stream: settings.max_events_per_stream,
                feed_max_len: settings.feed_max_len,
                retention_interval: settings.retention_interval,
                seen: AtomicU64::new(0),
            }),
        })
    }

    fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    fn scripts(&self) -> &Scripts {
        &self.shared.scripts
    }

    fn connection(&self) -> ConnectionManager {
        self.shared.connection.clone()
    }

    /// The newest position this node has seen issued.
    fn seen(&self) -> Seq {
        self.shared.seen.load(Ordering::Acquire)
    }

    /// Records a position Redis issued.
    pub fn observe(&self, seq: Seq) {
        self.shared.seen.fetch_max(seq, Ordering::AcqRel);
    }

    /// Runs one operation against Redis within [`OPERATION_TIMEOUT`].
    async fn call<T>(
        what: &str,
        operation: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StorageError> {
        match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(redis_error(what, &err)),
            Err(_) => Err(StorageError::unavailable(format!(
                "Redis did not answer {what} within {OPERATION_TIMEOUT:?}"
            ))),
        }
    }

    async fn append_events(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let mut invocation = self.scripts().append.prepare_invoke();
        invocation
            .key(&keys.seq)
            .key(&keys.floor)
            .key(&keys.feed)
            .key(&keys.streams)
            .key(&keys.clock)
            .key(&keys.clock_second)
            .key(&keys.forgotten)
            .key(&keys.mercure_ids)
            .arg(&keys.stream_prefix)
            .arg(self.shared.max_events_per_stream)
            .arg(self.shared.feed_max_len)
            .arg(self.seen());
        for event in &events {
            invocation.arg(event.streams.len());
            for stream in &event.streams {
                invocation.arg(stream.encode());
            }
            let mercure = event.mercure.as_deref();
            invocation
                .arg(&event.kind)
                .arg(event.data.get())
                .arg(time::unix_micros(event.time))
                .arg(mercure.map(MercureFields::encode).unwrap_or_default())
                .arg(mercure.map_or("", |fields| fields.id.as_str()));
        }
        let mut connection = self.connection();
        let seqs: Vec<Seq> =
            Self::call("appending events", invocation.invoke_async(&mut connection)).await?;
        if let Some(newest) = seqs.last() {
            self.observe(*newest);
        }
        if seqs.len() != events.len() {
            return Err(StorageError::unavailable(format!(
                "Redis numbered {} of {} events",
                seqs.len(),
                events.len()
            )));
        }
        Ok(events
            .into_iter()
            .zip(seqs)
            .map(|(event, seq)| event.stored_at(seq))
            .collect())
    }

    async fn latest_seq(&self) -> Result<Seq, StorageError> {
        let keys = self.keys();
        let mut invocation = self.scripts().latest.prepare_invoke();
        invocation.key(&keys.seq).key(&keys.floor).arg(self.seen());
        let mut connection = self.connection();
        let latest = Self::call(
            "reading the log's position",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        self.observe(latest);
        Ok(latest)
    }

    async fn read(
        &self,
        streams: &[StreamKey],
        after: Seq,
        limit: usize,
    ) -> Result<Replay, StorageError> {
        let keys = self.keys();
        let mut invocation = self.scripts().read.prepare_invoke();
        invocation.key(&keys.floor).key(&keys.forgotten);
        for stream in streams {
            invocation.key(keys.stream(stream));
        }
        // Each stream is asked for a share of the page (the script cuts the answer at the
        // horizon where a stream had more), so a connection with many streams does not read many
        // pages' worth at once.
        let per_stream = (limit / streams.len().max(1)).clamp(limit.min(16), limit.max(1));
        invocation.arg(after).arg(per_stream);
        let mut connection = self.connection();
        let reply: Vec<Value> = Self::call(
            "replaying history",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        let mut reply = reply.into_iter();
        match reply.next() {
            Some(Value::BulkString(tag)) if tag == b"expired" => Ok(Replay::Expired),
            Some(Value::BulkString(tag)) if tag == b"events" => {
                let mut events = Vec::new();
                while let (Some(id), Some(fields)) = (reply.next(), reply.next()) {
                    match codec::entry(id, fields)? {
                        FeedEntry::Event(event) => events.push(event),
                        FeedEntry::Control { .. } | FeedEntry::Unreadable { .. } => {}
                    }
                }
                events.sort_by_key(|event| event.seq);
                events.dedup_by_key(|event| event.seq);
                events.truncate(limit);
                // The script cuts a page where one stream had more, so a short page can still
                // leave events behind.
                Ok(Replay::Events {
                    events,
                    complete: false,
                })
            }
            _ => Err(StorageError::unavailable(
                "Redis answered a replay in an unknown form",
            )),
        }
    }

    async fn expire_now(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> Result<(), StorageError> {
        let keys = self.keys();
        let mut connection = self.connection();
        // Every node runs retention; one round per interval is enough, so the first to take the
        // lock does it.
        let lock_ms = (self.shared.retention_interval.as_millis() * 9 / 10).max(1);
        let taken: Option<String> = Self::call(
            "taking the retention lock",
            redis::cmd("SET")
                .arg(&keys.retention_lock)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(lock_ms).unwrap_or(u64::MAX))
                .query_async(&mut connection),
        )
        .await?;
        if taken.is_none() {
            return Ok(());
        }
        // Clients not seen since the cutoff, with their streams.
        loop {
            let mut invocation = self.scripts().expire_clients.prepare_invoke();
            invocation
                .key(&keys.clients)
                .key(&keys.streams)
                .arg(time::unix_millis(cutoff))
                .arg(&keys.stream_prefix)
                .arg(RETENTION_CHUNK);
            let expired: usize = Self::call(
                "forgetting expired clients",
                invocation.invoke_async(&mut connection),
            )
            .await?;
            if expired < RETENTION_CHUNK {
                break;
            }
        }
        // History older than the maximum age.
        let second = time::unix_millis(oldest_kept) / 1000;
        let mut invocation = self.scripts().cutoff.prepare_invoke();
        invocation.key(&keys.clock).key(&keys.seq).arg(second);
        let first_kept: Option<String> = Self::call(
            "finding the retention cutoff",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        let Some(first_kept) = first_kept else {
            return Ok(());
        };
        self.forget_mercure_ids(&first_kept).await?;
        let mut cursor: u64 = 0;
        loop {
            let (next, streams): (u64, Vec<String>) = Self::call(
                "listing streams",
                redis::cmd("SSCAN")
                    .arg(&keys.streams)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(RETENTION_CHUNK)
                    .query_async(&mut connection),
            )
            .await?;
            if !streams.is_empty() {
                let mut invocation = self.scripts().trim.prepare_invoke();
                invocation
                    .key(&keys.streams)
                    .key(&keys.forgotten)
                    .arg(&keys.stream_prefix)
                    .arg(&first_kept)
                    .arg(&streams);
                let _dropped: u64 =
                    Self::call("trimming history", invocation.invoke_async(&mut connection))
                        .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// Maps a Redis failure to what a client is told: out of memory is "full", a replica that
/// refuses writes is "read-only", anything else "unavailable".
fn redis_error(what: &str, err: &RedisError) -> StorageError {
    let kind = match err.code() {
        Some("OOM") => StorageErrorKind::Full,
        Some("READONLY") => StorageErrorKind::ReadOnly,
        _ => StorageErrorKind::Unavailable,
    };
    StorageError::new(kind, format!("Redis failed {what}: {err}"))
}

impl Storage for RedisStorage {
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<Arc<StoredEvent>>, StorageError>> {
        Box::pin(self.append_events(events))
    }

    fn latest(&self) -> BoxFuture<'_, Result<Seq, StorageError>> {
        Box::pin(self.latest_seq())
    }

    fn read_after<'a>(
        &'a self,
        streams: &'a [StreamKey],
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, StorageError>> {
        Box::pin(self.read(streams, after, limit))
    }

    fn register_client<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(self.register(client))
    }

    fn client_exists<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(self.exists(client))
    }

    fn touch_clients<'a>(
        &'a self,
        clients: &'a [ClientId],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(self.touch(clients))
    }

    fn client_count(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(self.count_clients())
    }

    fn forget_oldest_clients(&self, keep: u64) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(self.forget_oldest(keep))
    }

    fn expire(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(self.expire_now(cutoff, oldest_kept))
    }

    fn add_notification<'a>(
        &'a self,
        user: &'a str,
        item: NewInboxItem,
        keep: usize,
    ) -> BoxFuture<'a, Result<InboxItem, StorageError>> {
        Box::pin(self.notify(user, item, keep))
    }

    fn notifications<'a>(
        &'a self,
        user: &'a str,
        query: InboxQuery,
    ) -> BoxFuture<'a, Result<InboxPage, StorageError>> {
        Box::pin(self.inbox_page(user, query))
    }

    fn mark_read<'a>(
        &'a self,
        user: &'a str,
        target: ReadTarget,
    ) -> BoxFuture<'a, Result<Option<ReadChange>, StorageError>> {
        Box::pin(self.read_notifications(user, target))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let mut connection = self.connection();
            Self::call(
                "answering a ping",
                redis::cmd("PING").exec_async(&mut connection),
            )
            .await
        })
    }

    fn topic_streams(&self) -> BoxFuture<'_, Result<Vec<StreamKey>, StorageError>> {
        Box::pin(self.stored_topic_streams())
    }

    fn earliest<'a>(
        &'a self,
        streams: &'a [StreamKey],
    ) -> BoxFuture<'a, Result<Seq, StorageError>> {
        Box::pin(self.earliest_of(streams))
    }

    fn find_mercure_id<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Seq>, StorageError>> {
        Box::pin(self.mercure_id(id))
    }

    fn streams(&self) -> Option<&dyn super::streams::StreamStore> {
        Some(self)
    }
}
