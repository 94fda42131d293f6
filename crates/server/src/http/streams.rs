//! Response streams: `POST /api/streams` and its appends, end and cancel for the publisher
//! that created it; `GET /streams/{id}` (SSE) and `GET /api/streams/{id}` (JSON) for readers.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_protocol::api::ErrorBody;
use herald_protocol::streams::{
    AppendChunks, Appended, CreateStream, EndStream, StreamCreated, StreamInfo, StreamKind,
    StreamStatus,
};

use super::AppState;
use super::caller::limit_publish_rate;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::events::event_stream_response;
use super::publish::check_user_id;
use super::responses::{NotJson, RateLimited, TooLarge, Unauthorized, Unavailable};
use crate::app::{Access, Caller, ReadFrom, access};
use crate::auth::{Denied, Principal};
use crate::ids::ClientId;
use crate::storage::streams::ResponseStream;

/// What `principal` may do with `stream`.
fn caller_access(principal: &Principal, stream: &ResponseStream) -> Access {
    let caller = Caller {
        user: principal.user().map(|user| &**user),
        admin: principal.is_admin(),
        may_subscribe: principal.may_subscribe(&format!("streams/{}", stream.id)),
    };
    access(stream, caller)
}

/// 401 for an anonymous caller, 403 for one whose credential does not allow it.
fn refuse(principal: &Principal, what: &str) -> ApiError {
    let denied = if principal.credential().is_none() {
        Denied::Unauthenticated(format!("{what} needs a credential"))
    } else {
        Denied::Forbidden(format!("this credential may not {what}"))
    };
    denied.into()
}

/// The stream `id`, if `principal` may read it.
async fn readable(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<ResponseStream, ApiError> {
    let stream = state.app.response_stream(id).await?;
    if caller_access(principal, &stream) == Access::None {
        return Err(refuse(principal, "read this stream"));
    }
    Ok(stream)
}

/// The stream `id`, if `principal` created it (or administers Herald).
async fn owned(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<ResponseStream, ApiError> {
    let stream = state.app.response_stream(id).await?;
    if caller_access(principal, &stream) != Access::Owner {
        return Err(refuse(
            principal,
            "change this stream (only its creator may)",
        ));
    }
    Ok(stream)
}

/// Creates a response stream; readers follow it at the returned `url`.
#[utoipa::path(
    post,
    path = "/api/streams",
    tag = "streams",
    request_body = CreateStream,
    responses(
        (status = 201, description = "Created", body = StreamCreated),
        (status = 400, description = "Invalid kind, ttl or user", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "No `publish` selector grants `streams/{id}`, or the upstream is not under a `--stream-upstream` prefix", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 429, description = "The publisher holds `--stream-max-open` open streams, or publishes too fast", body = ErrorBody),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CreateStream>,
) -> Result<Response, ApiError> {
    if let Some(user) = &request.user {
        check_user_id(user)?;
    }
    let id = ClientId::generate().to_string();
    let credential = principal.require_publish(&format!("streams/{id}"))?;
    limit_publish_rate(&state, credential, 0)?;
    let relay = match &request.upstream {
        Some(upstream) if request.kind == StreamKind::Text => {
            Some((state.app.check_upstream(upstream)?, upstream.clone()))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_upstream",
                "only a text stream relays an upstream",
            ));
        }
        None => None,
    };
    let id = state
        .app
        .create_stream(id, &credential.user, &request)
        .await?;
    if let Some((url, upstream)) = relay {
        state.app.relay(id.clone(), url, upstream);
    }
    let url = format!("/streams/{id}");
    Ok((StatusCode::CREATED, Json(StreamCreated { id, url })).into_response())
}

/// Appends chunks, answered once they are stored.
#[utoipa::path(
    post,
    path = "/api/streams/{id}/append",
    tag = "streams",
    params(("id" = String, Path, description = "The stream's id")),
    request_body = AppendChunks,
    responses(
        (status = 200, description = "Stored", body = Appended),
        (status = 400, description = "No chunks, or a text stream's chunk is not a non-empty string", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not the stream's creator", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 409, description = "The stream has ended", body = ErrorBody),
        (status = 413, description = "A chunk is larger than `--stream-max-chunk`, or the stream would pass `--stream-max-chunks` or `--stream-max-bytes`", body = ErrorBody),
        (status = 415, response = NotJson),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn append(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath,
    ApiJson(request): ApiJson<AppendChunks>,
) -> Result<Json<Appended>, ApiError> {
    let stream = owned(&state, &principal, &id).await?;
    if let Some(credential) = principal.credential() {
        limit_publish_rate(&state, credential, 0)?;
    }
    let (last, chunks) = state
        .app
        .append_chunks(&stream.id, stream.kind, request.chunks)
        .await?;
    Ok(Json(Appended {
        last_id: last.to_string(),
        chunks,
    }))
}

/// Ends the stream: its readers get `stream.end`, and the chunks are compacted.
#[utoipa::path(
    post,
    path = "/api/streams/{id}/end",
    tag = "streams",
    params(("id" = String, Path, description = "The stream's id")),
    request_body = EndStream,
    responses(
        (status = 200, description = "Ended", body = StreamInfo),
        (status = 400, description = "Invalid status", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not the stream's creator", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 409, description = "The stream has already ended", body = ErrorBody),
        (status = 415, response = NotJson),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn end(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath,
    ApiJson(request): ApiJson<EndStream>,
) -> Result<Json<StreamInfo>, ApiError> {
    owned(&state, &principal, &id).await?;
    let stream = state
        .app
        .end_stream(&id, request.status.into(), request.result)
        .await?;
    Ok(Json(state.app.stream_info(&stream).await?))
}

/// Cancels an open stream: its readers get `stream.end` with `status: cancelled`.
#[utoipa::path(
    delete,
    path = "/api/streams/{id}",
    tag = "streams",
    params(("id" = String, Path, description = "The stream's id")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not the stream's creator", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 409, description = "The stream has already ended", body = ErrorBody),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    owned(&state, &principal, &id).await?;
    state
        .app
        .end_stream(&id, StreamStatus::Cancelled, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where the stream stands, and all of it so far: the text, or the latest value.
#[utoipa::path(
    get,
    path = "/api/streams/{id}",
    tag = "streams",
    params(("id" = String, Path, description = "The stream's id")),
    responses(
        (status = 200, description = "The stream", body = StreamInfo),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The stream is private or another user's", body = ErrorBody),
        (status = 404, description = "No such stream (or it expired)", body = ErrorBody),
        (status = 503, response = Unavailable),
    ),
    security((), ("bearer" = []))
)]
pub async fn info(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath,
) -> Result<Json<StreamInfo>, ApiError> {
    let stream = readable(&state, &principal, &id).await?;
    Ok(Json(state.app.stream_info(&stream).await?))
}

/// The query of `GET /streams/{id}` (`access_token` is read with the credential).
#[derive(Debug, serde::Deserialize)]
pub struct FollowParams {
    last_event_id: Option<String>,
}

/// Follows a stream: every chunk from the first (or after `Last-Event-ID`) as `event:
/// stream.chunk`, then live, then `event: stream.end`, after which the response ends. Once
/// ended, the chunks come compacted: the whole text (or the last value) in one frame.
#[utoipa::path(
    get,
    path = "/streams/{id}",
    tag = "streams",
    params(
        ("id" = String, Path, description = "The stream's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this chunk; `end` (the id of `stream.end`) is answered 204, which stops EventSource."),
        ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set the header."),
        ("access_token" = Option<String>, Query, description = "A credential, for EventSource."),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `stream.chunk` frames (the envelope's `data` is the chunk), then `stream.end` `{\"status\", \"result\"?}`", content_type = "text/event-stream", body = String),
        (status = 204, description = "Already read to its end"),
        (status = 400, description = "The last event id is not a position of this stream", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The stream is private or another user's", body = ErrorBody),
        (status = 404, description = "No such stream (or it expired)", body = ErrorBody),
        (status = 503, response = Unavailable),
    ),
    security((), ("bearer" = []))
)]
pub async fn follow(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<FollowParams>,
) -> Result<Response, ApiError> {
    let stream = readable(&state, &principal, &id).await?;
    let header = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    let from = ReadFrom::parse(header.or(params.last_event_id.as_deref()))?;
    if from == ReadFrom::End {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let retry_ms = u64::try_from(state.config.retry.as_millis()).unwrap_or(u64::MAX);
    Ok(event_stream_response(
        state.app.read_stream(stream, from, retry_ms),
    ))
}
