//! The sequencer: the one task that appends events to storage and fans them out, so live
//! delivery follows the order of the log exactly.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{Hub, frames};
use crate::storage::{NewEvent, StorageError, StoredEvent};

/// One publish waiting for its place in the log.
#[derive(Debug)]
pub struct PublishJob {
    pub event: NewEvent,
    pub reply: oneshot::Sender<Result<Arc<StoredEvent>, StorageError>>,
}

/// Takes publishes in arrival order, appends them in batches of up to `batch` (so a durable store
/// can commit a group at once), then fans each out and acknowledges it.
pub async fn run(hub: Hub, mut jobs: mpsc::Receiver<PublishJob>, batch: usize) {
    let mut pending = Vec::with_capacity(batch);
    while jobs.recv_many(&mut pending, batch).await > 0 {
        let (events, replies): (Vec<_>, Vec<_>) =
            pending.drain(..).map(|job| (job.event, job.reply)).unzip();
        match hub.storage().append(events).await {
            Ok(stored) => {
                for (event, reply) in stored.into_iter().zip(replies) {
                    let frames: Vec<Bytes> = event
                        .streams
                        .iter()
                        .map(|stream| frames::event_frame(&event, stream))
                        .collect();
                    hub.registry().fan_out(event.seq, &event.streams, &frames);
                    hub.mark_fanned_out(event.seq);
                    hub.metrics().events_published.inc();
                    // The publisher may have given up waiting; the event is stored either way.
                    let _ = reply.send(Ok(event));
                }
            }
            Err(err) => {
                tracing::error!(%err, "appending events failed");
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
