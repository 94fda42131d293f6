//! [`Connection`]: the hub's side of one subscriber's stream, and who holds it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use herald_protocol::system::CloseReason;
use tokio::time::Instant;

use super::queue::{Full, Offered, Queue, Queued, Received};
use crate::ids::{ClientId, ConnectionId};
use crate::mercure::MercureSubscriber;
use crate::storage::{Seq, StreamKey};

/// Who holds a connection, as its credential said when it opened.
#[derive(Debug, Clone, Default)]
pub struct Holder {
    /// The authenticated user; `None` for an anonymous connection.
    pub user: Option<Arc<str>>,
    /// Whether the credential carries `admin: true`.
    pub admin: bool,
    /// The topics whose private events the credential may receive.
    pub private_topics: Vec<Arc<str>>,
    /// When the credential expires: the connection is closed then.
    pub expires_at: Option<SystemTime>,
    /// The client's address, for the per-address limit.
    pub address: Option<IpAddr>,
}

/// How a connection's stream is framed and what it asks for besides its topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Events without their `event:` line (`all_types=true`).
    pub all_types: bool,
    /// `herald.presence` when a user comes to or leaves one of its topics (`presence=true`).
    pub presence: bool,
}

/// The registry's side of one connection.
#[derive(Debug)]
pub struct Connection {
    pub id: ConnectionId,
    pub client_id: ClientId,
    pub holder: Holder,
    pub topics: Box<[Arc<str>]>,
    pub connected_at: SystemTime,
    /// The streams this connection receives: its topics (and their private events where
    /// allowed), its client stream, its user's stream and broadcasts. A Mercure subscriber's
    /// are the topics its exact selectors name, public and private, and its client stream: what
    /// it receives of them its [`MercureSubscriber`] decides.
    pub streams: Box<[StreamKey]>,
    /// Set for a subscriber of the Mercure hub: its events are framed as Mercure frames them.
    pub mercure: Option<Box<MercureSubscriber>>,
    /// Events are framed without their `event:` line (`all_types=true`), so `onmessage` gets
    /// every type; the envelope still names it.
    pub all_types: bool,
    /// Bounded: a subscriber that lets it fill up is closed rather than buffered without limit.
    pub(super) queue: Queue,
    /// Set to end the stream; the writer is woken through the queue.
    closing: AtomicBool,
    /// Why the stream is closing; the first reason wins.
    close_reason: OnceLock<CloseReason>,
    /// Set when an event could not be queued: from then on the stream has a hole, and its
    /// position must never be advanced past what it actually wrote.
    dropped: AtomicBool,
    /// When storage last recorded this connection's client as seen, in milliseconds since the
    /// Unix epoch; 0 for not since the connection opened.
    recorded_ms: AtomicU64,
    /// When the stream's timer is due (a heartbeat, or the end of its life), in
    /// [`ticker_ms`]; [`NOT_ARMED`] while a tick is on its way or before the stream arms it.
    due_ms: AtomicU64,
}

/// [`Connection::due_ms`] when no tick is wanted.
const NOT_ARMED: u64 = u64::MAX;

/// `at` in milliseconds since the first call, rounded up: the clock of connection timers.
pub fn ticker_ms(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = at.saturating_duration_since(epoch);
    u64::try_from(since.as_micros().div_ceil(1000)).unwrap_or(NOT_ARMED - 1)
}

impl Connection {
    pub fn new(
        client_id: ClientId,
        topics: Vec<Arc<str>>,
        mut holder: Holder,
        capacity: usize,
        options: StreamOptions,
    ) -> Arc<Self> {
        // Held for as long as the connection lives: no spare room.
        holder.private_topics.shrink_to_fit();
        let presence = if options.presence { topics.len() } else { 0 };
        // Its client's stream, its user's, and broadcasts.
        let own = 2 + usize::from(holder.user.is_some());
        let mut streams =
            Vec::with_capacity(topics.len() + presence + holder.private_topics.len() + own);
        streams.extend(topics.iter().cloned().map(StreamKey::Topic));
        if options.presence {
            streams.extend(topics.iter().cloned().map(StreamKey::Presence));
        }
        streams.extend(
            holder
                .private_topics
                .iter()
                .cloned()
                .map(StreamKey::Private),
        );
        streams.push(StreamKey::Client(client_id.clone()));
        if let Some(user) = &holder.user {
            streams.push(StreamKey::User(Arc::clone(user)));
        }
        streams.push(StreamKey::Broadcast);
        Self::with_streams(
            client_id,
            topics,
            streams,
            None,
            holder,
            capacity,
            options.all_types,
        )
    }

    /// A subscriber of the Mercure hub.
    pub fn mercure(
        client_id: ClientId,
        subscriber: MercureSubscriber,
        holder: Holder,
        capacity: usize,
    ) -> Arc<Self> {
        let mut streams = Vec::new();
        for topic in subscriber.exact_topics() {
            let topic: Arc<str> = Arc::from(topic);
            streams.push(StreamKey::Topic(Arc::clone(&topic)));
            streams.push(StreamKey::Private(topic));
        }
        streams.push(StreamKey::Client(client_id.clone()));
        let topics = subscriber
            .selectors
            .iter()
            .map(|selector| Arc::from(selector.as_str()))
            .collect();
        Self::with_streams(
            client_id,
            topics,
            streams,
            Some(Box::new(subscriber)),
            holder,
            capacity,
            false,
        )
    }

    fn with_streams(
        client_id: ClientId,
        topics: Vec<Arc<str>>,
        streams: Vec<StreamKey>,
        mercure: Option<Box<MercureSubscriber>>,
        holder: Holder,
        capacity: usize,
        all_types: bool,
    ) -> Arc<Self> {
        let connection = Self {
            id: ConnectionId::generate(),
            client_id,
            holder,
            topics: topics.into_boxed_slice(),
            connected_at: SystemTime::now(),
            streams: streams.into_boxed_slice(),
            mercure,
            all_types,
            queue: Queue::new(capacity),
            closing: AtomicBool::new(false),
            close_reason: OnceLock::new(),
            dropped: AtomicBool::new(false),
            recorded_ms: AtomicU64::new(0),
            due_ms: AtomicU64::new(NOT_ARMED),
        };
        Arc::new(connection)
    }

    /// Queues an event without waiting; true when it is for [`Connection::flush`]. A full
    /// queue closes the connection as a slow consumer: it resumes from its last event id, and
    /// nobody else waits for it.
    pub(super) fn offer(&self, item: Queued) -> bool {
        match self.queue.offer(item) {
            Ok(offered) => offered == Offered::ToFlush,
            Err(Full) => {
                self.dropped.store(true, Ordering::Release);
                self.close(CloseReason::SlowConsumer);
                false
            }
        }
    }

    /// Writes what is queued straight to the socket the stream lent, if its writer waits;
    /// returns how many events were written whole.
    pub fn flush(&self, now: Instant) -> usize {
        self.queue.flush(&self.closing, now)
    }

    /// Asks the stream to send `herald.closing` with `reason` and end. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.close_reason.set(reason);
        self.closing.store(true, Ordering::Release);
        self.queue.wake();
    }

    /// Notes that storage has just recorded this connection's client as seen (a new client id
    /// is recorded when it is issued).
    pub fn recorded(&self, at_ms: u64) {
        self.recorded_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Whether the stream was asked to close.
    pub fn is_closed(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The next queued event, a tick of the stream's timer, or the news that the stream is
    /// asked to close. `written` is the newest position the stream has written; see
    /// [`Queue::recv`].
    pub async fn next_queued(&self, written: &mut Seq) -> Received {
        self.queue.recv(&self.closing, written).await
    }

    /// Sets the stream's timer: it is ticked (see [`Connection::tick_if_due`]) once `at` has
    /// passed.
    pub fn arm(&self, at: Instant) {
        self.due_ms.store(ticker_ms(at), Ordering::Release);
    }

    /// Ticks the stream if its timer is due at `now_ms` ([`ticker_ms`]), disarming it until
    /// the stream sets it again; true if it was ticked. A stream that set its timer again
    /// meanwhile is left alone.
    pub fn tick_if_due(&self, now_ms: u64) -> bool {
        let due = self.due_ms.load(Ordering::Acquire);
        if due > now_ms {
            return false;
        }
        let disarmed = self
            .due_ms
            .compare_exchange(due, NOT_ARMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if disarmed {
            self.queue.tick();
        }
        disarmed
    }

    /// Whether an event for this connection was ever dropped.
    pub fn dropped_events(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    pub fn close_reason(&self) -> CloseReason {
        self.close_reason
            .get()
            .copied()
            .unwrap_or(CloseReason::Shutdown)
    }

    /// The topics as owned strings, for API answers.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.iter().map(|topic| topic.to_string()).collect()
    }

    /// Closes the connection with `resync`, as having missed events: its position may then
    /// never move past what it wrote, so its client resumes from the last event it received.
    pub fn resync(&self) {
        self.dropped.store(true, Ordering::Release);
        self.close(CloseReason::Resync);
    }

    /// When storage last recorded this connection's client as seen, in milliseconds since the
    /// Unix epoch; 0 for not since the connection opened.
    pub fn recorded_ms(&self) -> u64 {
        self.recorded_ms.load(Ordering::Relaxed)
    }

    /// Whether this connection receives `stream`.
    pub fn receives(&self, stream: &StreamKey) -> bool {
        self.streams.contains(stream)
    }
}

/// Refusal to register a connection: its client, user or address holds `limit` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyConnections {
    /// `"client"`, `"user"` or `"address"`.
    pub scope: &'static str,
    pub limit: usize,
}

/// The most connections one client, user and address may hold; `None` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_client: usize,
    pub per_user: usize,
    pub per_address: Option<usize>,
}
