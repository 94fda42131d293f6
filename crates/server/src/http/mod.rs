//! The HTTP edge: routes, request parsing and response shaping. Domain work happens in the hub.

mod clients;
mod demo;
mod events;
mod openapi;
mod ops;
mod publish;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio_util::sync::CancellationToken;
use tower_http::services::{ServeDir, ServeFile};

use crate::config::Config;
use crate::error::{method_not_allowed, route_not_found};
use crate::hub::Hub;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Hub,
    pub config: Arc<Config>,
    /// Cancelled on shutdown; ends streams that do not belong to the hub (the demos).
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    let static_dir = state.config.static_dir.clone();
    let api = Router::new()
        .route("/events", get(events::subscribe))
        .route("/api/publish", post(publish::publish))
        .route("/api/broadcast", post(publish::broadcast))
        .route("/api/clients", get(clients::list))
        .route("/api/clients/{client_id}", delete(clients::close))
        .route(
            "/api/clients/{client_id}/events",
            post(publish::send_to_client),
        )
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/{*rest}", axum::routing::any(route_not_found))
        .route("/demo/countdown", get(demo::countdown))
        .route("/demo/chat", get(demo::chat))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state);
    let app = ServeDir::new(&static_dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(static_dir.join("index.html")));
    let web_app = Router::new()
        .fallback_service(app)
        .layer(axum::middleware::map_response(static_answer));
    api.fallback_service(web_app)
}

/// Gives the web app's misses the API's JSON 404. The file service answers 500 for paths the
/// operating system refuses (a name too long, for one), which is the client's doing, not ours.
async fn static_answer(response: Response) -> Response {
    let status = response.status();
    if status == StatusCode::NOT_FOUND || status.is_server_error() {
        return route_not_found().await.into_response();
    }
    response
}
