//! The notification inbox: create for a user, list, mark read. Every change is pushed to the
//! user's connections (`notification`, `notification.read`) so all their tabs agree.

use axum::Json;
use axum::extract::State;
use herald_protocol::api::{ErrorBody, NewNotification, NotificationPage};
use herald_protocol::auth::user_target;
use herald_protocol::payloads::{Notification, NotificationRead};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::caller::limit_publish_rate;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::publish::check_user_id;
use super::responses::{NotJson, RateLimited, TooLarge, Unauthorized, Unavailable};
use crate::auth::Principal;
use crate::storage::{InboxQuery, ReadTarget};

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
        (status = 400, description = "Invalid title, body, url or kind", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "No `publish` selector grants `users/{user_id}`", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
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
    let stored = serde_json::to_vec(&request).map_or(0, |bytes| bytes.len());
    limit_publish_rate(&state, credential, stored as u64)?;
    Ok(Json(state.app.notify(&user_id, request).await?))
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
        (status = 400, description = "A parameter is out of range", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
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
    Ok(Json(state.app.inbox(&credential.user, query).await?))
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
        (status = 401, response = Unauthorized),
        (status = 404, description = "The caller has no such notification", body = ErrorBody),
        (status = 503, response = Unavailable),
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
    let change = state
        .app
        .mark_read(&credential.user, ReadTarget::One(id))
        .await?;
    change.ok_or_else(not_found).map(Json)
}

/// Marks every notification of the caller read.
#[utoipa::path(
    post,
    path = "/api/notifications/read-all",
    tag = "notifications",
    responses(
        (status = 200, description = "What changed and the unread count (0), also pushed as `notification.read`", body = NotificationRead),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn read_all(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<NotificationRead>, ApiError> {
    let credential = principal.require_credential("reading the inbox")?;
    let change = state
        .app
        .mark_read(&credential.user, ReadTarget::All)
        .await?;
    Ok(Json(change.unwrap_or(NotificationRead {
        ids: Vec::new(),
        unread_count: 0,
    })))
}
