//! Extractors for who is calling: the verified [`Principal`] and the client's address.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::AppState;
use crate::auth::{Credential, Principal, credential_from_parts};
use crate::error::ApiError;
use crate::listener::PeerAddress;

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        credential_from_parts(parts, &state.auth)
    }
}

/// The address a request comes from: the peer, or with `trust_forwarded_for` the last
/// `X-Forwarded-For` entry (the one the trusted proxy appended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.trust_forwarded_for {
            // Only the last entry is the proxy's; anything before it the client may have sent.
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
            if forwarded.is_some() {
                return Ok(Self(forwarded));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<PeerAddress>>()
            .map(|ConnectInfo(PeerAddress(address))| address.ip());
        Ok(Self(peer))
    }
}

/// Counts one publish against the credential's rate; 429 with `Retry-After` past it.
pub fn limit_publish_rate(state: &AppState, credential: &Credential) -> Result<(), ApiError> {
    state
        .publish_rate
        .check(&credential.user)
        .map_err(|limited| {
            ApiError::too_many(
                "rate_limited",
                "this credential publishes faster than this server allows; retry later",
            )
            .retry_after(limited.retry_after)
        })
}
