//! The notification inbox in Redis: per user, a sorted set of all ids, one of unread ids, and a
//! hash of the items as JSON.

use redis::Value;
use serde::{Deserialize, Serialize};

use super::{RedisStorage, codec};
use crate::storage::{
    InboxItem, InboxPage, InboxQuery, NewInboxItem, ReadChange, ReadTarget, StorageError,
};
use crate::time;

/// An item as stored; its id and read state live in the sorted sets.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    title: String,
    body: String,
    url: Option<String>,
    kind: Option<String>,
    /// Milliseconds since the Unix epoch.
    created_at: u64,
}

impl RedisStorage {
    pub(super) async fn notify(
        &self,
        user: &str,
        item: NewInboxItem,
        keep: usize,
    ) -> Result<InboxItem, StorageError> {
        let stored = Stored {
            title: item.title,
            body: item.body,
            url: item.url,
            kind: item.kind,
            created_at: time::unix_millis(item.created_at),
        };
        let json = serde_json::to_string(&stored)
            .map_err(|err| StorageError::unavailable(format!("encoding a notification: {err}")))?;
        let [all, unread, items] = self.keys().inbox(user);
        let mut invocation = self.scripts().notify.prepare_invoke();
        invocation
            .key(&self.keys().notification_seq)
            .key(all)
            .key(unread)
            .key(items)
            .arg(json)
            .arg(keep);
        let mut connection = self.connection();
        let id: u64 = Self::call(
            "storing a notification",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        Ok(InboxItem {
            id,
            title: stored.title,
            body: stored.body,
            url: stored.url,
            kind: stored.kind,
            created_at: item.created_at,
            read: false,
        })
    }

    pub(super) async fn inbox_page(
        &self,
        user: &str,
        query: InboxQuery,
    ) -> Result<InboxPage, StorageError> {
        let [all, unread, items] = self.keys().inbox(user);
        let mut invocation = self.scripts().inbox.prepare_invoke();
        invocation
            .key(all)
            .key(unread)
            .key(items)
            .arg(if query.unread_only { "1" } else { "0" })
            .arg(query.limit.saturating_add(1))
            .arg(
                query
                    .before
                    .map_or_else(|| "+inf".to_owned(), |id| id.to_string()),
            );
        let mut connection = self.connection();
        let reply: Vec<Value> = Self::call(
            "listing notifications",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        let mut reply = reply.into_iter();
        let unread_count = reply.next().map_or(Ok(0), codec::integer)?;
        let mut page = Vec::new();
        while let (Some(id), Some(item), Some(unread)) = (reply.next(), reply.next(), reply.next())
        {
            let id = codec::integer(id)?;
            let Value::BulkString(json) = item else {
                // Removed between the listing and the read: not part of the page.
                continue;
            };
            let stored: Stored = serde_json::from_slice(&json).map_err(|err| {
                StorageError::unavailable(format!("Redis holds a malformed notification: {err}"))
            })?;
            page.push(InboxItem {
                id,
                title: stored.title,
                body: stored.body,
                url: stored.url,
                kind: stored.kind,
                created_at: time::from_unix_millis(stored.created_at),
                read: codec::integer(unread)? == 0,
            });
        }
        let next_before = if page.len() > query.limit {
            page.truncate(query.limit);
            page.last().map(|item| item.id)
        } else {
            None
        };
        Ok(InboxPage {
            items: page,
            unread_count,
            next_before,
        })
    }

    pub(super) async fn read_notifications(
        &self,
        user: &str,
        target: ReadTarget,
    ) -> Result<Option<ReadChange>, StorageError> {
        let [all, unread, _] = self.keys().inbox(user);
        let mut invocation = self.scripts().mark_read.prepare_invoke();
        invocation.key(all).key(unread);
        match target {
            ReadTarget::One(id) => invocation.arg(id),
            ReadTarget::All => invocation.arg("all"),
        };
        let mut connection = self.connection();
        let reply: Vec<Value> = Self::call(
            "marking notifications read",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        let mut reply = reply.into_iter();
        let found = reply.next().map_or(Ok(0), codec::integer)? == 1;
        let unread_count = reply.next().map_or(Ok(0), codec::integer)?;
        if !found {
            return Ok(None);
        }
        let ids = reply.map(codec::integer).collect::<Result<_, _>>()?;
        Ok(Some(ReadChange { ids, unread_count }))
    }
}
