//! The HTTP edge: routes, request parsing and response shaping. A handler parses a request,
//! calls one use case of [`App`] and shapes its answer.

mod caller;
mod clients;
mod console;
mod demo;
mod dev;
mod error;
mod events;
mod mercure;
mod mercure_subscriptions;
mod notifications;
mod observe;
mod openapi;
mod ops;
mod origin;
mod presence;
mod publish;
mod responses;
mod stats;
mod streams;

pub use console::embedded as console_embedded;
pub use error::ApiError;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

use crate::app::App;
use crate::auth::{Authenticator, RateLimiter};
use crate::config::Config;
use error::{method_not_allowed, route_not_found};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The use cases.
    pub app: App,
    pub config: Arc<Config>,
    /// Verifies credentials (and signs them in development mode).
    pub auth: Arc<Authenticator>,
    /// Publishes per credential.
    pub publish_rate: Arc<RateLimiter>,
    /// Bytes published per credential.
    pub publish_bytes: Arc<RateLimiter>,
    /// New client ids per address.
    pub new_clients: Arc<RateLimiter>,
}

pub fn router(state: AppState) -> Router {
    let static_dir = state.config.static_dir.clone();
    let api = Router::new()
        .route("/events", get(events::subscribe).head(events::probe))
        .route("/api/publish", post(publish::publish))
        .route("/api/broadcast", post(publish::broadcast))
        .route("/api/clients", get(clients::list))
        .route("/api/clients/{client_id}", delete(clients::close))
        .route(
            "/api/clients/{client_id}/events",
            post(publish::send_to_client),
        )
        .route("/api/users/{user_id}/events", post(publish::send_to_user))
        .route(
            "/api/users/{user_id}/notifications",
            post(notifications::create),
        )
        .route("/api/notifications", get(notifications::list))
        .route("/api/notifications/read-all", post(notifications::read_all))
        .route(
            "/api/notifications/{id}/read",
            post(notifications::read_one),
        )
        .route("/api/stats", get(stats::stats))
        .route("/api/stats/stream", get(stats::stream))
        .route("/api/topics", get(presence::topics))
        .route("/api/topics/{topic}/presence", get(presence::topic))
        .route("/api/me", get(dev::me))
        .route("/api/dev/users", get(dev::users))
        .route("/api/dev/token", post(dev::token))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/{*rest}", axum::routing::any(route_not_found))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .method_not_allowed_fallback(method_not_allowed);
    let api = mercure_routes(stream_routes(api));
    // With an internal listener for them, the metrics are not public.
    let api = if state.config.operations.metrics_listen.is_none() {
        api.route("/metrics", get(ops::metrics))
    } else {
        api
    };
    // The demos hold streams open and write to administrators' inboxes: served only when
    // asked for.
    let api = if state.config.dev || state.config.demos {
        api.route("/demo/countdown", get(demo::countdown))
            .route("/demo/chat", get(demo::chat).post(demo::answer))
            .route("/demo/orders", post(demo::place_order))
    } else {
        api.route("/demo/{*rest}", axum::routing::any(route_not_found))
    };
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.config.max_body_bytes,
            error::refuse_declared_oversize,
        ));
    let api = match cors(&state.config.cors_origins) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    let dev = state.config.dev.then(|| state.clone());
    // The console: from --static-dir when given, else the one built into the binary.
    let web_app = match static_dir {
        Some(static_dir) => Router::new().fallback_service(
            ServeDir::new(&static_dir)
                .append_index_html_on_directories(true)
                .fallback(ServeFile::new(static_dir.join("index.html"))),
        ),
        None if console::embedded() => Router::new().fallback(console::serve),
        None => Router::new().fallback(route_not_found),
    }
    .layer(axum::middleware::map_response(static_answer));
    let routes = api.with_state(state).fallback_service(web_app);
    match dev {
        Some(state) => routes.layer(axum::middleware::from_fn_with_state(
            state,
            origin::loopback_host_only,
        )),
        None => routes,
    }
}

/// The response streams' routes.
fn stream_routes(api: Router<AppState>) -> Router<AppState> {
    api.route("/api/streams", post(streams::create))
        .route(
            "/api/streams/{id}",
            get(streams::info).delete(streams::cancel),
        )
        .route("/api/streams/{id}/append", post(streams::append))
        .route("/api/streams/{id}/end", post(streams::end))
        .route("/streams/{id}", get(streams::follow))
}

/// The Mercure hub's routes.
fn mercure_routes(api: Router<AppState>) -> Router<AppState> {
    api.route(
        "/.well-known/mercure",
        get(mercure::subscribe)
            .head(mercure::probe)
            .post(mercure::publish),
    )
    .route(
        "/.well-known/mercure/subscriptions",
        get(mercure_subscriptions::list),
    )
    .route(
        "/.well-known/mercure/subscriptions/{*rest}",
        get(mercure_subscriptions::list),
    )
}

/// The operations endpoints alone (`/metrics`, `/healthz`, `/readyz`), for the internal
/// listener of `--metrics-listen`.
pub fn operations_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .with_state(state)
}

/// The CORS policy for the configured origins: named origins may send credentials (cookies,
/// `EventSource` with `withCredentials`); `*` admits every origin, never with credentials.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([HeaderName::from_static("last-event-id")])
        .max_age(std::time::Duration::from_secs(3600));
    if origins.iter().any(|origin| origin == "*") {
        return Some(layer.allow_origin(AllowOrigin::any()));
    }
    // Origins were checked to be valid header values when the configuration was resolved.
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    Some(
        layer
            .allow_origin(AllowOrigin::list(allowed))
            .allow_credentials(true),
    )
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
