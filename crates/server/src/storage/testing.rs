//! [`Instrumented`]: a storage wrapper for tests that inject faults and races into the hub's use
//! of storage. Built only with the `testing` feature, which the crate's own tests turn on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{
    BoxFuture, InboxItem, InboxPage, InboxQuery, MemoryStorage, NewEvent, NewInboxItem, ReadChange,
    ReadTarget, Replay, Seq, Storage, StorageError, StoredEvent, StreamKey,
};
use crate::ids::ClientId;
use tokio::sync::oneshot;

/// Memory storage with faults to inject: while `down` is set its writes and pings fail,
/// standing in for a database that became unavailable; and one replay read can be held back
/// after it has read, to act in the moment between that read and its answer.
#[derive(Debug)]
pub struct Instrumented {
    inner: MemoryStorage,
    pub down: AtomicBool,
    held_read: Mutex<Option<HeldRead>>,
}

/// Tells the test the held read has read, then waits for the test to let it answer.
#[derive(Debug)]
struct HeldRead {
    read: oneshot::Sender<()>,
    answer: oneshot::Receiver<()>,
}

impl Instrumented {
    pub fn new(inner: MemoryStorage) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            held_read: Mutex::new(None),
        }
    }

    /// Holds back the next replay read once it has read: the first receiver completes then,
    /// and the read answers when the sender is used (or dropped).
    pub fn hold_next_read(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (read, has_read) = oneshot::channel();
        let (let_answer, answer) = oneshot::channel();
        *self
            .held_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(HeldRead { read, answer });
        (has_read, let_answer)
    }

    fn check(&self) -> Result<(), StorageError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StorageError::unavailable("disk unavailable"))
        } else {
            Ok(())
        }
    }
}

impl Storage for Instrumented {
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<Arc<StoredEvent>>, StorageError>> {
        match self.check() {
            Ok(()) => self.inner.append(events),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
    fn latest(&self) -> BoxFuture<'_, Result<Seq, StorageError>> {
        self.inner.latest()
    }
    fn read_after<'a>(
        &'a self,
        streams: &'a [StreamKey],
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, StorageError>> {
        let held = self
            .held_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let read = self.inner.read_after(streams, after, limit);
        Box::pin(async move {
            let replay = read.await;
            if let Some(held) = held {
                let _ = held.read.send(());
                let _ = held.answer.await;
            }
            replay
        })
    }
    fn register_client<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.inner.register_client(client)
    }
    fn client_exists<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        self.inner.client_exists(client)
    }
    fn touch_clients<'a>(
        &'a self,
        clients: &'a [ClientId],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.inner.touch_clients(clients)
    }
    fn client_count(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        self.inner.client_count()
    }
    fn forget_oldest_clients(&self, keep: u64) -> BoxFuture<'_, Result<u64, StorageError>> {
        self.inner.forget_oldest_clients(keep)
    }
    fn expire(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        self.inner.expire(cutoff, oldest_kept)
    }
    fn add_notification<'a>(
        &'a self,
        user: &'a str,
        item: NewInboxItem,
        keep: usize,
    ) -> BoxFuture<'a, Result<InboxItem, StorageError>> {
        match self.check() {
            Ok(()) => self.inner.add_notification(user, item, keep),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
    fn notifications<'a>(
        &'a self,
        user: &'a str,
        query: InboxQuery,
    ) -> BoxFuture<'a, Result<InboxPage, StorageError>> {
        self.inner.notifications(user, query)
    }
    fn mark_read<'a>(
        &'a self,
        user: &'a str,
        target: ReadTarget,
    ) -> BoxFuture<'a, Result<Option<ReadChange>, StorageError>> {
        match self.check() {
            Ok(()) => self.inner.mark_read(user, target),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        let result = self.check();
        Box::pin(async move { result })
    }

    fn topic_streams(&self) -> BoxFuture<'_, Result<Vec<StreamKey>, StorageError>> {
        self.inner.topic_streams()
    }

    fn earliest<'a>(
        &'a self,
        streams: &'a [StreamKey],
    ) -> BoxFuture<'a, Result<Seq, StorageError>> {
        self.inner.earliest(streams)
    }

    fn find_mercure_id<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Seq>, StorageError>> {
        self.inner.find_mercure_id(id)
    }
}
