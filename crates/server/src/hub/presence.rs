//! Presence: when a user's first connection to a topic opens, `herald.presence` says it
//! `joined`; when its last closes and it does not come back within the grace period (a reload,
//! a reconnect), that it `left`. Each is an event of the topic's presence stream, which the
//! topic's subscribers that asked for presence receive. A user who comes and goes within the
//! grace period causes no event at all, so a reconnect storm is not a presence storm.
//!
//! On one node the counts are kept here. In a cluster they are kept in Redis, each node's
//! connections apart (`storage::redis::presence`): the node that sees a user arrive or leave
//! announces it, once for the cluster, and the retention pass settles the users of a node that
//! died. A node applies its changes in order, from one task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use herald_protocol::system::{PRESENCE, PresenceChange};
use tokio::sync::mpsc;

use super::Hub;
use super::connection::Connection;
use super::pacing::{self, Admission, Pacer};
use crate::storage::{NewEvent, PresenceOperation, PresenceStep, StorageError, StreamKey};

/// What is known of one user on one topic.
#[derive(Debug, Default)]
struct Entry {
    connections: usize,
    /// Moved on at each last close and each return: a departure whose generation is no longer
    /// current was cancelled by a return.
    generation: u64,
}

/// A topic and a user on it.
type Key = (Arc<str>, Arc<str>);

/// A change for the cluster's task.
#[derive(Debug)]
enum Change {
    /// A user's connection to a topic opened (`true`) or closed: (topic, user, client).
    Connection(Arc<str>, Arc<str>, String, bool),
    /// A connection watching a topic's presence opened (1) or closed (-1).
    Watcher(Arc<str>, i64),
}

/// The users present on each topic, with their connections.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    entries: Mutex<HashMap<Key, Entry>>,
    /// In cluster mode: the changes for the task that applies them to Redis, in order.
    changes: OnceLock<mpsc::UnboundedSender<Change>>,
    /// Each topic's pace of announcements.
    pacer: Pacer,
}

impl Tracker {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Hub {
    /// In cluster mode, starts the task that applies this node's changes to Redis.
    pub(super) fn start_presence(&self) {
        if self.inner.cluster.is_none() {
            return;
        }
        let (sender, mut changes) = mpsc::unbounded_channel::<Change>();
        let _ = self.inner.presence.changes.set(sender);
        let hub = self.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                let applied = match change {
                    Change::Connection(topic, user, client_id, opened) => {
                        hub.apply_in_cluster(&topic, &user, client_id, opened).await
                    }
                    Change::Watcher(topic, change) => hub.count_watcher(&topic, change).await,
                };
                if let Err(err) = applied {
                    tracing::warn!(%err, "could not keep presence in Redis");
                }
            }
        });
    }

    /// A connection opened: its user joins each of its topics it was not on.
    pub(super) fn presence_opened(&self, connection: &Connection) {
        if let Some(changes) = self.inner.presence.changes.get() {
            send_changes(changes, connection, true);
            return;
        }
        let Some(user) = presence_user(connection) else {
            return;
        };
        let mut joined = Vec::new();
        {
            let mut entries = self.inner.presence.entries();
            for topic in &connection.topics {
                let key = (Arc::clone(topic), Arc::clone(user));
                let present = entries.contains_key(&key);
                let entry = entries.entry(key).or_default();
                entry.connections += 1;
                if entry.connections == 1 {
                    // Back within the grace period: the pending departure is void.
                    entry.generation += 1;
                    if !present {
                        joined.push(Arc::clone(topic));
                    }
                }
            }
        }
        for topic in joined {
            self.publish_presence(&topic, user, connection.client_id.to_string(), true);
        }
    }

    /// A connection closed: its user leaves each of its topics where this was its last
    /// connection, unless it comes back within the grace period.
    pub(super) fn presence_closed(&self, connection: &Connection) {
        if let Some(changes) = self.inner.presence.changes.get() {
            send_changes(changes, connection, false);
            return;
        }
        let Some(user) = presence_user(connection) else {
            return;
        };
        let mut entries = self.inner.presence.entries();
        for topic in &connection.topics {
            let key = (Arc::clone(topic), Arc::clone(user));
            let Some(entry) = entries.get_mut(&key) else {
                continue;
            };
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections > 0 {
                continue;
            }
            entry.generation += 1;
            let generation = entry.generation;
            let hub = self.clone();
            let client_id = connection.client_id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(hub.inner.settings.presence_grace).await;
                let gone = {
                    let mut entries = hub.inner.presence.entries();
                    let still_gone = entries.get(&key).is_some_and(|entry| {
                        entry.connections == 0 && entry.generation == generation
                    });
                    if still_gone {
                        entries.remove(&key);
                    }
                    still_gone
                };
                if gone {
                    hub.publish_presence(&key.0, &key.1, client_id, false);
                }
            });
        }
    }

    /// Applies one change to the cluster's counts; announces an arrival, and after the grace
    /// period a departure, when Redis says the cluster saw one.
    async fn apply_in_cluster(
        &self,
        topic: &Arc<str>,
        user: &Arc<str>,
        client_id: String,
        opened: bool,
    ) -> Result<(), StorageError> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(());
        };
        let (redis, node) = cluster.redis();
        if opened {
            if redis
                .presence(PresenceOperation::Open, topic, user, node)
                .await?
                == PresenceStep::Arrived
                && redis.presence_watched(topic, node, 0).await?
            {
                self.publish_presence(topic, user, client_id, true);
            }
            return Ok(());
        }
        if redis
            .presence(PresenceOperation::Close, topic, user, node)
            .await?
            != PresenceStep::Vacated
        {
            return Ok(());
        }
        let hub = self.clone();
        let (topic, user) = (Arc::clone(topic), Arc::clone(user));
        tokio::spawn(async move {
            tokio::time::sleep(hub.inner.settings.presence_grace).await;
            let Some(cluster) = &hub.inner.cluster else {
                return;
            };
            let (redis, node) = cluster.redis();
            let departed = match redis
                .presence(PresenceOperation::Settle, &topic, &user, node)
                .await
            {
                Ok(step) => step == PresenceStep::Departed,
                Err(err) => {
                    tracing::warn!(%err, "could not settle a departure");
                    false
                }
            };
            if departed
                && redis
                    .presence_watched(&topic, node, 0)
                    .await
                    .unwrap_or(true)
            {
                hub.publish_presence(&topic, &user, client_id, false);
            }
        });
        Ok(())
    }

    /// In cluster mode, announces the departure of the users whose only connections were on
    /// nodes that are gone (died without withdrawing).
    pub(super) async fn settle_departed_nodes(&self) -> Result<(), StorageError> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(());
        };
        let (redis, _) = cluster.redis();
        for (topic, user) in redis.presence_records().await? {
            if redis
                .presence(PresenceOperation::Settle, &topic, &user, "")
                .await?
                == PresenceStep::Departed
                && redis.presence_watched(&topic, "", 0).await?
            {
                self.publish_presence(&Arc::from(topic), &Arc::from(user), String::new(), false);
            }
        }
        Ok(())
    }

    /// Counts a connection watching `topic`'s presence on this node.
    async fn count_watcher(&self, topic: &str, change: i64) -> Result<(), StorageError> {
        if let Some(cluster) = &self.inner.cluster {
            let (redis, node) = cluster.redis();
            redis.presence_watched(topic, node, change).await?;
        }
        Ok(())
    }

    /// Announces a change on the topic's presence stream, in the background, within the
    /// topic's pace. On one node only when a connection asks for it: otherwise nobody would
    /// receive it, and it costs a write. (In a cluster, the connections that ask may be on
    /// another node.)
    fn publish_presence(&self, topic: &Arc<str>, user: &Arc<str>, client_id: String, joined: bool) {
        if !self.presence_watched_here(topic) {
            return;
        }
        let change = pacing::Change {
            user: Arc::clone(user),
            client_id,
            joined,
            time: SystemTime::now(),
        };
        let rate = self.inner.settings.presence_rate;
        match self.inner.presence.pacer.admit(topic, rate, change) {
            Admission::Now(change) => self.announce_presence(topic, change),
            Admission::Waiting(true) => {
                let hub = self.clone();
                let topic = Arc::clone(topic);
                tokio::spawn(async move { hub.drain_presence(&topic).await });
            }
            Admission::Waiting(false) | Admission::Cancelled => {}
        }
    }

    /// Announces a topic's waiting changes as its budget allows, until none is left.
    async fn drain_presence(&self, topic: &Arc<str>) {
        let rate = self.inner.settings.presence_rate;
        loop {
            let (released, wait) = self.inner.presence.pacer.release(topic, rate);
            for change in released {
                self.announce_presence(topic, change);
            }
            let Some(wait) = wait else {
                return;
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Forgets the pace of topics that have been quiet long enough.
    pub(super) fn sweep_presence_pace(&self) {
        self.inner
            .presence
            .pacer
            .sweep(self.inner.settings.presence_rate);
    }

    fn presence_watched_here(&self, topic: &Arc<str>) -> bool {
        self.inner.cluster.is_some()
            || self
                .inner
                .registry
                .is_received(&StreamKey::Presence(Arc::clone(topic)))
    }

    /// Publishes a change on the topic's presence stream, in the background.
    fn announce_presence(&self, topic: &Arc<str>, change: pacing::Change) {
        if !self.presence_watched_here(topic) {
            return;
        }
        let time = crate::time::rfc3339(change.time);
        let joined = change.joined;
        let body = PresenceChange {
            topic: topic.to_string(),
            user: change.user.to_string(),
            client_id: change.client_id,
            joined: joined.then(|| time.clone()),
            left: (!joined).then_some(time),
        };
        let Ok(data) = serde_json::value::to_raw_value(&body) else {
            return;
        };
        let event = NewEvent {
            streams: vec![StreamKey::Presence(Arc::clone(topic))],
            kind: PRESENCE.to_owned(),
            data,
            time: SystemTime::now(),
            mercure: None,
        };
        let hub = self.clone();
        tokio::spawn(async move {
            if let Err(err) = hub.publish(event).await {
                tracing::debug!(%err, "could not publish a presence change");
            }
        });
    }
}

/// The user whose presence a connection counts for: an authenticated `/events` connection's.
fn presence_user(connection: &Connection) -> Option<&Arc<str>> {
    if connection.mercure.is_some() {
        return None;
    }
    connection.holder.user.as_ref()
}

/// Queues a connection's changes for the cluster's task: its watching of its topics' presence
/// (first, so a watcher counts before its own arrival), and its user's connection to them.
fn send_changes(changes: &mpsc::UnboundedSender<Change>, connection: &Connection, opened: bool) {
    let watching = connection
        .streams
        .iter()
        .any(|stream| matches!(stream, StreamKey::Presence(_)));
    for topic in &connection.topics {
        if watching {
            let _ = changes.send(Change::Watcher(
                Arc::clone(topic),
                if opened { 1 } else { -1 },
            ));
        }
        if let Some(user) = presence_user(connection) {
            let _ = changes.send(Change::Connection(
                Arc::clone(topic),
                Arc::clone(user),
                connection.client_id.to_string(),
                opened,
            ));
        }
    }
}
