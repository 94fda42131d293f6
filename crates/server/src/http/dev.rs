//! Who am I (`GET /api/me`), and development mode's demo users and their credentials.
//!
//! In development mode the console signs in as a demo user without any copy-paste: it asks
//! `POST /api/dev/token` for a token signed with the development key. Outside development mode
//! these endpoints answer 404.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_protocol::api::{DevTokenRequest, DevUser, Identity, TokenResponse};
use herald_protocol::auth::Grants;

use super::AppState;
use super::error::{ApiError, ApiJson};
use super::responses::Unauthorized;
use crate::auth::{Principal, claims_for};
use crate::time::rfc3339;

/// The demo users: two customers and an administrator.
const DEMO_USERS: [(&str, &str, bool); 3] = [
    ("alice", "Alice (customer)", false),
    ("bob", "Bob (customer)", false),
    ("ada", "Ada (administrator)", true),
];

/// What the caller's credential says.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "auth",
    responses(
        (status = 200, description = "The caller's identity; `user` is null without a credential", body = Identity),
        (status = 401, response = Unauthorized),
    ),
    security((), ("bearer" = []))
)]
pub async fn me(State(state): State<AppState>, principal: Principal) -> Json<Identity> {
    let development = state.config.dev;
    Json(match principal.credential() {
        None => Identity {
            user: None,
            publish: Vec::new(),
            subscribe: Vec::new(),
            admin: false,
            expires_at: None,
            development,
        },
        Some(credential) => Identity {
            user: Some(credential.user.to_string()),
            publish: credential.grants.publish.clone(),
            subscribe: credential.grants.subscribe.clone(),
            admin: credential.grants.admin,
            expires_at: Some(rfc3339(credential.expires_at)),
            development,
        },
    })
}

/// The demo users (development mode only).
#[utoipa::path(
    get,
    path = "/api/dev/users",
    tag = "auth",
    responses(
        (status = 200, description = "The demo users the console can sign in as", body = Vec<DevUser>),
        (status = 404, description = "Not in development mode", body = herald_protocol::api::ErrorBody),
    )
)]
pub async fn users(State(state): State<AppState>) -> Result<Json<Vec<DevUser>>, ApiError> {
    require_dev(&state)?;
    Ok(Json(
        DEMO_USERS
            .iter()
            .map(|(id, name, admin)| DevUser {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
                admin: *admin,
            })
            .collect(),
    ))
}

/// A credential for a demo user (development mode only). Customers may publish anywhere and
/// subscribe to private `rooms/*`; the administrator may do everything.
#[utoipa::path(
    post,
    path = "/api/dev/token",
    tag = "auth",
    request_body = DevTokenRequest,
    responses(
        (status = 200, description = "A signed token and its claims", body = TokenResponse),
        (status = 400, description = "Not a demo user", body = herald_protocol::api::ErrorBody),
        (status = 404, description = "Not in development mode", body = herald_protocol::api::ErrorBody),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<DevTokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    require_dev(&state)?;
    let Some((id, _, admin)) = DEMO_USERS.iter().find(|(id, _, _)| *id == request.user) else {
        return Err(ApiError::bad_request(
            "unknown_demo_user",
            format!(
                "{:?} is not a demo user; choose one of alice, bob, ada",
                request.user
            ),
        ));
    };
    let grants = Grants {
        publish: vec!["*".into()],
        subscribe: if *admin {
            vec!["*".into()]
        } else {
            vec!["rooms/*".into()]
        },
        admin: *admin,
    };
    let claims = claims_for(id, grants, state.config.dev_token_ttl);
    let token = state.auth.sign(&claims).map_err(|message| {
        tracing::error!(%message, "cannot sign a development token");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "signing_unavailable",
            "this server cannot sign development tokens",
        )
    })?;
    Ok(Json(TokenResponse { token, claims }))
}

fn require_dev(state: &AppState) -> Result<(), ApiError> {
    if state.config.dev {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "not_found",
            "development credentials exist only in development mode (--dev)",
        ))
    }
}
