//! The notification inbox in the SQLite database: table `notifications`, one row per item.

use rusqlite::{Connection, OptionalExtension, params};

use super::{from_millis, millis, storage_error, to_seq, to_sql};
use crate::storage::StorageError;
use crate::storage::inbox::{
    InboxItem, InboxPage, InboxQuery, NewInboxItem, ReadChange, ReadTarget,
};

/// The schema of version 2.
pub(super) const SCHEMA: &str = "
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        url TEXT,
        kind TEXT,
        created_ms INTEGER NOT NULL,
        read INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX notifications_by_user ON notifications (user_id, id);
    CREATE INDEX notifications_unread ON notifications (user_id, id) WHERE read = 0;";

pub(super) fn add(
    writer: &mut Connection,
    user: &str,
    item: NewInboxItem,
    keep: usize,
) -> Result<InboxItem, StorageError> {
    let failed = storage_error("cannot store a notification");
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&failed)?;
    tx.execute(
        "INSERT INTO notifications (user_id, title, body, url, kind, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user,
            item.title,
            item.body,
            item.url,
            item.kind,
            millis(item.created_at)
        ],
    )
    .map_err(&failed)?;
    let id = tx.last_insert_rowid();
    // Keep the newest `keep`: drop everything at or below the first one past them.
    tx.execute(
        "DELETE FROM notifications WHERE user_id = ?1 AND id <= (
             SELECT id FROM notifications WHERE user_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![user, i64::try_from(keep).unwrap_or(i64::MAX)],
    )
    .map_err(&failed)?;
    tx.commit().map_err(&failed)?;
    Ok(InboxItem {
        id: to_seq(id),
        title: item.title,
        body: item.body,
        url: item.url,
        kind: item.kind,
        created_at: item.created_at,
        read: false,
    })
}

pub(super) fn page(
    reader: &Connection,
    user: &str,
    query: InboxQuery,
) -> Result<InboxPage, StorageError> {
    let failed = storage_error("cannot read notifications");
    let before = query.before.map_or(i64::MAX, to_sql);
    // One more than asked tells whether an older page exists.
    let fetch = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
    let sql = if query.unread_only {
        "SELECT id, title, body, url, kind, created_ms, read FROM notifications
         WHERE user_id = ?1 AND id < ?2 AND read = 0 ORDER BY id DESC LIMIT ?3"
    } else {
        "SELECT id, title, body, url, kind, created_ms, read FROM notifications
         WHERE user_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
    };
    let mut statement = reader.prepare_cached(sql).map_err(&failed)?;
    let mut items = statement
        .query_map(params![user, before, fetch], |row| {
            Ok(InboxItem {
                id: to_seq(row.get(0)?),
                title: row.get(1)?,
                body: row.get(2)?,
                url: row.get(3)?,
                kind: row.get(4)?,
                created_at: from_millis(row.get(5)?),
                read: row.get::<_, i64>(6)? != 0,
            })
        })
        .map_err(&failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&failed)?;
    let next_before = if items.len() > query.limit {
        items.truncate(query.limit);
        items.last().map(|item| item.id)
    } else {
        None
    };
    Ok(InboxPage {
        items,
        unread_count: unread(reader, user).map_err(&failed)?,
        next_before,
    })
}

pub(super) fn mark_read(
    writer: &mut Connection,
    user: &str,
    target: ReadTarget,
) -> Result<Option<ReadChange>, StorageError> {
    let failed = storage_error("cannot mark notifications read");
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&failed)?;
    let ids: Vec<i64> = match target {
        ReadTarget::One(id) => {
            let read: Option<i64> = tx
                .query_row(
                    "SELECT read FROM notifications WHERE user_id = ?1 AND id = ?2",
                    params![user, to_sql(id)],
                    |row| row.get(0),
                )
                .optional()
                .map_err(&failed)?;
            match read {
                None => return Ok(None),
                Some(0) => vec![to_sql(id)],
                Some(_) => Vec::new(),
            }
        }
        ReadTarget::All => unread_ids(&tx, user).map_err(&failed)?,
    };
    {
        let mut update = tx
            .prepare_cached("UPDATE notifications SET read = 1 WHERE user_id = ?1 AND id = ?2")
            .map_err(&failed)?;
        for id in &ids {
            update.execute(params![user, id]).map_err(&failed)?;
        }
    }
    let unread_count = unread(&tx, user).map_err(&failed)?;
    tx.commit().map_err(&failed)?;
    Ok(Some(ReadChange {
        ids: ids.into_iter().map(to_seq).collect(),
        unread_count,
    }))
}

fn unread_ids(connection: &Connection, user: &str) -> rusqlite::Result<Vec<i64>> {
    let mut statement = connection.prepare_cached(
        "SELECT id FROM notifications WHERE user_id = ?1 AND read = 0 ORDER BY id DESC",
    )?;
    statement.query_map([user], |row| row.get(0))?.collect()
}

fn unread(connection: &Connection, user: &str) -> rusqlite::Result<u64> {
    let count: i64 = connection.query_row(
        "SELECT count(*) FROM notifications WHERE user_id = ?1 AND read = 0",
        [user],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(count).unwrap_or(0))
}
