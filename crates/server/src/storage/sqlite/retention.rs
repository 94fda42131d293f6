//! Retention: history trimmed by count and by age, and expired clients forgotten with their
//! streams. Every stream records the newest position removed from it (`trims`), so a replay
//! from before it is refused rather than silently short. A stream left with no events is
//! forgotten, its record with it: its position folds into one floor (`meta.forgotten`) below
//! which a stream without history cannot be replayed, and a stream appended to again starts
//! from that floor (see `log.rs`). Records of expired clients go with them: an unknown client is
//! never replayed.

use std::collections::HashSet;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};

use std::sync::atomic::Ordering;

use super::{
    Inner, SqliteSettings, SqliteStorage, StorageError, lock, millis, storage_error, to_seq, to_sql,
};

/// Streams whose count limit one retention transaction applies. A pass over many active
/// streams (each client stream of a busy unicast) otherwise held the writer for tens of
/// milliseconds, and every publish waited behind it.
pub(super) const RETENTION_STREAMS_PER_COMMIT: usize = 64;

impl SqliteStorage {
    /// Forgets clients not seen since `cutoff` and history older than `oldest_kept`, then
    /// applies the count limit to the streams appended to since the last pass.
    pub(super) async fn retain(
        &self,
        cutoff: SystemTime,
        oldest_kept: SystemTime,
    ) -> Result<(), StorageError> {
        self.write(move |inner, writer| retain_by_age(inner, writer, cutoff, oldest_kept))
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
    }
}

/// Streams holding more events than the limit, so retention trims them even if nothing is
/// appended to them again (after a restart, or when the limit was lowered).
pub(super) fn over_limit(
    writer: &Connection,
    settings: &SqliteSettings,
) -> rusqlite::Result<HashSet<String>> {
    let max_events = i64::try_from(settings.max_events_per_stream).unwrap_or(i64::MAX);
    let mut statement =
        writer.prepare("SELECT stream FROM event_streams GROUP BY stream HAVING count(*) > ?1")?;
    let rows = statement.query_map([max_events], |row| row.get(0))?;
    rows.collect()
}

/// Forgets expired clients and their streams and applies the age limit, in one transaction,
/// recording in `trims` the newest position removed from each stream and forgetting the streams
/// left empty. The count limit is [`retain_by_count`]'s.
fn retain_by_age(
    inner: &Inner,
    writer: &mut Connection,
    cutoff: SystemTime,
    oldest_kept: SystemTime,
) -> Result<(), StorageError> {
    let failed = storage_error("cannot apply retention");
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&failed)?;
    // Expired clients: their events that no other stream holds, their stream, its trim record
    // and their entry. Their streams are forgotten: the newest position they held raises the
    // floor of forgotten streams.
    let expired = "SELECT 'c:' || client_id FROM clients WHERE last_seen_ms < ?1";
    let newest: Option<i64> = tx
        .query_row(
            &format!(
                "SELECT max(position) FROM (
                     SELECT max(seq) AS position FROM event_streams WHERE stream IN ({expired})
                     UNION ALL
                     SELECT max(trimmed_through) FROM trims WHERE stream IN ({expired}))"
            ),
            [millis(cutoff)],
            |row| row.get(0),
        )
        .map_err(&failed)?;
    let mut floor = newest.map(to_seq);
    for statement in [
        format!(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM event_streams WHERE stream IN ({expired}))
                 AND NOT EXISTS (SELECT 1 FROM event_streams others
                                 WHERE others.seq = events.seq AND others.stream NOT IN ({expired}))"
        ),
        format!("DELETE FROM event_streams WHERE stream IN ({expired})"),
        format!("DELETE FROM trims WHERE stream IN ({expired})"),
    ] {
        tx.execute(&statement, [millis(cutoff)]).map_err(&failed)?;
    }
    let expired_clients = tx
        .execute(
            "DELETE FROM clients WHERE last_seen_ms < ?1",
            [millis(cutoff)],
        )
        .map_err(&failed)? as u64;

    // Age: everything up to the newest event older than the limit, in every stream.
    let too_old: Option<i64> = tx
        .query_row(
            "SELECT max(seq) FROM events WHERE time_ms < ?1",
            [millis(oldest_kept)],
            |row| row.get(0),
        )
        .map_err(&failed)?;
    if let Some(through) = too_old {
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS aged (stream TEXT PRIMARY KEY) WITHOUT ROWID;
             DELETE FROM aged;",
        )
        .map_err(&failed)?;
        for statement in [
            "INSERT INTO aged SELECT DISTINCT stream FROM event_streams WHERE seq <= ?1",
            "INSERT INTO trims (stream, trimmed_through)
                 SELECT stream, max(seq) FROM event_streams WHERE seq <= ?1 GROUP BY stream
             ON CONFLICT (stream) DO UPDATE SET trimmed_through = max(trimmed_through, excluded.trimmed_through)",
            "DELETE FROM event_streams WHERE seq <= ?1",
            "DELETE FROM events WHERE seq <= ?1",
        ] {
            tx.execute(statement, [through]).map_err(&failed)?;
        }
        floor = floor.max(forget_empty_streams(&tx).map_err(&failed)?);
    }
    let floor = floor.filter(|floor| *floor > inner.forgotten.load(Ordering::Acquire));
    if let Some(floor) = floor {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('forgotten', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [to_sql(floor).to_string()],
        )
        .map_err(&failed)?;
    }
    tx.commit().map_err(&failed)?;
    inner
        .client_count
        .fetch_sub(expired_clients, Ordering::AcqRel);
    if let Some(floor) = floor {
        inner.forgotten.store(floor, Ordering::Release);
    }
    Ok(())
}

/// Forgets the streams the age limit left without events (listed in `aged`): their trim
/// records go. Returns the newest position among them, to raise the floor below which a stream
/// without history cannot be replayed.
fn forget_empty_streams(tx: &Connection) -> rusqlite::Result<Option<u64>> {
    let empty = "stream IN (SELECT stream FROM aged)
                 AND NOT EXISTS (SELECT 1 FROM event_streams WHERE event_streams.stream = trims.stream)";
    let newest: Option<i64> = tx.query_row(
        &format!("SELECT max(trimmed_through) FROM trims WHERE {empty}"),
        [],
        |row| row.get(0),
    )?;
    tx.execute(&format!("DELETE FROM trims WHERE {empty}"), [])?;
    Ok(newest.map(to_seq))
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
