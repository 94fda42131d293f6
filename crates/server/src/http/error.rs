//! The API error type and the extractors that turn malformed requests into it.
//!
//! Every error a client sees is an [`ApiError`]: one status and one JSON body
//! `{"error": {"code", "message"}}`. Client mistakes are not logged; internal failures are logged
//! here and shown to the client without their details.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use herald_protocol::api::{ErrorBody, ErrorDetail};
use serde::de::DeserializeOwned;

use crate::app::{AppError, Rejection};
use crate::auth::{CredentialError, Denied};
use crate::hub::{PublishError, SubscribeError};
use crate::storage::{StorageError, StorageErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header, on 429 and 503 answers.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After` header.
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        // Whole seconds, rounded up: waiting less than told would be refused again.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn too_many(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
    }

    /// The event store failed; the details are logged, not shown.
    fn storage(err: &StorageError) -> Self {
        tracing::error!(%err, "storage failed");
        let message = match err.kind {
            StorageErrorKind::Full => "the event store is full; the request was not carried out",
            StorageErrorKind::ReadOnly => {
                "the event store cannot be written; the request was not carried out"
            }
            StorageErrorKind::Unavailable => {
                "the event store is unavailable; the request was not carried out, retry later"
            }
        };
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            message,
        )
    }

    /// The server is shutting down and takes no more work.
    fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; retry on another node or later",
        )
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        Self::storage(&err)
    }
}

impl From<CredentialError> for ApiError {
    fn from(err: CredentialError) -> Self {
        let code = match err {
            CredentialError::Expired => "token_expired",
            CredentialError::NotYetValid | CredentialError::IssuedInFuture => "token_not_yet_valid",
            _ => "invalid_token",
        };
        Self::new(StatusCode::UNAUTHORIZED, code, err.to_string())
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated(message) => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            Denied::Forbidden(message) => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(err: PublishError) -> Self {
        match err {
            PublishError::Storage(err) => Self::storage(&err),
            PublishError::ShuttingDown => Self::shutting_down(),
        }
    }
}

impl From<SubscribeError> for ApiError {
    fn from(err: SubscribeError) -> Self {
        match err {
            SubscribeError::UnknownClient(_) => {
                Self::bad_request("unknown_client_id", err.to_string())
            }
            SubscribeError::TooManyConnections { .. } => {
                Self::too_many("too_many_connections", err.to_string())
            }
            SubscribeError::Storage(err) => Self::storage(&err),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Invalid { code, message } => Self::bad_request(code, message),
            AppError::NotFound { code, message } => Self::not_found(code, message),
            AppError::Rejected {
                kind,
                code,
                message,
            } => {
                let status = match kind {
                    Rejection::Conflict => StatusCode::CONFLICT,
                    Rejection::Forbidden => StatusCode::FORBIDDEN,
                    Rejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    Rejection::Limited => StatusCode::TOO_MANY_REQUESTS,
                    Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                };
                Self::new(status, code, message)
            }
            AppError::Publish(err) => err.into(),
            AppError::Subscribe(err) => err.into(),
            AppError::Storage(err) => err.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s: 415 without a JSON content type, 413 past the
/// body limit, 400 for malformed JSON or a body of the wrong shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON, sent with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(err) => ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {}", err.body_text()),
        ),
        JsonRejection::JsonDataError(err) => ApiError::bad_request(
            "invalid_body",
            format!("the body has the wrong shape: {}", err.body_text()),
        ),
        rejection if body_stalled(&rejection) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body stopped arriving for longer than this server waits",
        ),
        JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            payload_too_large()
        }
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// Answers 413 at once to a request whose `Content-Length` is above `max_body_bytes`, before
/// anything else reads it (the body would be refused once read past the limit anyway; waiting
/// for it would only hold the connection).
pub async fn refuse_declared_oversize(
    axum::extract::State(max_body_bytes): axum::extract::State<usize>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body_bytes as u64) {
        let mut response = payload_too_large().into_response();
        // The rest of the body is not read: the connection cannot carry another request.
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than this server accepts",
    )
}

/// Whether the body failed because it made no progress for the body timeout.
fn body_stalled(rejection: &JsonRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// A path parameter as text, with a JSON rejection.
#[derive(Debug, Clone)]
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| {
                ApiError::bad_request("invalid_path", rejection.body_text())
            })
    }
}

/// The answer for a path no route serves.
pub async fn route_not_found() -> ApiError {
    ApiError::not_found("not_found", "no such resource")
}

/// The answer for a known path with a method it does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this resource",
    )
}

/// `axum::extract::Query` whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| ApiError::bad_request("invalid_parameter", rejection.body_text()))
    }
}
