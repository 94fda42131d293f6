//! Publishing and subscribing as Mercure clients do: every form field, Mercure's framing, topic
//! selectors, private updates and the three ways a credential travels.

use serde_json::json;

use super::{
    Published, hub, now, publish, publish_form, publisher, subscribe, subscribe_with, token,
    token_signed, topics,
};
use crate::support::{SseStream, TEST_SECRET, TestServer};

/// The raw bytes of a stream until `needle` has arrived: for what a decoder would smooth over.
async fn raw_until(mut response: reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(crate::support::TIMEOUT, response.chunk())
            .await
            .expect("bytes in time")
            .unwrap()
            .expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

/// The ids of the next `n` events of `stream`.
async fn ids(stream: &mut SseStream, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(stream.next_event().await.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_framed_as_mercure_frames_it() {
    let server = hub().await;
    let response = reqwest::Client::new()
        .get(server.url("/.well-known/mercure?topic=books"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"],
        "private, no-cache, no-store, must-revalidate, max-age=0"
    );
    assert!(
        response.headers().get("last-event-id").is_none(),
        "no history was asked for"
    );
    let data = "data for\n\n        multi-line";
    let published = publish_form(
        &server,
        Some(&publisher()),
        &[
            ("topic", "books"),
            ("data", data),
            ("id", "id-[\"books\"]"),
            ("type", "book.updated"),
            ("retry", "2500"),
        ],
    )
    .await;
    assert_eq!(published.status, 200);
    assert_eq!(published.content_type, "text/plain; charset=utf-8");
    assert_eq!(published.body, "id-[\"books\"]");
    let raw = raw_until(response, "multi-line\n\n").await;
    assert!(raw.starts_with(":\n"), "a comment is sent at once: {raw:?}");
    assert!(
        raw.contains(
            "retry: 2500\nid: id-[\"books\"]\nevent: book.updated\n\
             data: data for\ndata: \ndata:         multi-line\n\n"
        ),
        "{raw:?}"
    );

    // Without a type there is no event line, and without an id Herald makes one.
    let mut stream = subscribe(&server, "topic=books").await;
    let id = publish(&server, &[("topic", "books"), ("data", "plain")]).await;
    assert!(id.starts_with("urn:uuid:") && id.len() == 45, "{id}");
    let event = stream.next_event().await;
    assert_eq!(
        (event.id, event.event, event.data),
        (id, "message".into(), "plain".into())
    );
    // Empty data is one empty line.
    publish(&server, &[("topic", "books")]).await;
    assert_eq!(stream.next_event().await.data, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_match_exact_topics_alternates_templates_and_everything() {
    let server = hub().await;
    let book = "https://example.com/books/1";
    let mut template = subscribe(&server, &topics(&["https://example.com/books/{id}"])).await;
    let mut several = subscribe(&server, &topics(&["foo", "news"])).await;
    let mut everything = subscribe(&server, "topic=*").await;
    let mut exact = subscribe(&server, &topics(&[book])).await;

    let on_book = publish(&server, &[("topic", book), ("data", "1")]).await;
    // Matched through an alternate topic.
    let on_news = publish(&server, &[("topic", "elsewhere"), ("topic", "news")]).await;
    // Matched by none but the wildcard.
    let nested = publish(&server, &[("topic", "https://example.com/books/1/reviews")]).await;
    let last = publish(&server, &[("topic", "news"), ("topic", book)]).await;

    assert_eq!(ids(&mut template, 2).await, [on_book.clone(), last.clone()]);
    assert_eq!(ids(&mut several, 2).await, [on_news.clone(), last.clone()]);
    assert_eq!(ids(&mut exact, 2).await, [on_book.clone(), last.clone()]);
    assert_eq!(
        ids(&mut everything, 4).await,
        [on_book, on_news, nested, last]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_updates_reach_only_subscribers_allowed_one_of_their_topics() {
    let server = hub().await;
    let book = "https://example.com/books/1";
    let mut anonymous = subscribe(&server, &topics(&[book])).await;
    let allowed_via_alternate = token(&[], &["https://example.com/users/{user}"]);
    let mut member = subscribe_with(
        reqwest::Client::new()
            .get(server.url(&format!("/.well-known/mercure?{}", topics(&[book]))))
            .bearer_auth(&allowed_via_alternate),
    )
    .await;
    let mut other = subscribe_with(
        reqwest::Client::new()
            .get(server.url(&format!("/.well-known/mercure?{}", topics(&[book]))))
            .bearer_auth(token(&[], &["https://example.com/admin"])),
    )
    .await;
    let secret = publish(
        &server,
        &[
            ("topic", book),
            ("topic", "https://example.com/users/alice"),
            ("private", "on"),
        ],
    )
    .await;
    let public = publish(&server, &[("topic", book)]).await;
    assert_eq!(member.next_event().await.id, secret);
    assert_eq!(member.next_event().await.id, public);
    assert_eq!(
        anonymous.next_event().await.id,
        public,
        "never the private one"
    );
    assert_eq!(other.next_event().await.id, public);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_travels_in_the_header_the_query_or_the_cookie() {
    let server = TestServer::start().await;
    let anonymous = reqwest::Client::new()
        .get(server.url("/.well-known/mercure?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "anonymous subscribers are not allowed here"
    );
    let subscriber = token(&[], &["a"]);
    let by_query = format!("/.well-known/mercure?topic=a&authorization={subscriber}");
    let mut streams = vec![
        subscribe_with(reqwest::Client::new().get(server.url(&by_query))).await,
        subscribe_with(
            reqwest::Client::new()
                .get(server.url("/.well-known/mercure?topic=a"))
                .header(
                    "cookie",
                    format!("theme=dark; mercureAuthorization={subscriber}"),
                ),
        )
        .await,
        subscribe_with(
            reqwest::Client::new()
                .get(server.url("/.well-known/mercure?topic=a"))
                .bearer_auth(&subscriber),
        )
        .await,
    ];
    let id = publish(&server, &[("topic", "a"), ("private", "on")]).await;
    for stream in &mut streams {
        assert_eq!(stream.next_event().await.id, id);
    }

    // Publishing with the cookie needs the page to come from an allowed origin.
    let cookie = format!("mercureAuthorization={}", publisher());
    let from = |origin: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(server.url("/.well-known/mercure"))
            .header("cookie", &cookie)
            .form(&[("topic", "a")]);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(
        from(Some("https://evil.example")).await.unwrap().status(),
        403
    );
    assert_eq!(from(None).await.unwrap().status(), 403);
    assert_eq!(from(Some(&server.base)).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publishes_are_refused_with_mercures_statuses_and_nothing_is_stored() {
    // A small body limit: a body past it is still sent whole before the answer comes.
    let server = TestServer::start_with(|config| {
        config.mercure.mercure_anonymous = true;
        config.max_body_bytes = 4096;
    })
    .await;
    let mut stream = subscribe(&server, "topic=*").await;
    let status = |published: Published| published.status;
    let form = [("topic", "a"), ("data", "x")];
    assert_eq!(status(publish_form(&server, None, &form).await), 401);
    let forged = token_signed("not-the-key-of-this-server-at-all", &["*"], &[], json!({}));
    assert_eq!(
        status(publish_form(&server, Some(&forged), &form).await),
        401
    );
    let expired = token_signed(TEST_SECRET, &["*"], &[], json!({"exp": now() - 60}));
    assert_eq!(
        status(publish_form(&server, Some(&expired), &form).await),
        401
    );
    let narrow = token(&["b", "https://example.com/{x}"], &[]);
    assert_eq!(
        status(publish_form(&server, Some(&narrow), &form).await),
        403
    );
    let alternate = [("topic", "b"), ("topic", "a")];
    assert_eq!(
        status(publish_form(&server, Some(&narrow), &alternate).await),
        403,
        "every topic must be allowed"
    );
    let missing_topic = [("data", "x")];
    assert_eq!(
        status(publish_form(&server, Some(&publisher()), &missing_topic).await),
        400
    );
    let bad_retry = [("topic", "a"), ("retry", "soon")];
    assert_eq!(
        status(publish_form(&server, Some(&publisher()), &bad_retry).await),
        400
    );
    let reserved_type = [("topic", "a"), ("type", "herald.closing")];
    assert_eq!(
        status(publish_form(&server, Some(&publisher()), &reserved_type).await),
        400
    );
    let huge = "x".repeat(8 * 1024);
    let too_large = [("topic", "a"), ("data", huge.as_str())];
    assert_eq!(
        status(publish_form(&server, Some(&publisher()), &too_large).await),
        413
    );
    let as_json = reqwest::Client::new()
        .post(server.url("/.well-known/mercure"))
        .bearer_auth(publisher())
        .json(&json!({"topic": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(as_json.status(), 415);
    let no_topic = reqwest::Client::new()
        .get(server.url("/.well-known/mercure?lastEventID=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_topic.status(), 400);

    // None of them reached a subscriber: the next event is the one that was allowed.
    let allowed = token(&["a"], &[]);
    let published = publish_form(&server, Some(&allowed), &form).await;
    assert_eq!(published.status, 200, "exp is optional: {}", published.body);
    assert_eq!(stream.next_event().await.id, published.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_and_subscribers_may_have_keys_of_their_own() {
    const PUBLISHER_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
    const SUBSCRIBER_KEY: &str = "a-subscriber-key-of-its-own";
    let server = TestServer::start_with(|config| {
        config.mercure.mercure_publisher_jwt_key = Some(PUBLISHER_KEY.into());
        config.mercure.mercure_subscriber_jwt_key = Some(SUBSCRIBER_KEY.into());
    })
    .await;
    let subscriber = token_signed(SUBSCRIBER_KEY, &[], &["*"], json!({}));
    let mut stream = subscribe_with(
        reqwest::Client::new()
            .get(server.url("/.well-known/mercure?topic=a"))
            .bearer_auth(&subscriber),
    )
    .await;
    let with_herald_key = publisher();
    assert_eq!(
        publish_form(&server, Some(&with_herald_key), &[("topic", "a")])
            .await
            .status,
        401
    );
    let own = token_signed(PUBLISHER_KEY, &["*"], &[], json!({}));
    let published = publish_form(&server, Some(&own), &[("topic", "a"), ("private", "on")]).await;
    assert_eq!(published.status, 200);
    assert_eq!(stream.next_event().await.id, published.body);
    let wrong_subscriber = reqwest::Client::new()
        .get(server.url("/.well-known/mercure?topic=a"))
        .bearer_auth(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_subscriber.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_stream_ends_when_its_credential_expires() {
    let server =
        TestServer::start_with(|config| config.jwt_leeway = std::time::Duration::ZERO).await;
    let soon = token_signed(TEST_SECRET, &[], &["*"], json!({"exp": now() + 1}));
    let mut stream = subscribe_with(
        reqwest::Client::new()
            .get(server.url("/.well-known/mercure?topic=a"))
            .bearer_auth(&soon),
    )
    .await;
    let closing = stream.closing().await;
    assert_eq!(
        closing.reason,
        herald_protocol::system::CloseReason::CredentialExpired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_of_allowed_origins_may_subscribe_and_publish() {
    const APP: &str = "https://app.example.com";
    let server = TestServer::start_with(|config| {
        config.mercure.mercure_anonymous = true;
        config.cors_origins = vec![APP.into()];
    })
    .await;
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, server.url("/.well-known/mercure"))
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(preflight.headers()["access-control-allow-origin"], APP);
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("last-event-id"),
        "{allowed}"
    );
    let stream = subscribe_with(
        reqwest::Client::new()
            .get(server.url("/.well-known/mercure?topic=a&lastEventID=earliest"))
            .header("origin", APP),
    )
    .await;
    assert_eq!(stream.headers["access-control-allow-origin"], APP);
    assert_eq!(stream.headers["last-event-id"], "earliest");
    let exposed = stream.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("last-event-id"), "{exposed}");
    let head = reqwest::Client::new()
        .head(server.url("/.well-known/mercure?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "text/event-stream");
}
