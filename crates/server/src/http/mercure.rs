//! The Mercure hub at `/.well-known/mercure`: `GET` subscribes (topic selectors, `Last-Event-ID`
//! or `lastEventID`), `POST` publishes an update from a form. Credentials come as Mercure sends
//! them: `Authorization: Bearer`, the `authorization` query parameter, or the
//! `mercureAuthorization` cookie, in that order; their `mercure` claim says what the holder may
//! publish and which private updates it may receive.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_protocol::names::validate_topic;

use super::AppState;
use super::caller::{ClientAddress, bearer, cookie, query_parameter};
use super::error::ApiError;
use super::events::event_stream_response;
use super::origin::require_allowed_origin;
use crate::app::MercureUpdate;
use crate::auth::{MercureCredential, MercureRole};
use crate::hub::{Holder, MercureSubscribeRequest};
use crate::mercure::{MercureSubscriber, Selector};
use crate::stream::EventStreamSlot;

/// The cookie a Mercure credential may travel in.
const COOKIE: &str = "mercureAuthorization";
/// The query parameter a Mercure credential may travel in.
const QUERY: &str = "authorization";
/// The most bytes of a publisher-chosen id.
const MAX_ID_BYTES: usize = 1024;

/// Where a Mercure request's token came from.
enum Carrier {
    Header,
    Query,
    Cookie,
}

/// The token a Mercure request carries, and where it came from. A malformed `Authorization`
/// header is refused rather than passed over.
fn find_token(parts: &Parts) -> Result<Option<(String, Carrier)>, ApiError> {
    if let Some(token) = bearer(parts)? {
        return Ok(Some((token.to_owned(), Carrier::Header)));
    }
    if let Some(token) = query_parameter(parts, QUERY) {
        return Ok(Some((token, Carrier::Query)));
    }
    Ok(cookie(parts, COOKIE).map(|token| (token, Carrier::Cookie)))
}

/// The request's verified credential for `role`, if it carries one: 401 for a bad one, and for
/// a change authenticated by the cookie that does not come from an allowed origin.
pub(super) async fn credential(
    state: &AppState,
    parts: &Parts,
    role: MercureRole,
) -> Result<Option<MercureCredential>, ApiError> {
    let Some((token, carrier)) = find_token(parts)? else {
        return Ok(None);
    };
    let credential = state.auth.verify_mercure(&token, role).await?;
    if matches!(carrier, Carrier::Cookie) {
        require_allowed_origin(parts, &state.config)?;
    }
    Ok(Some(credential))
}

/// A topic or selector as Herald takes it: 400 otherwise.
fn checked_topic(topic: &str) -> Result<Arc<str>, ApiError> {
    validate_topic(topic).map_err(|err| ApiError::bad_request("invalid_topic", err.to_string()))?;
    Ok(Arc::from(topic))
}

/// `GET /.well-known/mercure`: an event stream of the updates the `topic` selectors select and
/// the credential may receive.
#[utoipa::path(
    get,
    path = "/.well-known/mercure",
    tag = "mercure",
    params(
        ("topic" = Vec<String>, Query, description = "A topic selector: an exact topic, `*`, or an RFC 6570 URI template (`https://example.com/books/{id}`); repeat for several."),
        ("lastEventID" = Option<String>, Query, description = "Replay the updates after this id (an update's Mercure id or a Herald event id); the `Last-Event-ID` header wins."),
        ("Last-Event-ID" = Option<String>, Header, description = "Replay the updates after this id (sent by EventSource when it reconnects)."),
        ("authorization" = Option<String>, Query, description = "A Mercure credential, for clients that cannot set `Authorization`; the `mercureAuthorization` cookie works too."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "An endless `text/event-stream` framed as Mercure frames it: `id`, `event` when the update has a type, `retry` when given, and the update's data, one `data:` line per line. With a last event id, the `Last-Event-ID` header names where the stream starts (`earliest` when that id cannot be replayed, which the stream also announces with `herald.reset`).", content_type = "text/event-stream", body = String),
        (status = 400, description = "No `topic`, an invalid one, or too many", body = herald_protocol::api::ErrorBody),
        (status = 401, description = "A bad or expired credential, or none where anonymous subscribers are not allowed (`--mercure-anonymous`)", body = herald_protocol::api::ErrorBody),
        (status = 503, response = super::responses::Unavailable),
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let request = subscribe_request(&state, &parts, address).await?;
    let (subscription, last_event_id) = state.app.subscribe_mercure(request).await?;
    tracing::debug!("Mercure stream opened");
    let slot = EventStreamSlot::new(subscription);
    let mut response = mercure_stream_response(event_stream_response(slot.chunks()));
    if let Some(id) = last_event_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert("last-event-id", id);
    }
    response.extensions_mut().insert(slot);
    Ok(response)
}

/// `HEAD /.well-known/mercure`: what `GET` would answer, checked the same way, without opening
/// a stream.
pub async fn probe(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    subscribe_request(&state, &parts, address).await?;
    Ok(mercure_stream_response(event_stream_response(
        futures_util::stream::empty(),
    )))
}

/// The headers Mercure subscribers expect besides those of every event stream.
fn mercure_stream_response(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    response
}

/// The subscription a Mercure request asks for, once the caller may have it.
async fn subscribe_request(
    state: &AppState,
    parts: &Parts,
    address: Option<std::net::IpAddr>,
) -> Result<MercureSubscribeRequest, ApiError> {
    let credential = credential(state, parts, MercureRole::Subscriber).await?;
    if credential.is_none() && !(state.config.mercure.mercure_anonymous || state.config.dev) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this hub needs a credential to subscribe: send a token as `Authorization: Bearer`, \
             the `mercureAuthorization` cookie or the `authorization` parameter",
        ));
    }
    let mut selectors: Vec<Selector> = Vec::new();
    let mut query_last_id = None;
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        match &*key {
            "topic" => {
                checked_topic(&value)?;
                if !selectors.iter().any(|selector| selector.as_str() == value) {
                    selectors.push(Selector::new(&value));
                }
                if selectors.len() > state.config.max_topics_per_connection {
                    return Err(ApiError::bad_request(
                        "too_many_topics",
                        format!(
                            "a subscription may name at most {} topic selectors",
                            state.config.max_topics_per_connection
                        ),
                    ));
                }
            }
            "lastEventID" => query_last_id = Some(value.into_owned()),
            _ => {}
        }
    }
    if selectors.is_empty() {
        return Err(ApiError::bad_request(
            "missing_topic",
            "Missing \"topic\" parameter: name at least one topic selector",
        ));
    }
    let header_last_id = parts
        .headers
        .get("last-event-id")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let credential = credential.unwrap_or_default();
    Ok(MercureSubscribeRequest {
        subscriber: MercureSubscriber {
            id: crate::ids::urn_uuid(),
            selectors,
            allowed: credential.subscribe,
            payload: credential.payload,
        },
        last_event_id: header_last_id.or(query_last_id).filter(|id| !id.is_empty()),
        holder: Holder {
            user: credential.user,
            expires_at: credential.expires_at,
            address,
            ..Holder::default()
        },
    })
}

/// `POST /.well-known/mercure`: publishes the update the form describes; answers its id as
/// text.
#[utoipa::path(
    post,
    path = "/.well-known/mercure",
    tag = "mercure",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`topic` (repeatable; the first is canonical, the others alternates), `data` (text), `private` (present: private), `id` (the update's id; without one Herald generates `urn:uuid:…`), `type`, `retry` (milliseconds)."),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The update is stored; the body is its id", content_type = "text/plain", body = String),
        (status = 400, description = "No `topic`, an invalid topic, id, type or retry", body = herald_protocol::api::ErrorBody),
        (status = 401, description = "No credential, or a bad or expired one", body = herald_protocol::api::ErrorBody),
        (status = 403, description = "The credential's `mercure.publish` does not select every topic of the update, or a cookie credential from another origin", body = herald_protocol::api::ErrorBody),
        (status = 413, response = super::responses::TooLarge),
        (status = 415, description = "The body is not `application/x-www-form-urlencoded`", body = herald_protocol::api::ErrorBody),
        (status = 429, response = super::responses::RateLimited),
        (status = 503, response = super::responses::Unavailable),
    )
)]
pub async fn publish(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let Some(credential) = credential(&state, &parts, MercureRole::Publisher).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "publishing needs a credential: send a token as `Authorization: Bearer`, the \
             `mercureAuthorization` cookie or the `authorization` parameter",
        ));
    };
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|kind| {
            kind.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "publish an update as application/x-www-form-urlencoded fields",
        ));
    }
    let body = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("an update is at most {} bytes", state.config.max_body_bytes),
            )
        })?;
    let update = parse_update(&body, state.config.max_topics_per_publish)?;
    let forbidden = update.topics.iter().find(|topic| {
        !credential
            .publish
            .iter()
            .any(|selector| selector.matches(topic))
    });
    if let Some(topic) = forbidden {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this credential may not publish to {topic:?}"),
        ));
    }
    let key: Arc<str> = credential
        .user
        .clone()
        .unwrap_or_else(|| Arc::from("mercure publisher"));
    limit_rate(&state, &key, &update)?;
    let id = state.app.publish_mercure(update).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], id).into_response())
}

/// Counts a publish against the publisher's rates, of requests and of bytes.
fn limit_rate(state: &AppState, key: &Arc<str>, update: &MercureUpdate) -> Result<(), ApiError> {
    let too_fast = |limited: crate::auth::RateLimited| {
        ApiError::too_many(
            "rate_limited",
            "this credential publishes faster than this server allows; retry later",
        )
        .retry_after(limited.retry_after)
    };
    state.publish_rate.check(key).map_err(too_fast)?;
    let bytes = (update.data.len() as u64).saturating_mul(update.topics.len() as u64);
    state.publish_bytes.check_cost(key, bytes).map_err(too_fast)
}

/// The update a publish form describes: 400 for a missing topic and for a field Herald cannot
/// take as it is.
fn parse_update(body: &[u8], max_topics: usize) -> Result<MercureUpdate, ApiError> {
    let mut update = MercureUpdate::default();
    for (key, value) in form_urlencoded::parse(body) {
        match &*key {
            "topic" => {
                let topic = checked_topic(&value)?;
                if !update.topics.contains(&topic) {
                    update.topics.push(topic);
                }
                if update.topics.len() > max_topics {
                    return Err(ApiError::bad_request(
                        "too_many_topics",
                        format!("an update may have at most {max_topics} topics"),
                    ));
                }
            }
            "data" => update.data = value.into_owned(),
            // Present, whatever its value, as Mercure publishers send it (`on`).
            "private" => update.private = true,
            "id" => {
                if value.is_empty()
                    || value.len() > MAX_ID_BYTES
                    || value.starts_with('#')
                    || value.contains(['\r', '\n', '\0'])
                {
                    return Err(ApiError::bad_request(
                        "invalid_id",
                        format!(
                            "an update's id is 1 to {MAX_ID_BYTES} bytes, not starting with `#`, \
                             without line breaks or NUL"
                        ),
                    ));
                }
                update.id = Some(value.into_owned());
            }
            "type" => update.kind = Some(value.into_owned()),
            "retry" => {
                let retry = value.parse().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_retry",
                        "Invalid \"retry\" parameter: a number of milliseconds",
                    )
                })?;
                update.retry = Some(retry);
            }
            _ => {}
        }
    }
    if update.topics.is_empty() {
        return Err(ApiError::bad_request(
            "missing_topic",
            "Missing \"topic\" parameter: an update needs at least one topic",
        ));
    }
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_describes_an_update() {
        let update = parse_update(
            b"topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&topic=alt&topic=alt&data=a%0A%0A++b\
              &private=&id=id-%5B%22x%22%5D&type=book.updated&retry=2500",
            10,
        )
        .unwrap();
        assert_eq!(
            update.topics,
            [Arc::from("https://example.com/books/1"), Arc::from("alt")]
        );
        assert_eq!(update.data, "a\n\n  b");
        assert!(update.private);
        assert_eq!(update.id.as_deref(), Some("id-[\"x\"]"));
        assert_eq!(update.kind.as_deref(), Some("book.updated"));
        assert_eq!(update.retry, Some(2500));
    }

    #[test]
    fn a_bad_form_is_refused_with_the_reason() {
        let code = |body: &[u8]| parse_update(body, 2).unwrap_err().code;
        assert_eq!(code(b"data=x"), "missing_topic");
        assert_eq!(code(b"topic=a&retry=soon"), "invalid_retry");
        assert_eq!(code(b"topic=a&id=%23fragment"), "invalid_id");
        assert_eq!(code(b"topic=a&id=a%0Ab"), "invalid_id");
        assert_eq!(code(b"topic=a&topic=b&topic=c"), "too_many_topics");
        assert_eq!(code(b"topic=a%00"), "invalid_topic");
    }
}
