//! [`Subscription`]: one subscriber's stream of frames, from greeting through replay to live
//! events and a closing frame.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use herald_protocol::system::{CloseReason, Connected, ResetReason};
use tokio::time::Instant;

use super::connection::Connection;
use super::queue::{Queued, Received};
use super::sink::Sink;
use super::{Hub, frames};
use crate::storage::{Replay, Seq, StoredEvent, StreamKey};

/// Events read from storage per replay step.
const REPLAY_PAGE: usize = 256;
/// Replayed bytes written in one chunk; the rest of a page waits for the next.
const REPLAY_CHUNK_BYTES: usize = 256 * 1024;
/// Live events written in one chunk when several are waiting, to save write calls.
const LIVE_BATCH: usize = 64;

/// Where a new subscription's stream begins.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// No last event id: live events after the log's current position.
    Live { from: Seq },
    /// Replay the events after a known position, then go live.
    Replay { after: Seq },
    /// The last event id cannot be replayed: say so, then go live after `latest`.
    Reset { reason: ResetReason, latest: Seq },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Replay,
    Live,
    Closing,
    Done,
}

/// Removes the connection from the registry when the stream is dropped, which its writer does
/// as soon as the client goes away or the response ends: the registry never keeps a dead
/// connection.
#[derive(Debug)]
pub struct Registration {
    hub: Hub,
    connection: Arc<Connection>,
}

impl Registration {
    pub fn new(hub: Hub, connection: Arc<Connection>) -> Self {
        Self { hub, connection }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.registry().remove(&self.connection);
        self.hub.released(&self.connection);
        let metrics = self.hub.metrics();
        metrics.connections.dec();
        // Counted on release rather than when the closing frame is written: a subscriber that
        // stopped reading never receives that frame, and is exactly the one to count.
        if self.connection.is_closed() {
            let reason = self.connection.close_reason().as_str();
            metrics
                .connections_closed
                .get_or_create(&crate::metrics::CloseLabels { reason })
                .inc();
        }
        tracing::debug!(
            connection = %self.connection.id,
            "connection released"
        );
    }
}

/// A stream's output lent to fan-out; taken back when dropped.
#[derive(Debug)]
pub struct Loan(Arc<Connection>);

impl Drop for Loan {
    fn drop(&mut self) {
        self.0.queue.take_back();
    }
}

/// One subscriber's stream. Call [`Subscription::next`] until it returns `None`.
#[derive(Debug)]
pub struct Subscription {
    /// Holds the hub too.
    registration: Registration,
    /// The first chunk: `retry`, `herald.connected`, and `herald.reset` when there is a gap.
    greeting: Option<Bytes>,
    phase: Phase,
    /// The newest position written to the stream: replayed or live events at or before it are
    /// skipped, which is what makes the replay-to-live hand-over free of duplicates. While the
    /// stream waits for live events with its sink lent to fan-out, the queue holds the
    /// position and hands it back with the sink.
    last_sent: Seq,
    /// What the replay keeps between pages, while the stream replays; boxed, and dropped once
    /// the stream is live.
    replay: Option<Box<Replaying>>,
    /// Whether replay is over: only then can the position move past events not yet written.
    live: bool,
    /// The stream's timer is the connection's (see [`Connection::arm`]): the hub's ticker
    /// ticks it a heartbeat interval after the last write or at the end of the connection's
    /// life, whichever comes first. Finding a later write, it is set again from there rather
    /// than moved on every write.
    last_write: Instant,
    /// When the connection must end, if ever: at its maximum lifetime or when its credential
    /// expires, whichever comes first, and the reason it will be given.
    expires: Option<(Instant, CloseReason)>,
}

/// What a replay keeps between its pages.
#[derive(Debug, Default)]
struct Replaying {
    /// Events of the current replay page not written yet.
    pending: VecDeque<Arc<StoredEvent>>,
    /// Whether the current replay page holds everything storage had after the position when
    /// it was read: once it is written the stream is live, with no further read.
    history_complete: bool,
    /// The streams history is read from, when they are not the connection's own: those of a
    /// Mercure subscriber's `*` and template selectors.
    streams: Option<Box<[StreamKey]>>,
}

impl Subscription {
    pub(super) fn new(
        hub: Hub,
        registration: Registration,
        start: Start,
        connected: &Connected,
        retry_ms: u64,
    ) -> Self {
        let (phase, last_sent, greeting_id) = match start {
            Start::Live { from } => (Phase::Live, from, Some(hub.format_id(from))),
            Start::Replay { after } => (Phase::Replay, after, None),
            Start::Reset { latest, .. } => (Phase::Live, latest, None),
        };
        let greeting = if registration.connection.mercure.is_some() {
            frames::mercure_greeting(retry_ms, greeting_id.as_deref())
        } else {
            frames::greeting(retry_ms, greeting_id.as_deref(), connected)
        };
        let mut greeting = BytesMut::from(&greeting[..]);
        if let Start::Reset { reason, latest } = start {
            greeting.extend_from_slice(&frames::reset(reason, &hub.format_id(latest)));
            hub.metrics().resets.inc();
        }
        let settings = hub.settings();
        let now = Instant::now();
        let credential_left = registration.connection.holder.expires_at.map(|at| {
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
        let deadline = match (settings.max_connection_lifetime, credential_left) {
            (Some(lifetime), Some(left)) if lifetime < left => {
                Some((lifetime, CloseReason::MaxLifetime))
            }
            (_, Some(left)) => Some((left, CloseReason::CredentialExpired)),
            (Some(lifetime), None) => Some((lifetime, CloseReason::MaxLifetime)),
            (None, None) => None,
        };
        let expires = deadline.map(|(after, reason)| (now + after, reason));
        registration
            .connection
            .arm(next_deadline(now + settings.heartbeat, expires));
        Self {
            registration,
            greeting: Some(greeting.freeze()),
            phase,
            last_sent,
            replay: (phase == Phase::Replay).then(Box::default),
            live: phase == Phase::Live,
            last_write: now,
            expires,
        }
    }

    /// Reads history from `streams` rather than the connection's own.
    pub(super) fn replaying(mut self, streams: Vec<StreamKey>) -> Self {
        if let Some(replay) = &mut self.replay {
            replay.streams = Some(streams.into_boxed_slice());
        }
        self
    }

    fn hub(&self) -> &Hub {
        &self.registration.hub
    }

    fn connection(&self) -> &Arc<Connection> {
        &self.registration.connection
    }

    /// The client id the stream belongs to.
    pub fn client_id(&self) -> &crate::ids::ClientId {
        &self.connection().client_id
    }

    /// Lends the stream's output to fan-out, which writes live events to it while the stream
    /// waits for them (see `queue.rs`), until the returned loan is dropped.
    pub fn lend(&self, sink: Arc<dyn Sink>) -> Loan {
        let connection = Arc::clone(self.connection());
        connection.queue.lend(sink);
        Loan(connection)
    }

    /// The next chunk of the stream, or `None` once it has ended. Idle streams get a heartbeat
    /// comment whenever nothing was written for the heartbeat interval.
    pub async fn next(&mut self) -> Option<Bytes> {
        let chunk = self.next_chunk().await;
        if chunk.is_some() {
            self.last_write = Instant::now();
        }
        chunk
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(greeting) = self.greeting.take() {
            return Some(greeting);
        }
        loop {
            match self.phase {
                Phase::Replay => {
                    if self.connection().is_closed() {
                        self.phase = Phase::Closing;
                        continue;
                    }
                    // Boxed: a replay is read once per resume, and every idle stream's
                    // task would otherwise be sized for its reads.
                    if let Some(chunk) = Box::pin(self.replay_page()).await {
                        return Some(chunk);
                    }
                }
                Phase::Live => {
                    if let Some(chunk) = self.live().await {
                        return Some(chunk);
                    }
                }
                Phase::Closing => {
                    self.phase = Phase::Done;
                    self.registration
                        .connection
                        .queue
                        .take_sink(&mut self.last_sent);
                    let reason = self.connection().close_reason();
                    tracing::debug!(
                        connection = %self.connection().id,
                        reason = reason.as_str(),
                        "closing stream"
                    );
                    let position = self.advance_position();
                    return Some(frames::closing(reason, position.as_deref()));
                }
                Phase::Done => return None,
            }
        }
    }

    /// Writes the next piece of history, or moves on to live (or a reset) when there is none.
    async fn replay_page(&mut self) -> Option<Bytes> {
        let mut replay = self.replay.take().unwrap_or_default();
        let chunk = self.replay_step(&mut replay).await;
        if self.phase == Phase::Replay {
            self.replay = Some(replay);
        }
        chunk
    }

    async fn replay_step(&mut self, replay: &mut Replaying) -> Option<Bytes> {
        let connection = Arc::clone(self.connection());
        if replay.pending.is_empty() {
            if replay.history_complete {
                self.go_live();
                return None;
            }
            let storage = self.hub().storage();
            // Boxed: waiting for a place is rare and short, and every idle stream's task would
            // otherwise be sized for it.
            let place = Box::pin(self.hub().replays().place(connection.holder.address)).await;
            let streams = replay.streams.as_deref().unwrap_or(&connection.streams);
            let read = storage
                .read_after(streams, self.last_sent, REPLAY_PAGE)
                .await;
            drop(place);
            match read {
                Ok(Replay::Events { events, .. }) if events.is_empty() => {
                    self.go_live();
                    return None;
                }
                Ok(Replay::Events { events, complete }) => {
                    replay.pending.extend(events);
                    replay.history_complete = complete;
                }
                Ok(Replay::Expired) => {
                    return match storage.latest().await {
                        Ok(latest) => {
                            self.last_sent = latest;
                            self.go_live();
                            self.hub().metrics().resets.inc();
                            Some(frames::reset(
                                ResetReason::HistoryExpired,
                                &self.hub().format_id(latest),
                            ))
                        }
                        Err(err) => self.storage_failed(&err),
                    };
                }
                Err(err) => return self.storage_failed(&err),
            }
        }
        let mut chunk = BytesMut::new();
        while chunk.len() < REPLAY_CHUNK_BYTES {
            let Some(event) = replay.pending.pop_front() else {
                break;
            };
            if event.seq <= self.last_sent {
                continue;
            }
            let frame = match &connection.mercure {
                Some(subscriber) => subscriber
                    .accepts(&event)
                    .then(|| frames::mercure_event(&event)),
                None => event
                    .streams
                    .iter()
                    .find(|stream| connection.receives(stream))
                    .map(|stream| frames::event_frame(&event, stream, !connection.all_types)),
            };
            if let Some(frame) = frame {
                chunk.extend_from_slice(&frame);
                self.hub().metrics().events_replayed.inc();
                self.hub().metrics().events_delivered.inc();
            }
            self.last_sent = event.seq;
        }
        if !replay.history_complete {
            self.discard_replayed();
        }
        Some(chunk.freeze())
    }

    /// Empties the queue while replaying. Every queued event was committed before it was fanned
    /// out, so the replay reads it from storage anyway (it reads until a page comes back empty
    /// or complete); keeping them would only fill the queue on a busy topic and close a
    /// reconnecting client as a slow consumer. Once a complete page is read, the queue is kept:
    /// it holds what was fanned out after that read, which no further read will bring.
    fn discard_replayed(&mut self) {
        self.connection().queue.clear();
    }

    fn go_live(&mut self) {
        self.phase = Phase::Live;
        self.live = true;
    }

    /// Moves `last_sent` to the newest position the sequencer has fanned out, when the stream is
    /// live, its queue is drained and nothing was dropped: then every event of its streams up to
    /// there has been written. Returns the id to tell the client, if the position moved.
    fn advance_position(&mut self) -> Option<String> {
        if !self.live || self.connection().dropped_events() {
            return None;
        }
        // Read before checking the queue: everything fanned out up to `through` was queued
        // before it was published, so an empty queue now means it has all been written.
        let through = self.hub().fanned_out_through();
        if through <= self.last_sent || !self.connection().queue.is_empty() {
            return None;
        }
        self.last_sent = through;
        Some(self.hub().format_id(through))
    }

    fn storage_failed(&mut self, err: &crate::storage::StorageError) -> Option<Bytes> {
        tracing::error!(%err, "replay failed; closing the stream so the client retries");
        self.connection().close(CloseReason::StorageUnavailable);
        self.phase = Phase::Closing;
        None
    }

    /// Writes `first` and whatever else is already queued, up to a batch, skipping events the
    /// stream has already written. A lone event is written from the frame shared with every
    /// other subscriber, without a copy.
    fn write_live(&mut self, first: Queued) -> Bytes {
        let queue = &self.registration.connection.queue;
        let Some(second) = queue.try_recv() else {
            if first.seq <= self.last_sent {
                return Bytes::new();
            }
            self.last_sent = first.seq;
            self.hub().metrics().events_delivered.inc();
            return first.bytes;
        };
        let mut chunk = BytesMut::new();
        let mut next = Some(first);
        let mut after = Some(second);
        let mut taken = 0;
        while let Some(item) = next.take() {
            if item.seq > self.last_sent {
                chunk.extend_from_slice(&item.bytes);
                self.last_sent = item.seq;
                self.hub().metrics().events_delivered.inc();
            }
            taken += 1;
            next = after.take();
            if next.is_none() && taken < LIVE_BATCH {
                next = queue.try_recv();
            }
        }
        chunk.freeze()
    }

    /// Waits for live events, a heartbeat, the end of the connection's lifetime, or a close.
    async fn live(&mut self) -> Option<Bytes> {
        let connection = Arc::clone(self.connection());
        match connection.next_queued(&mut self.last_sent).await {
            Received::Item(first) => Some(self.write_live(first)).filter(|chunk| !chunk.is_empty()),
            Received::Closing => {
                self.phase = Phase::Closing;
                None
            }
            Received::Tick => self.tick(&connection),
        }
    }

    /// The stream's timer is due: the connection ends if its life is over, and a heartbeat is
    /// written if nothing was for the heartbeat interval.
    fn tick(&mut self, connection: &Connection) -> Option<Bytes> {
        let now = Instant::now();
        if let Some((at, reason)) = self.expires
            && now >= at
        {
            connection.close(reason);
            self.phase = Phase::Closing;
            return None;
        }
        let heartbeat = self.hub().settings().heartbeat;
        let last_write = match connection.queue.flushed_at() {
            Some(flushed) => flushed.max(self.last_write),
            None => self.last_write,
        };
        let due = last_write + heartbeat;
        if due > now {
            // Something was written since the timer was set: wait from there.
            connection.arm(next_deadline(due, self.expires));
            return None;
        }
        connection.arm(next_deadline(now + heartbeat, self.expires));
        let position = self.advance_position();
        Some(frames::heartbeat(position.as_deref()))
    }
}

/// The earlier of the next heartbeat and the end of the connection's life.
fn next_deadline(heartbeat: Instant, expires: Option<(Instant, CloseReason)>) -> Instant {
    match expires {
        Some((at, _)) => heartbeat.min(at),
        None => heartbeat,
    }
}
