//! Presence: who receives a topic right now (`GET /api/topics/{topic}/presence`), and the live
//! topics with their audiences (`GET /api/topics`, administrators), counted over every node.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Query, State};
use herald_protocol::api::{Presence, TopicSummary, UserPresence};
use herald_protocol::names::validate_topic;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiPath};
use super::responses::{NotAdmin, Unauthorized, Unavailable};
use crate::auth::Principal;
use crate::storage::NodeRecord;

/// Who receives one topic: counts for anyone who may subscribe to it, the users too for a
/// caller whose `subscribe` selector matches it.
#[utoipa::path(
    get,
    path = "/api/topics/{topic}/presence",
    tag = "presence",
    params(("topic" = String, Path, description = "The topic, percent-encoded (`rooms%2F42`).")),
    responses(
        (status = 200, description = "The topic's audience on every node", body = Presence),
        (status = 400, description = "Not a valid topic", body = herald_protocol::api::ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The topic is private and the credential may not subscribe to it", body = herald_protocol::api::ErrorBody),
        (status = 503, response = Unavailable),
    ),
    security((), ("bearer" = []))
)]
pub async fn topic(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(topic): ApiPath,
) -> Result<Json<Presence>, ApiError> {
    validate_topic(&topic)
        .map_err(|err| ApiError::bad_request("invalid_topic", err.to_string()))?;
    principal.require_subscribe(&topic, state.auth.is_private(&topic))?;
    let connections = herald_connections(state.app.connections().await?);
    let receiving: Vec<&NodeRecord> = connections
        .iter()
        .filter(|record| record.topics.contains(&topic))
        .collect();
    let (connections, clients, users) = audience(&receiving);
    let users = principal.may_subscribe(&topic).then(|| {
        users
            .into_iter()
            .map(|(user, connections)| UserPresence { user, connections })
            .collect()
    });
    Ok(Json(Presence {
        topic,
        connections,
        clients,
        users,
    }))
}

#[derive(Debug, Deserialize)]
pub struct TopicsQuery {
    #[serde(default)]
    prefix: String,
}

/// The live topics (those some event stream receives), with their audiences, sorted by topic;
/// `prefix` keeps those starting with it.
#[utoipa::path(
    get,
    path = "/api/topics",
    tag = "presence",
    params(("prefix" = Option<String>, Query, description = "Only topics starting with this.")),
    responses(
        (status = 200, description = "The live topics on every node", body = Vec<TopicSummary>),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotAdmin),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn topics(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<TopicsQuery>,
) -> Result<Json<Vec<TopicSummary>>, ApiError> {
    principal.require_admin()?;
    let connections = herald_connections(state.app.connections().await?);
    let mut by_topic: BTreeMap<&str, Vec<&NodeRecord>> = BTreeMap::new();
    for record in &connections {
        for topic in &record.topics {
            if topic.starts_with(&query.prefix) {
                by_topic.entry(topic).or_default().push(record);
            }
        }
    }
    Ok(Json(
        by_topic
            .into_iter()
            .map(|(topic, receiving)| {
                let (connections, clients, users) = audience(&receiving);
                TopicSummary {
                    topic: topic.to_owned(),
                    connections,
                    clients,
                    users: users.len(),
                }
            })
            .collect(),
    ))
}

/// The connections of `/events`: a Mercure subscriber's topics are selectors, not topics.
fn herald_connections(records: Vec<NodeRecord>) -> Vec<NodeRecord> {
    records
        .into_iter()
        .filter(|record| record.mercure.is_none())
        .collect()
}

/// Connections, distinct clients, and each user's connections.
fn audience(receiving: &[&NodeRecord]) -> (usize, usize, BTreeMap<String, usize>) {
    let clients: BTreeSet<&str> = receiving
        .iter()
        .map(|record| record.client_id.as_str())
        .collect();
    let mut users = BTreeMap::new();
    for record in receiving {
        if let Some(user) = &record.user {
            *users.entry(user.clone()).or_insert(0) += 1;
        }
    }
    (receiving.len(), clients.len(), users)
}
