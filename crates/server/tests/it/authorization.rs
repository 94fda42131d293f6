//! Authorization: who may publish, subscribe and administer, with which credential, and that no
//! event ever reaches a connection not allowed to see it.


use std::collections::HashSet;
use std::time::Duration;

use herald_protocol::auth::{Claims, Grants};
use herald_server::auth::claims_for;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use crate::support::{TEST_SECRET, TestServer, client_with_token, herald_refuses_with, token, token_with, eventually};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn publisher(selectors: &[&str]) -> String {
    token("publisher", selectors, &[], false)
}

fn signed(claims: &Claims, algorithm: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// Answers `POST path` with `body` sent with `token` (none when `None`): status and error code.
async fn post_as(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_needs_a_valid_credential_with_a_matching_selector() {
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
    let cases: Vec<(&str, Option<String>, Value, u16, &str)> = vec![
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
            "a subscriber may not publish",
            Some(token("reader", &[], &["*"], false)),
            publish.clone(),
            403,
            "forbidden",
        ),
        (
            "prefix selector allows the topic",
            Some(publisher(&["rooms/*"])),
            publish.clone(),
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
        (
            "direct send to a user needs users/<id>",
            Some(publisher(&["rooms/*"])),
            json!({"data": 1}),
            403,
            "forbidden",
        ),
    ];
    for (name, token, body, status, code) in cases {
        let path = if name.starts_with("direct send") {
            "/api/users/alice/events"
        } else {
            "/api/publish"
        };
        let (got_status, got_code) = post_as(&server, token.as_deref(), path, body).await;
        assert_eq!(got_status, status, "{name}");
        if !code.is_empty() {
            assert_eq!(got_code, code, "{name}");
        }
    }
    let (status, _) = post_as(
        &server,
        Some(&publisher(&["users/*"])),
        "/api/users/alice/events",
        json!({"data": 1}),
    )
    .await;
    assert_eq!(status, 200, "users/* may send to any user");
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
async fn private_topics_need_a_subscribe_selector_and_bad_credentials_are_never_anonymous() {
    let server =
        TestServer::start_with(|config| config.private_topics = vec!["private/*".into()]).await;
    let anonymous = reqwest::Client::new();
    let status_of = |http: reqwest::Client, query: &'static str| {
        let url = server.url(&format!("/events?{query}"));
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_of(anonymous.clone(), "topic=public").await, 200);
    assert_eq!(status_of(anonymous.clone(), "topic=private/1").await, 401);
    let reader = client_with_token(&token("reader", &[], &["rooms/*"], false));
    assert_eq!(status_of(reader, "topic=private/1").await, 403);
    let allowed = client_with_token(&token("reader", &[], &["private/*"], false));
    assert_eq!(status_of(allowed, "topic=private/1").await, 200);
    let broken = client_with_token("not-a-token");
    assert_eq!(
        status_of(broken, "topic=public").await,
        401,
        "a bad credential is refused, not downgraded to anonymous"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_is_read_from_the_cookie_and_the_query_too() {
    let server =
        TestServer::start_with(|config| config.private_topics = vec!["private/*".into()]).await;
    let credential = token("reader", &[], &["private/*"], false);
    let by_cookie = reqwest::Client::new()
        .get(server.url("/events?topic=private/1"))
        .header("cookie", format!("theme=dark; herald_token={credential}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    let by_query = reqwest::Client::new()
        .get(server.url(&format!(
            "/events?topic=private/1&access_token={credential}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    let (_, me) = server.get_json("/api/me").await;
    assert_eq!(me["user"], "operator");
    assert_eq!(me["admin"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_events_never_reach_connections_not_allowed_to_see_them() {
    const TOPICS: usize = 8;
    const PER_TOPIC: usize = 40;
    let server = TestServer::start().await;
    let topics: Vec<String> = (0..TOPICS).map(|n| format!("orders/{n}")).collect();
    let query: String = topics
        .iter()
        .map(|topic| format!("topic={topic}"))
        .collect::<Vec<_>>()
        .join("&");
    let open = |http: reqwest::Client| {
        let query = query.clone();
        let server = &server;
        async move { server.connected_as(&http, &query).await }
    };
    let mut anonymous = open(reqwest::Client::new()).await;
    let mut outsider = open(client_with_token(&token("eve", &[], &["rooms/*"], false))).await;
    let mut insider = open(client_with_token(&token("ops", &[], &["orders/*"], false))).await;

    // Concurrent publishers, one per topic, alternating private and public events.
    let publishers: Vec<_> = topics
        .iter()
        .map(|topic| {
            let (http, url, topic) = (
                server.http.clone(),
                server.url("/api/publish"),
                topic.clone(),
            );
            tokio::spawn(async move {
                for n in 0..PER_TOPIC {
                    let private = n % 2 == 0;
                    let body =
                        json!({"topic": topic, "private": private, "data": {"private": private}});
                    let response = http.post(&url).json(&body).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let public = TOPICS * PER_TOPIC / 2;
    for (who, stream, expected) in [
        ("anonymous", &mut anonymous, public),
        ("outsider", &mut outsider, public),
        ("insider", &mut insider, TOPICS * PER_TOPIC),
    ] {
        let mut seen = HashSet::new();
        while seen.len() < expected {
            let envelope = stream.envelope().await;
            if who != "insider" {
                assert_eq!(
                    envelope.data,
                    json!({"private": false}),
                    "{who} received a private event"
                );
            }
            assert!(seen.insert(envelope.id), "{who} received an event twice");
        }
    }
    // A marker published last proves the outsiders' streams held nothing private after it.
    server.publish("orders/0", "marker", json!("end")).await;
    for stream in [&mut anonymous, &mut outsider] {
        assert_eq!(stream.envelope().await.kind, "marker");
    }
    // Replay honours the same rule.
    let mut replay = server
        .connected_as(&reqwest::Client::new(), &format!("{query}&last_event_id=0"))
        .await;
    let first = replay.next_event().await;
    assert_eq!(
        first.event, "herald.reset",
        "id 0 predates the log: reset, not a gap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_holds_only_the_events_the_connection_may_see() {
    let server = TestServer::start().await;
    let first = server.publish("t", "public", json!(1)).await;
    let response = server
        .post_json(
            "/api/publish",
            &json!({"topic": "t", "type": "secret", "private": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    server.publish("t", "public", json!(2)).await;
    let after = first.id.clone();
    let mut stream = server
        .connected_as(
            &reqwest::Client::new(),
            &format!("topic=t&last_event_id={after}"),
        )
        .await;
    let replayed = stream.envelope().await;
    assert_eq!(
        (replayed.kind.as_str(), replayed.data),
        ("public", json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_events_reach_every_connection_of_that_user_only() {
    let server = TestServer::start().await;
    let alice = client_with_token(&token("alice", &[], &[], false));
    let bob = client_with_token(&token("bob", &[], &[], false));
    let mut laptop = server.connected_as(&alice, "").await;
    let mut phone = server.connected_as(&alice, "").await;
    let mut other = server.connected_as(&bob, "").await;
    let sent: Value = server
        .post_json(
            "/api/users/alice/events",
            &json!({"type": "order.shipped", "data": {"order": 7}}),
        )
        .await
        .json()
        .await
        .unwrap();
    for stream in [&mut laptop, &mut phone] {
        let envelope = stream.envelope().await;
        assert_eq!(envelope.id, sent["id"].as_str().unwrap());
        assert_eq!(envelope.kind, "order.shipped");
    }
    server
        .post_json("/api/users/bob/events", &json!({"type": "for.bob"}))
        .await;
    assert_eq!(
        other.envelope().await.kind,
        "for.bob",
        "bob got only his own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_when_its_credential_expires() {
    let server = TestServer::start().await;
    let credential = token_with("brief", Grants::default(), Duration::from_secs(2));
    let mut stream = server
        .connected_as(&client_with_token(&credential), "topic=a")
        .await;
    let closing = stream.closing().await;
    assert_eq!(closing.reason.as_str(), "credential_expired");
    assert!(!closing.reconnect, "the same credential would be refused");
    stream.assert_ends().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_with_rs256_and_es256_verify_with_the_public_key() {
    let grants = Grants {
        publish: vec!["*".into()],
        ..Grants::default()
    };
    let claims = claims_for("service", grants, Duration::from_secs(600));
    for (public, private, algorithm) in [
        ("rsa-public.pem", "rsa-private.pem", Algorithm::RS256),
        ("ec-public.pem", "ec-private.pem", Algorithm::ES256),
    ] {
        let server = TestServer::start_with(|config| {
            config.jwt_secret = None;
            config.jwt_public_key = Some(format!("{FIXTURES}/{public}").into());
        })
        .await;
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&fixture(private)).unwrap(),
            _ => EncodingKey::from_ec_pem(&fixture(private)).unwrap(),
        };
        let good = signed(&claims, algorithm, &key);
        let body = json!({"topic": "a"});
        assert_eq!(
            post_as(&server, Some(&good), "/api/publish", body.clone())
                .await
                .0,
            200
        );
        // The classic confusion: an HS256 token whose "secret" is the public key.
        let confused = signed(
            &claims,
            Algorithm::HS256,
            &EncodingKey::from_secret(&fixture(public)),
        );
        assert_eq!(
            post_as(&server, Some(&confused), "/api/publish", body).await,
            (401, json!("invalid_token")),
            "{algorithm:?} server refuses HS256"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_user_and_per_address_are_limited() {
    let server = TestServer::start_with(|config| {
        config.max_connections_per_user = 2;
        config.max_connections_per_address = 3;
    })
    .await;
    let alice = client_with_token(&token("alice", &[], &[], false));
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = alice.get(server.url("/events")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let third = alice.get(server.url("/events")).send().await.unwrap();
    assert_eq!(third.status(), 429);
    let body: Value = third.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("user"));
    // One more from this address is allowed (3), then the address is full.
    let bob = client_with_token(&token("bob", &[], &[], false));
    let fourth = bob.get(server.url("/events")).send().await.unwrap();
    assert_eq!(fourth.status(), 200);
    let fifth = bob.get(server.url("/events")).send().await.unwrap();
    assert_eq!(fifth.status(), 429);
    let body: Value = fifth.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("address")
    );
    drop(held);
    drop(fourth);
    eventually("the connections are released", || async {
            bob.get(server.url("/events"))
                .send()
                .await
                .is_ok_and(|response| response.status() == 200)
        })
        .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_admits_listed_origins_with_credentials_and_never_a_wildcard_with_them() {
    let server = TestServer::start_with(|config| {
        config.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        let url = server.url("/api/publish");
        async move {
            reqwest::Client::new()
                .request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = preflight("https://app.example.com").await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let refused = preflight("https://evil.example.net").await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let open = TestServer::start_with(|config| config.cors_origins = vec!["*".into()]).await;
    let response = reqwest::Client::new()
        .get(open.url("/healthz"))
        .header("origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(
        response
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_refuses_to_start_without_a_key_unless_in_development_mode() {
    let stderr = herald_refuses_with(&["--listen", "127.0.0.1:0"], &[]).await;
    assert!(stderr.contains("--jwt-secret"), "{stderr}");
    assert!(stderr.contains("--dev"), "{stderr}");
    let stderr = herald_refuses_with(&["--dev", "--listen", "0.0.0.0:0"], &[]).await;
    assert!(stderr.contains("loopback"), "{stderr}");
    let stderr = herald_refuses_with(&["--jwt-secret", "short"], &[]).await;
    assert!(stderr.contains("32 bytes"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_token_prints_a_credential_the_server_accepts() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "token",
            "--sub",
            "script",
            "--publish",
            "rooms/*",
            "--ttl",
            "5m",
        ])
        .env("HERALD_JWT_SECRET", TEST_SECRET)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let server = TestServer::start().await;
    let publish = |topic: &'static str| {
        post_as(
            &server,
            Some(printed.trim()),
            "/api/publish",
            json!({"topic": topic}),
        )
    };
    assert_eq!(publish("rooms/9").await.0, 200);
    assert_eq!(publish("orders").await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_hands_out_demo_credentials_and_production_does_not() {
    let production = TestServer::start().await;
    let (status, _) = post_as(
        &production,
        None,
        "/api/dev/token",
        json!({"user": "alice"}),
    )
    .await;
    assert_eq!(status, 404);

    let dev = TestServer::start_with(|config| config.dev = true).await;
    let (status, users) = dev.get_json("/api/dev/users").await;
    assert_eq!(status, 200);
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|user| user["admin"] == true)
    );
    let answer: Value = reqwest::Client::new()
        .post(dev.url("/api/dev/token"))
        .json(&json!({"user": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["claims"]["sub"], "alice");
    let token = answer["token"].as_str().unwrap();
    assert_eq!(
        post_as(&dev, Some(token), "/api/publish", json!({"topic": "a"}))
            .await
            .0,
        200
    );
    let (status, code) = post_as(&dev, None, "/api/dev/token", json!({"user": "mallory"})).await;
    assert_eq!((status, code), (400, json!("unknown_demo_user")));
}
