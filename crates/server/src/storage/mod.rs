//! The storage boundary: the event log that gives events their ids and answers replays, the
//! directory of client ids the server has issued, and the users' notification inboxes.
//!
//! The hub talks only to [`Storage`]. [`SqliteStorage`], the default, is the durable log in the
//! data directory; [`MemoryStorage`] keeps everything in this process; [`RedisStorage`] shares
//! it between the nodes of a cluster. Every implementation keeps these promises, which the
//! contract suite (`tests/it/storage_contract.rs`) checks on each:
//! - `append` assigns increasing sequence numbers in the order of the batch, above any it
//!   assigned before, and returns only once the events are stored as durably as the
//!   implementation promises; `latest` is the newest of them;
//! - `read_after` returns the events after a position of the streams asked for, each once, in
//!   sequence order, at most `limit` (saying whether that is all of them as of the read), or
//!   [`Replay::Expired`] when some of them are no longer retained: never a silent gap. A
//!   position from before the log began is expired;
//! - `expire` keeps at most the configured number of events per stream and none older than
//!   the age limit, and forgets clients not seen since the cutoff with their streams' events
//!   (the hub never replays an unknown client's stream, so a store may answer `Expired` or
//!   nothing for one);
//! - a client id is known from `register_client` until it expires or is among the oldest
//!   forgotten to keep their number under a cap; the inbox keeps a user's newest
//!   notifications, newest first, and every call names the user.

mod inbox;
mod memory;
mod redis;
mod sqlite;
pub mod streams;
#[cfg(feature = "testing")]
pub mod testing;
mod timed;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::value::RawValue;

use crate::ids::ClientId;

pub use inbox::{InboxItem, InboxPage, InboxQuery, NewInboxItem, ReadChange, ReadTarget};
pub use memory::MemoryStorage;
pub use redis::{
    FeedEntry, FeedReader, MercureRecord, NodeRecord, PresenceOperation, PresenceStep,
    RedisSettings, RedisStorage,
};
pub use sqlite::{SqliteSettings, SqliteStorage};
pub use timed::Timed;

/// The default wire form of a position: its decimal digits.
pub fn decimal_id(seq: Seq) -> String {
    seq.to_string()
}

/// A future returned through the object-safe [`Storage`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A position in the event log. Sequence numbers increase in the order events are delivered.
pub type Seq = u64;

/// One stream a connection can receive and history is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKey {
    Topic(Arc<str>),
    /// The private events of a topic: only connections allowed to subscribe to it receive them.
    Private(Arc<str>),
    Client(ClientId),
    /// Every connection authenticated as this user.
    User(Arc<str>),
    Broadcast,
    /// Who comes and goes on a topic (`herald.presence`), for its subscribers that asked.
    Presence(Arc<str>),
}

impl StreamKey {
    /// The topic named in the envelope of an event delivered through this stream.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::Topic(topic) | Self::Private(topic) => Some(topic),
            Self::Client(_) | Self::User(_) | Self::Broadcast | Self::Presence(_) => None,
        }
    }

    /// The key as stored text: `t:<topic>`, `p:<topic>`, `c:<client id>`, `u:<user>`, `b` or
    /// `r:<topic>`.
    /// Topics and user ids hold no control characters, so a newline can separate several keys.
    pub fn encode(&self) -> String {
        match self {
            Self::Topic(topic) => format!("t:{topic}"),
            Self::Private(topic) => format!("p:{topic}"),
            Self::Client(client) => format!("c:{client}"),
            Self::User(user) => format!("u:{user}"),
            Self::Broadcast => "b".to_owned(),
            Self::Presence(topic) => format!("r:{topic}"),
        }
    }

    /// Reads a key written by [`StreamKey::encode`].
    pub fn decode(text: &str) -> Option<Self> {
        match text.split_once(':') {
            Some(("t", topic)) => Some(Self::Topic(Arc::from(topic))),
            Some(("p", topic)) => Some(Self::Private(Arc::from(topic))),
            Some(("u", user)) => Some(Self::User(Arc::from(user))),
            Some(("r", topic)) => Some(Self::Presence(Arc::from(topic))),
            Some(("c", client)) => ClientId::parse(client).map(Self::Client),
            None if text == "b" => Some(Self::Broadcast),
            _ => None,
        }
    }
}

/// What an update published through the Mercure hub keeps beside a Herald event, for its
/// Mercure subscribers: its data is stored as a JSON string, which they receive as text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MercureFields {
    /// The update's id as Mercure subscribers see it and resume from: the publisher's, or one
    /// Herald generated (`urn:uuid:…`).
    pub id: String,
    /// Published without a type: Herald's subscribers see `message`, Mercure's no `event:`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untyped: bool,
    /// The reconnection delay the publisher asked for, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
}

impl MercureFields {
    /// The fields as stored: compact JSON.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Fields written by [`MercureFields::encode`].
    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// An event to append to the log.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The streams the event belongs to, in the publisher's order, without duplicates.
    pub streams: Vec<StreamKey>,
    pub kind: String,
    pub data: Box<RawValue>,
    pub time: SystemTime,
    /// Set for an update published through the Mercure hub.
    pub mercure: Option<Box<MercureFields>>,
}

impl NewEvent {
    /// The event as the log accepted it at `seq`.
    pub fn stored_at(self, seq: Seq) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            seq,
            id: decimal_id(seq),
            streams: self.streams,
            kind: self.kind,
            data: self.data,
            time: self.time,
            mercure: self.mercure,
        })
    }
}

/// An event the log has accepted.
#[derive(Debug)]
pub struct StoredEvent {
    pub seq: Seq,
    /// The id clients see, the wire form of `seq`.
    pub id: String,
    pub streams: Vec<StreamKey>,
    pub kind: String,
    pub data: Box<RawValue>,
    pub time: SystemTime,
    pub mercure: Option<Box<MercureFields>>,
}

/// The answer to a replay request.
#[derive(Debug)]
pub enum Replay {
    /// The next events after the position, oldest first; empty when there are none.
    /// `complete`: these are every event after the position the store held when it read them,
    /// so a reader that registered for live events before asking needs no further page. A
    /// store that cannot tell says `false`, and the reader asks again until a page is empty.
    Events {
        events: Vec<Arc<StoredEvent>>,
        complete: bool,
    },
    /// Some events after the position are no longer retained.
    Expired,
}

/// A failure of the backing store. The message is for the operator's log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub kind: StorageErrorKind,
    pub message: String,
}

/// What kind of failure, as far as a client needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The disk or the configured size limit is full.
    Full,
    /// The database can be read but not written.
    ReadOnly,
    /// Anything else: the store does not answer or failed.
    Unavailable,
}

impl StorageError {
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Unavailable, message)
    }
}

/// An append that runs on the calling thread and blocks it until the events are stored: what a
/// store whose writes are blocking work anyway (SQLite) offers, so that the sequencer keeps the
/// writer on a thread of its own rather than handing each batch to a pool of blocking threads
/// and waiting to be woken.
pub trait AppendBlocking: Send + Sync + fmt::Debug + 'static {
    /// Appends `events` as [`Storage::append`] does.
    fn append_blocking(&self, events: Vec<NewEvent>)
    -> Result<Vec<Arc<StoredEvent>>, StorageError>;
}

/// The event log and client directory the hub is built on.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Appends `events` in order, assigning each the next sequence number.
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<Arc<StoredEvent>>, StorageError>>;

    /// This store's [`AppendBlocking`], if appending to it is blocking work; `None` for a store
    /// that appends without blocking (in memory) or over the network (Redis).
    fn blocking_appender(&self) -> Option<Arc<dyn AppendBlocking>> {
        None
    }

    /// The position of the newest event, or of the start of the log when it is empty.
    fn latest(&self) -> BoxFuture<'_, Result<Seq, StorageError>>;

    /// Up to `limit` events after `after` that belong to any of `streams`, oldest first.
    fn read_after<'a>(
        &'a self,
        streams: &'a [StreamKey],
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, StorageError>>;

    /// The position an event id names, or `None` if this log never issued such an id. Ids are
    /// decimal positions unless a store overrides this and [`Storage::format_id`].
    fn parse_id(&self, id: &str) -> Option<Seq> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        id.parse().ok()
    }

    /// The event id of a position.
    fn format_id(&self, seq: Seq) -> String {
        decimal_id(seq)
    }

    /// Records a newly issued client id.
    fn register_client<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// Whether a client id was issued and has not expired.
    fn client_exists<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<bool, StorageError>>;

    /// Marks clients as seen now (those with live connections), so they do not expire.
    fn touch_clients<'a>(
        &'a self,
        clients: &'a [ClientId],
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// How many client ids are stored.
    fn client_count(&self) -> BoxFuture<'_, Result<u64, StorageError>>;

    /// Forgets the clients seen longest ago, with their streams, until at most `keep` remain;
    /// returns how many it forgot.
    fn forget_oldest_clients(&self, keep: u64) -> BoxFuture<'_, Result<u64, StorageError>>;

    /// Forgets clients not seen since `cutoff`, with their streams, and drops events stamped
    /// before `oldest_kept` from every stream.
    fn expire(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Stores a notification for `user`, keeping at most `keep` (the newest) in the inbox.
    fn add_notification<'a>(
        &'a self,
        user: &'a str,
        item: NewInboxItem,
        keep: usize,
    ) -> BoxFuture<'a, Result<InboxItem, StorageError>>;

    /// A page of `user`'s inbox, newest first, with the unread count.
    fn notifications<'a>(
        &'a self,
        user: &'a str,
        query: InboxQuery,
    ) -> BoxFuture<'a, Result<InboxPage, StorageError>>;

    /// Marks one or all of `user`'s notifications read; `None` when `target` names a
    /// notification `user` does not have.
    fn mark_read<'a>(
        &'a self,
        user: &'a str,
        target: ReadTarget,
    ) -> BoxFuture<'a, Result<Option<ReadChange>, StorageError>>;

    /// Answers when the store is usable, for readiness checks.
    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>>;

    /// The streams of topics, public and private, that hold history.
    fn topic_streams(&self) -> BoxFuture<'_, Result<Vec<StreamKey>, StorageError>>;

    /// The position a replay of `streams` may start from without being refused: before the
    /// oldest event they still hold, and not before any event they or a forgotten stream lost
    /// (so with no streams, the newest position any forgotten stream lost).
    fn earliest<'a>(&'a self, streams: &'a [StreamKey])
    -> BoxFuture<'a, Result<Seq, StorageError>>;

    /// The position of the newest retained event whose Mercure id is `id` (a publisher may
    /// reuse one), or `None` when no retained event has it.
    fn find_mercure_id<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Seq>, StorageError>>;

    /// The response streams, where this store keeps them.
    fn streams(&self) -> Option<&dyn streams::StreamStore> {
        None
    }
}
