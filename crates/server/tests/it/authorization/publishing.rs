//! Who may publish: a valid credential whose selectors match the target, at the allowed rate.

use std::time::Duration;

use herald_protocol::auth::Grants;
use herald_server::auth::claims_for;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::{post_as, publisher, signed};
use crate::support::{TEST_SECRET, TestServer, client_with_token, token};

/// One case of a publish table: its name, the token sent (none when `None`), the body, and the
/// status and error code expected (no code for a success).
type Case = (&'static str, Option<String>, Value, u16, &'static str);

/// Posts each case's body to `path` with its token and checks the answer.
async fn check_cases(server: &TestServer, path: &str, cases: Vec<Case>) {
    for (name, token, body, status, code) in cases {
        let (got_status, got_code) = post_as(server, token.as_deref(), path, body).await;
        assert_eq!(got_status, status, "{name}");
        if !code.is_empty() {
            assert_eq!(got_code, code, "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_needs_a_valid_credential() {
    let server = TestServer::start().await;
    let everyone = Grants {
        publish: vec!["*".into()],
        ..Grants::default()
    };
    let mut expired = claims_for("late", everyone.clone(), Duration::ZERO);
    expired.exp -= 10;
    let mut not_yet = claims_for("early", everyone.clone(), Duration::from_secs(3600));
    not_yet.nbf = Some(not_yet.exp - 60);
    let valid = claims_for("someone", everyone.clone(), Duration::from_secs(3600));
    let secret = EncodingKey::from_secret(TEST_SECRET.as_bytes());
    let other_secret = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!");
    let publish = json!({"topic": "rooms/1", "data": 1});
    let cases: Vec<Case> = vec![
        ("no token", None, publish.clone(), 401, "unauthorized"),
        (
            "bad signature",
            Some(signed(&valid, Algorithm::HS256, &other_secret)),
            publish.clone(),
            401,
            "invalid_token",
        ),
        (
            "wrong algorithm (HS384 with the right secret)",
            Some(signed(&valid, Algorithm::HS384, &secret)),
            publish.clone(),
            401,
            "invalid_token",
        ),
        (
            "not a token",
            Some("garbage".into()),
            publish.clone(),
            401,
            "invalid_token",
        ),
        (
            "expired",
            Some(signed(&expired, Algorithm::HS256, &secret)),
            publish.clone(),
            401,
            "token_expired",
        ),
        (
            "not yet valid",
            Some(signed(&not_yet, Algorithm::HS256, &secret)),
            publish.clone(),
            401,
            "token_not_yet_valid",
        ),
        (
            "a valid token",
            Some(signed(&valid, Algorithm::HS256, &secret)),
            publish,
            200,
            "",
        ),
    ];
    check_cases(&server, "/api/publish", cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_needs_a_matching_selector() {
    let server = TestServer::start().await;
    let publish = json!({"topic": "rooms/1", "data": 1});
    let cases: Vec<Case> = vec![
        (
            "a subscriber may not publish",
            Some(token("reader", &[], &["*"], false)),
            publish.clone(),
            403,
            "forbidden",
        ),
        (
            "prefix selector allows the topic",
            Some(publisher(&["rooms/*"])),
            publish,
            200,
            "",
        ),
        (
            "prefix selector forbids another topic",
            Some(publisher(&["rooms/*"])),
            json!({"topic": "orders"}),
            403,
            "forbidden",
        ),
        (
            "every topic of a publish must be allowed",
            Some(publisher(&["rooms/*"])),
            json!({"topics": ["rooms/1", "orders"]}),
            403,
            "forbidden",
        ),
        (
            "exact selector",
            Some(publisher(&["orders"])),
            json!({"topic": "orders"}),
            200,
            "",
        ),
    ];
    check_cases(&server, "/api/publish", cases).await;
    let direct = vec![
        (
            "direct send to a user needs users/<id>",
            Some(publisher(&["rooms/*"])),
            json!({"data": 1}),
            403,
            "forbidden",
        ),
        (
            "users/* may send to any user",
            Some(publisher(&["users/*"])),
            json!({"data": 1}),
            200,
            "",
        ),
    ];
    check_cases(&server, "/api/users/alice/events", direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_admin_claim() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=a").await;
    let client_id = stream.connected().await.client_id;
    let publisher = publisher(&["*"]);
    let admin = token("root", &[], &[], true);
    for (who, token, status) in [
        ("anonymous", None, 401),
        ("publisher", Some(publisher.as_str()), 403),
        ("admin", Some(admin.as_str()), 200),
    ] {
        let http = token.map_or_else(reqwest::Client::new, client_with_token);
        let list = http.get(server.url("/api/clients")).send().await.unwrap();
        assert_eq!(list.status(), status, "{who} lists clients");
        let (broadcast, _) = post_as(&server, token, "/api/broadcast", json!({"data": 1})).await;
        assert_eq!(broadcast, status, "{who} broadcasts");
        let close = http
            .delete(server.url(&format!("/api/clients/{client_id}")))
            .send()
            .await
            .unwrap();
        let expected = if status == 200 { 204 } else { status };
        assert_eq!(close.status(), expected, "{who} closes a client");
    }
    assert_eq!(
        stream.envelope().await.topic,
        None,
        "only the admin's broadcast arrived"
    );
    assert_eq!(stream.closing().await.reason.as_str(), "admin_close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_faster_than_the_rate_is_refused_with_retry_after() {
    let server = TestServer::start_with(|config| {
        config.publish_rate = 1;
        config.publish_burst = 3;
    })
    .await;
    let fast = client_with_token(&publisher(&["*"]));
    for _ in 0..3 {
        let response = fast
            .post(server.url("/api/publish"))
            .json(&json!({"topic": "a"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let refused = fast
        .post(server.url("/api/publish"))
        .json(&json!({"topic": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another credential has its own budget.
    let other = client_with_token(&token("other", &["*"], &[], false));
    let response = other
        .post(server.url("/api/publish"))
        .json(&json!({"topic": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
