//! The hub's figures for administrators: `GET /api/stats` (every node's connections, topics,
//! rates and latencies over the last minute) and `GET /api/stats/stream`, the same every second
//! as `herald.stats` events.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use herald_protocol::api::Stats;
use herald_protocol::sse::Frame;

use super::AppState;
use super::error::ApiError;
use super::events::event_stream_response;
use super::responses::{NotAdmin, Unauthorized, Unavailable};
use crate::auth::Principal;

/// The event name of the figures on `GET /api/stats/stream`.
const STATS: &str = "herald.stats";

/// Every live node's figures.
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "operations",
    responses(
        (status = 200, description = "Every live node's figures: counts now, rates and publish latency over the last minute", body = Stats),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotAdmin),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Stats>, ApiError> {
    principal.require_admin()?;
    Ok(Json(state.app.stats().await?))
}

/// The figures every second, as `herald.stats` events whose data is what `GET /api/stats`
/// answers.
#[utoipa::path(
    get,
    path = "/api/stats/stream",
    tag = "operations",
    responses(
        (status = 200, description = "An endless `text/event-stream` of `herald.stats` events, one a second", content_type = "text/event-stream", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotAdmin),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let frames = futures_util::stream::unfold(
        (state, tokio::time::interval(Duration::from_secs(1))),
        |(state, mut ticker)| async move {
            ticker.tick().await;
            let frame = match state.app.stats().await {
                Ok(stats) => {
                    let data = serde_json::to_string(&stats).unwrap_or_default();
                    Frame::new()
                        .event(STATS)
                        .data(&data)
                        .encode()
                        .unwrap_or_default()
                }
                // A comment keeps the stream alive until the figures can be read again.
                Err(_) => Frame::new()
                    .comment("figures unavailable")
                    .encode()
                    .unwrap_or_default(),
            };
            Some((Bytes::from(frame), (state, ticker)))
        },
    );
    Ok(event_stream_response(frames))
}
