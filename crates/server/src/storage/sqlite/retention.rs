//! Retention: history trimmed by count and by age, and expired clients forgotten with their
//! streams. Every stream records the newest position removed from it (`trims`), so a replay
//! from before it is refused rather than silently short.

use std::collections::HashSet;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Inner, SqliteSettings, SqliteStorage, StorageError, lock, millis, storage_error};

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
