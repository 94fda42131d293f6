//! [`Timed`]: a storage wrapper measuring how long each operation takes
//! (`herald_storage_operation_duration_seconds{operation}`) and counting the failed ones
//! (`herald_storage_operation_errors_total{operation}`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{
    AppendBlocking, BoxFuture, InboxItem, InboxPage, InboxQuery, NewEvent, NewInboxItem,
    ReadChange, ReadTarget, Replay, Seq, Storage, StorageError, StoredEvent, StreamKey,
};
use crate::ids::ClientId;
use crate::metrics::Metrics;

/// The operations measured, each with its label.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Append,
    Latest,
    ReadAfter,
    RegisterClient,
    ClientExists,
    TouchClients,
    ClientCount,
    ForgetOldestClients,
    Expire,
    AddNotification,
    Notifications,
    MarkRead,
    Ping,
    FindMercureId,
    TopicStreams,
    Earliest,
}

impl Operation {
    const ALL: [Self; 16] = [
        Self::Append,
        Self::Latest,
        Self::ReadAfter,
        Self::RegisterClient,
        Self::ClientExists,
        Self::TouchClients,
        Self::ClientCount,
        Self::ForgetOldestClients,
        Self::Expire,
        Self::AddNotification,
        Self::Notifications,
        Self::MarkRead,
        Self::Ping,
        Self::FindMercureId,
        Self::TopicStreams,
        Self::Earliest,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Latest => "latest",
            Self::ReadAfter => "read_after",
            Self::RegisterClient => "register_client",
            Self::ClientExists => "client_exists",
            Self::TouchClients => "touch_clients",
            Self::ClientCount => "client_count",
            Self::ForgetOldestClients => "forget_oldest_clients",
            Self::Expire => "expire",
            Self::AddNotification => "add_notification",
            Self::Notifications => "notifications",
            Self::MarkRead => "mark_read",
            Self::Ping => "ping",
            Self::FindMercureId => "find_mercure_id",
            Self::TopicStreams => "topic_streams",
            Self::Earliest => "earliest",
        }
    }
}

/// A storage whose operations are timed into the metrics.
#[derive(Debug)]
pub struct Timed {
    inner: Arc<dyn Storage>,
    /// Each operation's histogram and error counter, looked up once: in [`Operation::ALL`]'s
    /// order.
    meters: Vec<(Histogram, Counter)>,
}

impl Timed {
    pub fn new(inner: Arc<dyn Storage>, metrics: &Metrics) -> Self {
        let meters = Operation::ALL
            .iter()
            .map(|operation| metrics.storage.meters(operation.label()))
            .collect();
        Self { inner, meters }
    }

    fn timed<'a, T: Send + 'a>(
        &'a self,
        operation: Operation,
        future: BoxFuture<'a, Result<T, StorageError>>,
    ) -> BoxFuture<'a, Result<T, StorageError>> {
        let meter = &self.meters[operation as usize];
        Box::pin(async move {
            let started = Instant::now();
            let result = future.await;
            record(meter, started, &result);
            result
        })
    }
}

/// Records into `meter` an operation begun at `started` that ended with `result`.
fn record<T>(meter: &(Histogram, Counter), started: Instant, result: &Result<T, StorageError>) {
    let (duration, errors) = meter;
    duration.observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        errors.inc();
    }
}

/// The inner store's [`AppendBlocking`], timed as its `append`.
#[derive(Debug)]
struct TimedAppend {
    inner: Arc<dyn AppendBlocking>,
    meter: (Histogram, Counter),
}

impl AppendBlocking for TimedAppend {
    fn append_blocking(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
        let started = Instant::now();
        let result = self.inner.append_blocking(events);
        record(&self.meter, started, &result);
        result
    }
}

impl Storage for Timed {
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<Arc<StoredEvent>>, StorageError>> {
        self.timed(Operation::Append, self.inner.append(events))
    }

    fn blocking_appender(&self) -> Option<Arc<dyn AppendBlocking>> {
        Some(Arc::new(TimedAppend {
            inner: self.inner.blocking_appender()?,
            meter: self.meters[Operation::Append as usize].clone(),
        }))
    }

    fn latest(&self) -> BoxFuture<'_, Result<Seq, StorageError>> {
        self.timed(Operation::Latest, self.inner.latest())
    }

    fn read_after<'a>(
        &'a self,
        streams: &'a [StreamKey],
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, StorageError>> {
        self.timed(
            Operation::ReadAfter,
            self.inner.read_after(streams, after, limit),
        )
    }

    fn parse_id(&self, id: &str) -> Option<Seq> {
        self.inner.parse_id(id)
    }

    fn format_id(&self, seq: Seq) -> String {
        self.inner.format_id(seq)
    }

    fn register_client<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.timed(
            Operation::RegisterClient,
            self.inner.register_client(client),
        )
    }

    fn client_exists<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        self.timed(Operation::ClientExists, self.inner.client_exists(client))
    }

    fn touch_clients<'a>(
        &'a self,
        clients: &'a [ClientId],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.timed(Operation::TouchClients, self.inner.touch_clients(clients))
    }

    fn client_count(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        self.timed(Operation::ClientCount, self.inner.client_count())
    }

    fn forget_oldest_clients(&self, keep: u64) -> BoxFuture<'_, Result<u64, StorageError>> {
        self.timed(
            Operation::ForgetOldestClients,
            self.inner.forget_oldest_clients(keep),
        )
    }

    fn expire(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        self.timed(Operation::Expire, self.inner.expire(cutoff, oldest_kept))
    }

    fn add_notification<'a>(
        &'a self,
        user: &'a str,
        item: NewInboxItem,
        keep: usize,
    ) -> BoxFuture<'a, Result<InboxItem, StorageError>> {
        self.timed(
            Operation::AddNotification,
            self.inner.add_notification(user, item, keep),
        )
    }

    fn notifications<'a>(
        &'a self,
        user: &'a str,
        query: InboxQuery,
    ) -> BoxFuture<'a, Result<InboxPage, StorageError>> {
        self.timed(
            Operation::Notifications,
            self.inner.notifications(user, query),
        )
    }

    fn mark_read<'a>(
        &'a self,
        user: &'a str,
        target: ReadTarget,
    ) -> BoxFuture<'a, Result<Option<ReadChange>, StorageError>> {
        self.timed(Operation::MarkRead, self.inner.mark_read(user, target))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        self.timed(Operation::Ping, self.inner.ping())
    }

    fn topic_streams(&self) -> BoxFuture<'_, Result<Vec<StreamKey>, StorageError>> {
        self.timed(Operation::TopicStreams, self.inner.topic_streams())
    }

    fn earliest<'a>(
        &'a self,
        streams: &'a [StreamKey],
    ) -> BoxFuture<'a, Result<Seq, StorageError>> {
        self.timed(Operation::Earliest, self.inner.earliest(streams))
    }

    fn find_mercure_id<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Seq>, StorageError>> {
        self.timed(Operation::FindMercureId, self.inner.find_mercure_id(id))
    }

    fn streams(&self) -> Option<&dyn super::streams::StreamStore> {
        self.inner.streams()
    }
}
