//! herald-client, the browser library, in Chromium over plain HTTP/1.1: ten pages of one
//! browser share one connection, each receives every event of its topics in order, and when
//! the page holding the connection closes mid-stream another takes over with nothing lost or
//! repeated, as the same client.

use std::time::Instant;

use fantoccini::wd::WindowHandle;
use herald_e2e::{Browser, STEP_TIMEOUT, Server, js_client_site};
use serde_json::{Value, json};

const PAGES: usize = 10;

/// The topics page `n` subscribes to: one of three, and one they all share.
fn topics_of(n: usize) -> Vec<String> {
    vec![format!("t/{}", n % 3), "t/all".to_owned()]
}

struct Page {
    window: WindowHandle,
    topics: Vec<String>,
}

/// Publishes `n` on `topic` as a back-end would; the event's id.
async fn publish(server: &Server, topic: &str, n: usize) -> String {
    let answer: Value = server
        .http
        .post(server.url("/api/publish"))
        .json(&json!({"topic": topic, "type": "n", "data": n}))
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("an acknowledgement");
    answer["id"].as_str().expect("an id").to_owned()
}

/// Opens the ten pages, each in its own tab, and waits until each says its stream is open.
async fn open_pages(server: &Server, browser: &Browser) -> Vec<Page> {
    let mut pages = Vec::new();
    for n in 0..PAGES {
        let window = if n == 0 {
            browser.client.window().await.expect("the first tab")
        } else {
            let opened = browser.client.new_window(true).await.expect("a new tab");
            browser
                .client
                .switch_to_window(opened.handle.clone())
                .await
                .expect("to the new tab");
            opened.handle
        };
        let topics = topics_of(n);
        let query: Vec<String> = topics
            .iter()
            .map(|topic| format!("topic={}", topic.replace('/', "%2F")))
            .collect();
        browser
            .goto(&server.url(&format!("/?{}", query.join("&"))))
            .await;
        browser
            .wait_for(&format!("page {n} open"), "body[data-state=open]")
            .await;
        pages.push(Page { window, topics });
    }
    pages
}

async fn switch_to(browser: &Browser, page: &Page) {
    browser
        .client
        .switch_to_window(page.window.clone())
        .await
        .expect("switch tabs");
}

/// What the current page received: (topic, id) in the order delivered.
async fn received(browser: &Browser) -> Vec<(String, String)> {
    let value = browser
        .client
        .execute("return window.received;", vec![])
        .await
        .expect("the page's events");
    value
        .as_array()
        .expect("a list")
        .iter()
        .map(|event| {
            (
                event[0].as_str().unwrap_or("").to_owned(),
                event[1].as_str().expect("an id").to_owned(),
            )
        })
        .collect()
}

/// Waits until the current page has received as many events as `expected`, then checks they
/// are exactly those, in order.
async fn receives_exactly(browser: &Browser, who: &str, expected: &[(String, String)]) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let got = received(browser).await;
        if got.len() >= expected.len() {
            assert_eq!(
                got, expected,
                "{who}: every event of its topics, once, in order"
            );
            return;
        }
        if Instant::now() > deadline {
            browser
                .fail(
                    who,
                    &format!("{} of {} events arrived", got.len(), expected.len()),
                )
                .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn expected_for(page: &Page, published: &[(String, String)]) -> Vec<(String, String)> {
    published
        .iter()
        .filter(|(topic, _)| page.topics.contains(topic))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_pages_share_one_connection_and_a_closing_leader_loses_nothing() {
    let server = Server::start(js_client_site()).await;
    let browser = Browser::launch("client_ten_pages").await;
    let pages = open_pages(&server, &browser).await;

    // One event connection for ten pages, asking for the union of their topics.
    let clients = server.clients().await;
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(clients[0].topics, ["t/0", "t/1", "t/2", "t/all"]);
    let client_id = clients[0].client_id.clone();

    let topics = ["t/0", "t/1", "t/2", "t/all"];
    let mut published = Vec::new();
    for n in 0..40 {
        let topic = topics[n % topics.len()];
        published.push((topic.to_owned(), publish(&server, topic, n).await));
    }
    for (n, page) in pages.iter().enumerate() {
        switch_to(&browser, page).await;
        receives_exactly(
            &browser,
            &format!("page {n}"),
            &expected_for(page, &published),
        )
        .await;
    }

    // The leading page closes while events keep coming.
    let mut leader = None;
    for (n, page) in pages.iter().enumerate() {
        switch_to(&browser, page).await;
        let leads = browser
            .client
            .execute("return window.sub.leader;", vec![])
            .await
            .expect("whether the page leads");
        if leads == Value::Bool(true) {
            assert!(leader.is_none(), "one leader");
            leader = Some(n);
        }
    }
    let leader = leader.expect("a page leads");
    let (progress, mut published_so_far) = tokio::sync::watch::channel(0usize);
    let publisher = {
        let http = server.http.clone();
        let url = server.url("/api/publish");
        tokio::spawn(async move {
            let mut published = Vec::new();
            for n in 40..160 {
                let topic = topics[n % topics.len()];
                let answer: Value = http
                    .post(&url)
                    .json(&json!({"topic": topic, "type": "n", "data": n}))
                    .send()
                    .await
                    .expect("publish")
                    .json()
                    .await
                    .expect("an acknowledgement");
                published.push((topic.to_owned(), answer["id"].as_str().unwrap().to_owned()));
                let _ = progress.send(published.len());
                // A steady stream, so the hand-over happens mid-way.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            published
        })
    };
    published_so_far
        .wait_for(|count| *count >= 30)
        .await
        .expect("the publisher is under way");
    switch_to(&browser, &pages[leader]).await;
    browser
        .client
        .close_window()
        .await
        .expect("the leader's tab closes");
    published.extend(publisher.await.expect("the publisher"));

    for (n, page) in pages.iter().enumerate() {
        if n == leader {
            continue;
        }
        switch_to(&browser, page).await;
        receives_exactly(
            &browser,
            &format!("page {n}"),
            &expected_for(page, &published),
        )
        .await;
    }
    // The closed page's connection is gone once the server notices; another page holds the
    // connection, as the same client.
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let clients = server.clients().await;
        if clients.len() == 1 {
            assert_eq!(clients[0].client_id, client_id, "as the same client");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "one connection again: {clients:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    browser.close().await;
}
