//! Authorization: who may publish, subscribe and administer, with which credential, and that no
//! event ever reaches a connection not allowed to see it.

mod credentials;
mod identity;
mod publishing;
mod subscribing;

use crate::support::{TestServer, client_with_token, token};
use herald_protocol::auth::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

pub(super) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub(super) fn publisher(selectors: &[&str]) -> String {
    token("publisher", selectors, &[], false)
}

pub(super) fn signed(claims: &Claims, algorithm: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

pub(super) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// Answers `POST path` with `body` sent with `token` (none when `None`): status and error code.
pub(super) async fn post_as(
    server: &TestServer,
    token: Option<&str>,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let http = match token {
        Some(token) => client_with_token(token),
        None => reqwest::Client::new(),
    };
    let response = http
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].clone())
}
