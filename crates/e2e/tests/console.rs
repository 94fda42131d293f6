//! The served console in a real browser: it connects to `/events` and shows live events.

use herald_e2e::{Browser, Server, dist_dir};
use herald_protocol::api::{ClientInfo, PublishResponse};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_console_connects_to_events_and_shows_live_events() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("console_connects").await;
    browser.goto(&server.url("/")).await;

    browser
        .wait_for("connected", "[data-testid=status][data-state=open]")
        .await;
    let client_id = browser
        .text("client id shown", "[data-testid=client-id]")
        .await;
    assert_eq!(
        client_id.len(),
        32,
        "the console shows the issued client id, got {client_id:?}"
    );

    let http = reqwest::Client::new();
    let clients: Vec<ClientInfo> = http
        .get(server.url("/api/clients"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let browser_connection = clients.iter().find(|client| client.client_id == client_id);
    let Some(connection) = browser_connection else {
        browser
            .fail(
                "server sees the browser",
                &format!("{client_id} not in {clients:?}"),
            )
            .await
    };
    assert_eq!(connection.topics, ["demo"]);

    let ack: PublishResponse = http
        .post(server.url("/api/publish"))
        .json(&json!({"topic": "demo", "data": {"greeting": "hello from the test"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let selector = format!("[data-event-id='{}']", ack.id);
    let line = browser.text("event shown", &selector).await;
    assert!(
        line.contains("hello from the test"),
        "the log line shows the data: {line:?}"
    );
    let last_id = browser
        .text("last event id shown", "[data-testid=last-event-id]")
        .await;
    assert_eq!(last_id, ack.id);
    browser.close().await;
}
