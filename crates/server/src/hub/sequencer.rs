//! The sequencer: the one task that appends events to storage and fans them out, so live
//! delivery follows the order of the log exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::registry::Registry;
use crate::metrics::Metrics;
use crate::storage::{NewEvent, Storage, StorageError, StoredEvent};

/// One publish waiting for its place in the log.
#[derive(Debug)]
pub struct PublishJob {
    pub event: NewEvent,
    pub reply: oneshot::Sender<Result<Arc<StoredEvent>, StorageError>>,
}

/// What the sequencer works with. It holds no [`Hub`](super::Hub), so when the last hub handle
/// is dropped the publish channel closes and the task ends.
#[derive(Debug)]
pub struct Sequencer {
    pub storage: Arc<dyn Storage>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub fanned_out_through: Arc<AtomicU64>,
    /// Whether this sequencer fans out what it appends. In cluster mode it does not: every node
    /// delivers from the shared feed, where other nodes' events are interleaved with its own.
    pub fans_out: bool,
}

impl Sequencer {
    /// Takes publishes in arrival order, appends them in batches of up to `batch` (so a durable
    /// store commits a group at once), then fans the batch out and acknowledges each publish.
    pub async fn run(self, mut jobs: mpsc::Receiver<PublishJob>, batch: usize) {
        let mut pending = Vec::with_capacity(batch);
        while jobs.recv_many(&mut pending, batch).await > 0 {
            let (events, replies): (Vec<_>, Vec<_>) =
                pending.drain(..).map(|job| (job.event, job.reply)).unzip();
            match self.storage.append(events).await {
                Ok(stored) => {
                    self.metrics.events_published.inc_by(stored.len() as u64);
                    if self.fans_out {
                        self.registry.deliver(&stored);
                        if let Some(last) = stored.last() {
                            self.fanned_out_through.store(last.seq, Ordering::Release);
                        }
                    }
                    for (event, reply) in stored.into_iter().zip(replies) {
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
}
