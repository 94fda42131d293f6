//! Response streams in the SQLite database: table `response_streams`, one row per stream, and
//! `response_chunks`, its chunks until it ends and they are compacted into the row.

use std::time::{Duration, SystemTime};

use herald_protocol::streams::{StreamKind, StreamStatus};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::value::RawValue;

use super::{SqliteStorage, from_millis, millis, storage_error};
use crate::storage::streams::{
    Appended, Chunk, Created, Ended, NewChunk, NewResponseStream, ResponseStream, StreamLimits,
    StreamStore, compact, within,
};
use crate::storage::{BoxFuture, StorageError};

/// The schema of version 4.
pub(super) const SCHEMA: &str = "
    CREATE TABLE response_streams (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        owner TEXT NOT NULL,
        user_id TEXT,
        private INTEGER NOT NULL,
        ttl_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        touched_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        ended_ms INTEGER,
        chunks INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        last INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        compacted TEXT
    ) WITHOUT ROWID;
    CREATE INDEX response_streams_open ON response_streams (owner) WHERE status = 'open';
    CREATE INDEX response_streams_expiry ON response_streams (coalesce(ended_ms, touched_ms) + ttl_ms);
    CREATE TABLE response_chunks (
        stream TEXT NOT NULL,
        position INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (stream, position)
    ) WITHOUT ROWID;";

const COLUMNS: &str = "id, kind, owner, user_id, private, ttl_ms, created_ms, touched_ms, status, \
                       ended_ms, chunks, bytes, last, result, compacted";

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn raw(text: Option<String>) -> Option<Box<RawValue>> {
    text.and_then(|text| RawValue::from_string(text).ok())
}

fn record(row: &Row<'_>) -> rusqlite::Result<ResponseStream> {
    let kind: String = row.get(1)?;
    let status: String = row.get(8)?;
    Ok(ResponseStream {
        id: row.get(0)?,
        kind: StreamKind::from_name(&kind).unwrap_or_default(),
        owner: row.get(2)?,
        user: row.get(3)?,
        private: row.get(4)?,
        ttl: Duration::from_millis(count(row.get(5)?)),
        created_at: from_millis(row.get(6)?),
        touched_at: from_millis(row.get(7)?),
        status: StreamStatus::from_name(&status).unwrap_or(StreamStatus::Error),
        ended_at: row.get::<_, Option<i64>>(9)?.map(from_millis),
        chunks: count(row.get(10)?),
        bytes: count(row.get(11)?),
        last: count(row.get(12)?),
        result: raw(row.get(13)?),
        compacted: raw(row.get(14)?),
    })
}

fn find(connection: &Connection, id: &str) -> rusqlite::Result<Option<ResponseStream>> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM response_streams WHERE id = ?1"),
            [id],
            record,
        )
        .optional()
}

fn chunks_after(
    connection: &Connection,
    id: &str,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<Chunk>> {
    let mut statement = connection.prepare_cached(
        "SELECT position, data FROM response_chunks
         WHERE stream = ?1 AND position > ?2 ORDER BY position LIMIT ?3",
    )?;
    let rows = statement.query_map(
        params![id, sql(after), i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
    )?;
    let mut chunks = Vec::new();
    for row in rows {
        let (position, data) = row?;
        if let Ok(data) = RawValue::from_string(data) {
            chunks.push(Chunk {
                position: count(position),
                data,
            });
        }
    }
    Ok(chunks)
}

/// Compacts an open stream's chunks into its row and ends it.
fn finish(
    tx: &Connection,
    stream: &ResponseStream,
    status: StreamStatus,
    result: Option<&str>,
    now: SystemTime,
) -> rusqlite::Result<()> {
    let chunks = chunks_after(tx, &stream.id, 0, usize::MAX)?;
    let compacted = compact(stream.kind, &chunks);
    tx.execute(
        "UPDATE response_streams SET status = ?2, result = ?3, compacted = ?4, ended_ms = ?5
         WHERE id = ?1",
        params![
            stream.id,
            status.as_str(),
            result,
            compacted.get(),
            millis(now)
        ],
    )?;
    tx.execute(
        "DELETE FROM response_chunks WHERE stream = ?1",
        [&stream.id],
    )?;
    Ok(())
}

fn create(
    writer: &mut Connection,
    stream: &NewResponseStream,
    max_open: usize,
) -> rusqlite::Result<Created> {
    let tx = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let open: i64 = tx.query_row(
        "SELECT count(*) FROM response_streams WHERE owner = ?1 AND status = 'open'",
        [&stream.owner],
        |row| row.get(0),
    )?;
    if count(open) >= max_open as u64 {
        return Ok(Created::TooMany);
    }
    tx.execute(
        "INSERT INTO response_streams
             (id, kind, owner, user_id, private, ttl_ms, created_ms, touched_ms, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 'open')",
        params![
            stream.id,
            stream.kind.as_str(),
            stream.owner,
            stream.user,
            stream.private,
            i64::try_from(stream.ttl.as_millis()).unwrap_or(i64::MAX),
            millis(stream.created_at),
        ],
    )?;
    tx.commit()?;
    Ok(Created::Created)
}

fn append(
    writer: &mut Connection,
    id: &str,
    chunks: &[NewChunk],
    limits: StreamLimits,
    now: SystemTime,
) -> rusqlite::Result<Appended> {
    let tx = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let Some(stream) = find(&tx, id)? else {
        return Ok(Appended::NotFound);
    };
    if stream.status != StreamStatus::Open {
        return Ok(Appended::Ended(stream.status));
    }
    if !within(&stream, chunks, limits) {
        return Ok(Appended::TooLong);
    }
    let mut last = stream.last;
    let mut bytes = stream.bytes;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO response_chunks (stream, position, data) VALUES (?1, ?2, ?3)",
        )?;
        for chunk in chunks {
            last += chunk.advance;
            bytes += chunk.data.get().len() as u64;
            insert.execute(params![id, sql(last), chunk.data.get()])?;
        }
    }
    let total = stream.chunks + chunks.len() as u64;
    tx.execute(
        "UPDATE response_streams SET chunks = ?2, bytes = ?3, last = ?4, touched_ms = ?5
         WHERE id = ?1",
        params![id, sql(total), sql(bytes), sql(last), millis(now)],
    )?;
    tx.commit()?;
    Ok(Appended::Appended {
        last,
        chunks: total,
    })
}

fn end(
    writer: &mut Connection,
    id: &str,
    status: StreamStatus,
    result: Option<&str>,
    now: SystemTime,
) -> rusqlite::Result<Ended> {
    let tx = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let Some(stream) = find(&tx, id)? else {
        return Ok(Ended::NotFound);
    };
    if stream.status != StreamStatus::Open {
        return Ok(Ended::Already(stream.status));
    }
    finish(&tx, &stream, status, result, now)?;
    let ended = find(&tx, id)?;
    tx.commit()?;
    Ok(ended.map_or(Ended::NotFound, |stream| Ended::Ended(Box::new(stream))))
}

fn expire(writer: &mut Connection, now: SystemTime) -> rusqlite::Result<Vec<String>> {
    let tx = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let due: Vec<ResponseStream> = {
        let mut statement = tx.prepare(&format!(
            "SELECT {COLUMNS} FROM response_streams
             WHERE coalesce(ended_ms, touched_ms) + ttl_ms <= ?1"
        ))?;
        statement
            .query_map([millis(now)], record)?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut idle = Vec::new();
    for stream in due {
        if stream.status == StreamStatus::Open {
            // Abandoned while open: it ends as an error, and goes after another ttl.
            finish(
                &tx,
                &stream,
                StreamStatus::Error,
                Some(r#"{"reason":"idle"}"#),
                now,
            )?;
            idle.push(stream.id);
        } else {
            tx.execute("DELETE FROM response_streams WHERE id = ?1", [&stream.id])?;
        }
    }
    tx.commit()?;
    Ok(idle)
}

impl StreamStore for SqliteStorage {
    fn create_stream(
        &self,
        stream: NewResponseStream,
        max_open: usize,
    ) -> BoxFuture<'_, Result<Created, StorageError>> {
        self.write(move |_, writer| {
            create(writer, &stream, max_open).map_err(storage_error("cannot create a stream"))
        })
    }

    fn append_chunks<'a>(
        &'a self,
        id: &'a str,
        chunks: Vec<NewChunk>,
        limits: StreamLimits,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Appended, StorageError>> {
        let id = id.to_owned();
        self.write(move |_, writer| {
            append(writer, &id, &chunks, limits, now)
                .map_err(storage_error("cannot append to a stream"))
        })
    }

    fn end_stream<'a>(
        &'a self,
        id: &'a str,
        status: StreamStatus,
        result: Option<Box<RawValue>>,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Ended, StorageError>> {
        let id = id.to_owned();
        self.write(move |_, writer| {
            end(
                writer,
                &id,
                status,
                result.as_deref().map(RawValue::get),
                now,
            )
            .map_err(storage_error("cannot end a stream"))
        })
    }

    fn response_stream<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResponseStream>, StorageError>> {
        let id = id.to_owned();
        self.read(move |_, reader| find(reader, &id).map_err(storage_error("cannot read a stream")))
    }

    fn read_chunks<'a>(
        &'a self,
        id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Chunk>, StorageError>> {
        let id = id.to_owned();
        self.read(move |_, reader| {
            chunks_after(reader, &id, after, limit)
                .map_err(storage_error("cannot read a stream's chunks"))
        })
    }

    fn expire_streams(&self, now: SystemTime) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        self.write(move |_, writer| {
            expire(writer, now).map_err(storage_error("cannot expire streams"))
        })
    }
}
