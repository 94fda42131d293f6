//! The served console in a real browser: connecting, publishing, disconnecting and resuming,
//! being closed by an administrator, and the two demos.

use herald_e2e::{Browser, OPEN, Server, dist_dir};
use herald_protocol::api::PublishResponse;
use serde_json::{Value, json};

/// Longer than the console's first reconnection back-off (at most 1.25 s): a negative check
/// needs a window, and this is it.
const NO_RECONNECT_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// Publishes through the API, as a back-end would.
async fn publish(server: &Server, data: Value) -> PublishResponse {
    server
        .http
        .post(server.url("/api/publish"))
        .json(&json!({"topic": "demo", "data": data}))
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("an acknowledgement")
}

/// Waits until the server lists no connection for `client_id`.
async fn wait_until_gone(server: &Server, client_id: &str) {
    let deadline = std::time::Instant::now() + herald_e2e::STEP_TIMEOUT;
    while server
        .clients()
        .await
        .iter()
        .any(|client| client.client_id == client_id)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the connection was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The server's metrics, as Prometheus scrapes them.
async fn metrics_text(server: &Server) -> String {
    server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// How many subscriber connections the server has accepted so far.
async fn connections_opened(server: &Server) -> f64 {
    let text = metrics_text(server).await;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("herald_connections_opened_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn event(id: &str) -> String {
    format!("[data-testid=log] [data-event-id='{id}']")
}

/// Opens the console and waits until it is connected; returns its client id.
async fn open_console(server: &Server, browser: &Browser) -> String {
    browser.goto(&server.url("/")).await;
    browser.wait_for("connected", OPEN).await;
    browser
        .wait_text("client id shown", "[data-testid=client-id]", |text| {
            text.len() == 32
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_connects_and_shows_live_events() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("connects").await;
    let client_id = open_console(&server, &browser).await;

    let listed = server.clients().await;
    let Some(connection) = listed.iter().find(|client| client.client_id == client_id) else {
        browser
            .fail(
                "server sees the browser",
                &format!("{client_id} not in {listed:?}"),
            )
            .await
    };
    assert_eq!(connection.topics, ["demo"]);

    let ack = publish(&server, json!({"greeting": "hello from the test"})).await;
    let line = browser
        .wait_text("event shown", &event(&ack.id), |text| {
            text.contains("hello from the test")
        })
        .await;
    assert!(
        line.contains("demo") && line.contains("message"),
        "topic and type shown: {line:?}"
    );
    browser
        .wait_text(
            "last event id shown",
            "[data-testid=last-event-id]",
            |text| text == ack.id,
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_type_never_named_is_shown_too() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("every_type").await;
    open_console(&server, &browser).await;
    // Published by a back-end: the console never heard of the type.
    let ack: PublishResponse = server
        .http
        .post(server.url("/api/publish"))
        .json(&json!({"topic": "demo", "type": "invoice.paid", "data": {"amount": 42}}))
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("an acknowledgement");
    let line = browser
        .wait_text("the event is shown", &event(&ack.id), |text| {
            text.contains("invoice.paid")
        })
        .await;
    assert!(line.contains("42"), "its data is shown: {line:?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_through_the_form_shows_the_event_and_its_id() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("publish_form").await;
    open_console(&server, &browser).await;

    browser
        .fill(
            "type data",
            "[data-testid=publish-data]",
            r#"{"from": "the form"}"#,
        )
        .await;
    browser
        .click("submit", "[data-testid=publish-submit]")
        .await;
    let result = browser
        .wait_text("id shown", "[data-testid=publish-result]", |text| {
            text.starts_with("Published #")
        })
        .await;
    let id = result.trim_start_matches("Published #");
    browser
        .wait_text("event shown", &event(id), |text| text.contains("the form"))
        .await;

    browser
        .fill("invalid data", "[data-testid=publish-data]", "{not json")
        .await;
    browser
        .click("submit invalid", "[data-testid=publish-submit]")
        .await;
    browser
        .wait_text("problem shown", "[data-testid=publish-problems]", |text| {
            text.contains("not valid JSON")
        })
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_disconnect_no_events_arrive_and_reconnecting_replays_exactly_the_missed_ones() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("disconnect_resume").await;
    open_console(&server, &browser).await;
    let before = publish(&server, json!("before")).await;
    browser.wait_for("first event", &event(&before.id)).await;

    browser
        .click("disconnect", "[data-testid=disconnect]")
        .await;
    browser
        .wait_text("closed by you", "[data-testid=status]", |text| {
            text == "closed by you"
        })
        .await;
    let client_id = browser
        .wait_text("client id", "[data-testid=client-id]", |text| {
            text.len() == 32
        })
        .await;
    wait_until_gone(&server, &client_id).await;
    let missed: Vec<PublishResponse> = vec![
        publish(&server, json!("missed 1")).await,
        publish(&server, json!("missed 2")).await,
    ];
    // The browser holds no stream now, so nothing can arrive.
    for ack in &missed {
        assert_eq!(
            browser.count(&event(&ack.id)).await,
            0,
            "event {} arrived while disconnected",
            ack.id
        );
    }

    browser.click("reconnect", "[data-testid=connect]").await;
    browser.wait_for("open again", OPEN).await;
    for ack in &missed {
        browser
            .wait_for("missed event replayed", &event(&ack.id))
            .await;
    }
    let after = publish(&server, json!("after")).await;
    browser.wait_for("live again", &event(&after.id)).await;
    let mut ids = Vec::new();
    let lines = browser
        .client
        .find_all(fantoccini::Locator::Css(
            "[data-testid=log] [data-event-id]",
        ))
        .await
        .unwrap();
    for line in lines {
        ids.push(
            line.attr("data-event-id")
                .await
                .unwrap()
                .unwrap_or_default(),
        );
    }
    let expected = [&after.id, &missed[1].id, &missed[0].id, &before.id].map(String::clone);
    assert_eq!(
        ids, expected,
        "newest first: each event exactly once, in order"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_client_from_the_clients_panel_shows_closed_by_server_without_reconnecting() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("admin_close").await;
    let client_id = open_console(&server, &browser).await;

    let own_row = format!("[data-client-id='{client_id}'] [data-testid=disconnect-client]");
    browser.click("disconnect own client", &own_row).await;
    let status = browser
        .wait_text("closed by server", "[data-testid=status]", |text| {
            text.starts_with("closed by server")
        })
        .await;
    assert!(
        status.contains("administrator"),
        "the reason is shown: {status}"
    );

    // The server lets go of this client, and the console does not come back: it would retry
    // after at most 1.25 s, so nothing may be opened in a deliberately longer window.
    wait_until_gone(&server, &client_id).await;
    let opened = connections_opened(&server).await;
    tokio::time::sleep(NO_RECONNECT_WINDOW).await;
    assert_eq!(
        connections_opened(&server).await,
        opened,
        "the console reconnected after the close"
    );
    let marker = publish(&server, json!("after the close")).await;
    assert!(
        server
            .clients()
            .await
            .iter()
            .all(|client| client.client_id != client_id),
        "no reconnect"
    );
    assert_eq!(browser.count(&event(&marker.id)).await, 0);
    browser
        .wait_text("still closed", "[data-testid=status]", |text| {
            text.starts_with("closed by server")
        })
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_countdown_shows_exactly_ten_messages_then_completes() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("countdown").await;
    open_console(&server, &browser).await;
    browser
        .fill("interval", "[data-testid=countdown-interval]", "100")
        .await;
    browser
        .click("start", "[data-testid=countdown-start]")
        .await;
    browser
        .wait_text("completed", "[data-testid=countdown-status]", |text| {
            text == "completed"
        })
        .await;
    let messages = browser.texts("[data-testid=countdown-messages] li").await;
    let expected: Vec<String> = (1..=10).map(|n| format!("Message {n}")).collect();
    assert_eq!(messages, expected);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_streams_its_answer_and_completes() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("chat").await;
    open_console(&server, &browser).await;
    browser
        .fill("prompt", "[data-testid=chat-prompt]", "Does it stream?")
        .await;
    browser.click("send", "[data-testid=chat-send]").await;
    // Part of the answer is on screen while the rest is still coming.
    let partial = browser
        .wait_text("streaming", "[data-testid=chat-answer]", |text| {
            !text.is_empty()
        })
        .await;
    browser
        .wait_text("done", "[data-testid=chat-status]", |text| text == "done")
        .await;
    let answer = browser
        .wait_text("answer", "[data-testid=chat-answer]", |text| {
            text.contains("Does it stream?")
        })
        .await;
    assert!(
        partial.len() < answer.len(),
        "the answer arrived in pieces: first saw {partial:?}"
    );
    assert!(answer.ends_with("stops the moment you do."), "{answer}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_is_shown_and_the_page_stays_usable() {
    const BURST: usize = 400;
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("burst").await;
    open_console(&server, &browser).await;
    let http = server.http.clone();
    let publishers: Vec<_> = (0..8)
        .map(|publisher| {
            let (http, url) = (http.clone(), server.url("/api/publish"));
            tokio::spawn(async move {
                for n in (publisher..BURST).step_by(8) {
                    let body = json!({"topic": "demo", "data": {"n": n}});
                    assert_eq!(
                        http.post(&url)
                            .json(&body)
                            .send()
                            .await
                            .expect("publish")
                            .status(),
                        200
                    );
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    browser
        .wait_text("all shown", "[data-testid=log-count]", |text| {
            text == format!("{BURST} shown")
        })
        .await;
    browser.click("pause", "[data-testid=pause]").await;
    browser
        .wait_text("paused", "[data-testid=pause]", |text| {
            text.starts_with("Resume")
        })
        .await;
    browser
        .fill("filter", "[data-testid=filter-topic]", "nothing-matches")
        .await;
    browser
        .wait_text("filtered", "[data-testid=log]", str::is_empty)
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_ends_a_stream_the_console_reconnects_as_the_same_client() {
    let server = Server::start_with(dist_dir(), |config| {
        config.max_connection_lifetime = std::time::Duration::from_millis(1500);
    })
    .await;
    let browser = Browser::launch("reconnect_same_client").await;
    let client_id = open_console(&server, &browser).await;
    // The first stream reaches its lifetime and is closed with reconnect: true.
    browser
        .wait_text("reconnecting", "[data-testid=status]", |text| {
            text.starts_with("reconnecting")
        })
        .await;
    browser.wait_for("open again", OPEN).await;
    assert_eq!(
        browser
            .wait_text("same client", "[data-testid=client-id]", |t| t.len() == 32)
            .await,
        client_id
    );
    let ack: Value = server
        .http
        .post(server.url(&format!("/api/clients/{client_id}/events")))
        .json(&json!({"data": "to this tab"}))
        .send()
        .await
        .expect("send to the client")
        .json()
        .await
        .expect("an acknowledgement");
    let id = ack["id"].as_str().expect("an id");
    browser
        .wait_text("direct message shown", &event(id), |text| {
            text.contains("to this tab")
        })
        .await;
    browser.close().await;
}

/// The API requests the server has answered with a status of 400 or more so far, by route and
/// status, as its metrics count them.
async fn failed_requests(server: &Server) -> Vec<String> {
    let text = metrics_text(server).await;
    text.lines()
        .filter(|line| line.starts_with("herald_http_requests_total{"))
        .filter(|line| {
            line.split("status=\"")
                .nth(1)
                .is_some_and(|status| status.starts_with('4') || status.starts_with('5'))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_load_sends_no_request_bound_to_fail_and_logs_no_error_signed_in_or_not() {
    // Development mode: signed in as the demo administrator.
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("clean_load_dev").await;
    open_console(&server, &browser).await;
    // The administrator's client list has come: it shows this console's own connection.
    browser
        .wait_text("the client list", "[data-testid=clients]", |text| {
            text.contains("this console")
        })
        .await;
    assert_eq!(failed_requests(&server).await, Vec::<String>::new());
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;

    // Outside development mode, nobody signed in: the console connects anonymously.
    let server = Server::start_with(dist_dir(), |config| config.dev = false).await;
    let browser = Browser::launch("clean_load_production").await;
    browser.goto(&server.url("/")).await;
    browser.wait_for("connected", OPEN).await;
    assert_eq!(failed_requests(&server).await, Vec::<String>::new());
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    // The count does show a failed request: one made on purpose is listed.
    browser
        .client
        .execute(
            "return fetch('/api/nothing').then((r) => r.status);",
            vec![],
        )
        .await
        .expect("the page fetches");
    let listed = failed_requests(&server).await;
    assert!(
        listed.len() == 1 && listed[0].contains("status=\"404\""),
        "{listed:?}"
    );
    // And the browser's console shows it, as it would any error on the way.
    let errors = browser.console_errors().await;
    assert!(errors.len() == 1 && errors[0].contains("404"), "{errors:?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_draws_the_hubs_figures_as_they_move() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("overview").await;
    open_console(&server, &browser).await;
    browser
        .wait_for("the overview", "[data-testid=overview]")
        .await;
    // A point a second: once two have come, a line is drawn.
    browser
        .wait_for(
            "two points of connections",
            "[data-testid=overview-connections]:not([data-points='0']):not([data-points='1'])",
        )
        .await;
    let connections = browser
        .wait_text(
            "the console's own connection counted",
            "[data-testid=overview-connections] figcaption",
            |text| text.ends_with(" 1.0"),
        )
        .await;
    assert!(connections.starts_with("Connections"), "{connections}");
    for n in 0..20 {
        publish(&server, json!({"n": n})).await;
    }
    // The publishes move the chart; what it shows is what the server says.
    let latest = browser
        .wait_text(
            "publishes per second above zero",
            "[data-testid=overview-publishes] figcaption",
            |text| {
                text.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .is_some_and(|n| n > 0.0)
            },
        )
        .await;
    let stats: Value = server
        .http
        .get(server.url("/api/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    assert!(
        stats["nodes"][0]["publishes_per_second"].as_f64().unwrap() > 0.0,
        "{stats}"
    );
    assert!(latest.starts_with("Publishes/s"), "{latest}");
    browser
        .wait_text(
            "the node is listed",
            "[data-testid=overview-nodes]",
            |text| text.contains("local: 1 connections"),
        )
        .await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_who_is_on_its_topics() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("presence").await;
    open_console(&server, &browser).await;
    // The console itself, signed in as the demo administrator, who may see the users.
    let line = browser
        .wait_text(
            "the console's topic",
            "[data-testid=presence] [data-topic=demo]",
            |text| text.contains("1 connection, 1 client"),
        )
        .await;
    assert!(line.contains("ada (1)"), "{line}");
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_console_tabs_share_one_connection() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("two_tabs").await;
    let first_tab = browser.client.window().await.expect("the first tab");
    let client_id = open_console(&server, &browser).await;
    let second_tab = browser
        .client
        .new_window(true)
        .await
        .expect("a second tab")
        .handle;
    browser
        .client
        .switch_to_window(second_tab.clone())
        .await
        .expect("to the second tab");
    assert_eq!(
        open_console(&server, &browser).await,
        client_id,
        "the second tab shows the shared connection's client"
    );
    let clients = server.clients().await;
    assert_eq!(clients.len(), 1, "one connection for two tabs: {clients:?}");
    assert_eq!(clients[0].client_id, client_id);

    let ack = publish(&server, json!("to both tabs")).await;
    browser
        .wait_text("shown in the second tab", &event(&ack.id), |text| {
            text.contains("to both tabs")
        })
        .await;
    browser
        .client
        .switch_to_window(first_tab)
        .await
        .expect("back to the first tab");
    browser
        .wait_text("shown in the first tab", &event(&ack.id), |text| {
            text.contains("to both tabs")
        })
        .await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_the_console_mid_answer_shows_the_whole_answer_then_the_rest() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("chat_reload").await;
    open_console(&server, &browser).await;
    browser
        .fill(
            "prompt",
            "[data-testid=chat-prompt]",
            "Will it survive a reload?",
        )
        .await;
    browser.click("send", "[data-testid=chat-send]").await;
    browser
        .wait_text("a few words in", "[data-testid=chat-answer]", |text| {
            text.split(' ').count() > 3
        })
        .await;
    // The answer's stream, as the page keeps it; still being written when the page reloads.
    let kept = browser
        .client
        .execute("return localStorage.getItem('herald.chat');", vec![])
        .await
        .expect("the kept answer");
    let kept: Value = serde_json::from_str(kept.as_str().expect("kept as text")).unwrap();
    let id = kept["stream"].as_str().expect("a stream id").to_owned();
    let info = |server: &Server| {
        let request = server.http.get(server.url(&format!("/api/streams/{id}")));
        async move {
            request
                .send()
                .await
                .expect("the stream")
                .json::<Value>()
                .await
                .expect("its state")
        }
    };
    assert_eq!(info(&server).await["status"], "open", "mid-answer");
    browser.client.refresh().await.expect("the page reloads");
    browser
        .wait_text(
            "done after the reload",
            "[data-testid=chat-status]",
            |text| text == "done",
        )
        .await;
    let whole = info(&server).await["text"]
        .as_str()
        .expect("the whole text")
        .to_owned();
    assert!(whole.ends_with("stops the moment you do."), "{whole}");
    assert_eq!(
        browser.text("answer", "[data-testid=chat-answer]").await,
        whole,
        "the whole answer, each piece once"
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
}
