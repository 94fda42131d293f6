//! Tokens with extreme times: refused with 401, never a panic; and the small leeway that admits
//! clocks disagreeing by seconds.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::support::{TEST_SECRET, TestServer, client_with_token};

/// `claims` as they stand, signed with the test key.
fn signed_json(claims: &Value) -> String {
    let key = EncodingKey::from_secret(TEST_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_token_times_are_refused_with_401_never_a_panic() {
    let server = TestServer::start().await;
    let now = unix_now();
    let cases = [
        (
            "exp in milliseconds (after year 9999)",
            json!({"sub": "a", "exp": now * 1000}),
        ),
        (
            "exp above i64::MAX",
            json!({"sub": "a", "exp": 9_223_372_036_854_775_808_u64}),
        ),
        ("exp at u64::MAX", json!({"sub": "a", "exp": u64::MAX})),
        ("exp negative", json!({"sub": "a", "exp": -1})),
        ("exp fractional", json!({"sub": "a", "exp": 1.5e12})),
        (
            "nbf at u64::MAX",
            json!({"sub": "a", "exp": now + 3600, "nbf": u64::MAX}),
        ),
        (
            "iat an hour ahead",
            json!({"sub": "a", "exp": now + 7200, "iat": now + 3600}),
        ),
        (
            "iat at u64::MAX",
            json!({"sub": "a", "exp": now + 3600, "iat": u64::MAX}),
        ),
        (
            "iat negative",
            json!({"sub": "a", "exp": now + 3600, "iat": -5}),
        ),
    ];
    for (name, claims) in cases {
        let credential = signed_json(&claims);
        for path in ["/api/me", "/events?topic=a"] {
            let response = client_with_token(&credential)
                .get(server.url(path))
                .send()
                .await
                .unwrap_or_else(|err| panic!("{name} on {path}: {err}"));
            assert_eq!(response.status(), 401, "{name} on {path}");
            let body: Value = response.json().await.unwrap();
            assert!(
                body["error"]["code"].is_string(),
                "{name} on {path}: {body}"
            );
        }
    }
    assert_eq!(server.get_json("/healthz").await.0, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_leeway_admits_clocks_that_disagree_by_seconds() {
    let server = TestServer::start_with(|config| config.jwt_leeway = Duration::from_secs(5)).await;
    let now = unix_now();
    let status = |claims: Value| {
        let credential = signed_json(&claims);
        let url = server.url("/api/me");
        async move {
            client_with_token(&credential)
                .get(url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(json!({"sub": "a", "exp": now - 2})).await,
        200,
        "just expired"
    );
    assert_eq!(
        status(json!({"sub": "a", "exp": now - 30})).await,
        401,
        "long expired"
    );
    let soon = json!({"sub": "a", "exp": now + 60, "nbf": now + 2, "iat": now + 2});
    assert_eq!(status(soon).await, 200, "issued by a clock a little ahead");
    let early = json!({"sub": "a", "exp": now + 600, "nbf": now + 60});
    assert_eq!(status(early).await, 401, "not valid for another minute");
}
