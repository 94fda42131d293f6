//! Subscribing through the Mercure hub: the same registry, log and replay as `/events`, with
//! a [`MercureSubscriber`] deciding what the stream receives and Mercure's framing.

use herald_protocol::system::{Connected, ResetReason};

use super::connection::{Connection, Holder};
use super::subscription::Start;
use super::{Hub, SubscribeError, Subscription};
use crate::ids::ClientId;
use crate::mercure::{ActiveSubscription, MercureSubscriber, any_matches};
use crate::storage::{Seq, StreamKey};

/// What a Mercure subscriber asked for.
#[derive(Debug, Clone)]
pub struct MercureSubscribeRequest {
    pub subscriber: MercureSubscriber,
    /// `Last-Event-ID` or `lastEventID`: an update's Mercure id, a Herald event id, or
    /// `earliest`.
    pub last_event_id: Option<String>,
    /// Who asks, as the credential says.
    pub holder: Holder,
}

/// The value of the `Last-Event-ID` response header when the history asked for cannot be
/// replayed: the stream starts from what comes next.
pub const EARLIEST: &str = "earliest";

impl Hub {
    /// Opens a Mercure subscription: registers it for live events, then decides where its
    /// stream starts. With a last event id, also returns the `Last-Event-ID` the response
    /// names: that id when the history after it is replayed, `earliest` when it is not (an
    /// id no retained event has, `earliest` itself, or a `*` or template selector, whose
    /// history is not kept apart); the stream then says so with `herald.reset`.
    pub async fn subscribe_mercure(
        &self,
        request: MercureSubscribeRequest,
    ) -> Result<(Subscription, Option<String>), SubscribeError> {
        self.require_following()?;
        let patterns = request.subscriber.has_patterns();
        // A Mercure subscriber has no client id of its own to keep: one for this stream alone,
        // not stored.
        let connection = Connection::mercure(
            ClientId::generate(),
            request.subscriber,
            request.holder,
            self.inner.settings.queue_capacity,
        );
        connection.recorded(crate::time::now_ms());
        let guard = self.register(&connection)?;
        // Registered before reading the log's position, as `/events` is.
        let latest = self.storage().latest().await?;
        let (start, header, replay_streams) = match request.last_event_id {
            None => (Start::Live { from: latest }, None, None),
            Some(id) => {
                self.mercure_start(&connection, &id, latest, patterns)
                    .await?
            }
        };
        // Announced after the position is read, so the subscriber's own subscription reaches
        // it live when it selects it.
        self.announce(&connection, true).await?;
        let retry_ms = self.retry_with_jitter();
        let connected = Connected {
            client_id: connection.client_id.to_string(),
            connection_id: connection.id.to_string(),
            topics: connection.topic_names(),
            retry_ms,
        };
        tracing::debug!(
            connection = %connection.id,
            "subscribed to the Mercure hub"
        );
        let mut subscription = Subscription::new(self.clone(), guard, start, &connected, retry_ms);
        if let Some(streams) = replay_streams {
            subscription = subscription.replaying(streams);
        }
        Ok((subscription, header))
    }
}

/// The most streams a replay for `*` or template selectors reads: past it, history is not
/// replayed (and the stream says so).
const MAX_REPLAY_STREAMS: usize = 10_000;

impl Hub {
    /// Where a Mercure stream asking for history after `id` starts, the `Last-Event-ID` its
    /// response names, and the streams its history is read from when they are not the
    /// connection's own (for `*` and template selectors: every topic stream they select).
    async fn mercure_start(
        &self,
        connection: &Connection,
        id: &str,
        latest: Seq,
        patterns: bool,
    ) -> Result<(Start, Option<String>, Option<Vec<StreamKey>>), SubscribeError> {
        let storage = self.storage();
        let streams = if patterns {
            let Some(subscriber) = connection.mercure.as_deref() else {
                return Ok((Start::Live { from: latest }, None, None));
            };
            let mut streams = storage.topic_streams().await?;
            streams.retain(|stream| {
                stream
                    .topic()
                    .is_some_and(|topic| any_matches(&subscriber.selectors, [topic]))
            });
            if streams.len() > MAX_REPLAY_STREAMS {
                let start = Start::Reset {
                    reason: ResetReason::HistoryExpired,
                    latest,
                };
                return Ok((start, Some(EARLIEST.to_owned()), None));
            }
            Some(streams)
        } else {
            None
        };
        let readable = streams.as_deref().unwrap_or(&connection.streams);
        // With `*` or a template, a stream retention forgot is not listed: a position before
        // what any forgotten stream lost cannot be replayed whole.
        let floor = if patterns {
            storage.earliest(&[]).await?
        } else {
            0
        };
        let after = if id == EARLIEST {
            Some(storage.earliest(readable).await?.max(floor))
        } else {
            match storage.parse_id(id) {
                Some(seq) => Some(seq),
                None => storage.find_mercure_id(id).await?,
            }
            .filter(|seq| *seq <= latest)
        };
        let (start, header) = match after {
            Some(after) if after >= floor => (
                Start::Replay { after },
                if id == EARLIEST { EARLIEST } else { id }.to_owned(),
            ),
            Some(_) => (
                Start::Reset {
                    reason: ResetReason::HistoryExpired,
                    latest,
                },
                EARLIEST.to_owned(),
            ),
            None => (
                Start::Reset {
                    reason: ResetReason::UnknownId,
                    latest,
                },
                EARLIEST.to_owned(),
            ),
        };
        Ok((start, Some(header), streams))
    }

    /// With subscriptions announced, publishes that each subscription of a Mercure
    /// `connection` started (`active`) or ended.
    async fn announce(&self, connection: &Connection, active: bool) -> Result<(), SubscribeError> {
        for update in self.subscription_updates(connection, active) {
            self.publish(update).await.map_err(|err| match err {
                super::PublishError::Storage(err) => SubscribeError::Storage(err),
                super::PublishError::ShuttingDown => SubscribeError::Storage(
                    crate::storage::StorageError::unavailable("the server is shutting down"),
                ),
            })?;
        }
        Ok(())
    }

    fn subscription_updates(
        &self,
        connection: &Connection,
        active: bool,
    ) -> Vec<crate::storage::NewEvent> {
        let Some(subscriber) = connection.mercure.as_ref() else {
            return Vec::new();
        };
        if !self.inner.settings.mercure_subscriptions {
            return Vec::new();
        }
        subscriber
            .selectors
            .iter()
            .map(|selector| {
                ActiveSubscription {
                    topic: selector.as_str().to_owned(),
                    subscriber: subscriber.id.clone(),
                    payload: subscriber.payload.clone(),
                }
                .update(active)
            })
            .collect()
    }

    /// A Mercure connection is gone: announces that its subscriptions ended, in the background
    /// (a failure is logged; the subscriptions API no longer lists them either way).
    pub(super) fn mercure_released(&self, connection: &Connection) {
        let updates = self.subscription_updates(connection, false);
        if updates.is_empty() {
            return;
        }
        let hub = self.clone();
        tokio::spawn(async move {
            for update in updates {
                if let Err(err) = hub.publish(update).await {
                    tracing::warn!(%err, "could not announce the end of a Mercure subscription");
                }
            }
        });
    }
}
