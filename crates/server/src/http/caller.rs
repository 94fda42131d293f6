//! Extractors for who is calling: the verified [`Principal`], found in the request's
//! `Authorization: Bearer` header, `access_token` query parameter or `herald_token` cookie, in
//! that order (explicit before ambient); and the client's address.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde_json::value::RawValue;

use super::AppState;
use super::error::ApiError;
use super::origin::require_allowed_origin;
use crate::auth::{Credential, Principal, RateLimited};
use crate::stream::{PeerAddress, limited_address};

/// The cookie a credential may travel in.
const COOKIE: &str = "herald_token";
/// The query parameter a credential may travel in (`EventSource` cannot set headers).
const QUERY: &str = "access_token";

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    /// Anonymous without a token, 401 with a bad one: a bad credential is never anonymous. A
    /// change authenticated by the cookie must also come from an allowed origin.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = AccessToken::find(parts)? else {
            return Ok(Principal(None));
        };
        let credential = state.auth.verify(token.token()).await?;
        if matches!(token, AccessToken::Cookie(_)) {
            require_allowed_origin(parts, &state.config)?;
        }
        Ok(Principal(Some(credential)))
    }
}

/// The address a request comes from, as the per-address limits count it: the peer, or with
/// `trust_forwarded_for` the last `X-Forwarded-For` entry (the one the trusted proxy appended).
/// An IPv6 address stands for its /64, which one subscriber line usually holds whole.
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
                return Ok(Self(forwarded.map(limited_address)));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<PeerAddress>>()
            .map(|ConnectInfo(PeerAddress(address))| limited_address(address.ip()));
        Ok(Self(peer))
    }
}

/// Counts one publish storing `bytes` (its data and type, once for each stream it is stored
/// in) against the credential's rates, of requests and of bytes: 429 with `Retry-After` past
/// either, 413 for more bytes than the credential may publish at once.
pub fn limit_publish_rate(
    state: &AppState,
    credential: &Credential,
    bytes: u64,
) -> Result<(), ApiError> {
    let too_fast = |limited: RateLimited, what: &str| {
        ApiError::too_many(
            "rate_limited",
            format!("this credential publishes more {what} a second than this server allows; retry later"),
        )
        .retry_after(limited.retry_after)
    };
    state
        .publish_rate
        .check(&credential.user)
        .map_err(|limited| too_fast(limited, "requests"))?;
    let config = &state.config;
    if config.publish_byte_rate > 0 && bytes > config.publish_byte_burst {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "publish_too_large",
            format!(
                "this publish stores {bytes} bytes (its data once for each stream); a credential may \
                 publish at most {} at once",
                config.publish_byte_burst
            ),
        ));
    }
    state
        .publish_bytes
        .check_cost(&credential.user, bytes)
        .map_err(|limited| too_fast(limited, "bytes"))
}

/// What a publish of `kind` and `data` to `streams` streams stores, as counted by the byte rate.
pub fn publish_cost(kind: Option<&str>, data: Option<&RawValue>, streams: usize) -> u64 {
    let one = kind.map_or(0, str::len) + data.map_or(0, |data| data.get().len());
    (one as u64).saturating_mul(streams as u64)
}

/// Where a request's token came from, and the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessToken {
    Header(String),
    Query(String),
    Cookie(String),
}

impl AccessToken {
    /// The token a request carries, if any. An `Authorization` header that is not a bearer
    /// token is refused rather than ignored.
    pub fn find(parts: &Parts) -> Result<Option<Self>, ApiError> {
        if let Some(token) = bearer(parts)? {
            return Ok(Some(Self::Header(token.to_owned())));
        }
        if let Some(token) = query_parameter(parts, QUERY) {
            return Ok(Some(Self::Query(token)));
        }
        Ok(cookie(parts, COOKIE).map(Self::Cookie))
    }

    pub fn token(&self) -> &str {
        match self {
            Self::Header(token) | Self::Query(token) | Self::Cookie(token) => token,
        }
    }
}

/// The token of the request's `Authorization: Bearer` header, if it has that header; any
/// other `Authorization` header is refused rather than passed over.
pub fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .unwrap_or_default()
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the Authorization header must be `Bearer <token>`",
            )
        })
}

/// The first value of the query parameter `name`, decoded.
pub fn query_parameter(parts: &Parts, name: &str) -> Option<String> {
    form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The value of the cookie `name`.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"').to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn finds_the_token_in_header_query_or_cookie() {
        let found = |uri, headers| AccessToken::find(&parts(uri, headers)).unwrap();
        assert_eq!(
            found("/events?access_token=q", &[("authorization", "Bearer h")]),
            Some(AccessToken::Header("h".into()))
        );
        assert_eq!(
            found(
                "/events?topic=a&access_token=q",
                &[("cookie", "herald_token=c")]
            ),
            Some(AccessToken::Query("q".into()))
        );
        assert_eq!(
            found("/events", &[("cookie", "theme=dark; herald_token=c; x=y")]),
            Some(AccessToken::Cookie("c".into()))
        );
        assert_eq!(found("/events?topic=a", &[]), None);
    }

    #[test]
    fn a_non_bearer_authorization_header_is_refused() {
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   "] {
            let err = AccessToken::find(&parts("/", &[("authorization", value)])).unwrap_err();
            assert_eq!(err.status, 401, "{value}");
        }
    }
}
