//! [`Cluster`]: a node's link to the other nodes sharing its Redis.
//!
//! In cluster mode the sequencer only appends: every node, the publishing one included, learns
//! of new events by following Redis's feed on a connection of its own, and fans them out in
//! feed order, which is log order. Each node also announces the connections it holds (so the
//! client list is cluster-wide) and acts on control messages in the feed (closing a client held
//! elsewhere).
//!
//! The feed is followed by position: the next entry must be the one after the last delivered.
//! When it is not (the feed was trimmed while this node was cut off, or Redis lost data), the
//! node cannot tell its subscribers what they missed, so it closes them with `resync`: they
//! reconnect with their last event id and replay from the per-stream history, or are told of
//! the gap with `herald.reset`. Nothing is skipped silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use herald_protocol::system::CloseReason;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::registry::Registry;
use crate::ids::{ClientId, ConnectionId, random_u32};
use crate::storage::{FeedEntry, NodeRecord, RedisStorage, Seq, StorageError, StoredEvent};

/// The longest one blocking read of the feed waits for an entry.
const FEED_WAIT: Duration = Duration::from_secs(2);
/// Feed entries read at once.
const FEED_BATCH: usize = 256;
/// How often a node renews its announcement, and how long it lasts: a node that dies drops out
/// of the client list within the second.
const PRESENCE_REFRESH: Duration = Duration::from_secs(2);
const PRESENCE_TTL: Duration = Duration::from_secs(6);
/// Reconnection delays after Redis fails: doubling from the first to the last, with jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(5);
/// The control message that closes a client on every node.
const CLOSE_CLIENT: &str = "close ";

/// A change to this node's connections, to announce.
#[derive(Debug)]
enum Presence {
    Joined(NodeRecord),
    Left(String),
}

#[derive(Debug)]
pub struct Cluster {
    redis: RedisStorage,
    /// This node's name in the cluster: random, so a restarted node is a new one.
    node: String,
    presence: mpsc::UnboundedSender<Presence>,
    /// Whether the feed is being followed right now.
    following: Arc<AtomicBool>,
}

impl Cluster {
    /// Starts following the feed and announcing connections; both end with `shutdown`.
    pub fn start(
        redis: RedisStorage,
        registry: Arc<Registry>,
        fanned_out_through: Arc<AtomicU64>,
        shutdown: CancellationToken,
    ) -> Self {
        let node = ConnectionId::generate().to_string();
        tracing::info!(node, "cluster mode: following the shared log in Redis");
        let (presence, changes) = mpsc::unbounded_channel();
        let following = Arc::new(AtomicBool::new(false));
        let follower = Follower {
            redis: redis.clone(),
            following: Arc::clone(&following),
            registry: Arc::clone(&registry),
            fanned_out_through,
            position: None,
        };
        tokio::spawn(follower.run(shutdown.clone()));
        tokio::spawn(announce(
            redis.clone(),
            node.clone(),
            registry,
            changes,
            shutdown,
        ));
        Self {
            redis,
            node,
            presence,
            following,
        }
    }

    /// The shared Redis, and this node's name in it.
    pub fn redis(&self) -> (&RedisStorage, &str) {
        (&self.redis, &self.node)
    }

    pub fn following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }

    pub fn joined(&self, connection: &Connection) {
        let _ = self.presence.send(Presence::Joined(record(connection)));
    }

    pub fn left(&self, connection: &Connection) {
        let _ = self
            .presence
            .send(Presence::Left(connection.id.to_string()));
    }

    /// Every live connection of the cluster: this node's from its registry, the others' as
    /// they announced them.
    pub async fn connections(
        &self,
        local: &[Arc<Connection>],
    ) -> Result<Vec<NodeRecord>, StorageError> {
        let mut all: Vec<NodeRecord> = self
            .redis
            .cluster_connections()
            .await?
            .into_iter()
            .filter(|record| record.node != self.node)
            .collect();
        all.extend(local.iter().map(|connection| NodeRecord {
            node: self.node.clone(),
            ..record(connection)
        }));
        all.sort_by_key(|record| record.connected_at);
        Ok(all)
    }

    /// Asks the other nodes to close `client`'s connections; returns how many they announced.
    /// The message goes out regardless: a connection opened a moment ago may not be announced.
    pub async fn close_client(&self, client: &ClientId) -> Result<usize, StorageError> {
        // Counted first: once the message is out, the connections start to go.
        let elsewhere = self
            .redis
            .cluster_connections()
            .await?
            .iter()
            .filter(|record| record.node != self.node && record.client_id == client.as_str())
            .count();
        self.redis
            .send_control(&format!("{CLOSE_CLIENT}{client}"))
            .await?;
        Ok(elsewhere)
    }
}

/// A connection as the client list shows it.
pub fn record(connection: &Connection) -> NodeRecord {
    NodeRecord {
        client_id: connection.client_id.to_string(),
        connection_id: connection.id.to_string(),
        user: connection.holder.user.as_ref().map(ToString::to_string),
        admin: connection.holder.admin,
        topics: connection.topic_names(),
        connected_at: crate::time::unix_millis(connection.connected_at),
        node: String::new(),
        mercure: connection
            .mercure
            .as_ref()
            .map(|subscriber| crate::storage::MercureRecord {
                subscriber: subscriber.id.clone(),
                payload: subscriber.payload.clone(),
            }),
    }
}

/// Doubles `delay` up to [`BACKOFF_LAST`], and returns the wait before the next attempt: the
/// old delay plus up to half again, so nodes do not retry in step.
fn next_backoff(delay: &mut Duration) -> Duration {
    let wait = *delay + (*delay / 2).mul_f64(f64::from(random_u32()) / f64::from(u32::MAX));
    *delay = (*delay * 2).min(BACKOFF_LAST);
    wait
}

/// Follows the feed and delivers each entry to this node's connections.
#[derive(Debug)]
struct Follower {
    redis: RedisStorage,
    following: Arc<AtomicBool>,
    registry: Arc<Registry>,
    fanned_out_through: Arc<AtomicU64>,
    /// The last entry delivered; `None` until Redis first answers.
    position: Option<Seq>,
}

impl Follower {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut delay = BACKOFF_FIRST;
        loop {
            let err = tokio::select! {
                () = shutdown.cancelled() => return,
                err = self.session(&mut delay) => err,
            };
            self.following.store(false, Ordering::Release);
            let wait = next_backoff(&mut delay);
            tracing::warn!(%err, retry_in = ?wait, "following the shared log failed");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Connects, checks where the log is, then reads until Redis fails.
    async fn session(&mut self, delay: &mut Duration) -> StorageError {
        let mut reader = match self.redis.feed_reader(FEED_WAIT).await {
            Ok(reader) => reader,
            Err(err) => return err,
        };
        if let Err(err) = reader.check_server().await {
            return err;
        }
        let latest = match reader.latest().await {
            Ok(latest) => latest,
            Err(err) => return err,
        };
        // Redis having lost data shows as the next entry not following this position: the
        // scripts restart the sequence past everything this node has seen.
        if self.position.is_none() {
            self.move_to(latest);
        }
        tracing::info!(position = self.position, "following the shared log");
        self.following.store(true, Ordering::Release);
        *delay = BACKOFF_FIRST;
        loop {
            let after = self.position.unwrap_or(latest);
            let entries = match reader.read(after, FEED_WAIT, FEED_BATCH).await {
                Ok(entries) => entries,
                Err(err) => return err,
            };
            self.deliver(entries);
        }
    }

    /// Moves to `position` at once: nothing before it is left to deliver.
    fn move_to(&mut self, position: Seq) {
        self.position = Some(position);
        self.fanned_out_through.store(position, Ordering::Release);
    }

    /// Closes every connection so it resumes from its own last event id, and goes on from
    /// `position`.
    fn resync(&mut self, position: Seq) {
        let closed = self.registry.resync_all();
        tracing::warn!(
            closed,
            "closed every connection to resync with the shared log"
        );
        self.move_to(position);
    }

    /// Delivers feed entries in order, each the one after the last: runs of events are fanned
    /// out together, and the position published for them only once they are queued.
    fn deliver(&mut self, entries: Vec<FeedEntry>) {
        let mut events: Vec<Arc<StoredEvent>> = Vec::new();
        for entry in entries {
            let seq = entry.seq();
            self.redis.observe(seq);
            if let Some(position) = self.position {
                if seq <= position {
                    continue;
                }
                if seq != position + 1 {
                    tracing::warn!(
                        position,
                        next = seq,
                        "the feed skipped entries this node never delivered (trimmed or lost)"
                    );
                    self.fan_out(&mut events);
                    self.resync(seq);
                    continue;
                }
            }
            match entry {
                FeedEntry::Event(event) => events.push(event),
                FeedEntry::Unreadable { reason, .. } => {
                    // Retrying would stall this node forever; its subscribers resume from storage.
                    tracing::error!(seq, reason, "the feed holds an entry this node cannot read");
                    self.fan_out(&mut events);
                    self.resync(seq);
                    continue;
                }
                FeedEntry::Control { message, .. } => {
                    self.fan_out(&mut events);
                    if let Some(client) =
                        message.strip_prefix(CLOSE_CLIENT).and_then(ClientId::parse)
                    {
                        self.registry.close_client(&client, CloseReason::AdminClose);
                    } else {
                        tracing::warn!(message, "ignoring an unknown control message");
                    }
                }
            }
            self.position = Some(seq);
        }
        self.fan_out(&mut events);
    }

    /// Fans out the events accepted so far, then publishes the position they reach: everything
    /// up to it has been queued for every connection.
    fn fan_out(&mut self, events: &mut Vec<Arc<StoredEvent>>) {
        if !events.is_empty() {
            self.registry.deliver(events);
            events.clear();
        }
        if let Some(position) = self.position {
            self.fanned_out_through.store(position, Ordering::Release);
        }
    }
}

/// Keeps this node's entry in the cluster's connection list current.
async fn announce(
    redis: RedisStorage,
    node: String,
    registry: Arc<Registry>,
    mut changes: mpsc::UnboundedReceiver<Presence>,
    shutdown: CancellationToken,
) {
    // Write the whole list first, and again after any failure: changes made meanwhile are lost.
    let mut replace = true;
    let mut refresh = tokio::time::interval(PRESENCE_REFRESH);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = refresh.tick() => {}
            received = changes.recv_many(&mut batch, 4096) => if received == 0 { break },
        }
        let (joined, left) = if replace {
            batch.clear();
            let records = registry.snapshot().iter().map(|c| record(c)).collect();
            (records, Vec::new())
        } else {
            let mut joined = Vec::new();
            let mut left = Vec::new();
            for change in batch.drain(..) {
                match change {
                    Presence::Joined(record) => joined.push(record),
                    Presence::Left(id) => left.push(id),
                }
            }
            (joined, left)
        };
        match redis
            .announce(&node, &joined, &left, replace, PRESENCE_TTL)
            .await
        {
            Ok(()) => replace = false,
            Err(err) => {
                if !replace {
                    tracing::warn!(%err, "announcing connections failed; will resend them all");
                }
                replace = true;
            }
        }
    }
    if let Err(err) = redis.withdraw(&node).await {
        tracing::debug!(%err, "could not withdraw the node from the cluster");
    }
}
