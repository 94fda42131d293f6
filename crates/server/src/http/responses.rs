//! The error answers many operations share, declared once for the OpenAPI document: each is a
//! reusable response (`#/components/responses/...`) whose body is an `ErrorBody`.

#![allow(
    dead_code,
    reason = "these types only describe responses to the OpenAPI document; none is ever built"
)]

use herald_protocol::api::ErrorBody;
use utoipa::ToResponse;

/// No credential, or a bad, expired or not-yet-valid one
#[derive(ToResponse)]
pub struct Unauthorized(ErrorBody);

/// The credential is not an administrator's
#[derive(ToResponse)]
pub struct NotAdmin(ErrorBody);

/// The body is larger than the server accepts (`payload_too_large`), or the publish would
/// store more at once than a credential may (`publish_too_large`: its data times its streams)
#[derive(ToResponse)]
pub struct TooLarge(ErrorBody);

/// The body is not JSON
#[derive(ToResponse)]
pub struct NotJson(ErrorBody);

/// The credential publishes more requests or bytes a second than allowed (see `Retry-After`)
#[derive(ToResponse)]
pub struct RateLimited(ErrorBody);

/// The store is unavailable, or the server is shutting down
#[derive(ToResponse)]
pub struct Unavailable(ErrorBody);
