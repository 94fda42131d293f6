//! The connections: one writer, and a pool of read-only connections that reads wait for.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::{BoxFuture, Inner, SqliteStorage, StorageError, lock, schema, storage_error};

/// Read-only connections for replays and look-ups.
pub(super) const READERS: usize = 4;

impl SqliteStorage {
    /// Runs `work` on the writer connection on a blocking thread.
    pub(super) fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StorageError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || write_now(&inner, work))
                .await
                .map_err(|err| StorageError::unavailable(format!("storage task failed: {err}")))?
        })
    }

    /// Runs `work` on a pooled read-only connection on a blocking thread.
    pub(super) fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StorageError>> {
        self.read_holding(None, work)
    }

    /// [`SqliteStorage::read`] for a replay: it also holds one of the replay slots, fewer than
    /// the readers, so that replays never take every reader.
    pub(super) fn replay_read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StorageError>> {
        self.read_holding(Some(Arc::clone(&self.inner.replay_slots)), work)
    }

    /// Runs `work` on a pooled reader once it holds a slot of `first` (if given) and a reader
    /// slot, both held until the reader is back in the pool, even if the caller gave up.
    fn read_holding<T: Send + 'static>(
        &self,
        first: Option<Arc<Semaphore>>,
        work: impl FnOnce(&Inner, &mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StorageError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let closed = |_| StorageError::unavailable("the database readers are closed");
            let first = match first {
                Some(slots) => Some(slots.acquire_owned().await.map_err(closed)?),
                None => None,
            };
            let slot = Arc::clone(&inner.read_slots)
                .acquire_owned()
                .await
                .map_err(closed)?;
            tokio::task::spawn_blocking(move || {
                let _slots = (first, slot);
                let pooled = lock(&inner.readers).pop();
                let mut connection = match pooled {
                    Some(connection) => connection,
                    None => {
                        open_reader(&inner.path).map_err(storage_error("cannot open a reader"))?
                    }
                };
                let result = work(&inner, &mut connection);
                // Only a connection outside any transaction goes back to the pool.
                let mut readers = lock(&inner.readers);
                if readers.len() < READERS && connection.is_autocommit() {
                    readers.push(connection);
                }
                result
            })
            .await
            .map_err(|err| StorageError::unavailable(format!("storage task failed: {err}")))?
        })
    }
}

/// Runs `work` on the writer connection on the calling thread, blocking it until the writer
/// is free and the work done.
pub(super) fn write_now<T>(
    inner: &Inner,
    work: impl FnOnce(&Inner, &mut Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let mut writer = lock(&inner.writer);
    // A client-id commit that could not restore `synchronous = FULL` left the writer relaxed:
    // nothing else commits until it is restored.
    if inner.sync_relaxed.load(Ordering::Acquire) {
        schema::restore_full_sync(inner, &writer)
            .map_err(storage_error("cannot make commits durable again"))?;
    }
    work(inner, &mut writer)
}

pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let reader = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    reader.busy_timeout(Duration::from_secs(5))?;
    Ok(reader)
}
