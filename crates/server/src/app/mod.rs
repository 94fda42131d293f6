//! The use cases: what Herald does for a request, on the hub and storage, apart from HTTP.
//!
//! A handler in `http` parses a request, calls one method of [`App`] and shapes its answer;
//! the use cases never see a request or a response, and call one another rather than handlers.

mod demo;
mod inbox;
mod mercure;
mod publish;
mod relay;
mod stream_frames;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, PublishError, SubscribeError, SubscribeRequest, Subscription};
use crate::ids::ClientId;
use crate::metrics::Metrics;
use crate::storage::{NodeRecord, Storage, StorageError};

pub use demo::{DemoStream, ORDER_PLACED, ORDERS_TOPIC};
pub use mercure::MercureUpdate;
pub use publish::Target;
pub use relay::RelaySettings;
pub use streams::{Access, Caller, ReadFrom, StreamSettings, access};

/// What the use cases are configured with.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Notifications kept per user; the oldest go first.
    pub max_notifications_per_user: usize,
    /// How long a demo stream may live, as any connection; `None` for ever.
    pub connection_lifetime: Option<Duration>,
    pub streams: StreamSettings,
    pub relay: RelaySettings,
}

/// The use cases, on one hub and its storage; clones share them.
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: Hub,
    /// The hub's storage, for what is not the hub's business: the inboxes.
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    settings: AppSettings,
    /// Cancelled on shutdown; ends the streams that do not belong to the hub (the demos).
    shutdown: CancellationToken,
    /// The readers of response streams, woken when one grows or ends.
    wakers: streams::Wakers,
    /// The relays this node runs.
    relays: relay::Relays,
    /// Calls relayed upstreams.
    upstream: reqwest::Client,
}

/// Why a use case could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request asks for something invalid; `code` says what, for the client.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The request names something that does not exist.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The request is refused for the reason `kind` says.
    #[error("{message}")]
    Rejected {
        kind: Rejection,
        code: &'static str,
        message: String,
    },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a request was refused, beyond being invalid or naming nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The thing is not in a state that allows it (an ended stream).
    Conflict,
    /// The caller may not do it.
    Forbidden,
    /// It would exceed a size limit.
    TooLarge,
    /// The caller holds too many of something.
    Limited,
    /// This server cannot do it.
    Unavailable,
}

impl AppError {
    pub fn rejected(kind: Rejection, code: &'static str, message: impl Into<String>) -> Self {
        Self::Rejected {
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }
}

impl App {
    pub fn new(
        hub: Hub,
        storage: Arc<dyn Storage>,
        metrics: Arc<Metrics>,
        settings: AppSettings,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                hub,
                storage,
                metrics,
                settings,
                shutdown,
                wakers: streams::Wakers::default(),
                relays: relay::Relays::default(),
                upstream: reqwest::Client::new(),
            }),
        }
    }

    fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Opens a subscriber's stream.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, AppError> {
        Ok(self.hub().subscribe(request).await?)
    }

    /// The live connections, oldest first: in cluster mode, those of every node.
    pub async fn connections(&self) -> Result<Vec<NodeRecord>, AppError> {
        Ok(self.hub().connections().await?)
    }

    /// Closes every connection of `client`, on every node; how many there were.
    pub async fn close_client(&self, client: &ClientId) -> Result<usize, AppError> {
        Ok(self.hub().close_client(client).await?)
    }

    /// Every live node's figures.
    pub async fn stats(&self) -> Result<herald_protocol::api::Stats, AppError> {
        Ok(self.hub().stats().await?)
    }

    /// Whether this node can serve.
    pub async fn ready(&self) -> Result<(), AppError> {
        Ok(self.hub().ready().await?)
    }
}
