//! The database's schema and how its connections are set up: the tables, their migrations
//! from older versions, and the writer's durability settings.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::{Inner, Seq, SqliteSettings, inbox, streams};

/// The schema this code reads and writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 4;

/// The writer's page cache, in KiB (SQLite's default is 2 MiB per connection). Appends touch
/// the last pages of the log and its indexes (client ids lead with their issue time, so new
/// ones append too), which stay cached; a larger cache would only keep older pages of the
/// client table resident, growing the process by the size of that table until it is full.
const WRITER_CACHE_KIB: i64 = 256;

pub(super) fn configure_writer(
    writer: &Connection,
    settings: &SqliteSettings,
) -> rusqlite::Result<()> {
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

/// Puts the writer back in `synchronous = FULL`.
pub(super) fn restore_full_sync(inner: &Inner, writer: &Connection) -> rusqlite::Result<()> {
    writer.pragma_update(None, "synchronous", "FULL")?;
    inner.sync_relaxed.store(false, Ordering::Release);
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
    if version < 3 {
        // What updates published through the Mercure hub keep, and their ids to resume from.
        writer
            .execute_batch(
                "ALTER TABLE events ADD COLUMN mercure TEXT;
                 ALTER TABLE events ADD COLUMN mercure_id TEXT;
                 CREATE INDEX events_by_mercure_id ON events (mercure_id, seq)
                     WHERE mercure_id IS NOT NULL;
                 PRAGMA user_version = 3;",
            )
            .map_err(|e| format!("cannot add the Mercure fields: {e}"))?;
    }
    if version < 4 {
        writer
            .execute_batch(&format!("{} PRAGMA user_version = 4;", streams::SCHEMA))
            .map_err(|e| format!("cannot add the response streams: {e}"))?;
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`]; returns the database's floor position.
pub(super) fn migrate(writer: &Connection) -> Result<Seq, String> {
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
