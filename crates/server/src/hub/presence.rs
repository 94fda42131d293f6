//! Presence: when a user's first connection to a topic opens, `herald.presence` says it
//! `joined`; when its last closes and it does not come back within the grace period (a reload,
//! a reconnect), that it `left`. Each is an event of the topic's presence stream, which the
//! topic's subscribers that asked for presence receive. A user who comes and goes within the
//! grace period causes no event at all, so a reconnect storm is not a presence storm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use herald_protocol::system::{PRESENCE, PresenceChange};

use super::Hub;
use super::connection::Connection;
use crate::storage::{NewEvent, StreamKey};

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

/// The users present on each topic, with their connections.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Tracker {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Hub {
    /// A connection opened: its user joins each of its topics it was not on.
    pub(super) fn presence_opened(&self, connection: &Connection) {
        let Some(user) = presence_user(self, connection) else {
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
            self.announce_presence(&topic, user, connection, true);
        }
    }

    /// A connection closed: its user leaves each of its topics where this was its last
    /// connection, unless it comes back within the grace period.
    pub(super) fn presence_closed(&self, connection: &Connection) {
        let Some(user) = presence_user(self, connection) else {
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

    fn announce_presence(&self, topic: &str, user: &str, connection: &Connection, joined: bool) {
        self.publish_presence(topic, user, connection.client_id.to_string(), joined);
    }

    /// Publishes the change on the topic's presence stream, in the background, when a
    /// connection asked for it: otherwise nobody would receive it, and it costs a write.
    fn publish_presence(&self, topic: &str, user: &str, client_id: String, joined: bool) {
        let stream = StreamKey::Presence(Arc::from(topic));
        if !self.inner.registry.is_received(&stream) {
            return;
        }
        let now = crate::time::rfc3339(SystemTime::now());
        let change = PresenceChange {
            topic: topic.to_owned(),
            user: user.to_owned(),
            client_id,
            joined: joined.then(|| now.clone()),
            left: (!joined).then_some(now),
        };
        let Ok(data) = serde_json::value::to_raw_value(&change) else {
            return;
        };
        let event = NewEvent {
            streams: vec![stream],
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
/// (In cluster mode presence is not tracked: one node does not know who else is on a topic.)
fn presence_user<'a>(hub: &Hub, connection: &'a Connection) -> Option<&'a Arc<str>> {
    if connection.mercure.is_some() || hub.inner.cluster.is_some() {
        return None;
    }
    connection.holder.user.as_ref()
}
