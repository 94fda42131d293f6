//! [`SqliteStorage`]: the durable event log and client directory, in one SQLite database in the
//! data directory.
//!
//! One writer connection appends; the sequencer hands it batches, so concurrent publishes share a
//! transaction and its fsync (group commit). A commit with `synchronous = FULL` in WAL mode
//! survives a crash of the process and of the machine, so an acknowledged event is never lost.
//! Replays read through a small pool of read-only connections, one page at a time, so history of
//! any size is never loaded whole. Retention runs in the background and records, per stream, the
//! newest position it removed, so a replay from before it is answered with `Expired`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, oneshot};

mod inbox;

use super::{
    BoxFuture, InboxItem, InboxPage, InboxQuery, NewEvent, NewInboxItem, ReadChange, ReadTarget,
    Replay, Seq, Storage, StorageError, StorageErrorKind, StoredEvent, StreamKey,
};
use crate::ids::ClientId;

/// The schema this code reads and writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 2;
const DATABASE_FILE: &str = "herald.db";
/// Read-only connections for replays and look-ups.
const READERS: usize = 4;

/// The writer's page cache, in KiB (SQLite's default is 2 MiB per connection). Appends touch
/// the last pages of the log and its indexes (client ids lead with their issue time, so new
/// ones append too), which stay cached; a larger cache would only keep older pages of the
/// client table resident, growing the process by the size of that table until it is full.
const WRITER_CACHE_KIB: i64 = 256;

/// Streams whose count limit one retention transaction applies. A pass over many active
/// streams (each client stream of a busy unicast) otherwise held the writer for tens of
/// milliseconds, and every publish waited behind it.
const RETENTION_STREAMS_PER_COMMIT: usize = 64;

/// Limits of the durable store.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    /// Events kept per stream.
    pub max_events_per_stream: usize,
    /// Largest size of the database, in bytes; `None` for no limit. Past it, appends fail as on a
    /// full disk.
    pub max_bytes: Option<u64>,
}

/// A client id to record and the registration waiting for it.
type PendingClient = (String, oneshot::Sender<Result<(), StorageError>>);

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
    /// The position before the first event of this database: ids below it are from elsewhere.
    floor: Seq,
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

fn now_ms() -> i64 {
    millis(SystemTime::now())
}

fn millis(time: SystemTime) -> i64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn to_seq(value: i64) -> Seq {
    Seq::try_from(value).unwrap_or(0)
}

fn to_sql(seq: Seq) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
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
        configure_writer(&writer, &settings).map_err(storage_error(&context))?;
        let floor = migrate(&writer)
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
            readers.push(open_reader(&path).map_err(storage_error(&context))?);
        }
        let touched = over_limit(&writer, &settings).map_err(storage_error(&context))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                settings,
                writer: Mutex::new(writer),
                readers: Mutex::new(readers),
                read_slots: Arc::new(Semaphore::new(READERS)),
                pending_clients: Mutex::new(Vec::new()),
                clients_flush_scheduled: AtomicBool::new(false),
                sync_relaxed: AtomicBool::new(false),
                touched: Mutex::new(touched),
                latest: AtomicU64::new(to_seq(latest)),
                floor,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on the writer connection on a blocking thread.
    fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StorageError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut writer = lock(&inner.writer);
                // A client-id commit that could not restore `synchronous = FULL` left the
                // writer relaxed: nothing else commits until it is restored.
                if inner.sync_relaxed.load(Ordering::Acquire) {
                    restore_full_sync(&inner, &writer)
                        .map_err(storage_error("cannot make commits durable again"))?;
                }
                work(&inner, &mut writer)
            })
            .await
            .map_err(|err| StorageError::unavailable(format!("storage task failed: {err}")))?
        })
    }

    /// Runs `work` on a pooled read-only connection on a blocking thread.
    fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StorageError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let slot = Arc::clone(&inner.read_slots)
                .acquire_owned()
                .await
                .map_err(|_| StorageError::unavailable("the database readers are closed"))?;
            tokio::task::spawn_blocking(move || {
                // Held until the connection is back in the pool, even if the caller gave up.
                let _slot = slot;
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A connection is left consistent by SQLite even if a holder panicked mid-statement: every
    // change is inside a transaction that rolls back when dropped.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let reader = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    reader.busy_timeout(Duration::from_secs(5))?;
    Ok(reader)
}

/// Streams holding more events than the limit, so retention trims them even if nothing is
/// appended to them again (after a restart, or when the limit was lowered).
fn over_limit(writer: &Connection, settings: &SqliteSettings) -> rusqlite::Result<HashSet<String>> {
    let max_events = i64::try_from(settings.max_events_per_stream).unwrap_or(i64::MAX);
    let mut statement =
        writer.prepare("SELECT stream FROM event_streams GROUP BY stream HAVING count(*) > ?1")?;
    let rows = statement.query_map([max_events], |row| row.get(0))?;
    rows.collect()
}

fn configure_writer(writer: &Connection, settings: &SqliteSettings) -> rusqlite::Result<()> {
    writer.busy_timeout(Duration::from_secs(5))?;
    // WAL lets replays read while publishes commit; FULL makes every commit durable on disk.
    let mode: String =
        writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Without WAL, readers would block commits; refuse rather than run slowly and unsafely.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the file system does not support write-ahead logging (journal mode stayed {mode})"
            )),
        ));
    }
    writer.pragma_update(None, "synchronous", "FULL")?;
    writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    if let Some(max_bytes) = settings.max_bytes {
        let page_size: i64 = writer.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let pages = i64::try_from(max_bytes).unwrap_or(i64::MAX) / page_size.max(1);
        writer.pragma_update(None, "max_page_count", pages.max(1))?;
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`] inside the caller's transaction.
fn migrate_locked(writer: &Connection) -> Result<(), String> {
    let version: i64 = writer
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the database has schema version {version}, newer than this Herald understands ({SCHEMA_VERSION}); \
             upgrade Herald or use another data directory"
        ));
    }
    if version < 1 {
        // Ids continue from the creation time in microseconds, so an id issued by an earlier
        // database (a wiped data directory) is older than this one's history and replaying it
        // announces a reset instead of matching an unrelated event.
        let floor = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_micros();
        let floor = i64::try_from(floor).unwrap_or(i64::MAX / 2);
        writer
            .execute_batch(&format!(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
                 CREATE TABLE events (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     streams TEXT NOT NULL,
                     kind TEXT NOT NULL,
                     data TEXT NOT NULL,
                     time_ms INTEGER NOT NULL
                 );
                 CREATE INDEX events_by_time ON events (time_ms);
                 CREATE TABLE event_streams (
                     stream TEXT NOT NULL,
                     seq INTEGER NOT NULL,
                     PRIMARY KEY (stream, seq)
                 ) WITHOUT ROWID;
                 CREATE INDEX event_streams_by_seq ON event_streams (seq);
                 CREATE TABLE trims (stream TEXT PRIMARY KEY, trimmed_through INTEGER NOT NULL) WITHOUT ROWID;
                 CREATE TABLE clients (client_id TEXT PRIMARY KEY, last_seen_ms INTEGER NOT NULL) WITHOUT ROWID;
                 CREATE INDEX clients_by_last_seen ON clients (last_seen_ms);
                 INSERT INTO meta (key, value) VALUES ('floor', '{floor}');
                 INSERT INTO sqlite_sequence (name, seq) VALUES ('events', {floor});
                 PRAGMA user_version = 1;"
            ))
            .map_err(|e| format!("cannot create the schema: {e}"))?;
    }
    if version < 2 {
        writer
            .execute_batch(&format!("{} PRAGMA user_version = 2;", inbox::SCHEMA))
            .map_err(|e| format!("cannot add the notification inbox: {e}"))?;
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`]; returns the database's floor position.
fn migrate(writer: &Connection) -> Result<Seq, String> {
    // Read and raise the version in one write transaction, so two processes opening a new data
    // directory at once cannot both create the schema.
    writer
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| format!("cannot lock the database: {e}"))?;
    let migrated = migrate_locked(writer);
    let end = if migrated.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    writer
        .execute_batch(end)
        .map_err(|e| format!("cannot finish the migration: {e}"))?;
    migrated?;
    let floor: String = writer
        .query_row("SELECT value FROM meta WHERE key = 'floor'", [], |row| {
            row.get(0)
        })
        .map_err(|e| format!("cannot read the schema: {e}"))?;
    floor
        .parse()
        .map_err(|_| format!("the database's floor {floor:?} is not a number"))
}

fn append_batch(
    inner: &Inner,
    writer: &mut Connection,
    events: Vec<NewEvent>,
) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
    let failed = storage_error("cannot store events");
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&failed)?;
    let mut stored = Vec::with_capacity(events.len());
    let mut touched = HashSet::new();
    {
        let mut insert_event = tx
            .prepare_cached(
                "INSERT INTO events (streams, kind, data, time_ms) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(&failed)?;
        let mut insert_stream = tx
            .prepare_cached("INSERT INTO event_streams (stream, seq) VALUES (?1, ?2)")
            .map_err(&failed)?;
        for event in events {
            let keys: Vec<String> = event.streams.iter().map(StreamKey::encode).collect();
            insert_event
                .execute(params![
                    keys.join("\n"),
                    event.kind,
                    event.data.get(),
                    millis(event.time)
                ])
                .map_err(&failed)?;
            let seq = tx.last_insert_rowid();
            for key in keys {
                insert_stream.execute(params![key, seq]).map_err(&failed)?;
                touched.insert(key);
            }
            let seq = to_seq(seq);
            stored.push(event.stored_at(seq));
        }
    }
    tx.commit().map_err(&failed)?;
    if let Some(last) = stored.last() {
        inner.latest.store(last.seq, Ordering::Release);
    }
    lock(&inner.touched).extend(touched);
    Ok(stored)
}

fn read_page(
    inner: &Inner,
    reader: &mut Connection,
    keys: &[String],
    after: Seq,
    limit: usize,
) -> Result<Replay, StorageError> {
    if after < inner.floor {
        return Ok(Replay::Expired);
    }
    let failed = storage_error("cannot read history");
    // One read transaction, so the trim check and the events come from the same snapshot.
    let tx = reader.transaction().map_err(&failed)?;
    let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut seqs: Vec<i64> = Vec::new();
    {
        let mut trimmed = tx
            .prepare_cached("SELECT trimmed_through FROM trims WHERE stream = ?1")
            .map_err(&failed)?;
        let mut page = tx
            .prepare_cached("SELECT seq FROM event_streams WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
            .map_err(&failed)?;
        for key in keys {
            let through: Option<i64> = trimmed
                .query_row([key], |row| row.get(0))
                .optional()
                .map_err(&failed)?;
            if through.is_some_and(|through| to_seq(through) > after) {
                return Ok(Replay::Expired);
            }
            let rows = page
                .query_map(params![key, to_sql(after), limit_sql], |row| row.get(0))
                .map_err(&failed)?;
            for seq in rows {
                seqs.push(seq.map_err(&failed)?);
            }
        }
    }
    seqs.sort_unstable();
    seqs.dedup();
    // Fewer than a page across every stream: no stream's query was cut short by the limit.
    let complete = seqs.len() < limit;
    seqs.truncate(limit);
    let mut events = Vec::with_capacity(seqs.len());
    {
        let mut event = tx
            .prepare_cached("SELECT streams, kind, data, time_ms FROM events WHERE seq = ?1")
            .map_err(&failed)?;
        for seq in seqs {
            let row = event
                .query_row([seq], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })
                .map_err(&failed)?;
            let (streams, kind, data, time_ms) = row;
            let data = RawValue::from_string(data).map_err(|err| {
                StorageError::unavailable(format!("event {seq} holds invalid JSON: {err}"))
            })?;
            let seq = to_seq(seq);
            events.push(Arc::new(StoredEvent {
                seq,
                id: super::decimal_id(seq),
                streams: streams.split('\n').filter_map(StreamKey::decode).collect(),
                kind,
                data,
                time: UNIX_EPOCH + Duration::from_millis(u64::try_from(time_ms).unwrap_or(0)),
            }));
        }
    }
    Ok(Replay::Events { events, complete })
}

/// Forgets expired clients and their streams and applies the age limit, in one transaction,
/// recording in `trims` the newest position removed from each stream. The count limit is
/// [`retain_by_count`]'s.
fn retain_by_age(
    writer: &mut Connection,
    cutoff: SystemTime,
    oldest_kept: SystemTime,
) -> Result<(), StorageError> {
    let failed = storage_error("cannot apply retention");
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&failed)?;
    // Expired clients: a trim record for their stream (so no replay can skip its events
    // silently), their events that no other stream holds, their stream and their entry.
    let expired = "SELECT 'c:' || client_id FROM clients WHERE last_seen_ms < ?1";
    tx.execute(
        &format!(
            "INSERT INTO trims (stream, trimmed_through)
                 SELECT stream, max(seq) FROM event_streams WHERE stream IN ({expired}) GROUP BY stream
             ON CONFLICT (stream) DO UPDATE SET trimmed_through = max(trimmed_through, excluded.trimmed_through)"
        ),
        [millis(cutoff)],
    )
    .map_err(&failed)?;
    tx.execute(
        &format!(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM event_streams WHERE stream IN ({expired}))
                 AND NOT EXISTS (SELECT 1 FROM event_streams others
                                 WHERE others.seq = events.seq AND others.stream NOT IN ({expired}))"
        ),
        [millis(cutoff)],
    )
    .map_err(&failed)?;
    tx.execute(
        &format!("DELETE FROM event_streams WHERE stream IN ({expired})"),
        [millis(cutoff)],
    )
    .map_err(&failed)?;
    tx.execute(
        "DELETE FROM clients WHERE last_seen_ms < ?1",
        [millis(cutoff)],
    )
    .map_err(&failed)?;

    // Age: everything up to the newest event older than the limit, in every stream.
    let too_old: Option<i64> = tx
        .query_row(
            "SELECT max(seq) FROM events WHERE time_ms < ?1",
            [millis(oldest_kept)],
            |row| row.get(0),
        )
        .map_err(&failed)?;
    if let Some(through) = too_old {
        tx.execute(
            "INSERT INTO trims (stream, trimmed_through)
                 SELECT stream, max(seq) FROM event_streams WHERE seq <= ?1 GROUP BY stream
             ON CONFLICT (stream) DO UPDATE SET trimmed_through = max(trimmed_through, excluded.trimmed_through)",
            [through],
        )
        .map_err(&failed)?;
        tx.execute("DELETE FROM event_streams WHERE seq <= ?1", [through])
            .map_err(&failed)?;
        tx.execute("DELETE FROM events WHERE seq <= ?1", [through])
            .map_err(&failed)?;
    }

    tx.commit().map_err(&failed)
}

/// Applies the count limit to `streams` (appended to since the last pass: only they can have
/// grown past it) in one transaction.
fn retain_by_count(
    inner: &Inner,
    writer: &mut Connection,
    streams: &[String],
) -> Result<(), StorageError> {
    let failed = storage_error("cannot apply retention");
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&failed)?;
    let max_events = i64::try_from(inner.settings.max_events_per_stream).unwrap_or(i64::MAX);
    for stream in streams {
        let through: Option<i64> = tx
            .query_row(
                "SELECT seq FROM event_streams WHERE stream = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                params![stream, max_events],
                |row| row.get(0),
            )
            .optional()
            .map_err(&failed)?;
        let Some(through) = through else { continue };
        let previous: i64 = tx
            .query_row(
                "SELECT trimmed_through FROM trims WHERE stream = ?1",
                [stream],
                |row| row.get(0),
            )
            .optional()
            .map_err(&failed)?
            .unwrap_or(0);
        tx.execute(
            "INSERT INTO trims (stream, trimmed_through) VALUES (?1, ?2)
             ON CONFLICT (stream) DO UPDATE SET trimmed_through = max(trimmed_through, excluded.trimmed_through)",
            params![stream, through],
        )
        .map_err(&failed)?;
        tx.execute(
            "DELETE FROM event_streams WHERE stream = ?1 AND seq <= ?2",
            params![stream, through],
        )
        .map_err(&failed)?;
        // Events of this range that no other stream still holds.
        tx.execute(
            "DELETE FROM events WHERE seq > ?1 AND seq <= ?2
                 AND NOT EXISTS (SELECT 1 FROM event_streams WHERE event_streams.seq = events.seq)",
            params![previous, through],
        )
        .map_err(&failed)?;
    }
    tx.commit().map_err(&failed)
}

/// Records every client id waiting in `pending` in one transaction and answers each waiter, so
/// concurrent connects share one commit instead of queueing for one each.
///
/// The commit does not wait for the disk (`synchronous = NORMAL` for this transaction only): the
/// ids are in the write-ahead log as soon as it returns, so they survive Herald stopping or being
/// killed, and the next event commit (`FULL`) syncs them with it. Only an operating-system crash
/// or power loss in between can forget ids issued since the last sync. Waiting for the disk here
/// would cost every new connection an fsync.
fn commit_pending_clients(inner: &Inner, writer: &mut Connection) {
    let waiting = std::mem::take(&mut *lock(&inner.pending_clients));
    if waiting.is_empty() {
        return;
    }
    let failed = storage_error("cannot register clients");
    inner.sync_relaxed.store(true, Ordering::Release);
    let committed = writer
        .pragma_update(None, "synchronous", "NORMAL")
        .map_err(&failed)
        .and_then(|()| insert_clients(writer, &waiting, &failed));
    // Whatever happened, the next commit waits for the disk again; if that cannot be set now,
    // the next write sets it before anything else, or fails.
    let result = committed.and(restore_full_sync(inner, writer).map_err(&failed));
    for (_, reply) in waiting {
        // The connect may have been abandoned; the id is recorded either way.
        let _ = reply.send(result.clone());
    }
}

/// Puts the writer back in `synchronous = FULL`.
fn restore_full_sync(inner: &Inner, writer: &Connection) -> rusqlite::Result<()> {
    writer.pragma_update(None, "synchronous", "FULL")?;
    inner.sync_relaxed.store(false, Ordering::Release);
    Ok(())
}

fn insert_clients(
    writer: &mut Connection,
    waiting: &[PendingClient],
    failed: &impl Fn(rusqlite::Error) -> StorageError,
) -> Result<(), StorageError> {
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(failed)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO clients (client_id, last_seen_ms) VALUES (?1, ?2)
                 ON CONFLICT (client_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
            )
            .map_err(failed)?;
        let now = now_ms();
        for (client, _) in waiting {
            insert.execute(params![client, now]).map_err(failed)?;
        }
    }
    tx.commit().map_err(failed)
}

impl Storage for SqliteStorage {
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<Arc<StoredEvent>>, StorageError>> {
        self.write(move |inner, writer| append_batch(inner, writer, events))
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
        self.read(move |inner, reader| read_page(inner, reader, &keys, after, limit))
    }

    fn register_client<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let (reply, answer) = oneshot::channel();
        lock(&self.inner.pending_clients).push((client.to_string(), reply));
        // One commit task at a time records every id waiting when it takes them, in one
        // transaction: a storm of new connections costs a few commits, not a thread each.
        if !self
            .inner
            .clients_flush_scheduled
            .swap(true, Ordering::AcqRel)
        {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                // Connections already waiting to run add their ids first, so a burst of
                // connects shares a few large commits rather than many small ones.
                tokio::task::yield_now().await;
                tokio::task::spawn_blocking(move || {
                    let mut writer = lock(&inner.writer);
                    // Cleared before taking the ids: one registered after the take sees it
                    // clear and schedules the next commit.
                    inner
                        .clients_flush_scheduled
                        .store(false, Ordering::Release);
                    commit_pending_clients(&inner, &mut writer);
                });
            });
        }
        Box::pin(async move {
            answer
                .await
                .map_err(|_| StorageError::unavailable("the client registration was abandoned"))?
        })
    }

    fn client_exists<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        let client = client.to_string();
        self.read(move |_, reader| {
            reader
                .query_row(
                    "SELECT 1 FROM clients WHERE client_id = ?1",
                    [client],
                    |_| Ok(()),
                )
                .optional()
                .map(|found| found.is_some())
                .map_err(storage_error("cannot look up a client"))
        })
    }

    fn touch_clients<'a>(
        &'a self,
        clients: &'a [ClientId],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let clients: Vec<String> = clients.iter().map(ToString::to_string).collect();
        self.write(move |_, writer| {
            let failed = storage_error("cannot record client activity");
            let tx = writer.transaction().map_err(&failed)?;
            {
                // An upsert: a live client stays known even if expiry raced its connection.
                let mut touch = tx
                    .prepare_cached(
                        "INSERT INTO clients (client_id, last_seen_ms) VALUES (?1, ?2)
                         ON CONFLICT (client_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                    )
                    .map_err(&failed)?;
                let now = now_ms();
                for client in &clients {
                    touch.execute(params![client, now]).map_err(&failed)?;
                }
            }
            tx.commit().map_err(&failed)
        })
    }

    fn expire(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            self.write(move |_, writer| retain_by_age(writer, cutoff, oldest_kept))
                .await?;
            // A slice of the streams per transaction, so publishes commit in between rather
            // than wait for every active stream to be counted.
            let touched: Vec<String> = std::mem::take(&mut *lock(&self.inner.touched))
                .into_iter()
                .collect();
            let mut slices = touched.chunks(RETENTION_STREAMS_PER_COMMIT);
            while let Some(slice) = slices.next() {
                let streams = slice.to_vec();
                let counted = self
                    .write(move |inner, writer| retain_by_count(inner, writer, &streams))
                    .await;
                if let Err(err) = counted {
                    // Check these streams again next time.
                    let left = slice.iter().chain(slices.flatten()).cloned();
                    lock(&self.inner.touched).extend(left);
                    return Err(err);
                }
            }
            Ok(())
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::to_raw_value;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!(
            "herald-sqlite-{}-{}",
            std::process::id(),
            crate::ids::random_u32()
        ))
    }

    fn settings() -> SqliteSettings {
        SqliteSettings {
            max_events_per_stream: 3,
            max_bytes: None,
        }
    }

    fn event(topic: &str, n: u32) -> NewEvent {
        NewEvent {
            streams: vec![StreamKey::Topic(Arc::from(topic))],
            kind: "message".into(),
            data: to_raw_value(&n).unwrap(),
            time: SystemTime::now(),
        }
    }

    fn topic(name: &str) -> Vec<String> {
        vec![StreamKey::Topic(Arc::from(name)).encode()]
    }

    fn seqs(replay: Replay) -> Vec<Seq> {
        match replay {
            Replay::Events { events, .. } => events.iter().map(|event| event.seq).collect(),
            Replay::Expired => panic!("expected events"),
        }
    }

    #[tokio::test]
    async fn the_inbox_survives_reopening_and_keeps_the_newest() {
        let dir = temp_dir();
        let item = |title: &str| NewInboxItem {
            title: title.into(),
            body: String::new(),
            url: None,
            kind: None,
            created_at: SystemTime::now(),
        };
        let storage = SqliteStorage::open(&dir, settings()).unwrap();
        let mut ids = Vec::new();
        for n in 0..4 {
            let stored = storage
                .add_notification("alice", item(&format!("n{n}")), 3)
                .await
                .unwrap();
            ids.push(stored.id);
        }
        storage
            .mark_read("alice", ReadTarget::One(ids[3]))
            .await
            .unwrap();
        drop(storage);
        let storage = SqliteStorage::open(&dir, settings()).unwrap();
        let query = InboxQuery {
            unread_only: false,
            limit: 10,
            before: None,
        };
        let page = storage.notifications("alice", query).await.unwrap();
        let titles: Vec<&str> = page.items.iter().map(|item| item.title.as_str()).collect();
        assert_eq!(
            titles,
            ["n3", "n2", "n1"],
            "the oldest went past the limit of 3"
        );
        assert!(page.items[0].read);
        assert_eq!(page.unread_count, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ids_continue_across_reopening_and_start_above_the_creation_floor() {
        let dir = temp_dir();
        let storage = SqliteStorage::open(&dir, settings()).unwrap();
        let floor = storage.inner.floor;
        let first = {
            let mut writer = lock(&storage.inner.writer);
            append_batch(
                &storage.inner,
                &mut writer,
                vec![event("a", 1), event("a", 2)],
            )
            .unwrap()
        };
        assert_eq!(
            first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [floor + 1, floor + 2]
        );
        drop(storage);

        let reopened = SqliteStorage::open(&dir, settings()).unwrap();
        assert_eq!(reopened.inner.latest.load(Ordering::Acquire), floor + 2);
        let mut reader = lock(&reopened.inner.readers).pop().unwrap();
        let replay = read_page(&reopened.inner, &mut reader, &topic("a"), floor, 10).unwrap();
        assert_eq!(seqs(replay), [floor + 1, floor + 2]);
        let later = {
            let mut writer = lock(&reopened.inner.writer);
            append_batch(&reopened.inner, &mut writer, vec![event("a", 3)]).unwrap()
        };
        assert_eq!(later[0].seq, floor + 3, "ids are never reused");
        assert!(matches!(
            read_page(&reopened.inner, &mut reader, &topic("a"), floor - 1, 10).unwrap(),
            Replay::Expired
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn client_commits_leave_every_other_commit_durable() {
        let dir = temp_dir();
        let storage = SqliteStorage::open(&dir, settings()).unwrap();
        let synchronous = |storage: &SqliteStorage| -> i64 {
            lock(&storage.inner.writer)
                .query_row("PRAGMA synchronous", [], |row| row.get(0))
                .unwrap()
        };
        storage
            .register_client(&ClientId::generate())
            .await
            .unwrap();
        assert_eq!(synchronous(&storage), 2, "FULL after a client commit");
        // As if restoring FULL had failed after a client commit: the next write restores it
        // before it commits.
        lock(&storage.inner.writer)
            .pragma_update(None, "synchronous", "NORMAL")
            .unwrap();
        storage.inner.sync_relaxed.store(true, Ordering::Release);
        storage.append(vec![event("a", 1)]).await.unwrap();
        assert_eq!(synchronous(&storage), 2, "FULL before the event commit");
        assert!(!storage.inner.sync_relaxed.load(Ordering::Acquire));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_page_says_whether_it_holds_all_of_the_history_after_the_position() {
        let dir = temp_dir();
        let storage = SqliteStorage::open(&dir, settings()).unwrap();
        let floor = storage.inner.floor;
        let events = (1..=4).map(|n| event(if n % 2 == 0 { "a" } else { "b" }, n));
        append_batch(
            &storage.inner,
            &mut lock(&storage.inner.writer),
            events.collect(),
        )
        .unwrap();
        let mut reader = lock(&storage.inner.readers).pop().unwrap();
        let mut page = |keys: &[String], limit| match read_page(
            &storage.inner,
            &mut reader,
            keys,
            floor,
            limit,
        )
        .unwrap()
        {
            Replay::Events { events, complete } => (
                events.iter().map(|e| e.seq - floor).collect::<Vec<_>>(),
                complete,
            ),
            Replay::Expired => panic!("expected events"),
        };
        let both = [topic("a"), topic("b")].concat();
        assert_eq!(page(&both, 5), (vec![1, 2, 3, 4], true));
        assert_eq!(
            page(&both, 4),
            (vec![1, 2, 3, 4], false),
            "a full page may have more"
        );
        assert_eq!(page(&both, 3), (vec![1, 2, 3], false));
        // One stream alone filling the page is not complete, even with the other short.
        assert_eq!(page(&both, 2), (vec![1, 2], false));
        assert_eq!(page(&topic("a"), 3), (vec![2, 4], true));
        drop(reader);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn count_events(storage: &SqliteStorage) -> i64 {
        lock(&storage.inner.writer)
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn retention_trims_by_count_and_age_and_remembers_where() {
        let dir = temp_dir();
        let storage = SqliteStorage::open(&dir, settings()).unwrap();
        let floor = storage.inner.floor;
        let events: Vec<NewEvent> = (1..=5)
            .map(|n| event("a", n))
            .chain([event("b", 6)])
            .collect();
        storage.append(events).await.unwrap();
        let long_ago = SystemTime::UNIX_EPOCH;
        storage.expire(long_ago, long_ago).await.unwrap();
        let mut reader = lock(&storage.inner.readers).pop().unwrap();
        assert!(matches!(
            read_page(&storage.inner, &mut reader, &topic("a"), floor, 10).unwrap(),
            Replay::Expired
        ));
        assert_eq!(
            seqs(read_page(&storage.inner, &mut reader, &topic("a"), floor + 2, 10).unwrap()),
            [floor + 3, floor + 4, floor + 5]
        );
        assert_eq!(
            seqs(read_page(&storage.inner, &mut reader, &topic("b"), floor, 10).unwrap()),
            [floor + 6]
        );

        let future = SystemTime::now() + Duration::from_secs(60);
        storage.expire(long_ago, future).await.unwrap();
        assert!(matches!(
            read_page(&storage.inner, &mut reader, &topic("b"), floor, 10).unwrap(),
            Replay::Expired
        ));
        assert_eq!(
            count_events(&storage),
            0,
            "events no stream refers to are deleted"
        );
        drop(reader);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn retention_counts_more_streams_than_one_commit_holds() {
        let dir = temp_dir();
        let storage = SqliteStorage::open(&dir, settings()).unwrap();
        let streams = RETENTION_STREAMS_PER_COMMIT * 2 + 7;
        let events: Vec<NewEvent> = (0..streams)
            .flat_map(|stream| (0..5).map(move |n| event(&format!("t{stream}"), n)))
            .collect();
        storage.append(events).await.unwrap();
        let long_ago = SystemTime::UNIX_EPOCH;
        storage.expire(long_ago, long_ago).await.unwrap();
        assert_eq!(
            count_events(&storage),
            i64::try_from(streams * 3).unwrap(),
            "every stream keeps its newest 3"
        );
        assert!(lock(&storage.inner.touched).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_expired_clients_stream_cannot_be_replayed_silently() {
        let dir = temp_dir();
        let storage = SqliteStorage::open(&dir, settings()).unwrap();
        let floor = storage.inner.floor;
        let client = ClientId::generate();
        lock(&storage.inner.writer)
            .execute(
                "INSERT INTO clients (client_id, last_seen_ms) VALUES (?1, 0)",
                [client.to_string()],
            )
            .unwrap();
        let direct = NewEvent {
            streams: vec![StreamKey::Client(client.clone())],
            ..event("unused", 1)
        };
        storage.append(vec![direct]).await.unwrap();
        storage
            .expire(SystemTime::now(), SystemTime::UNIX_EPOCH)
            .await
            .unwrap();
        let mut reader = lock(&storage.inner.readers).pop().unwrap();
        let keys = vec![StreamKey::Client(client).encode()];
        assert!(matches!(
            read_page(&storage.inner, &mut reader, &keys, floor, 10).unwrap(),
            Replay::Expired
        ));
        assert_eq!(count_events(&storage), 0);
        drop(reader);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_database_from_a_newer_herald_is_refused() {
        let dir = temp_dir();
        drop(SqliteStorage::open(&dir, settings()).unwrap());
        let connection = Connection::open(dir.join(DATABASE_FILE)).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let err = SqliteStorage::open(&dir, settings()).unwrap_err();
        assert!(err.message.contains("schema version 99"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
