//! Resuming a Mercure subscription: from a publisher's id or a generated one, with the
//! `Last-Event-ID` header or the `lastEventID` parameter; the response names where the stream
//! starts, and an id no retained update has is announced, not passed over silently.

use herald_protocol::system::{RESET, Reset, ResetReason};

use super::{hub, publish, subscribe, subscribe_with};
use crate::support::TestServer;

async fn resume(
    server: &TestServer,
    query: &str,
    header: Option<&str>,
) -> crate::support::SseStream {
    let mut request =
        reqwest::Client::new().get(server.url(&format!("/.well-known/mercure?{query}")));
    if let Some(id) = header {
        request = request.header("Last-Event-ID", id);
    }
    subscribe_with(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_after_a_publishers_id_or_a_generated_one() {
    let server = hub().await;
    let first = publish(
        &server,
        &[("topic", "books"), ("data", "1"), ("id", "id-[\"1\"]")],
    )
    .await;
    let second = publish(&server, &[("topic", "books"), ("data", "2")]).await;
    publish(&server, &[("topic", "other"), ("data", "not for books")]).await;
    let third = publish(
        &server,
        &[("topic", "books"), ("data", "3"), ("id", "book-3")],
    )
    .await;

    let mut by_header = resume(&server, "topic=books", Some(&first)).await;
    assert_eq!(by_header.headers["last-event-id"], first.as_str());
    for (id, data) in [(&second, "2"), (&third, "3")] {
        let event = by_header.next_event().await;
        assert_eq!((&event.id, event.data.as_str()), (id, data));
    }
    let query = format!("topic=books&lastEventID={}", urlencode(&second));
    let mut by_query = resume(&server, &query, None).await;
    assert_eq!(by_query.headers["last-event-id"], second.as_str());
    assert_eq!(by_query.next_event().await.id, third);
    // The header wins over the parameter, as for `/events`.
    let mut both = resume(&server, &query, Some(&third)).await;
    assert_eq!(both.headers["last-event-id"], third.as_str());
    let live = publish(&server, &[("topic", "books"), ("data", "4")]).await;
    assert_eq!(both.next_event().await.id, live);
    assert_eq!(
        by_query.next_event().await.id,
        live,
        "replay hands over to live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_starts_from_now_and_says_so() {
    let server = hub().await;
    publish(&server, &[("topic", "books"), ("data", "old")]).await;
    let mut stream = resume(&server, "topic=books", Some("urn:uuid:never-issued")).await;
    assert_eq!(stream.headers["last-event-id"], "earliest");
    let reset = stream.expect(RESET).await;
    let reset: Reset = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(reset.reason, ResetReason::UnknownId);
    let live = publish(&server, &[("topic", "books"), ("data", "new")]).await;
    assert_eq!(stream.next_event().await.id, live);
    // A stream without a last event id names none.
    let fresh = subscribe(&server, "topic=books").await;
    assert!(fresh.headers.get("last-event-id").is_none());
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earliest_replays_all_the_history_kept() {
    let server = hub().await;
    let ids = [
        publish(&server, &[("topic", "books"), ("data", "1")]).await,
        publish(&server, &[("topic", "books"), ("data", "2")]).await,
    ];
    publish(&server, &[("topic", "authors"), ("data", "not for books")]).await;
    let mut stream = resume(&server, "topic=books", Some("earliest")).await;
    assert_eq!(stream.headers["last-event-id"], "earliest");
    for id in &ids {
        assert_eq!(&stream.next_event().await.id, id);
    }
    let live = publish(&server, &[("topic", "books"), ("data", "3")]).await;
    assert_eq!(stream.next_event().await.id, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_and_wildcard_subscribers_resume_across_the_topics_they_select() {
    let server = hub().await;
    let first = publish(
        &server,
        &[("topic", "https://example.com/books/1"), ("id", "b1")],
    )
    .await;
    let other_book = publish(&server, &[("topic", "https://example.com/books/2")]).await;
    let author = publish(&server, &[("topic", "https://example.com/authors/1")]).await;
    let both = publish(
        &server,
        &[
            ("topic", "https://example.com/authors/2"),
            ("topic", "https://example.com/books/3"),
        ],
    )
    .await;
    let template = super::topics(&["https://example.com/books/{id}"]);
    let mut books = resume(&server, &template, Some(&first)).await;
    assert_eq!(books.headers["last-event-id"], first.as_str());
    assert_eq!(books.next_event().await.id, other_book);
    assert_eq!(
        books.next_event().await.id,
        both,
        "through an alternate topic, once"
    );
    let mut everything = resume(&server, "topic=*", Some("earliest")).await;
    for id in [&first, &other_book, &author, &both] {
        assert_eq!(&everything.next_event().await.id, id);
    }
    let live = publish(&server, &[("topic", "https://example.com/books/9")]).await;
    assert_eq!(books.next_event().await.id, live);
    assert_eq!(everything.next_event().await.id, live);
}
