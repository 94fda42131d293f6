//! The OpenAPI document of the HTTP API, served at `/api/openapi.json`.

use axum::Json;
use herald_protocol::Envelope;
use herald_protocol::api::{
    ClientInfo, ErrorBody, ErrorDetail, HealthStatus, PublishRequest, PublishResponse, SendRequest,
    SendResponse,
};
use herald_protocol::payloads::{ChatDelta, ChatDone, ChatError, Notification, NotificationRead};
use herald_protocol::system::{CloseReason, Closing, Connected, Reset, ResetReason};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "A real-time event hub: browsers subscribe with EventSource to `GET /events`; \
                       back-ends publish over HTTP. Every error body is `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        super::events::subscribe,
        super::publish::publish,
        super::publish::send_to_client,
        super::publish::broadcast,
        super::clients::list,
        super::clients::close,
        super::demo::countdown,
        super::demo::chat,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        document,
    ),
    components(schemas(
        Envelope,
        Connected,
        Reset,
        ResetReason,
        Closing,
        CloseReason,
        ChatDelta,
        ChatDone,
        ChatError,
        Notification,
        NotificationRead,
        ErrorBody,
        ErrorDetail,
        PublishRequest,
        PublishResponse,
        SendRequest,
        SendResponse,
        ClientInfo,
        HealthStatus,
    ))
)]
struct ApiDoc;

/// The OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
