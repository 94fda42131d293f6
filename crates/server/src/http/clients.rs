//! The live connections: list them, close a client.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_protocol::api::{ClientInfo, ErrorBody};

use super::AppState;
use super::error::{ApiError, ApiPath};
use super::responses::{NotAdmin, Unauthorized, Unavailable};
use crate::auth::Principal;
use crate::ids::ClientId;
use crate::time::{from_unix_millis, rfc3339};

/// Lists the live connections, oldest first; in cluster mode, those of every node.
#[utoipa::path(
    get,
    path = "/api/clients",
    tag = "clients",
    responses(
        (status = 200, description = "The live connections", body = Vec<ClientInfo>),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotAdmin),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<ClientInfo>>, ApiError> {
    principal.require_admin()?;
    let clients = state
        .app
        .connections()
        .await?
        .into_iter()
        .map(|connection| ClientInfo {
            client_id: connection.client_id,
            connection_id: connection.connection_id,
            user: connection.user,
            topics: connection.topics,
            connected_at: rfc3339(from_unix_millis(connection.connected_at)),
            node: (!connection.node.is_empty()).then_some(connection.node),
        })
        .collect();
    Ok(Json(clients))
}

/// Closes every connection of a client, on whichever node: each receives `herald.closing` with `reconnect: false`.
#[utoipa::path(
    delete,
    path = "/api/clients/{client_id}",
    tag = "clients",
    params(("client_id" = String, Path, description = "A client id from `herald.connected`")),
    responses(
        (status = 204, description = "The client's connections are closing"),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotAdmin),
        (status = 404, description = "The client has no live connection", body = ErrorBody),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn close(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(client_id): ApiPath,
) -> Result<StatusCode, ApiError> {
    principal.require_admin()?;
    let closed = match ClientId::parse(&client_id) {
        Some(client) => state.app.close_client(&client).await?,
        None => 0,
    };
    if closed == 0 {
        return Err(ApiError::not_found(
            "client_not_connected",
            format!("client {client_id:?} has no live connection"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
