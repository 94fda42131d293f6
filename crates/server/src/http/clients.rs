//! The live connections: list them, close a client.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_protocol::api::ClientInfo;

use super::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiPath};
use crate::ids::{ClientId, rfc3339};

/// Lists the live connections, oldest first.
#[utoipa::path(
    get,
    path = "/api/clients",
    tag = "clients",
    responses(
        (status = 200, description = "The live connections", body = Vec<ClientInfo>),
        (status = 401, description = "No credential, or a bad one", body = herald_protocol::api::ErrorBody),
        (status = 403, description = "The credential is not an admin's", body = herald_protocol::api::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<ClientInfo>>, ApiError> {
    principal.require_admin()?;
    let clients = state
        .hub
        .connections()
        .iter()
        .map(|connection| ClientInfo {
            client_id: connection.client_id.to_string(),
            connection_id: connection.id.as_str().to_owned(),
            user: connection.holder.user.as_ref().map(ToString::to_string),
            topics: connection.topic_names(),
            connected_at: rfc3339(connection.connected_at),
        })
        .collect();
    Ok(Json(clients))
}

/// Closes every connection of a client: each receives `herald.closing` with `reconnect: false`.
#[utoipa::path(
    delete,
    path = "/api/clients/{client_id}",
    tag = "clients",
    params(("client_id" = String, Path, description = "A client id from `herald.connected`")),
    responses(
        (status = 204, description = "The client's connections are closing"),
        (status = 401, description = "No credential, or a bad one", body = herald_protocol::api::ErrorBody),
        (status = 403, description = "The credential is not an admin's", body = herald_protocol::api::ErrorBody),
        (status = 404, description = "The client has no live connection", body = herald_protocol::api::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn close(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(client_id): ApiPath,
) -> Result<StatusCode, ApiError> {
    principal.require_admin()?;
    let closed = ClientId::parse(&client_id).map_or(0, |client| state.hub.close_client(&client));
    if closed == 0 {
        return Err(ApiError::not_found(
            "client_not_connected",
            format!("client {client_id:?} has no live connection"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
