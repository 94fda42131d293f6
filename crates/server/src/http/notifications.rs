//! The notification inbox: create for a user, list, mark read. Every change is pushed to the
//! user's connections (`notification`, `notification.read`) so all their tabs agree.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use herald_protocol::api::{NewNotification, NotificationPage};
use herald_protocol::auth::user_target;
use herald_protocol::names::validate_event_type;
use herald_protocol::payloads::{NOTIFICATION, NOTIFICATION_READ, Notification, NotificationRead};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::IntoParams;

use super::AppState;
use super::caller::limit_publish_rate;
use super::publish::{check_user_id, store};
use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::storage::{InboxItem, InboxQuery, NewInboxItem, ReadChange, ReadTarget, StreamKey};
use crate::time::rfc3339;

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 2000;
const MAX_URL_BYTES: usize = 2048;
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

/// Stores a notification in a user's inbox and pushes it to the user's connections as
/// `event: notification`.
#[utoipa::path(
    post,
    path = "/api/users/{user_id}/notifications",
    tag = "notifications",
    params(("user_id" = String, Path, description = "The user id, as in tokens' `sub`")),
    request_body = NewNotification,
    responses(
        (status = 200, description = "The stored notification", body = Notification),
        (status = 400, description = "Invalid title, body, url or kind", body = herald_protocol::api::ErrorBody),
        (status = 401, description = "No credential, or a bad one", body = herald_protocol::api::ErrorBody),
        (status = 403, description = "No `publish` selector grants `users/{user_id}`", body = herald_protocol::api::ErrorBody),
        (status = 413, description = "Body too large", body = herald_protocol::api::ErrorBody),
        (status = 415, description = "Body is not JSON", body = herald_protocol::api::ErrorBody),
        (status = 429, description = "The credential publishes faster than allowed", body = herald_protocol::api::ErrorBody),
        (status = 503, description = "The store is unavailable", body = herald_protocol::api::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(user_id): ApiPath,
    ApiJson(request): ApiJson<NewNotification>,
) -> Result<Json<Notification>, ApiError> {
    check_user_id(&user_id)?;
    let credential = principal.require_publish(&user_target(&user_id))?;
    limit_publish_rate(&state, credential)?;
    let item = checked(request)?;
    Ok(Json(notify(&state, &user_id, item).await?))
}

/// Stores `item` for `user` and pushes it to the user's connections.
pub(super) async fn notify(
    state: &AppState,
    user: &str,
    item: NewInboxItem,
) -> Result<Notification, ApiError> {
    let stored = state
        .hub
        .storage()
        .add_notification(user, item, state.config.max_notifications_per_user)
        .await
        .map_err(|err| ApiError::storage(&err))?;
    let notification = to_wire(stored);
    push(state, user, NOTIFICATION, &notification).await;
    Ok(notification)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Only unread notifications. Default false.
    unread_only: Option<bool>,
    /// Items per page, 1 to 100. Default 20.
    limit: Option<usize>,
    /// Only notifications older than this id: the `next_before` of the previous page.
    before: Option<String>,
}

/// The caller's inbox, newest first, with the unread count.
#[utoipa::path(
    get,
    path = "/api/notifications",
    tag = "notifications",
    params(ListParams),
    responses(
        (status = 200, description = "One page of the inbox", body = NotificationPage),
        (status = 400, description = "A parameter is out of range", body = herald_protocol::api::ErrorBody),
        (status = 401, description = "No credential, or a bad one", body = herald_protocol::api::ErrorBody),
        (status = 503, description = "The store is unavailable", body = herald_protocol::api::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<NotificationPage>, ApiError> {
    let credential = principal.require_credential("reading the inbox")?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let before = match params.before.as_deref().filter(|before| !before.is_empty()) {
        None => None,
        Some(before) => Some(before.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_parameter",
                "before must be a notification id (the next_before of a page)",
            )
        })?),
    };
    let query = InboxQuery {
        unread_only: params.unread_only.unwrap_or(false),
        limit,
        before,
    };
    let page = state
        .hub
        .storage()
        .notifications(&credential.user, query)
        .await
        .map_err(|err| ApiError::storage(&err))?;
    Ok(Json(NotificationPage {
        items: page.items.into_iter().map(to_wire).collect(),
        unread_count: page.unread_count,
        next_before: page.next_before.map(|id| id.to_string()),
    }))
}

/// Marks one of the caller's notifications read. Idempotent: marking it again changes nothing
/// and answers the same unread count with no ids.
#[utoipa::path(
    post,
    path = "/api/notifications/{id}/read",
    tag = "notifications",
    params(("id" = String, Path, description = "A notification id")),
    responses(
        (status = 200, description = "What changed and the unread count, also pushed as `notification.read`", body = NotificationRead),
        (status = 401, description = "No credential, or a bad one", body = herald_protocol::api::ErrorBody),
        (status = 404, description = "The caller has no such notification", body = herald_protocol::api::ErrorBody),
        (status = 503, description = "The store is unavailable", body = herald_protocol::api::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read_one(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath,
) -> Result<Json<NotificationRead>, ApiError> {
    let credential = principal.require_credential("reading the inbox")?;
    let not_found = || {
        ApiError::not_found(
            "notification_not_found",
            format!("you have no notification {id:?}"),
        )
    };
    let id = id.parse::<u64>().map_err(|_| not_found())?;
    let change = mark(&state, &credential.user, ReadTarget::One(id)).await?;
    change.ok_or_else(not_found).map(Json)
}

/// Marks every notification of the caller read.
#[utoipa::path(
    post,
    path = "/api/notifications/read-all",
    tag = "notifications",
    responses(
        (status = 200, description = "What changed and the unread count (0), also pushed as `notification.read`", body = NotificationRead),
        (status = 401, description = "No credential, or a bad one", body = herald_protocol::api::ErrorBody),
        (status = 503, description = "The store is unavailable", body = herald_protocol::api::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read_all(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<NotificationRead>, ApiError> {
    let credential = principal.require_credential("reading the inbox")?;
    let change = mark(&state, &credential.user, ReadTarget::All).await?;
    Ok(Json(change.unwrap_or(NotificationRead {
        ids: Vec::new(),
        unread_count: 0,
    })))
}

/// Applies a read change and, when something changed, tells every connection of the user.
async fn mark(
    state: &AppState,
    user: &Arc<str>,
    target: ReadTarget,
) -> Result<Option<NotificationRead>, ApiError> {
    let change = state
        .hub
        .storage()
        .mark_read(user, target)
        .await
        .map_err(|err| ApiError::storage(&err))?;
    let Some(ReadChange { ids, unread_count }) = change else {
        return Ok(None);
    };
    let read = NotificationRead {
        ids: ids.iter().map(u64::to_string).collect(),
        unread_count,
    };
    if !read.ids.is_empty() {
        push(state, user, NOTIFICATION_READ, &read).await;
    }
    Ok(Some(read))
}

/// Pushes an inbox change through the user's stream. The inbox already holds the change, so a
/// failed push is logged, not reported: the client reads it from the inbox.
async fn push(state: &AppState, user: &str, kind: &str, data: &impl serde::Serialize) {
    let data = match serde_json::to_string(data).map(RawValue::from_string) {
        Ok(Ok(data)) => data,
        _ => return,
    };
    let streams = vec![StreamKey::User(Arc::from(user))];
    if let Err(err) = store(state, streams, Some(kind), Some(data)).await {
        tracing::warn!(user, kind, error = %err.message, "an inbox change was stored but not pushed");
    }
}

/// Checks and trims a notification from a client.
fn checked(request: NewNotification) -> Result<NewInboxItem, ApiError> {
    let invalid = |message: &str| ApiError::bad_request("invalid_notification", message);
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
            .map_err(|err| ApiError::bad_request("invalid_notification", format!("kind: {err}")))?;
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
