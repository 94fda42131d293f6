//! Where credentials come from: header, cookie or query; keys (HS256, RS256, ES256); `herald
//! token`; development mode; and which origins may use them.

use std::time::Duration;

use herald_protocol::auth::Grants;
use herald_server::auth::claims_for;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::{FIXTURES, fixture, post_as, signed};
use crate::support::{TEST_SECRET, TestServer, herald_refuses_with, token};

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
            config.identity.jwt_public_key = Some(format!("{FIXTURES}/{public}").into());
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
