//! The Mercure hub's use cases: publishing an update (text, with the publisher's id or a
//! generated one) to the same log as every event, and opening a Mercure subscription.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use herald_protocol::names::{DEFAULT_EVENT_TYPE, validate_publishable_event_type};

use super::{App, AppError, Target};
use crate::hub::{MercureSubscribeRequest, Subscription};
use crate::mercure::ActiveSubscription;
use crate::storage::{MercureFields, NewEvent};

/// An update as a Mercure publisher sends it.
#[derive(Debug, Clone, Default)]
pub struct MercureUpdate {
    /// The canonical topic first, then the alternate ones; each once.
    pub topics: Vec<Arc<str>>,
    pub data: String,
    pub private: bool,
    /// The publisher's id for it; without one, Herald generates `urn:uuid:…`.
    pub id: Option<String>,
    /// The event type; without one, Mercure subscribers see none and Herald's `message`.
    pub kind: Option<String>,
    pub retry: Option<u64>,
}

impl App {
    /// Stores `update` and queues it for every subscriber it is for, through either dialect;
    /// returns its id once it is stored.
    pub async fn publish_mercure(&self, update: MercureUpdate) -> Result<String, AppError> {
        let started = Instant::now();
        if let Some(kind) = &update.kind {
            validate_publishable_event_type(kind)
                .map_err(|err| AppError::invalid("invalid_type", err.to_string()))?;
        }
        let id = update.id.unwrap_or_else(crate::ids::urn_uuid);
        // Text is always valid JSON once quoted.
        let data = serde_json::value::to_raw_value(&update.data)
            .map_err(|err| AppError::invalid("invalid_data", err.to_string()))?;
        let event = NewEvent {
            streams: Target::Topics {
                topics: update.topics,
                private: update.private,
            }
            .streams(),
            kind: update
                .kind
                .clone()
                .unwrap_or_else(|| DEFAULT_EVENT_TYPE.to_owned()),
            data,
            time: SystemTime::now(),
            mercure: Some(Box::new(MercureFields {
                id: id.clone(),
                untyped: update.kind.is_none(),
                retry: update.retry,
            })),
        };
        self.hub().publish(event).await?;
        self.metrics()
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        self.metrics().latency_window.record(started.elapsed());
        Ok(id)
    }

    /// The active Mercure subscriptions (on every node), and the id to resume from to receive
    /// every change after them.
    pub async fn mercure_subscriptions(
        &self,
    ) -> Result<(Vec<ActiveSubscription>, String), AppError> {
        let last_event_id = self.hub().latest_id().await?;
        let subscriptions = self
            .hub()
            .connections()
            .await?
            .into_iter()
            .filter_map(|record| {
                let mercure = record.mercure?;
                Some(
                    record
                        .topics
                        .into_iter()
                        .map(move |topic| ActiveSubscription {
                            topic,
                            subscriber: mercure.subscriber.clone(),
                            payload: mercure.payload.clone(),
                        }),
                )
            })
            .flatten()
            .collect();
        Ok((subscriptions, last_event_id))
    }

    /// Opens a Mercure subscriber's stream; with the `Last-Event-ID` its response names.
    pub async fn subscribe_mercure(
        &self,
        request: MercureSubscribeRequest,
    ) -> Result<(Subscription, Option<String>), AppError> {
        Ok(self.hub().subscribe_mercure(request).await?)
    }
}
