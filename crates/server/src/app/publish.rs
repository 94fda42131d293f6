//! Publishing: an event to topics, to one client, to one user or to everyone.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use herald_protocol::names::{DEFAULT_EVENT_TYPE, validate_publishable_event_type};
use serde_json::value::RawValue;

use super::{App, AppError};
use crate::ids::ClientId;
use crate::storage::{NewEvent, StoredEvent, StreamKey};

/// Where an event goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Topics, each named once. Private events reach only the subscribers allowed to see
    /// them.
    Topics {
        topics: Vec<Arc<str>>,
        private: bool,
    },
    /// Every connection holding one client id, and its replay.
    Client(ClientId),
    /// Every connection of one user, on all their tabs and devices, and their replay.
    User(Arc<str>),
    /// Every connection.
    Broadcast,
}

impl Target {
    pub(super) fn streams(self) -> Vec<StreamKey> {
        match self {
            Self::Topics { topics, private } => topics
                .into_iter()
                .map(|topic| {
                    if private {
                        StreamKey::Private(topic)
                    } else {
                        StreamKey::Topic(topic)
                    }
                })
                .collect(),
            Self::Client(client) => vec![StreamKey::Client(client)],
            Self::User(user) => vec![StreamKey::User(user)],
            Self::Broadcast => vec![StreamKey::Broadcast],
        }
    }
}

impl AppError {
    /// The answer for a client id that was never issued or has expired.
    pub fn client_not_found(client: &str) -> Self {
        Self::not_found(
            "client_not_found",
            format!("no client {client:?} has connected, or it has expired"),
        )
    }
}

impl App {
    /// Stores an event of type `kind` (`message` by default) with `data` (JSON `null` by
    /// default) for `target` and queues it for every live connection receiving it; returns
    /// once it is stored. A client must be known: one never issued or expired is not found.
    pub async fn publish(
        &self,
        target: Target,
        kind: Option<&str>,
        data: Option<Box<RawValue>>,
    ) -> Result<Arc<StoredEvent>, AppError> {
        if let Target::Client(client) = &target
            && !self.hub().client_exists(client).await?
        {
            return Err(AppError::client_not_found(client.as_str()));
        }
        let started = Instant::now();
        let kind = kind.unwrap_or(DEFAULT_EVENT_TYPE);
        validate_publishable_event_type(kind)
            .map_err(|err| AppError::invalid("invalid_type", err.to_string()))?;
        let event = NewEvent {
            mercure: None,
            streams: target.streams(),
            kind: kind.to_owned(),
            // An absent `data` is JSON `null`, the default of a raw value.
            data: data.unwrap_or_default(),
            time: SystemTime::now(),
        };
        let stored = self.hub().publish(event).await?;
        self.metrics()
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        self.metrics().latency_window.record(started.elapsed());
        Ok(stored)
    }

    /// Stores a batch of events for topics together, in order, all or none (each `(target,
    /// type, data)` checked as [`App::publish`] checks one), and queues them; returns once they
    /// are stored.
    pub async fn publish_batch(
        &self,
        batch: Vec<(Target, Option<String>, Option<Box<RawValue>>)>,
    ) -> Result<Vec<Arc<StoredEvent>>, AppError> {
        let started = Instant::now();
        let now = SystemTime::now();
        let mut events = Vec::with_capacity(batch.len());
        for (n, (target, kind, data)) in batch.into_iter().enumerate() {
            let kind = kind.unwrap_or_else(|| DEFAULT_EVENT_TYPE.to_owned());
            validate_publishable_event_type(&kind)
                .map_err(|err| AppError::invalid("invalid_type", format!("event {n}: {err}")))?;
            events.push(NewEvent {
                mercure: None,
                streams: target.streams(),
                kind,
                data: data.unwrap_or_default(),
                time: now,
            });
        }
        let stored = self.hub().publish_all(events).await?;
        let elapsed = started.elapsed();
        self.metrics()
            .publish_latency
            .observe(elapsed.as_secs_f64());
        self.metrics().latency_window.record(elapsed);
        Ok(stored)
    }
}
