//! The sequencer: the one task that appends events to storage and fans them out, so live
//! delivery follows the order of the log exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::registry::Registry;
use crate::metrics::Metrics;
use crate::storage::{AppendBlocking, NewEvent, Storage, StorageError, StoredEvent};

/// One publish (of one event or a batch, stored together) waiting for its place in the log.
#[derive(Debug)]
pub struct PublishJob {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Vec<Arc<StoredEvent>>, StorageError>>,
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

/// The answers owed for one appended group: how many events each publish brought, and where
/// to send them.
type Replies = Vec<(
    usize,
    oneshot::Sender<Result<Vec<Arc<StoredEvent>>, StorageError>>,
)>;

impl Sequencer {
    /// Runs the sequencer: on a thread of its own when the storage's append is blocking work
    /// (SQLite), which then keeps the writer and commits each batch itself; otherwise as a task.
    /// Either way it ends when every hub handle, and so the publish queue, is dropped.
    pub fn start(self, jobs: mpsc::Receiver<PublishJob>, batch: usize) {
        let Some(appender) = self.storage.blocking_appender() else {
            tokio::spawn(self.run(jobs, batch));
            return;
        };
        // The thread is handed its work once it exists, so that work is not lost with the
        // thread if it cannot be started: the sequencer then runs as a task.
        let (hand, take) = std::sync::mpsc::sync_channel::<(
            Self,
            Arc<dyn AppendBlocking>,
            mpsc::Receiver<PublishJob>,
        )>(1);
        let runtime = tokio::runtime::Handle::current();
        let started = std::thread::Builder::new()
            .name("herald-sequencer".into())
            .spawn(move || {
                // Fanning out spawns the flushes on the runtime.
                let _runtime = runtime.enter();
                if let Ok((sequencer, appender, jobs)) = take.recv() {
                    Self::run_blocking(sequencer, &*appender, jobs, batch);
                }
            });
        match started {
            Ok(_) => {
                // The thread waits for exactly this one message.
                let _ = hand.send((self, appender, jobs));
            }
            Err(err) => {
                tracing::warn!(%err, "cannot start the sequencer's thread; it runs as a task");
                tokio::spawn(self.run(jobs, batch));
            }
        }
    }

    /// Takes publishes in arrival order, appends them in batches of up to `batch` (so a durable
    /// store commits a group at once), then fans the batch out and acknowledges each publish.
    pub async fn run(self, mut jobs: mpsc::Receiver<PublishJob>, batch: usize) {
        let mut pending = Vec::with_capacity(batch);
        while jobs.recv_many(&mut pending, batch).await > 0 {
            let (events, replies) = gather(&mut pending);
            let appended = self.storage.append(events).await;
            self.settle(appended, replies);
        }
    }

    /// [`Sequencer::run`] on the calling thread, appending with `appender`: the thread waits
    /// for publishes and for the commit, and no task is woken but the publishers'.
    fn run_blocking(
        self,
        appender: &dyn AppendBlocking,
        mut jobs: mpsc::Receiver<PublishJob>,
        batch: usize,
    ) {
        let mut pending = Vec::with_capacity(batch);
        while jobs.blocking_recv_many(&mut pending, batch) > 0 {
            let (events, replies) = gather(&mut pending);
            let appended = appender.append_blocking(events);
            self.settle(appended, replies);
        }
    }

    /// Fans out what one append stored, then answers each publish of it with its own events;
    /// or answers each with the append's failure.
    fn settle(&self, appended: Result<Vec<Arc<StoredEvent>>, StorageError>, replies: Replies) {
        match appended {
            Ok(stored) => {
                self.metrics.events_published.inc_by(stored.len() as u64);
                if self.fans_out {
                    self.registry.deliver(&stored);
                    if let Some(last) = stored.last() {
                        self.fanned_out_through.store(last.seq, Ordering::Release);
                    }
                }
                let mut stored = stored.into_iter();
                for (count, reply) in replies {
                    let events = stored.by_ref().take(count).collect();
                    // The publisher may have given up waiting; the events are stored either
                    // way.
                    let _ = reply.send(Ok(events));
                }
            }
            Err(err) => {
                tracing::error!(%err, "appending events failed");
                for (_, reply) in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// The events of the publishes taken, in order, as one append (a batch is stored with it, all
/// or none), and the answers owed.
fn gather(pending: &mut Vec<PublishJob>) -> (Vec<NewEvent>, Replies) {
    let mut events = Vec::with_capacity(pending.len());
    let mut replies = Vec::with_capacity(pending.len());
    for job in pending.drain(..) {
        replies.push((job.events.len(), job.reply));
        events.extend(job.events);
    }
    (events, replies)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, SystemTime};

    use prometheus_client::metrics::counter::Counter;
    use serde_json::value::to_raw_value;

    use super::*;
    use crate::hub::connection::{Connection, Holder, Limits, StreamOptions};
    use crate::ids::ClientId;
    use crate::storage::testing::Instrumented;
    use crate::storage::{MemoryStorage, SqliteSettings, SqliteStorage, StreamKey, Timed};

    /// A sequencer on `storage` for a registry holding one connection to topic `a`.
    fn sequencer(storage: Arc<dyn Storage>, fans_out: bool) -> (Sequencer, Arc<Connection>) {
        let registry = Arc::new(Registry::new(Duration::from_secs(10), Counter::default()));
        let connection = Connection::new(
            ClientId::generate(),
            vec![Arc::from("a")],
            Holder::default(),
            16,
            StreamOptions::default(),
        );
        let limits = Limits {
            per_client: 1,
            per_user: 1,
            per_address: None,
        };
        registry.insert(&connection, limits).unwrap();
        let sequencer = Sequencer {
            storage,
            registry,
            metrics: Arc::new(Metrics::new()),
            fanned_out_through: Arc::new(AtomicU64::new(0)),
            fans_out,
        };
        (sequencer, connection)
    }

    type Answer = oneshot::Receiver<Result<Vec<Arc<StoredEvent>>, StorageError>>;

    /// Queues `n` publishes of one event each to topic `a`, with data 0 to `n - 1`; returns
    /// where each is answered.
    async fn publish(jobs: &mpsc::Sender<PublishJob>, n: u64) -> Vec<Answer> {
        let mut answers = Vec::new();
        for value in 0..n {
            let (reply, answer) = oneshot::channel();
            let event = NewEvent {
                mercure: None,
                streams: vec![StreamKey::Topic(Arc::from("a"))],
                kind: "message".into(),
                data: to_raw_value(&value).unwrap(),
                time: SystemTime::now(),
            };
            jobs.send(PublishJob {
                events: vec![event],
                reply,
            })
            .await
            .unwrap();
            answers.push(answer);
        }
        answers
    }

    /// Queues `n` publishes to topic `a`, runs the sequencer until they are all taken, and
    /// returns their answers in order.
    async fn run(sequencer: Sequencer, n: u64) -> Vec<Result<Arc<StoredEvent>, StorageError>> {
        let (jobs, queue) = mpsc::channel(16);
        let answers = publish(&jobs, n).await;
        drop(jobs);
        // With every job queued before it runs, the sequencer takes them as one batch.
        sequencer.run(queue, 256).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap().map(|mut stored| stored.remove(0)));
        }
        results
    }

    #[tokio::test]
    async fn a_batch_is_stored_then_fanned_out_in_log_order_then_acknowledged() {
        let storage = Arc::new(Instrumented::new(MemoryStorage::new(100)));
        let (sequencer, connection) = sequencer(storage, true);
        let fanned_out = Arc::clone(&sequencer.fanned_out_through);
        let stored: Vec<Arc<StoredEvent>> = run(sequencer, 3)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(stored.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        assert_eq!(
            stored[0].data.get(),
            "0",
            "acknowledged in the order published"
        );
        let queued: Vec<_> = std::iter::from_fn(|| connection.queue.try_recv())
            .map(|item| item.seq)
            .collect();
        let seqs: Vec<_> = stored.iter().map(|event| event.seq).collect();
        assert_eq!(queued, seqs, "fanned out in log order");
        assert_eq!(fanned_out.load(Ordering::Acquire), stored[2].seq);
    }

    #[tokio::test]
    async fn a_publish_of_several_events_gets_its_own_back_in_order() {
        let storage = Arc::new(Instrumented::new(MemoryStorage::new(100)));
        let (sequencer, _) = sequencer(storage, true);
        let (jobs, queue) = mpsc::channel(16);
        let event = |n: u32| NewEvent {
            mercure: None,
            streams: vec![StreamKey::Topic(Arc::from("a"))],
            kind: "message".into(),
            data: to_raw_value(&n).unwrap(),
            time: SystemTime::now(),
        };
        let mut answers = Vec::new();
        for events in [
            vec![event(0)],
            vec![event(1), event(2), event(3)],
            vec![event(4)],
        ] {
            let (reply, answer) = oneshot::channel();
            jobs.send(PublishJob { events, reply }).await.unwrap();
            answers.push(answer);
        }
        drop(jobs);
        sequencer.run(queue, 256).await;
        let mut data = Vec::new();
        for answer in answers {
            let stored = answer.await.unwrap().unwrap();
            data.push(
                stored
                    .iter()
                    .map(|event| event.data.get().to_owned())
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(data, [vec!["0"], vec!["1", "2", "3"], vec!["4"]]);
    }

    #[tokio::test]
    async fn a_failed_append_is_answered_to_every_publish_of_the_batch_and_fans_out_nothing() {
        let storage = Arc::new(Instrumented::new(MemoryStorage::new(100)));
        storage.down.store(true, Ordering::SeqCst);
        let (sequencer, connection) = sequencer(storage, true);
        let fanned_out = Arc::clone(&sequencer.fanned_out_through);
        let results = run(sequencer, 3).await;
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert!(connection.queue.is_empty());
        assert_eq!(fanned_out.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn in_a_cluster_the_sequencer_stores_and_leaves_delivery_to_the_feed() {
        let storage = Arc::new(Instrumented::new(MemoryStorage::new(100)));
        let (sequencer, connection) = sequencer(storage, false);
        let fanned_out = Arc::clone(&sequencer.fanned_out_through);
        let results = run(sequencer, 2).await;
        assert!(results.iter().all(Result::is_ok));
        assert!(
            connection.queue.is_empty(),
            "the follower delivers, in feed order"
        );
        assert_eq!(fanned_out.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn on_sqlite_the_sequencer_commits_on_its_own_thread_in_log_order() {
        let dir = std::env::temp_dir().join(format!(
            "herald-sequencer-{}-{}",
            std::process::id(),
            crate::ids::random_u32()
        ));
        let settings = SqliteSettings {
            max_events_per_stream: 100,
            max_bytes: None,
        };
        let metrics = Metrics::new();
        let storage: Arc<dyn Storage> = Arc::new(Timed::new(
            Arc::new(SqliteStorage::open(&dir, settings).unwrap()),
            &metrics,
        ));
        assert!(
            storage.blocking_appender().is_some(),
            "SQLite appends blocking"
        );
        assert!(MemoryStorage::new(1).blocking_appender().is_none());
        let (sequencer, connection) = sequencer(Arc::clone(&storage), true);
        let fanned_out = Arc::clone(&sequencer.fanned_out_through);
        let (jobs, queue) = mpsc::channel(16);
        sequencer.start(queue, 256);
        let mut stored = Vec::new();
        for answer in publish(&jobs, 5).await {
            stored.push(answer.await.unwrap().unwrap().remove(0));
        }
        let data: Vec<_> = stored.iter().map(|event| event.data.get()).collect();
        assert_eq!(data, ["0", "1", "2", "3", "4"]);
        assert!(stored.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        assert_eq!(storage.latest().await.unwrap(), stored[4].seq, "committed");
        assert_eq!(fanned_out.load(Ordering::Acquire), stored[4].seq);
        let queued: Vec<_> = std::iter::from_fn(|| connection.queue.try_recv())
            .map(|item| item.seq)
            .collect();
        let seqs: Vec<_> = stored.iter().map(|event| event.seq).collect();
        assert_eq!(queued, seqs, "fanned out in log order");
        drop(jobs);
        drop(storage);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
