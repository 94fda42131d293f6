//! The demo streams the product was specified from: a countdown and a token-by-token chat answer;
//! and the administrators' demo, where placing an order notifies every connected administrator.
//!
//! Both are fixed sequences of frames written at a pace. Each frame has an id, so a client that
//! reconnects with `Last-Event-ID` resumes after it, and one that already saw the end gets
//! `204 No Content`, which tells `EventSource` to stop reconnecting.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use herald_protocol::api::{OrderPlaced, OrderReceipt};
use serde_json::value::RawValue;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use herald_protocol::payloads::{
    CHAT_DELTA, CHAT_DONE, CHAT_DONE_SENTINEL, CHAT_ERROR, COUNTDOWN_EVENT, ChatDelta, ChatDone,
    ChatError, countdown_message,
};
use herald_protocol::sse::Frame;
use herald_protocol::system::CloseReason;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use super::AppState;
use super::caller::limit_publish_rate;
use super::events::event_stream_response;
use super::notifications::notify;
use super::publish::store;
use crate::auth::Principal;
use crate::error::{ApiError, ApiQuery};
use crate::hub::{closing_frame, encode, to_json};
use crate::ids::random_u32;
use crate::metrics::{DemoLabels, Metrics};
use crate::storage::{NewInboxItem, StreamKey};

const MAX_COUNT: u32 = 1000;
const MAX_INTERVAL_MS: u64 = 60_000;
const MAX_PROMPT_CHARS: usize = 4000;

#[derive(Debug, Deserialize, IntoParams)]
pub struct CountdownParams {
    /// How many messages, 1 to 1000. Default 10.
    count: Option<u32>,
    /// Milliseconds between messages, 0 to 60000. Default 1000.
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
        (status = 400, description = "A parameter is out of range", body = herald_protocol::api::ErrorBody),
    )
)]
pub async fn countdown(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<CountdownParams>,
) -> Result<Response, ApiError> {
    let count = params.count.unwrap_or(10);
    let interval_ms = params.interval_ms.unwrap_or(1000);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("count must be between 1 and {MAX_COUNT}"),
        ));
    }
    if interval_ms > MAX_INTERVAL_MS {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("interval_ms must be at most {MAX_INTERVAL_MS}"),
        ));
    }
    let frames = (1..=count)
        .map(|n| {
            let data = to_json(&countdown_message(n));
            encode(
                Frame::new()
                    .id(&n.to_string())
                    .event(COUNTDOWN_EVENT)
                    .data(&data),
            )
        })
        .collect();
    Ok(DemoStream::new(
        "countdown",
        frames,
        Duration::from_millis(interval_ms),
        &state,
    )
    .respond(&headers))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ChatParams {
    /// The question, 1 to 4000 characters.
    prompt: Option<String>,
    /// Milliseconds between pieces of the answer, 0 to 60000. Default 40.
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
        (status = 400, description = "Missing or oversized prompt, or a parameter out of range", body = herald_protocol::api::ErrorBody),
    )
)]
pub async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ChatParams>,
) -> Result<Response, ApiError> {
    let prompt = params.prompt.unwrap_or_default();
    let prompt = prompt.trim();
    if prompt.is_empty() {
        return Err(ApiError::bad_request(
            "missing_prompt",
            "give a prompt (?prompt=...)",
        ));
    }
    if prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("a prompt is at most {MAX_PROMPT_CHARS} characters"),
        ));
    }
    let delay_ms = params.delay_ms.unwrap_or(40);
    if delay_ms > MAX_INTERVAL_MS {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("delay_ms must be at most {MAX_INTERVAL_MS}"),
        ));
    }
    let pieces = answer_pieces(prompt);
    let mut frames: Vec<Bytes> = Vec::with_capacity(pieces.len() + 2);
    let mut id = 0usize;
    let mut next_id = || {
        id += 1;
        id.to_string()
    };
    let failure_point = params.fail_after.map(|n| n.min(pieces.len()));
    for piece in pieces.iter().take(failure_point.unwrap_or(usize::MAX)) {
        let data = to_json(&ChatDelta {
            text: piece.clone(),
        });
        frames.push(encode(
            Frame::new().id(&next_id()).event(CHAT_DELTA).data(&data),
        ));
    }
    if failure_point.is_some() {
        let error = ChatError {
            code: "upstream_error".into(),
            message: "the model stopped answering; try again".into(),
        };
        frames.push(encode(
            Frame::new()
                .id(&next_id())
                .event(CHAT_ERROR)
                .data(&to_json(&error)),
        ));
    } else {
        let done = to_json(&ChatDone {
            finish_reason: "stop".into(),
        });
        frames.push(encode(
            Frame::new().id(&next_id()).event(CHAT_DONE).data(&done),
        ));
        frames.push(encode(Frame::new().id(&next_id()).data(CHAT_DONE_SENTINEL)));
    }
    Ok(DemoStream::new("chat", frames, Duration::from_millis(delay_ms), &state).respond(&headers))
}

/// The demo's answer to `prompt`, cut into the pieces a language model would stream: words with
/// their following space.
fn answer_pieces(prompt: &str) -> Vec<String> {
    let answer = format!(
        "You asked: \u{201c}{prompt}\u{201d}. Herald streams this answer to your browser one piece at a time \
         over Server-Sent Events, the way a language model's reply arrives, and stops the moment you do."
    );
    answer.split_inclusive(' ').map(str::to_owned).collect()
}

/// A fixed sequence of frames written `interval` apart.
#[derive(Debug)]
struct DemoStream {
    frames: Vec<Bytes>,
    next: usize,
    interval: Duration,
    shutdown: CancellationToken,
    guard: EarlyStop,
}

impl DemoStream {
    fn new(demo: &'static str, frames: Vec<Bytes>, interval: Duration, state: &AppState) -> Self {
        Self {
            frames,
            next: 0,
            interval,
            shutdown: state.shutdown.clone(),
            guard: EarlyStop {
                demo,
                finished: false,
                metrics: state.hub.metrics_handle(),
            },
        }
    }

    /// Resumes after the frame named by `Last-Event-ID`; answers 204 when nothing is left.
    fn respond(mut self, headers: &HeaderMap) -> Response {
        let resume_after = headers
            .get("last-event-id")
            .and_then(|value| value.to_str().ok())
            .and_then(|id| id.parse::<usize>().ok())
            .unwrap_or(0);
        if resume_after >= self.frames.len() {
            self.guard.finished = true;
            return StatusCode::NO_CONTENT.into_response();
        }
        self.next = resume_after;
        event_stream_response(futures_util::stream::unfold(self, |mut demo| async move {
            let chunk = demo.next_frame().await?;
            Some((chunk, demo))
        }))
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.guard.finished {
            return None;
        }
        let Some(frame) = self.frames.get(self.next).cloned() else {
            self.guard.finished = true;
            return None;
        };
        if self.next > 0 {
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.guard.finished = true;
                    return Some(closing_frame(CloseReason::Shutdown, None));
                }
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        self.next += 1;
        Some(frame)
    }
}

/// Counts and logs a demo stream dropped before its end: the client went away, and the stream
/// stops producing with it.
#[derive(Debug)]
struct EarlyStop {
    demo: &'static str,
    finished: bool,
    metrics: std::sync::Arc<Metrics>,
}

impl Drop for EarlyStop {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics
                .demo_streams_cancelled
                .get_or_create(&DemoLabels { demo: self.demo })
                .inc();
            tracing::info!(
                demo = self.demo,
                "demo stream stopped: the client went away"
            );
        }
    }
}

/// The topic administrators watch in the orders demo.
pub const ORDERS_TOPIC: &str = "admin/orders";
/// The event type of a placed order.
pub const ORDER_PLACED: &str = "order.placed";

/// Places a demo order as the caller: publishes a private `order.placed` event on
/// `admin/orders`, which reaches only connections allowed to subscribe to it, and puts a
/// notification in the inbox of every administrator connected now.
#[utoipa::path(
    post,
    path = "/demo/orders",
    tag = "demo",
    responses(
        (status = 200, description = "The order and the administrators notified", body = herald_protocol::api::OrderReceipt),
        (status = 401, description = "No credential, or a bad one", body = herald_protocol::api::ErrorBody),
        (status = 429, description = "The credential publishes faster than allowed", body = herald_protocol::api::ErrorBody),
        (status = 503, description = "The store is unavailable", body = herald_protocol::api::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn place_order(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<OrderReceipt>, ApiError> {
    let credential = principal.require_credential("placing an order")?;
    limit_publish_rate(&state, credential)?;
    let order = OrderPlaced {
        order_id: format!("{:06}", random_u32() % 1_000_000),
        customer: credential.user.to_string(),
        total_cents: 500 + u64::from(random_u32() % 20_000),
    };
    let data = RawValue::from_string(to_json(&order))
        .map_err(|_| ApiError::bad_request("invalid_body", "the order could not be encoded"))?;
    store(
        &state,
        vec![StreamKey::Private(Arc::from(ORDERS_TOPIC))],
        Some(ORDER_PLACED),
        Some(data),
    )
    .await?;
    let admins = state
        .hub
        .connected_admins()
        .await
        .map_err(|err| ApiError::storage(&err))?;
    for admin in &admins {
        let item = NewInboxItem {
            title: format!("New order #{}", order.order_id),
            body: format!(
                "{} ordered for ${}.{:02}",
                order.customer,
                order.total_cents / 100,
                order.total_cents % 100
            ),
            url: Some(format!("/?order={}", order.order_id)),
            kind: Some("order".into()),
            created_at: SystemTime::now(),
        };
        notify(&state, admin, item).await?;
    }
    Ok(Json(OrderReceipt {
        order,
        notified_admins: admins,
    }))
}
