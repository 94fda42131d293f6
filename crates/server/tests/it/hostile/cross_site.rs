//! Requests from other sites: a change authenticated by the `herald_token` cookie must come from
//! an allowed origin, and development mode answers only loopback host names.

use serde_json::Value;

use crate::support::{TestServer, token};

/// `POST path` carrying the credential in the cookie, with these extra headers; the status and
/// the error code.
async fn post_with_cookie(
    server: &TestServer,
    path: &str,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let credential = token("alice", &[], &[], false);
    let mut request = reqwest::Client::new()
        .post(server.url(path))
        .header("cookie", format!("herald_token={credential}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_authenticated_by_the_cookie_must_come_from_an_allowed_origin() {
    let server = TestServer::start_with(|config| {
        config.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let own = server.base.clone();
    let read_all = "/api/notifications/read-all";
    let origin = |value: &str| vec![("origin", value.to_owned())];
    for (what, headers, status) in [
        ("another site", origin("https://evil.example"), 403),
        ("no origin at all", Vec::new(), 403),
        ("an opaque origin", origin("null"), 403),
        ("a listed origin", origin("https://app.example.com"), 200),
        ("Herald's own origin", origin(&own), 200),
        (
            "a same-origin referer",
            vec![("referer", format!("{own}/inbox"))],
            200,
        ),
        (
            "another site's referer",
            vec![("referer", "https://evil.example/page".into())],
            403,
        ),
    ] {
        let (got, code) = post_with_cookie(&server, read_all, &headers).await;
        assert_eq!(got, status, "{what}");
        if status == 403 {
            assert_eq!(code, "forbidden_origin", "{what}");
        }
    }
    // A header credential cannot be sent by another site without CORS agreeing: no check.
    let bearer = reqwest::Client::new()
        .post(server.url(read_all))
        .bearer_auth(token("alice", &[], &[], false))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    // Reading is not a change.
    let list = reqwest::Client::new()
        .get(server.url("/api/notifications"))
        .header(
            "cookie",
            format!("herald_token={}", token("alice", &[], &[], false)),
        )
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_answers_only_loopback_host_names() {
    let server = TestServer::start_with(|config| {
        config.dev = true;
        config.jwt_secret = None;
    })
    .await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let http = reqwest::Client::new();
    for (host, status) in [
        (format!("localhost:{port}"), 200),
        (format!("127.0.0.1:{port}"), 200),
        (format!("rebound.attacker.example:{port}"), 403),
        ("evil.example".to_owned(), 403),
    ] {
        for path in ["/api/dev/users", "/healthz"] {
            let response = http
                .get(server.url(path))
                .header("host", &host)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{host} {path}");
            if status == 403 {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "forbidden_host");
            }
        }
    }
}
