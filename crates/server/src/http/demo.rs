//! The demos: a countdown and a chat answer streamed as events, and the administrators' orders
//! demo, served in development mode or with `--demos`. What they do is in `app::demo`; here
//! their parameters are read and their answers shaped.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_protocol::api::{ErrorBody, OrderReceipt};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::caller::limit_publish_rate;
use super::error::{ApiError, ApiJson, ApiQuery};
use super::events::event_stream_response;
use super::responses::{NotAdmin, RateLimited, Unauthorized, Unavailable};
use crate::app::DemoStream;
use crate::auth::Principal;

#[derive(Debug, Deserialize, IntoParams)]
pub struct CountdownParams {
    /// How many messages, 1 to 1000. Default 10.
    count: Option<u32>,
    /// Milliseconds between messages, 10 to 60000. Default 1000.
    interval_ms: Option<u64>,
}

/// `count` events named `customEvent` with data `"Message 1"` ... `"Message N"`, `interval_ms`
/// apart, then the stream ends. It stops producing as soon as the client goes away.
#[utoipa::path(
    get,
    path = "/demo/countdown",
    tag = "demo",
    params(CountdownParams),
    responses(
        (status = 200, description = "The countdown as `text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 204, description = "The client already received every message (reconnect after the end)"),
        (status = 400, description = "A parameter is out of range", body = ErrorBody),
    )
)]
pub async fn countdown(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<CountdownParams>,
) -> Result<Response, ApiError> {
    let demo = state.app.countdown(
        params.count.unwrap_or(10),
        params.interval_ms.unwrap_or(1000),
        resume_after(&headers),
    )?;
    Ok(respond(demo))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ChatParams {
    /// The question, 1 to 4096 bytes.
    prompt: Option<String>,
    /// Milliseconds between pieces of the answer, 10 to 60000. Default 40.
    delay_ms: Option<u64>,
    /// Simulates an upstream failure after this many pieces.
    fail_after: Option<usize>,
}

/// A chat-style token stream: `chat.delta` pieces, then `chat.done` and a final `data: [DONE]`;
/// an upstream failure ends with `chat.error` instead.
#[utoipa::path(
    get,
    path = "/demo/chat",
    tag = "demo",
    params(ChatParams),
    responses(
        (status = 200, description = "The answer as `text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 204, description = "The client already received the whole answer"),
        (status = 400, description = "Missing or oversized prompt, or a parameter out of range", body = ErrorBody),
    )
)]
pub async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ChatParams>,
) -> Result<Response, ApiError> {
    let answer = state
        .app
        .chat(
            params.prompt.as_deref().unwrap_or_default(),
            params.delay_ms.unwrap_or(40),
            params.fail_after,
            resume_after(&headers),
        )
        .await?;
    Ok(match answer {
        Some(frames) => event_stream_response(frames),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// What `POST /demo/chat` asks.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The question, 1 to 4096 bytes.
    prompt: String,
    /// Milliseconds between pieces of the answer, 10 to 60000. Default 40.
    delay_ms: Option<u64>,
    /// Simulates an upstream failure after this many pieces.
    fail_after: Option<usize>,
}

/// The chat demo's answer as a response stream: written in the background, read (and read
/// again after a reload, whole) at the returned `url`, as `stream.chunk` text pieces and a
/// final `stream.end`.
#[utoipa::path(
    post,
    path = "/demo/chat",
    tag = "demo",
    request_body = AnswerRequest,
    responses(
        (status = 201, description = "The answer's stream", body = herald_protocol::streams::StreamCreated),
        (status = 400, description = "Missing or oversized prompt, or a parameter out of range", body = ErrorBody),
    )
)]
pub async fn answer(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<AnswerRequest>,
) -> Result<Response, ApiError> {
    let id = state
        .app
        .demo_answer(
            &request.prompt,
            request.delay_ms.unwrap_or(40),
            request.fail_after,
        )
        .await?;
    let url = format!("/streams/{id}");
    let created = herald_protocol::streams::StreamCreated { id, url };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The frame a reconnecting client saw last, from `Last-Event-ID`; 0 for none.
fn resume_after(headers: &HeaderMap) -> usize {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|id| id.parse::<usize>().ok())
        .unwrap_or(0)
}

/// The demo as an event stream, or `204 No Content` when the client saw all of it.
fn respond(demo: Option<DemoStream>) -> Response {
    match demo {
        Some(demo) => event_stream_response(demo.into_chunks()),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Places a demo order as the caller, an administrator: publishes a private `order.placed`
/// event on `admin/orders`, which reaches only connections allowed to subscribe to it, and puts
/// a notification in the inbox of every administrator connected now.
#[utoipa::path(
    post,
    path = "/demo/orders",
    tag = "demo",
    responses(
        (status = 200, description = "The order and the administrators notified", body = OrderReceipt),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotAdmin),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn place_order(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<OrderReceipt>, ApiError> {
    let credential = principal.require_admin()?;
    // An order's notification is small and of a fixed shape: the request rate bounds it.
    limit_publish_rate(&state, credential, 0)?;
    Ok(Json(state.app.place_order(&credential.user).await?))
}
