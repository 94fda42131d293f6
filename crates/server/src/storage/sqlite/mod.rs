//! [`SqliteStorage`]: the durable event log and client directory, in one SQLite database in the
//! data directory.
//!
//! One writer connection appends; the sequencer hands it batches, so concurrent publishes share a
//! transaction and its fsync (group commit). A commit with `synchronous = FULL` in WAL mode
//! survives a crash of the process and of the machine, so an acknowledged event is never lost.
//! Replays read through a small pool of read-only connections, one page at a time, so history of
//! any size is never loaded whole. Retention runs in the background and records, per stream, the
//! newest position it removed, so a replay from before it is answered with `Expired`.
//!
//! - [`pool`]: the writer and the readers, and the blocking threads work runs on;
//! - [`schema`]: the database's tables, their migrations and the connections' settings;
//! - [`log`]: appending events and reading them back a page at a time;
//! - [`retention`]: trimming history by count and age, and forgetting expired clients;
//! - [`clients`]: the directory of issued client ids, recorded in shared commits;
//! - [`inbox`]: the users' notifications.

mod clients;
mod inbox;
mod log;
mod pool;
mod retention;
mod schema;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::Semaphore;

use super::{
    AppendBlocking, BoxFuture, InboxItem, InboxPage, InboxQuery, NewEvent, NewInboxItem,
    ReadChange, ReadTarget, Replay, Seq, Storage, StorageError, StorageErrorKind, StoredEvent,
    StreamKey,
};
use crate::ids::ClientId;
use crate::time;
use clients::PendingClient;
use pool::READERS;

const DATABASE_FILE: &str = "herald.db";

/// Limits of the durable store.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    /// Events kept per stream.
    pub max_events_per_stream: usize,
    /// Largest size of the database, in bytes; `None` for no limit. Past it, appends fail as on a
    /// full disk.
    pub max_bytes: Option<u64>,
}

#[derive(Debug)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    settings: SqliteSettings,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per pooled reader: reads beyond them wait for one rather than each taking a
    /// blocking thread and opening a connection of its own (a reconnect storm would open
    /// hundreds, each reading the schema).
    read_slots: Arc<Semaphore>,
    /// Replay reads in progress, one fewer than the readers: however many clients replay at
    /// once, a reader stays free for everything else (readiness checks, the inbox, look-ups).
    replay_slots: Arc<Semaphore>,
    /// Client ids waiting to be recorded, with whom to tell when they are.
    pending_clients: Mutex<Vec<PendingClient>>,
    /// Whether a commit of `pending_clients` is on its way.
    clients_flush_scheduled: AtomicBool,
    /// Whether the writer may still be in `synchronous = NORMAL`, set for client-id commits only.
    sync_relaxed: AtomicBool,
    /// Streams appended to since retention last ran: the only ones that can exceed the count.
    touched: Mutex<HashSet<String>>,
    /// The newest committed position, so `latest` needs no query.
    latest: AtomicU64,
    /// How many client ids are stored: counted at open, then kept by every change to the table
    /// (all made under the writer's lock), so the cap on their number needs no count.
    client_count: AtomicU64,
    /// The position before the first event of this database: ids below it are from elsewhere.
    floor: Seq,
    /// The newest position removed from a stream that was then forgotten for having no events
    /// left: a stream without history cannot be replayed from before it (`meta.forgotten`).
    forgotten: AtomicU64,
}

/// Appends on the calling thread: the sequencer's thread, which so keeps the writer.
#[derive(Debug)]
struct Appender(Arc<Inner>);

impl AppendBlocking for Appender {
    fn append_blocking(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
        pool::write_now(&self.0, |inner, writer| {
            log::append_batch(inner, writer, events)
        })
    }
}

fn storage_error(context: &str) -> impl Fn(rusqlite::Error) -> StorageError + '_ {
    move |err| {
        let kind = match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StorageErrorKind::Full,
            Some(rusqlite::ErrorCode::ReadOnly) => StorageErrorKind::ReadOnly,
            _ => StorageErrorKind::Unavailable,
        };
        StorageError::new(kind, format!("{context}: {err}"))
    }
}

/// A time as the database stores it: milliseconds since the Unix epoch.
fn millis(time: SystemTime) -> i64 {
    to_sql(time::unix_millis(time))
}

/// A time the database stored with [`millis`].
fn from_millis(millis: i64) -> SystemTime {
    time::from_unix_millis(to_seq(millis))
}

fn to_seq(value: i64) -> Seq {
    Seq::try_from(value).unwrap_or(0)
}

fn to_sql(seq: Seq) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A connection is left consistent by SQLite even if a holder panicked mid-statement: every
    // change is inside a transaction that rolls back when dropped.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SqliteStorage {
    /// Opens (creating or migrating) the database in `dir`. Fails with a message naming the
    /// problem when the directory or the database cannot be used.
    pub fn open(dir: &Path, settings: SqliteSettings) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|err| {
            StorageError::unavailable(format!(
                "cannot create the data directory {}: {err}",
                dir.display()
            ))
        })?;
        let path = dir.join(DATABASE_FILE);
        let context = format!("cannot open the database {}", path.display());
        let writer = Connection::open(&path).map_err(storage_error(&context))?;
        schema::configure_writer(&writer, &settings).map_err(storage_error(&context))?;
        let floor = schema::migrate(&writer)
            .map_err(|err| StorageError::unavailable(format!("{context}: {err}")))?;
        let latest: i64 = writer
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(storage_error(&context))?
            .unwrap_or(to_sql(floor));
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(pool::open_reader(&path).map_err(storage_error(&context))?);
        }
        let touched = retention::over_limit(&writer, &settings).map_err(storage_error(&context))?;
        let forgotten: Option<String> = writer
            .query_row(
                "SELECT value FROM meta WHERE key = 'forgotten'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(storage_error(&context))?;
        let forgotten = forgotten.and_then(|value| value.parse().ok()).unwrap_or(0);
        let client_count: i64 = writer
            .query_row("SELECT count(*) FROM clients", [], |row| row.get(0))
            .map_err(storage_error(&context))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                settings,
                writer: Mutex::new(writer),
                readers: Mutex::new(readers),
                read_slots: Arc::new(Semaphore::new(READERS)),
                replay_slots: Arc::new(Semaphore::new(READERS - 1)),
                pending_clients: Mutex::new(Vec::new()),
                clients_flush_scheduled: AtomicBool::new(false),
                sync_relaxed: AtomicBool::new(false),
                touched: Mutex::new(touched),
                latest: AtomicU64::new(to_seq(latest)),
                client_count: AtomicU64::new(to_seq(client_count)),
                floor,
                forgotten: AtomicU64::new(forgotten),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Storage for SqliteStorage {
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<Arc<StoredEvent>>, StorageError>> {
        self.write(move |inner, writer| log::append_batch(inner, writer, events))
    }

    fn blocking_appender(&self) -> Option<Arc<dyn AppendBlocking>> {
        Some(Arc::new(Appender(Arc::clone(&self.inner))))
    }

    fn latest(&self) -> BoxFuture<'_, Result<Seq, StorageError>> {
        let latest = self.inner.latest.load(Ordering::Acquire);
        Box::pin(async move { Ok(latest) })
    }

    fn read_after<'a>(
        &'a self,
        streams: &'a [StreamKey],
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, StorageError>> {
        let keys: Vec<String> = streams.iter().map(StreamKey::encode).collect();
        self.replay_read(move |inner, reader| log::read_page(inner, reader, &keys, after, limit))
    }

    fn register_client<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.register(client)
    }

    fn client_exists<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        self.exists(client)
    }

    fn touch_clients<'a>(
        &'a self,
        clients: &'a [ClientId],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.touch(clients)
    }

    fn client_count(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        let count = self.inner.client_count.load(Ordering::Acquire);
        Box::pin(async move { Ok(count) })
    }

    fn forget_oldest_clients(&self, keep: u64) -> BoxFuture<'_, Result<u64, StorageError>> {
        self.forget_oldest(keep)
    }

    fn expire(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(self.retain(cutoff, oldest_kept))
    }

    fn add_notification<'a>(
        &'a self,
        user: &'a str,
        item: NewInboxItem,
        keep: usize,
    ) -> BoxFuture<'a, Result<InboxItem, StorageError>> {
        let user = user.to_owned();
        self.write(move |_, writer| inbox::add(writer, &user, item, keep))
    }

    fn notifications<'a>(
        &'a self,
        user: &'a str,
        query: InboxQuery,
    ) -> BoxFuture<'a, Result<InboxPage, StorageError>> {
        let user = user.to_owned();
        self.read(move |_, reader| inbox::page(reader, &user, query))
    }

    fn mark_read<'a>(
        &'a self,
        user: &'a str,
        target: ReadTarget,
    ) -> BoxFuture<'a, Result<Option<ReadChange>, StorageError>> {
        let user = user.to_owned();
        self.write(move |_, writer| inbox::mark_read(writer, &user, target))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        self.read(|_, reader| {
            reader
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(storage_error("the database does not answer"))
        })
    }

    fn topic_streams(&self) -> BoxFuture<'_, Result<Vec<StreamKey>, StorageError>> {
        self.read(|_, reader| log::topic_streams(reader))
    }

    fn earliest<'a>(
        &'a self,
        streams: &'a [StreamKey],
    ) -> BoxFuture<'a, Result<Seq, StorageError>> {
        let keys: Vec<String> = streams.iter().map(StreamKey::encode).collect();
        self.read(move |inner, reader| log::earliest(inner, reader, &keys))
    }

    fn find_mercure_id<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Seq>, StorageError>> {
        let id = id.to_owned();
        self.read(move |_, reader| log::find_mercure_id(reader, &id))
    }

    fn streams(&self) -> Option<&dyn super::streams::StreamStore> {
        Some(self)
    }
}
