//! Credentials: tokens signed with the key every test server verifies, and HTTP clients that
//! send them.

use std::time::Duration;

use herald_protocol::auth::Grants;
use herald_server::auth::{Authenticator, claims_for};

/// The HS256 key every test server verifies tokens with.
pub const TEST_SECRET: &str = "test-secret-of-at-least-thirty-two-bytes";

/// A token signed with [`TEST_SECRET`] for `sub`, valid for `ttl`.
pub fn token_with(sub: &str, grants: Grants, ttl: Duration) -> String {
    Authenticator::with_secret(TEST_SECRET)
        .sign(&claims_for(sub, grants, ttl))
        .unwrap()
}

/// A token valid for an hour.
pub fn token(sub: &str, publish: &[&str], subscribe: &[&str], admin: bool) -> String {
    let grants = Grants {
        publish: publish.iter().map(ToString::to_string).collect(),
        subscribe: subscribe.iter().map(ToString::to_string).collect(),
        admin,
    };
    token_with(sub, grants, Duration::from_secs(3600))
}

/// An HTTP client that sends `token` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(bearer(token))
        .build()
        .unwrap()
}

/// The `Authorization` header sending `token`.
pub fn bearer(token: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    headers
}

/// The operator's credential ([`operator_client`]).
pub fn operator_token() -> String {
    token("operator", &["*"], &["*"], true)
}

/// A client holding an operator's credential: publish and subscribe anywhere, admin. What tests
/// about everything but authorization use.
pub fn operator_client() -> reqwest::Client {
    client_with_token(&operator_token())
}
