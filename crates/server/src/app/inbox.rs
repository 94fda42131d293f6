//! The notification inbox: store for a user, list, mark read. Every change is pushed to the
//! user's connections (`notification`, `notification.read`) so all their tabs agree.

use std::sync::Arc;
use std::time::SystemTime;

use herald_protocol::api::{NewNotification, NotificationPage};
use herald_protocol::names::validate_event_type;
use herald_protocol::payloads::{NOTIFICATION, NOTIFICATION_READ, Notification, NotificationRead};
use serde_json::value::RawValue;

use super::{App, AppError, Target};
use crate::hub::frames::to_json;
use crate::storage::{InboxItem, InboxQuery, NewInboxItem, ReadChange, ReadTarget};
use crate::time::rfc3339;

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 2000;
const MAX_URL_BYTES: usize = 2048;

impl App {
    /// Checks a notification from a client, stores it in `user`'s inbox and pushes it to the
    /// user's connections as `event: notification`.
    pub async fn notify(
        &self,
        user: &str,
        notification: NewNotification,
    ) -> Result<Notification, AppError> {
        self.notify_item(user, checked(notification)?).await
    }

    /// Stores `item` for `user` and pushes it to the user's connections.
    pub(super) async fn notify_item(
        &self,
        user: &str,
        item: NewInboxItem,
    ) -> Result<Notification, AppError> {
        let keep = self.inner.settings.max_notifications_per_user;
        let stored = self
            .inner
            .storage
            .add_notification(user, item, keep)
            .await?;
        let notification = to_wire(stored);
        self.push(user, NOTIFICATION, &notification).await;
        Ok(notification)
    }

    /// A page of `user`'s inbox, newest first, with the unread count.
    pub async fn inbox(&self, user: &str, query: InboxQuery) -> Result<NotificationPage, AppError> {
        let page = self.inner.storage.notifications(user, query).await?;
        Ok(NotificationPage {
            items: page.items.into_iter().map(to_wire).collect(),
            unread_count: page.unread_count,
            next_before: page.next_before.map(|id| id.to_string()),
        })
    }

    /// Marks one or all of `user`'s notifications read and, when something changed, tells
    /// every connection of the user. `None` when `target` names a notification the user does
    /// not have.
    pub async fn mark_read(
        &self,
        user: &Arc<str>,
        target: ReadTarget,
    ) -> Result<Option<NotificationRead>, AppError> {
        let Some(ReadChange { ids, unread_count }) =
            self.inner.storage.mark_read(user, target).await?
        else {
            return Ok(None);
        };
        let read = NotificationRead {
            ids: ids.iter().map(u64::to_string).collect(),
            unread_count,
        };
        if !read.ids.is_empty() {
            self.push(user, NOTIFICATION_READ, &read).await;
        }
        Ok(Some(read))
    }

    /// Pushes an inbox change through the user's stream. The inbox already holds the change,
    /// so a failed push is logged, not reported: the client reads it from the inbox.
    async fn push(&self, user: &str, kind: &str, data: &impl serde::Serialize) {
        let Ok(data) = RawValue::from_string(to_json(data)) else {
            return;
        };
        let target = Target::User(Arc::from(user));
        if let Err(err) = self.publish(target, Some(kind), Some(data)).await {
            tracing::warn!(user, kind, error = %err, "an inbox change was stored but not pushed");
        }
    }
}

/// Checks and trims a notification from a client.
fn checked(request: NewNotification) -> Result<NewInboxItem, AppError> {
    let invalid = |message: &str| AppError::invalid("invalid_notification", message);
    let title = request.title.trim().to_owned();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(invalid("title must be 1 to 200 characters"));
    }
    if request.body.chars().count() > MAX_BODY_CHARS {
        return Err(invalid("body must be at most 2000 characters"));
    }
    if let Some(url) = &request.url {
        // Only links a browser can open safely: no `javascript:` or `data:` URLs.
        let safe = url.len() <= MAX_URL_BYTES
            && !url.chars().any(char::is_control)
            && (url.starts_with("https://")
                || url.starts_with("http://")
                || (url.starts_with('/') && !url.starts_with("//")));
        if !safe {
            return Err(invalid(
                "url must be an http(s) URL or a path starting with /, at most 2048 bytes",
            ));
        }
    }
    if let Some(kind) = &request.kind {
        validate_event_type(kind)
            .map_err(|err| AppError::invalid("invalid_notification", format!("kind: {err}")))?;
    }
    Ok(NewInboxItem {
        title,
        body: request.body,
        url: request.url,
        kind: request.kind,
        created_at: SystemTime::now(),
    })
}

fn to_wire(item: InboxItem) -> Notification {
    Notification {
        id: item.id.to_string(),
        title: item.title,
        body: item.body,
        url: item.url,
        kind: item.kind,
        created_at: rfc3339(item.created_at),
        read: item.read,
    }
}
