//! [`EventStreamSlot`]: how a subscription opened by the `/events` handler reaches whoever
//! writes the response.
//!
//! Herald's own event-stream writer (`event_conn`) takes it from the response's extensions
//! and writes its frames straight to the socket; a response served through hyper instead
//! streams it as the body, which takes it from the same slot when first polled. Whichever
//! takes it first has it; the other finds the slot empty.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::Stream;

use crate::hub::Subscription;

/// A subscription waiting for its writer; clones share it.
#[derive(Debug, Clone)]
pub struct EventStreamSlot(Arc<Mutex<Option<Subscription>>>);

impl EventStreamSlot {
    pub fn new(subscription: Subscription) -> Self {
        Self(Arc::new(Mutex::new(Some(subscription))))
    }

    /// The subscription, unless a writer took it already.
    pub fn take(&self) -> Option<Subscription> {
        // Taking is the only update, and it completes under the lock.
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// The stream's chunks for a response body: the subscription is taken from the slot when
    /// the body is first polled, so a writer that took it before leaves the body empty.
    pub fn chunks(&self) -> impl Stream<Item = Bytes> + Send + 'static {
        let slot = self.clone();
        futures_util::stream::unfold(None, move |held: Option<Subscription>| {
            let slot = slot.clone();
            async move {
                let mut subscription = match held {
                    Some(subscription) => subscription,
                    None => slot.take()?,
                };
                let chunk = subscription.next().await?;
                Some((chunk, Some(subscription)))
            }
        })
    }
}
