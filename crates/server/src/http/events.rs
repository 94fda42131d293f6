//! `GET /events`: the subscription stream.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use herald_protocol::names::validate_topic;
use herald_protocol::sse::CONTENT_TYPE;

use super::AppState;
use super::caller::ClientAddress;
use super::error::ApiError;
use super::responses::Unavailable;
use crate::auth::Principal;
use crate::hub::{Holder, SubscribeRequest};
use crate::ids::ClientId;
use crate::stream::EventStreamSlot;

/// Opens an event stream for the topics in the query.
#[utoipa::path(
    get,
    path = "/events",
    tag = "subscribe",
    params(
        ("topic" = Vec<String>, Query, description = "A topic to receive; repeat for several. With none, the connection receives only its client stream and broadcasts."),
        ("client_id" = Option<String>, Query, description = "Keep the client id issued in an earlier `herald.connected`."),
        ("last_event_id" = Option<String>, Query, description = "Replay events after this id; the `Last-Event-ID` header wins."),
        ("presence" = Option<bool>, Query, description = "`true`: also receive `herald.presence` `{\"topic\", \"user\", \"client_id\", \"joined\" | \"left\"}` (the time, RFC 3339) when a user's first connection to one of the topics opens or its last closes; a user who leaves and comes back within a few seconds (a reload, a reconnect) neither leaves nor joins. Paced per topic (`--presence-rate` a second)."),
        ("all_types" = Option<bool>, Query, description = "`true`: frame every event without an `event:` line, so `EventSource.onmessage` receives all of them whatever their type (the envelope's `type` names it); Herald's own `herald.*` frames keep their names."),
        ("Last-Event-ID" = Option<String>, Header, description = "Replay events after this id (sent by EventSource when it reconnects)."),
        ("access_token" = Option<String>, Query, description = "A credential, for clients that cannot set `Authorization` (EventSource). The `herald_token` cookie works too."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "An endless `text/event-stream`: `retry`, `herald.connected`, replayed events (or `herald.reset`), live events, heartbeats, and `herald.closing` when the server ends it.", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid topic, too many topics, or a client id this server never issued", body = herald_protocol::api::ErrorBody),
        (status = 401, description = "A private topic without a credential, or a bad, expired or not-yet-valid credential", body = herald_protocol::api::ErrorBody),
        (status = 403, description = "The credential may not subscribe to a private topic asked for", body = herald_protocol::api::ErrorBody),
        (status = 431, description = "The request head is larger than 16 KiB or has more than 64 headers", body = herald_protocol::api::ErrorBody),
        (status = 429, description = "Too many connections for this client id, user or address, or too many new client ids from this address (see `Retry-After`)", body = herald_protocol::api::ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    principal: Principal,
    ClientAddress(address): ClientAddress,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = checked_request(&state, &principal, address, query.as_deref(), &headers)?;
    if request.client_id.is_none() {
        // A new client id is stored for a day: how fast one address may have them is limited.
        let key: Arc<str> = address.map_or_else(
            || Arc::from("unknown"),
            |address| Arc::from(address.to_string()),
        );
        state.new_clients.check(&key).map_err(|limited| {
            ApiError::too_many(
                "too_many_new_clients",
                "this address starts new clients faster than this server allows; keep the \
                 client id from herald.connected, or retry later",
            )
            .retry_after(limited.retry_after)
        })?;
    }
    let subscription = state.app.subscribe(request).await?;
    tracing::Span::current().record("client_id", subscription.client_id().as_str());
    tracing::debug!("event stream opened");
    let slot = EventStreamSlot::new(subscription);
    let mut response = event_stream_response(slot.chunks());
    // Herald's own event-stream writer takes the subscription from here; hyper streams the
    // body, which takes it from the same slot.
    response.extensions_mut().insert(slot);
    Ok(response)
}

/// `HEAD /events`: what `GET` would answer, checked the same way, without opening a stream or
/// issuing a client id.
pub async fn probe(
    State(state): State<AppState>,
    principal: Principal,
    ClientAddress(address): ClientAddress,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    checked_request(&state, &principal, address, query.as_deref(), &headers)?;
    Ok(event_stream_response(futures_util::stream::empty()))
}

/// The subscription the query asks for, once the caller may have it.
fn checked_request(
    state: &AppState,
    principal: &Principal,
    address: Option<std::net::IpAddr>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<SubscribeRequest, ApiError> {
    let mut request = parse_request(
        query.unwrap_or(""),
        headers,
        state.config.max_topics_per_connection,
    )?;
    for topic in &request.topics {
        principal.require_subscribe(topic, state.auth.is_private(topic))?;
    }
    request.holder = Holder {
        user: principal.user().cloned(),
        admin: principal.is_admin(),
        private_topics: request
            .topics
            .iter()
            .filter(|topic| principal.may_subscribe(topic))
            .cloned()
            .collect(),
        expires_at: principal
            .credential()
            .map(|credential| credential.expires_at),
        address,
    };
    Ok(request)
}

fn parse_request(
    query: &str,
    headers: &HeaderMap,
    max_topics: usize,
) -> Result<SubscribeRequest, ApiError> {
    let mut request = SubscribeRequest::default();
    let mut query_last_id = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "topic" => {
                validate_topic(&value)
                    .map_err(|err| ApiError::bad_request("invalid_topic", err.to_string()))?;
                if !request.topics.iter().any(|topic| **topic == *value) {
                    request.topics.push(Arc::from(&*value));
                }
                if request.topics.len() > max_topics {
                    return Err(ApiError::bad_request(
                        "too_many_topics",
                        format!("a connection may subscribe to at most {max_topics} topics"),
                    ));
                }
            }
            "client_id" => {
                let client = ClientId::parse(&value).ok_or_else(|| {
                    ApiError::bad_request(
                        "unknown_client_id",
                        "this client id was not issued by this server",
                    )
                })?;
                request.client_id = Some(client);
            }
            "last_event_id" => query_last_id = Some(value.into_owned()),
            "all_types" => request.options.all_types = flag("all_types", &value)?,
            "presence" => request.options.presence = flag("presence", &value)?,
            // Other parameters (cache busters, credentials handled elsewhere) are not ours.
            _ => {}
        }
    }
    let header_last_id = headers
        .get("last-event-id")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    // An empty id means "none", as EventSource treats it.
    request.last_event_id = header_last_id.or(query_last_id).filter(|id| !id.is_empty());
    Ok(request)
}

/// A boolean query parameter: `true` or `false` (`1` or `0`).
fn flag(name: &'static str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{name} is true or false"),
        )),
    }
}

/// A `text/event-stream` response streaming `chunks`, with the headers that keep every proxy and
/// browser from buffering or caching it. Hyper sends the headers at once.
pub fn event_stream_response(chunks: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let mut response = Body::from_stream(chunks.map(Ok::<_, Infallible>)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<SubscribeRequest, ApiError> {
        parse_request(query, &HeaderMap::new(), 4)
    }

    #[test]
    fn reads_repeated_topics_once_each() {
        let request = parse("topic=a&topic=rooms%2F42&topic=a").unwrap();
        assert_eq!(request.topics, vec![Arc::from("a"), Arc::from("rooms/42")]);
    }

    #[test]
    fn header_last_event_id_wins_over_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static("9"));
        let request = parse_request("topic=a&last_event_id=5", &headers, 4).unwrap();
        assert_eq!(request.last_event_id.as_deref(), Some("9"));
        assert_eq!(
            parse("topic=a&last_event_id=5")
                .unwrap()
                .last_event_id
                .as_deref(),
            Some("5")
        );
    }

    #[test]
    fn refuses_bad_topics_and_too_many() {
        assert_eq!(parse("topic=a%0Ab").unwrap_err().code, "invalid_topic");
        assert_eq!(parse("topic=").unwrap_err().code, "invalid_topic");
        assert_eq!(
            parse("topic=a&topic=b&topic=c&topic=d&topic=e")
                .unwrap_err()
                .code,
            "too_many_topics"
        );
        assert!(
            parse("").unwrap().topics.is_empty(),
            "a connection may want only its own streams"
        );
        assert_eq!(parse("client_id=zz").unwrap_err().code, "unknown_client_id");
    }
}
