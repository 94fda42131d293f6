//! The hub: accepts publishes, gives them their place in the log, fans them out to live
//! connections, and opens subscriptions that replay what a client missed before going live.
//!
//! Ordering rests on one rule: a single task, the [`sequencer`], appends events to storage and
//! fans them out in the order storage numbered them. A subscription registers for live events
//! *before* it reads history, and skips live events it already replayed, so the hand-over from
//! replay to live has neither a gap nor a duplicate.

mod activity;
mod cluster;
mod connection;
pub mod frames;
mod members;
mod mercure;
mod pacing;
mod presence;
mod queue;
mod registry;
mod replays;
mod sequencer;
mod sink;
mod stats;
mod subscription;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_protocol::system::{CloseReason, Connected, ResetReason};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::ids::{ClientId, random_u32};
use crate::metrics::Metrics;
use crate::storage::{NewEvent, NodeRecord, RedisStorage, Seq, Storage, StorageError, StoredEvent};

use cluster::Cluster;
use connection::Connection;
pub use connection::{Holder, Limits, StreamOptions};
pub use mercure::MercureSubscribeRequest;
use registry::Registry;
use replays::Replays;
use sequencer::{PublishJob, Sequencer};
pub use sink::Sink;
use subscription::Start;
pub use subscription::{Loan, Subscription};

/// The limits and timings the hub applies.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Longest silence on a stream before a heartbeat.
    pub heartbeat: Duration,
    /// The base reconnection delay told to clients, before jitter.
    pub retry: Duration,
    /// Events queued for one connection before it is a slow consumer.
    pub queue_capacity: usize,
    /// How long a connection may live; `None` for ever.
    pub max_connection_lifetime: Option<Duration>,
    pub limits: Limits,
    /// How long a client id stays valid after it was last seen.
    pub client_ttl: Duration,
    /// How long events are kept for replay.
    pub history_max_age: Duration,
    /// How often client activity is recorded and retention runs.
    pub retention_interval: Duration,
    /// Most client ids kept: past it, retention forgets the oldest idle ones.
    pub max_client_ids: u64,
    /// Replay pages read at once, in all.
    pub max_concurrent_replays: usize,
    /// Replay pages read at once for one address; `None`: no limit.
    pub max_replays_per_address: Option<usize>,
    /// Whether Mercure subscriptions are announced as they start and end.
    pub mercure_subscriptions: bool,
    /// How long a user may be gone from a topic before `herald.presence` says it left.
    pub presence_grace: Duration,
    /// The most `herald.presence` events a topic gets a second, after a burst of as many.
    pub presence_rate: u32,
    /// The SQLite database, whose size `GET /api/stats` reports; `None` for other stores.
    pub log_file: Option<std::path::PathBuf>,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("client id {0} was not issued by this server or has expired")]
    UnknownClient(ClientId),
    #[error("this {scope} already holds the maximum of {limit} connections")]
    TooManyConnections { scope: &'static str, limit: usize },
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
}

/// What a subscriber asked for.
#[derive(Debug, Clone, Default)]
pub struct SubscribeRequest {
    pub topics: Vec<Arc<str>>,
    pub client_id: Option<ClientId>,
    /// The last event id the client saw, from `Last-Event-ID` or `last_event_id`.
    pub last_event_id: Option<String>,
    /// Who asks, as the credential says.
    pub holder: Holder,
    /// How the stream is framed and what it asks for besides its topics.
    pub options: StreamOptions,
}

/// A cheap handle to the hub; clones share it.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    storage: Arc<dyn Storage>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    settings: HubSettings,
    /// Publishes waiting for the sequencer.
    publish_queue: mpsc::Sender<PublishJob>,
    /// The newest position the sequencer has fanned out: every event at or before it has been
    /// offered to every connection registered at the time.
    fanned_out_through: Arc<AtomicU64>,
    /// Cancelled when the server shuts down; every connection's close token is a child.
    shutdown: CancellationToken,
    /// In cluster mode, the link to the other nodes.
    cluster: Option<Cluster>,
    /// Places to read replay pages.
    replays: Replays,
    /// Who is on each topic.
    presence: presence::Tracker,
    /// The counters of the last minute, for the rates of `GET /api/stats`.
    samples: stats::Samples,
}

/// How many publishes the sequencer takes in one storage append.
const PUBLISH_BATCH: usize = 256;

impl Hub {
    /// Starts the hub's background tasks: the sequencer, which ends when the last handle to the
    /// hub is dropped, and in cluster mode following the shared log, which ends when `shutdown`
    /// is cancelled. At `shutdown` every stream is sent `herald.closing` and ended. `cluster` is
    /// the Redis shared with other nodes, if any; then `storage` is that same Redis. Retention
    /// is [`Hub::retain`], for the caller to run.
    pub fn start(
        storage: Arc<dyn Storage>,
        cluster: Option<RedisStorage>,
        metrics: Arc<Metrics>,
        settings: HubSettings,
        shutdown: CancellationToken,
    ) -> Self {
        let (publish_queue, jobs) = mpsc::channel(PUBLISH_BATCH * 4);
        let registry = Arc::new(Registry::new(
            settings.retention_interval,
            metrics.events_delivered.clone(),
        ));
        let fanned_out_through = Arc::new(AtomicU64::new(0));
        let sequencer = Sequencer {
            storage: Arc::clone(&storage),
            registry: Arc::clone(&registry),
            metrics: Arc::clone(&metrics),
            fanned_out_through: Arc::clone(&fanned_out_through),
            fans_out: cluster.is_none(),
        };
        let cluster = cluster.map(|redis| {
            Cluster::start(
                redis,
                Arc::clone(&registry),
                Arc::clone(&fanned_out_through),
                shutdown.clone(),
            )
        });
        let replays = Replays::new(
            settings.max_concurrent_replays,
            settings.max_replays_per_address,
            metrics.replays_waiting.clone(),
            metrics.replays_in_flight.clone(),
        );
        let hub = Self {
            inner: Arc::new(Inner {
                replays,
                storage,
                registry,
                metrics,
                settings,
                publish_queue,
                fanned_out_through,
                shutdown: shutdown.clone(),
                cluster,
                presence: presence::Tracker::default(),
                samples: stats::Samples::default(),
            }),
        };
        hub.start_presence();
        hub.start_stats(shutdown.clone());
        hub.start_ticker(shutdown.clone());
        sequencer.start(jobs, PUBLISH_BATCH);
        let registry = Arc::clone(&hub.inner.registry);
        tokio::spawn(async move {
            shutdown.cancelled().await;
            registry.close_all(CloseReason::Shutdown);
        });
        hub
    }

    /// Ticks the streams whose timer is due (heartbeats, the end of a connection's life), a
    /// quarter of the heartbeat interval apart and at least every 250 ms, until `shutdown`. One
    /// pass over the registry replaces a timer per stream, which every idle subscriber would
    /// hold (some 130 bytes each); a stream is ticked at most that long after its time.
    fn start_ticker(&self, shutdown: CancellationToken) {
        let every = (self.inner.settings.heartbeat / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        let registry = Arc::clone(&self.inner.registry);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    now = ticks.tick() => {
                        registry.tick_due(connection::ticker_ms(now));
                    }
                }
            }
        });
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// How many connections have closed since the start.
    pub fn connections_closed(&self) -> u64 {
        self.inner.registry.removed()
    }

    /// Whether `client` is known: it holds a live connection to this node (registered before
    /// it was greeted, so known to storage too), or storage has it.
    pub async fn client_exists(&self, client: &ClientId) -> Result<bool, StorageError> {
        if self.inner.registry.has_client(client) {
            return Ok(true);
        }
        self.inner.storage.client_exists(client).await
    }

    fn storage(&self) -> &dyn Storage {
        &*self.inner.storage
    }

    fn replays(&self) -> &Replays {
        &self.inner.replays
    }

    /// Appends an event to the log and queues it for every live connection that receives one of
    /// its streams. Returns once storage has it.
    pub async fn publish(&self, event: NewEvent) -> Result<Arc<StoredEvent>, PublishError> {
        let stored = self.publish_all(vec![event]).await?;
        stored
            .into_iter()
            .next()
            .ok_or_else(|| PublishError::Storage(StorageError::unavailable("no event stored")))
    }

    /// Appends `events` to the log together, in order, all or none, and queues them as
    /// [`Hub::publish`] does.
    pub async fn publish_all(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<StoredEvent>>, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .publish_queue
            .send(PublishJob { events, reply })
            .await
            .map_err(|_| PublishError::ShuttingDown)?;
        answer
            .await
            .map_err(|_| PublishError::ShuttingDown)?
            .map_err(PublishError::from)
    }

    /// Opens a subscription: registers it for live events, then decides where its stream starts.
    pub async fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<Subscription, SubscribeError> {
        let inner = &*self.inner;
        self.require_following()?;
        // A new client id is recorded as it is issued; a returning one at the next pass.
        let recorded = request.client_id.is_none().then(crate::time::now_ms);
        let client_id = match request.client_id {
            Some(client) if self.client_exists(&client).await? => client,
            Some(client) => return Err(SubscribeError::UnknownClient(client)),
            None => {
                let client = ClientId::generate();
                inner.storage.register_client(&client).await?;
                client
            }
        };
        let mut topics = request.topics;
        self.registry().share_topic_names(&mut topics);
        let connection = Connection::new(
            client_id,
            topics,
            request.holder,
            inner.settings.queue_capacity,
            request.options,
        );
        if let Some(at) = recorded {
            connection.recorded(at);
        }
        let guard = self.register(&connection)?;

        // Registered before reading the log's position: every event numbered after `latest` is
        // fanned out to this connection, and anything at or before it is read from storage.
        let latest = inner.storage.latest().await?;
        let start = match request.last_event_id.as_deref() {
            None => Start::Live { from: latest },
            Some(id) => match inner.storage.parse_id(id) {
                Some(seq) if seq <= latest => Start::Replay { after: seq },
                _ => Start::Reset {
                    reason: ResetReason::UnknownId,
                    latest,
                },
            },
        };
        let retry_ms = self.retry_with_jitter();
        let connected = Connected {
            client_id: connection.client_id.to_string(),
            connection_id: connection.id.to_string(),
            topics: connection.topic_names(),
            retry_ms,
        };
        tracing::debug!(connection = %connection.id, client = %connection.client_id, "subscribed");
        Ok(Subscription::new(
            self.clone(),
            guard,
            start,
            &connected,
            retry_ms,
        ))
    }

    /// Adds `connection` to the registry (closing it at once if the server is shutting down),
    /// counts it and tells the cluster; the returned guard removes it when dropped.
    fn register(
        &self,
        connection: &Arc<Connection>,
    ) -> Result<subscription::Registration, SubscribeError> {
        let inner = &*self.inner;
        inner
            .registry
            .insert(connection, inner.settings.limits)
            .map_err(|refused| SubscribeError::TooManyConnections {
                scope: refused.scope,
                limit: refused.limit,
            })?;
        if inner.shutdown.is_cancelled() {
            // Registered after the shutdown closed everyone else.
            connection.close(CloseReason::Shutdown);
        }
        inner.metrics.connections.inc();
        inner.metrics.connections_opened.inc();
        if let Some(cluster) = &inner.cluster {
            cluster.joined(connection);
        }
        self.presence_opened(connection);
        Ok(subscription::Registration::new(
            self.clone(),
            Arc::clone(connection),
        ))
    }

    /// Refuses new streams on a cluster node until it follows the shared log: live events
    /// would not reach them.
    fn require_following(&self) -> Result<(), SubscribeError> {
        if self.inner.cluster.is_some() && self.fanned_out_through() == 0 {
            return Err(SubscribeError::Storage(StorageError::unavailable(
                "this node is not yet following the shared log in Redis",
            )));
        }
        Ok(())
    }

    /// Closes every connection of a client, on every node of a cluster, with `reconnect: false`;
    /// returns how many there were.
    pub async fn close_client(&self, client: &ClientId) -> Result<usize, StorageError> {
        let here = self
            .inner
            .registry
            .close_client(client, CloseReason::AdminClose);
        let Some(cluster) = &self.inner.cluster else {
            return Ok(here);
        };
        match cluster.close_client(client).await {
            Ok(elsewhere) => Ok(here + elsewhere),
            // What could be closed was; the others are out of reach for now.
            Err(err) if here > 0 => {
                tracing::warn!(%err, "could not ask the other nodes to close the client");
                Ok(here)
            }
            Err(err) => Err(err),
        }
    }

    /// The live connections, oldest first: in cluster mode, those of every node.
    pub async fn connections(&self) -> Result<Vec<NodeRecord>, StorageError> {
        let local = self.inner.registry.snapshot();
        match &self.inner.cluster {
            Some(cluster) => cluster.connections(&local).await,
            None => Ok(local
                .iter()
                .map(|connection| cluster::record(connection))
                .collect()),
        }
    }

    /// The users with a live connection (on any node) whose credential carries `admin: true`.
    pub async fn connected_admins(&self) -> Result<Vec<String>, StorageError> {
        let mut admins: Vec<String> = self
            .connections()
            .await?
            .into_iter()
            .filter(|connection| connection.admin)
            .filter_map(|connection| connection.user)
            .collect();
        admins.sort();
        admins.dedup();
        Ok(admins)
    }

    /// Whether this node can serve: its storage answers and, in cluster mode, it is following
    /// the shared log.
    pub async fn ready(&self) -> Result<(), StorageError> {
        self.inner.storage.ping().await?;
        match &self.inner.cluster {
            Some(cluster) if !cluster.following() => Err(StorageError::unavailable(
                "this node is not following the shared log in Redis",
            )),
            _ => Ok(()),
        }
    }

    /// Tells the other nodes that a connection ended.
    fn released(&self, connection: &Connection) {
        if let Some(cluster) = &self.inner.cluster {
            cluster.left(connection);
        }
        self.mercure_released(connection);
        self.presence_closed(connection);
    }

    /// The reconnection delay for one connection: the base plus up to half again, at random.
    fn retry_with_jitter(&self) -> u64 {
        let base = u64::try_from(self.inner.settings.retry.as_millis()).unwrap_or(u64::MAX / 4);
        base + u64::from(random_u32()) % (base / 2 + 1)
    }

    fn fanned_out_through(&self) -> Seq {
        self.inner.fanned_out_through.load(Ordering::Acquire)
    }

    fn settings(&self) -> &HubSettings {
        &self.inner.settings
    }

    fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn format_id(&self, seq: Seq) -> String {
        self.inner.storage.format_id(seq)
    }

    /// The id of the log's newest position: resuming from it misses nothing published after.
    pub async fn latest_id(&self) -> Result<String, StorageError> {
        let latest = self.inner.storage.latest().await?;
        Ok(self.format_id(latest))
    }
}
