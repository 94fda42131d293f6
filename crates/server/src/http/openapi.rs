//! The OpenAPI document of the HTTP API, served at `/api/openapi.json`.

use axum::Json;
use herald_protocol::Envelope;
use herald_protocol::api::{
    ClientInfo, DevTokenRequest, DevUser, ErrorBody, ErrorDetail, HealthStatus, Identity,
    NewNotification, NotificationPage, OrderPlaced, OrderReceipt, Presence, PublishRequest,
    PublishResponse, SendRequest, SendResponse, TokenResponse, TopicSummary, UserPresence,
};
use herald_protocol::api::{LatencyPercentiles, NodeStats, Stats};
use herald_protocol::auth::{Claims, Grants};
use herald_protocol::payloads::{ChatDelta, ChatDone, ChatError, Notification, NotificationRead};
use herald_protocol::system::{CloseReason, Closing, Connected, Reset, ResetReason};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::responses::{NotAdmin, NotJson, RateLimited, TooLarge, Unauthorized, Unavailable};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "A real-time event hub: browsers subscribe with EventSource to `GET /events`; \
                       back-ends publish over HTTP. Every error body is `{\"error\": {\"code\", \"message\"}}`.\n\n\
                       Credentials are JSON Web Tokens (HS256, RS256 or ES256) sent as `Authorization: Bearer`, \
                       the `herald_token` cookie or the `access_token` query parameter. Claims: `sub` (user id), \
                       `exp`, optional `nbf` and `iat` (times after the year 9999 are refused), and `herald: {publish, subscribe, admin}` where publish and subscribe \
                       list topic selectors: an exact topic, a prefix `rooms/*`, or `*`. Publishing needs a `publish` \
                       selector for the topic (or `users/<id>`, `clients/<id>` for direct sends); private topics and \
                       private events need a `subscribe` selector; listing and closing clients and broadcasting need \
                       `admin: true`. 401 means no or a bad credential, 403 a valid one that is not allowed.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        super::events::subscribe,
        super::publish::publish,
        super::publish::send_to_client,
        super::publish::send_to_user,
        super::notifications::create,
        super::notifications::list,
        super::notifications::read_one,
        super::notifications::read_all,
        super::dev::me,
        super::dev::users,
        super::dev::token,
        super::publish::broadcast,
        super::clients::list,
        super::clients::close,
        super::demo::countdown,
        super::demo::chat,
        super::demo::answer,
        super::demo::place_order,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::stats::stats,
        super::stats::stream,
        super::presence::topic,
        super::presence::topics,
        super::streams::create,
        super::streams::append,
        super::streams::end,
        super::streams::cancel,
        super::streams::info,
        super::streams::follow,
        super::mercure::subscribe,
        super::mercure::publish,
        super::mercure_subscriptions::list,
        document,
    ),
    components(responses(Unauthorized, NotAdmin, TooLarge, NotJson, RateLimited, Unavailable), schemas(
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
        herald_protocol::api::PublishBatch,
        herald_protocol::api::PublishBatchResponse,
        herald_protocol::api::PublishBody,
        herald_protocol::api::PublishAnswer,
        SendRequest,
        SendResponse,
        ClientInfo,
        Presence,
        UserPresence,
        Stats,
        NodeStats,
        LatencyPercentiles,
        TopicSummary,
        HealthStatus,
        NewNotification,
        NotificationPage,
        Identity,
        DevUser,
        DevTokenRequest,
        TokenResponse,
        Claims,
        Grants,
        OrderPlaced,
        OrderReceipt,
        herald_protocol::streams::CreateStream,
        herald_protocol::streams::StreamUpstream,
        herald_protocol::streams::StreamCreated,
        herald_protocol::streams::AppendChunks,
        herald_protocol::streams::Appended,
        herald_protocol::streams::EndStream,
        herald_protocol::streams::EndStatus,
        herald_protocol::streams::StreamEnd,
        herald_protocol::streams::StreamInfo,
        herald_protocol::streams::StreamKind,
        herald_protocol::streams::StreamStatus,
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
