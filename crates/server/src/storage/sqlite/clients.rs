//! The directory of issued client ids. New ids are recorded in commits shared by every
//! connection waiting at the time, without waiting for the disk.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{
    BoxFuture, ClientId, Inner, SqliteStorage, StorageError, lock, schema, storage_error, to_sql,
};
use crate::time;

/// A client id to record and the registration waiting for it.
pub(super) type PendingClient = (String, oneshot::Sender<Result<(), StorageError>>);

impl SqliteStorage {
    /// Records a newly issued client id; see [`commit_pending_clients`].
    pub(super) fn register(
        &self,
        client: &ClientId,
    ) -> BoxFuture<'static, Result<(), StorageError>> {
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

    /// Whether `client` was issued and has not expired.
    pub(super) fn exists(
        &self,
        client: &ClientId,
    ) -> BoxFuture<'static, Result<bool, StorageError>> {
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

    /// Marks `clients` as seen now.
    pub(super) fn touch(
        &self,
        clients: &[ClientId],
    ) -> BoxFuture<'static, Result<(), StorageError>> {
        let clients: Vec<String> = clients.iter().map(ToString::to_string).collect();
        self.write(move |inner, writer| {
            let failed = storage_error("cannot record client activity");
            let tx = writer.transaction().map_err(&failed)?;
            // A live client stays known even if expiry raced its connection.
            let added = record_seen(&tx, clients.iter().map(String::as_str)).map_err(&failed)?;
            tx.commit().map_err(&failed)?;
            inner.client_count.fetch_add(added, Ordering::AcqRel);
            Ok(())
        })
    }

    /// Forgets the clients seen longest ago, with their streams, until at most `keep` remain.
    pub(super) fn forget_oldest(&self, keep: u64) -> BoxFuture<'static, Result<u64, StorageError>> {
        self.write(move |inner, writer| {
            let excess = inner.client_count.load(Ordering::Acquire).saturating_sub(keep);
            if excess == 0 {
                return Ok(0);
            }
            let failed = storage_error("cannot forget clients");
            let tx = writer
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(&failed)?;
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS evicted (client_id TEXT PRIMARY KEY) WITHOUT ROWID;
                 DELETE FROM evicted;",
            )
            .map_err(&failed)?;
            tx.execute(
                "INSERT INTO evicted SELECT client_id FROM clients ORDER BY last_seen_ms LIMIT ?1",
                [to_sql(excess)],
            )
            .map_err(&failed)?;
            let streams = "SELECT 'c:' || client_id FROM evicted";
            for statement in [
                format!(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM event_streams WHERE stream IN ({streams}))
                         AND NOT EXISTS (SELECT 1 FROM event_streams others
                                         WHERE others.seq = events.seq AND others.stream NOT IN ({streams}))"
                ),
                format!("DELETE FROM event_streams WHERE stream IN ({streams})"),
                format!("DELETE FROM trims WHERE stream IN ({streams})"),
            ] {
                tx.execute(&statement, []).map_err(&failed)?;
            }
            let forgotten = tx
                .execute(
                    "DELETE FROM clients WHERE client_id IN (SELECT client_id FROM evicted)",
                    [],
                )
                .map_err(&failed)?;
            tx.commit().map_err(&failed)?;
            let forgotten = forgotten as u64;
            inner.client_count.fetch_sub(forgotten, Ordering::AcqRel);
            Ok(forgotten)
        })
    }
}

/// Marks `clients` as seen now, adding those the table lacks; returns how many it added.
fn record_seen<'a>(
    tx: &Connection,
    clients: impl Iterator<Item = &'a str>,
) -> rusqlite::Result<u64> {
    let mut update =
        tx.prepare_cached("UPDATE clients SET last_seen_ms = ?2 WHERE client_id = ?1")?;
    let mut insert =
        tx.prepare_cached("INSERT INTO clients (client_id, last_seen_ms) VALUES (?1, ?2)")?;
    let now = to_sql(time::now_ms());
    let mut added = 0;
    for client in clients {
        if update.execute(params![client, now])? == 0 {
            insert.execute(params![client, now])?;
            added += 1;
        }
    }
    Ok(added)
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
        .and_then(|()| insert_clients(writer, &waiting, &failed))
        .map(|added| {
            inner.client_count.fetch_add(added, Ordering::AcqRel);
        });
    // Whatever happened, the next commit waits for the disk again; if that cannot be set now,
    // the next write sets it before anything else, or fails.
    let result = committed.and(schema::restore_full_sync(inner, writer).map_err(&failed));
    for (_, reply) in waiting {
        // The connect may have been abandoned; the id is recorded either way.
        let _ = reply.send(result.clone());
    }
}

/// Records the waiting ids in one transaction; returns how many the table did not hold yet.
fn insert_clients(
    writer: &mut Connection,
    waiting: &[PendingClient],
    failed: &impl Fn(rusqlite::Error) -> StorageError,
) -> Result<u64, StorageError> {
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(failed)?;
    let added =
        record_seen(&tx, waiting.iter().map(|(client, _)| client.as_str())).map_err(failed)?;
    tx.commit().map_err(failed)?;
    Ok(added)
}
