//! The event log: appending a batch in one transaction, and reading a page of the history of
//! some streams after a position.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;

use super::{
    Inner, NewEvent, Replay, Seq, StorageError, StoredEvent, StreamKey, from_millis, lock, millis,
    storage_error, to_seq, to_sql,
};

pub(super) fn append_batch(
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
    start_fresh_streams(inner, &tx, &events).map_err(&failed)?;
    {
        let mut insert_event = tx
            .prepare_cached(
                "INSERT INTO events (streams, kind, data, time_ms, mercure, mercure_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(&failed)?;
        let mut insert_stream = tx
            .prepare_cached("INSERT INTO event_streams (stream, seq) VALUES (?1, ?2)")
            .map_err(&failed)?;
        for event in events {
            let keys: Vec<String> = event.streams.iter().map(StreamKey::encode).collect();
            let mercure = event.mercure.as_deref();
            insert_event
                .execute(params![
                    keys.join("\n"),
                    event.kind,
                    event.data.get(),
                    millis(event.time),
                    mercure.map(crate::storage::MercureFields::encode),
                    mercure.map(|fields| fields.id.as_str()),
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

/// Gives each stream of `events` that has no history (new, or forgotten by retention) a trim
/// record at the floor of forgotten streams, so that no replay from before that floor passes
/// over what the stream lost. Streams appended to since the last retention pass have history
/// and are not looked up.
fn start_fresh_streams(
    inner: &Inner,
    tx: &Connection,
    events: &[NewEvent],
) -> rusqlite::Result<()> {
    let forgotten = inner.forgotten.load(Ordering::Acquire);
    if forgotten == 0 {
        return Ok(());
    }
    let candidates: HashSet<String> = {
        let touched = lock(&inner.touched);
        events
            .iter()
            .flat_map(|event| &event.streams)
            .map(StreamKey::encode)
            .filter(|key| !touched.contains(key))
            .collect()
    };
    let mut start = tx.prepare_cached(
        "INSERT INTO trims (stream, trimmed_through)
             SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM event_streams WHERE stream = ?1)
         ON CONFLICT (stream) DO NOTHING",
    )?;
    for key in candidates {
        start.execute(params![key, to_sql(forgotten)])?;
    }
    Ok(())
}

pub(super) fn read_page(
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
        let mut forgotten = None;
        for key in keys {
            let through: Option<i64> = trimmed
                .query_row([key], |row| row.get(0))
                .optional()
                .map_err(&failed)?;
            let lost = match through {
                Some(through) => to_seq(through) > after,
                // No record: a stream with history never lost any; one without may have been
                // forgotten, and cannot be replayed from before the floor of those.
                None => {
                    let floor = match forgotten {
                        Some(floor) => floor,
                        None => *forgotten.insert(forgotten_floor(&tx).map_err(&failed)?),
                    };
                    floor > after && !has_history(&tx, key).map_err(&failed)?
                }
            };
            if lost {
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
            .prepare_cached(
                "SELECT streams, kind, data, time_ms, mercure FROM events WHERE seq = ?1",
            )
            .map_err(&failed)?;
        for seq in seqs {
            let row = event
                .query_row([seq], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(&failed)?;
            let (streams, kind, data, time_ms, mercure) = row;
            let data = RawValue::from_string(data).map_err(|err| {
                StorageError::unavailable(format!("event {seq} holds invalid JSON: {err}"))
            })?;
            let seq = to_seq(seq);
            events.push(Arc::new(StoredEvent {
                seq,
                id: crate::storage::decimal_id(seq),
                streams: streams.split('\n').filter_map(StreamKey::decode).collect(),
                kind,
                data,
                time: from_millis(time_ms),
                mercure: mercure
                    .as_deref()
                    .and_then(crate::storage::MercureFields::decode)
                    .map(Box::new),
            }));
        }
    }
    Ok(Replay::Events { events, complete })
}

/// The floor of forgotten streams, as of the reader's snapshot.
fn forgotten_floor(tx: &Connection) -> rusqlite::Result<Seq> {
    let value: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'forgotten'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(value.and_then(|value| value.parse().ok()).unwrap_or(0))
}

/// Whether the stream holds any event.
fn has_history(tx: &Connection, key: &str) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT 1 FROM event_streams WHERE stream = ?1 LIMIT 1",
        [key],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

/// The position of the newest event with the Mercure id `id`.
pub(super) fn find_mercure_id(reader: &Connection, id: &str) -> Result<Option<Seq>, StorageError> {
    reader
        .query_row(
            "SELECT MAX(seq) FROM events WHERE mercure_id = ?1",
            [id],
            |row| row.get::<_, Option<i64>>(0),
        )
        .map(|seq| seq.map(to_seq))
        .map_err(storage_error("cannot look up an event id"))
}

/// The streams of topics, public and private, that hold history.
pub(super) fn topic_streams(reader: &Connection) -> Result<Vec<StreamKey>, StorageError> {
    let failed = storage_error("cannot list the streams");
    let mut query = reader
        .prepare_cached(
            "SELECT DISTINCT stream FROM event_streams
             WHERE (stream >= 't:' AND stream < 't;') OR (stream >= 'p:' AND stream < 'p;')",
        )
        .map_err(&failed)?;
    let rows = query
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(&failed)?;
    let mut streams = Vec::new();
    for key in rows {
        if let Some(stream) = StreamKey::decode(&key.map_err(&failed)?) {
            streams.push(stream);
        }
    }
    Ok(streams)
}

/// The position a replay of `keys` may start from without being refused; see
/// [`crate::storage::Storage::earliest`].
pub(super) fn earliest(
    inner: &Inner,
    reader: &mut Connection,
    keys: &[String],
) -> Result<Seq, StorageError> {
    let failed = storage_error("cannot read history");
    let tx = reader.transaction().map_err(&failed)?;
    let forgotten = forgotten_floor(&tx).map_err(&failed)?;
    if keys.is_empty() {
        return Ok(forgotten.max(inner.floor));
    }
    let mut trimmed = tx
        .prepare_cached("SELECT trimmed_through FROM trims WHERE stream = ?1")
        .map_err(&failed)?;
    let mut earliest = inner.floor;
    for key in keys {
        let through: Option<i64> = trimmed
            .query_row([key], |row| row.get(0))
            .optional()
            .map_err(&failed)?;
        let lost = match through {
            Some(through) => to_seq(through),
            None if has_history(&tx, key).map_err(&failed)? => 0,
            None => forgotten,
        };
        earliest = earliest.max(lost);
    }
    Ok(earliest)
}
