//! The Mercure subscriptions API, `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`
//! (with `--mercure-subscriptions`): the active subscriptions of every node as JSON-LD, for a
//! credential whose `mercure.subscribe` selects the URL asked for.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, route_not_found};
use super::mercure::credential;
use crate::auth::MercureRole;
use crate::mercure::subscriptions::{SUBSCRIPTIONS_PATH, collection};

/// The subscriptions the path names: all, those of one topic selector, or one.
#[utoipa::path(
    get,
    path = "/.well-known/mercure/subscriptions",
    tag = "mercure",
    description = "With `--mercure-subscriptions`. Also `/.well-known/mercure/subscriptions/{topic}` (the subscriptions of one selector) and `/.well-known/mercure/subscriptions/{topic}/{subscriber}` (one, 404 when it is not active), each part percent-encoded. Needs a Mercure credential whose `mercure.subscribe` selects the URL.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A JSON-LD document: `@context`, `id`, `type` (`Subscriptions`), `lastEventID` (resume from it to receive every change after this list) and `subscriptions` (`id`, `type`, `topic`, `subscriber`, `active`, `payload`)", content_type = "application/ld+json", body = Object),
        (status = 401, description = "No credential, or a bad one", body = herald_protocol::api::ErrorBody),
        (status = 403, description = "The credential's `mercure.subscribe` does not select the URL", body = herald_protocol::api::ErrorBody),
        (status = 404, description = "The subscriptions API is off, or no such subscription", body = herald_protocol::api::ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    if !state.config.mercure.mercure_subscriptions {
        return Err(route_not_found().await);
    }
    let (parts, _) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let segments: Vec<String> = path
        .strip_prefix(SUBSCRIPTIONS_PATH)
        .unwrap_or_default()
        .split('/')
        .skip(1)
        .map(decode)
        .collect();
    if segments.len() > 2 || segments.iter().any(String::is_empty) {
        return Err(route_not_found().await);
    }
    let Some(credential) = credential(&state, &parts, MercureRole::Subscriber).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the subscriptions API needs a credential whose mercure.subscribe selects its URL",
        ));
    };
    let allowed = credential
        .subscribe
        .iter()
        .any(|selector| selector.matches(&path));
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this credential's mercure.subscribe does not select {path:?}"),
        ));
    }
    let (mut subscriptions, last_event_id) = state.app.mercure_subscriptions().await?;
    if let Some(topic) = segments.first() {
        subscriptions.retain(|subscription| subscription.topic == *topic);
    }
    let document = match segments.get(1) {
        None => collection(&path, &last_event_id, &subscriptions),
        Some(subscriber) => {
            let Some(found) = subscriptions
                .iter()
                .find(|subscription| subscription.subscriber == *subscriber)
            else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "subscription_not_found",
                    "no such active subscription",
                ));
            };
            let mut document = found.document(true, true);
            document["lastEventID"] = last_event_id.into();
            document
        }
    };
    let mut response = Json(document).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ld+json"),
    );
    Ok(response)
}

/// A path segment as text: `+` is a space, `%XX` an encoded byte.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        let hex = |i: usize| {
            bytes
                .get(i)
                .and_then(|b| char::from(*b).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match (byte, hex(at + 1), hex(at + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                at += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                at += 1;
            }
            _ => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn segments_are_decoded() {
        assert_eq!(
            decode("https%3A%2F%2Fexample.com%2F%7Bselector%7D"),
            "https://example.com/{selector}"
        );
        assert_eq!(decode("a+b%2Bc%zz"), "a b+c%zz");
    }
}
