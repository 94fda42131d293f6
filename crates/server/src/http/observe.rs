//! Every routed request gets an id (its `X-Request-Id`, or a new one, sent back), a tracing span
//! the handler's log lines belong to (request id, method, route, and the client id an event
//! stream records), and is counted by route, method and status with the time to its answer.

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;
use tracing::Instrument;

use super::AppState;
use crate::metrics::{RequestLabels, RouteLabels};

/// The header carrying a request's id, both ways.
const REQUEST_ID: &str = "x-request-id";
/// The longest id taken from a client; a longer (or not printable) one is replaced.
const MAX_ID: usize = 64;

pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|id| id.len() <= MAX_ID && id.to_str().is_ok_and(|id| !id.is_empty()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&crate::ids::request_id())
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        });
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = method.as_str(),
        route = route.as_str(),
        client_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span).await;
    let metrics = &state.app.metrics().requests;
    metrics
        .duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .total
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response.headers_mut().insert(REQUEST_ID, id);
    response
}
