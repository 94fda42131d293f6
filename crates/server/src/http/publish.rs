//! Publishing: to topics, to one client, to one user, and to everyone.
//!
//! Every publish needs a credential with a `publish` selector for its target: the topic, or the
//! pseudo-topics `clients/<id>` and `users/<id>` for direct sends. Broadcasting needs `admin`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use herald_protocol::api::{
    ErrorBody, PublishAnswer, PublishBatch, PublishBatchResponse, PublishBody, PublishRequest,
    PublishResponse, SendRequest, SendResponse,
};
use herald_protocol::auth::{client_target, user_target};
use herald_protocol::names::{validate_topic, validate_user_id};
use serde_json::value::RawValue;

use super::AppState;
use super::caller::{limit_publish_rate, publish_cost};
use super::error::{ApiError, ApiJson, ApiPath};
use super::responses::{NotAdmin, NotJson, RateLimited, TooLarge, Unauthorized, Unavailable};
use crate::app::{AppError, Target};
use crate::auth::Principal;
use crate::ids::ClientId;

/// Publishes one event to one or several topics, or a batch of them (`{"events": [...]}`),
/// stored together, in order, all or none.
#[utoipa::path(
    post,
    path = "/api/publish",
    tag = "publish",
    request_body = PublishBody,
    responses(
        (status = 200, description = "Stored and queued for every subscriber: one event's answer, or a batch's (each event's, in order)", body = PublishAnswer),
        (status = 400, description = "Invalid topic, type or body (in a batch: nothing is stored)", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The credential may not publish to a topic named", body = ErrorBody),
        (status = 413, description = "The body is too large, or a batch holds more than 1,000 events", body = ErrorBody),
        (status = 415, response = NotJson),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<Box<RawValue>>,
) -> Result<Json<PublishAnswer>, ApiError> {
    let credential = principal.require_credential("publishing")?;
    let batch = serde_json::from_str::<Shape>(body.get())
        .map_err(|err| ApiError::bad_request("invalid_body", err.to_string()))?
        .events
        .is_some();
    if batch {
        let batch: PublishBatch = serde_json::from_str(body.get()).map_err(|err| {
            ApiError::bad_request(
                "invalid_body",
                format!("the body has the wrong shape: {err}"),
            )
        })?;
        return publish_batch(&state, &principal, credential, batch.events).await;
    }
    let request: PublishRequest = serde_json::from_str(body.get()).map_err(|err| {
        ApiError::bad_request(
            "invalid_body",
            format!("the body has the wrong shape: {err}"),
        )
    })?;
    let topics = topics_of(&request, state.config.max_topics_per_publish)?;
    for topic in &topics {
        principal.require_publish(topic)?;
    }
    let cost = publish_cost(
        request.kind.as_deref(),
        request.data.as_deref(),
        topics.len(),
    );
    limit_publish_rate(&state, credential, cost)?;
    let stored = state
        .app
        .publish(
            target(&topics, request.private),
            request.kind.as_deref(),
            request.data,
        )
        .await?;
    Ok(Json(PublishAnswer::One(PublishResponse {
        id: stored.id.clone(),
        topics,
    })))
}

/// The most events of one batch publish.
const MAX_BATCH: usize = 1000;

/// Tells a batch (`events`) from a single event.
#[derive(serde::Deserialize)]
struct Shape {
    #[serde(default)]
    events: Option<serde::de::IgnoredAny>,
}

fn target(topics: &[String], private: bool) -> Target {
    Target::Topics {
        topics: topics
            .iter()
            .map(|topic| Arc::from(topic.as_str()))
            .collect(),
        private,
    }
}

/// Checks every event of a batch, then stores them together.
async fn publish_batch(
    state: &AppState,
    principal: &Principal,
    credential: &crate::auth::Credential,
    events: Vec<PublishRequest>,
) -> Result<Json<PublishAnswer>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::bad_request(
            "missing_events",
            "events must hold at least one event",
        ));
    }
    if events.len() > MAX_BATCH {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!("a batch holds at most {MAX_BATCH} events"),
        ));
    }
    let mut cost = 0;
    let mut checked = Vec::with_capacity(events.len());
    for (n, request) in events.into_iter().enumerate() {
        let topics = topics_of(&request, state.config.max_topics_per_publish).map_err(|err| {
            ApiError::new(err.status, err.code, format!("event {n}: {}", err.message))
        })?;
        for topic in &topics {
            principal.require_publish(topic)?;
        }
        cost += publish_cost(
            request.kind.as_deref(),
            request.data.as_deref(),
            topics.len(),
        );
        checked.push((topics, request));
    }
    limit_publish_rate(state, credential, cost)?;
    let batch = checked
        .iter_mut()
        .map(|(topics, request)| {
            (
                target(topics, request.private),
                request.kind.take(),
                request.data.take(),
            )
        })
        .collect();
    let stored = state.app.publish_batch(batch).await?;
    let answers = stored
        .iter()
        .zip(checked)
        .map(|(event, (topics, _))| PublishResponse {
            id: event.id.clone(),
            topics,
        })
        .collect();
    Ok(Json(PublishAnswer::Batch(PublishBatchResponse {
        events: answers,
    })))
}

/// Sends an event to every live connection of one client, and keeps it for the client's replay.
#[utoipa::path(
    post,
    path = "/api/clients/{client_id}/events",
    tag = "publish",
    params(("client_id" = String, Path, description = "A client id from `herald.connected`")),
    request_body = SendRequest,
    responses(
        (status = 200, description = "Stored and queued for the client's connections", body = SendResponse),
        (status = 400, description = "Invalid type or body", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "No `publish` selector grants `clients/{client_id}`", body = ErrorBody),
        (status = 404, description = "The client id was never issued or has expired", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn send_to_client(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(client_id): ApiPath,
    ApiJson(request): ApiJson<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    let credential = principal.require_publish(&client_target(&client_id))?;
    limit_publish_rate(&state, credential, send_cost(&request))?;
    let client =
        ClientId::parse(&client_id).ok_or_else(|| AppError::client_not_found(&client_id))?;
    send(&state, Target::Client(client), request).await
}

/// Sends an event to every connection of one user, on all their tabs and devices, and keeps it
/// for their replay.
#[utoipa::path(
    post,
    path = "/api/users/{user_id}/events",
    tag = "publish",
    params(("user_id" = String, Path, description = "The user id, as in tokens' `sub`")),
    request_body = SendRequest,
    responses(
        (status = 200, description = "Stored and queued for the user's connections", body = SendResponse),
        (status = 400, description = "Invalid user id, type or body", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "No `publish` selector grants `users/{user_id}`", body = ErrorBody),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn send_to_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(user_id): ApiPath,
    ApiJson(request): ApiJson<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    check_user_id(&user_id)?;
    let credential = principal.require_publish(&user_target(&user_id))?;
    limit_publish_rate(&state, credential, send_cost(&request))?;
    send(&state, Target::User(Arc::from(user_id.as_str())), request).await
}

/// Sends an event to every connection.
#[utoipa::path(
    post,
    path = "/api/broadcast",
    tag = "publish",
    request_body = SendRequest,
    responses(
        (status = 200, description = "Stored and queued for every connection", body = SendResponse),
        (status = 400, description = "Invalid type or body", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotAdmin),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn broadcast(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    let credential = principal.require_admin()?;
    limit_publish_rate(&state, credential, send_cost(&request))?;
    send(&state, Target::Broadcast, request).await
}

/// What a direct send stores: it goes to one stream.
fn send_cost(request: &SendRequest) -> u64 {
    publish_cost(request.kind.as_deref(), request.data.as_deref(), 1)
}

/// Publishes a direct send to `target` and answers with its id.
async fn send(
    state: &AppState,
    target: Target,
    request: SendRequest,
) -> Result<Json<SendResponse>, ApiError> {
    let stored = state
        .app
        .publish(target, request.kind.as_deref(), request.data)
        .await?;
    Ok(Json(SendResponse {
        id: stored.id.clone(),
    }))
}

/// A user id in a path, checked by the rule tokens' `sub` follows.
pub fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    validate_user_id(user_id)
        .map_err(|err| ApiError::bad_request("invalid_user_id", err.to_string()))
}

/// The checked, de-duplicated topics of a publish.
fn topics_of(request: &PublishRequest, max_topics: usize) -> Result<Vec<String>, ApiError> {
    let given: Vec<&String> = match (&request.topic, &request.topics) {
        (Some(topic), None) => vec![topic],
        (None, Some(topics)) if !topics.is_empty() => topics.iter().collect(),
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "missing_topic",
                "\"topics\" must name at least one topic",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_topic",
                "name a \"topic\" or a list of \"topics\"",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "give either \"topic\" or \"topics\", not both",
            ));
        }
    };
    if given.len() > max_topics {
        return Err(ApiError::bad_request(
            "too_many_topics",
            format!("one publish may name at most {max_topics} topics"),
        ));
    }
    let mut topics: Vec<String> = Vec::with_capacity(given.len());
    for topic in given {
        validate_topic(topic)
            .map_err(|err| ApiError::bad_request("invalid_topic", err.to_string()))?;
        if !topics.contains(topic) {
            topics.push(topic.clone());
        }
    }
    Ok(topics)
}
