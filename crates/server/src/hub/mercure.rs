//! Subscribing through the Mercure hub: the same registry, log and replay as `/events`, with
//! a [`MercureSubscriber`] deciding what the stream receives and Mercure's framing.

use herald_protocol::system::{Connected, ResetReason};

use super::connection::{Connection, Holder};
use super::subscription::Start;
use super::{Hub, SubscribeError, Subscription};
use crate::ids::ClientId;
use crate::mercure::MercureSubscriber;

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
        let storage = self.storage();
        // Registered before reading the log's position, as `/events` is.
        let latest = storage.latest().await?;
        let (start, header) = match request.last_event_id {
            None => (Start::Live { from: latest }, None),
            Some(id) => {
                let known = match storage.parse_id(&id) {
                    Some(seq) => Some(seq),
                    None => storage.find_mercure_id(&id).await?,
                }
                .filter(|seq| *seq <= latest);
                match known {
                    Some(after) if !patterns => (Start::Replay { after }, Some(id)),
                    Some(_) => (
                        Start::Reset {
                            reason: ResetReason::HistoryExpired,
                            latest,
                        },
                        Some(EARLIEST.to_owned()),
                    ),
                    None => (
                        Start::Reset {
                            reason: ResetReason::UnknownId,
                            latest,
                        },
                        Some(EARLIEST.to_owned()),
                    ),
                }
            }
        };
        let connected = Connected {
            client_id: connection.client_id.to_string(),
            connection_id: connection.id.as_str().to_owned(),
            topics: connection.topic_names(),
        };
        tracing::debug!(
            connection = connection.id.as_str(),
            "subscribed to the Mercure hub"
        );
        let subscription = Subscription::new(
            self.clone(),
            guard,
            start,
            &connected,
            self.retry_with_jitter(),
        );
        Ok((subscription, header))
    }
}
