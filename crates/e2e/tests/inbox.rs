//! The inbox in the browser: one user in two tabs sees a notification in both, and marking it
//! read in one updates the other; a demo order reaches the administrator's inbox; an expired
//! development credential is renewed without losing events.

use herald_e2e::{Browser, OPEN, Server, dist_dir};
use serde_json::{Value, json};

/// Opens the console in the current tab and waits until it is signed in and connected.
async fn open_signed_in(server: &Server, browser: &Browser, user: &str) {
    browser.goto(&server.url("/")).await;
    browser.wait_for("connected", OPEN).await;
    browser
        .wait_text("signed in", "[data-testid=signed-in-user]", |text| {
            text == user
        })
        .await;
}

async fn notify(server: &Server, user: &str, title: &str) -> Value {
    server
        .http
        .post(server.url(&format!("/api/users/{user}/notifications")))
        .json(&json!({"title": title, "body": "It is on its way.", "url": "/?order=7"}))
        .send()
        .await
        .expect("create a notification")
        .json()
        .await
        .expect("the stored notification")
}

/// The connection id the server lists for `client_id`, if connected.
async fn connection_of(server: &Server, client_id: &str) -> Option<String> {
    server
        .clients()
        .await
        .into_iter()
        .find(|client| client.client_id == client_id)
        .map(|client| client.connection_id)
}

fn item(id: &str) -> String {
    format!("[data-testid=notification][data-id='{id}']")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_of_one_user_agree_on_the_inbox() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("two_tabs").await;
    let first_tab = browser.client.window().await.expect("the first tab");
    open_signed_in(&server, &browser, "ada").await;
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
        .expect("switch to the second tab");
    open_signed_in(&server, &browser, "ada").await;

    let created = notify(&server, "ada", "Your order shipped").await;
    let id = created["id"].as_str().expect("an id").to_owned();
    for tab in [&second_tab, &first_tab] {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switch tabs");
        browser
            .wait_text("the notification appears", &item(&id), |text| {
                text.contains("Your order shipped")
            })
            .await;
        browser
            .wait_text("one unread", "[data-testid=unread-count]", |text| {
                text == "1"
            })
            .await;
    }
    // Read it in the first tab; the second tab's badge follows.
    browser
        .click(
            "mark read",
            &format!("{} [data-testid=mark-read]", item(&id)),
        )
        .await;
    browser
        .wait_text("none unread here", "[data-testid=unread-count]", |text| {
            text == "0"
        })
        .await;
    browser
        .client
        .switch_to_window(second_tab)
        .await
        .expect("back to the second tab");
    browser
        .wait_text(
            "none unread in the other tab",
            "[data-testid=unread-count]",
            |text| text == "0",
        )
        .await;
    browser
        .wait_for(
            "shown as read in the other tab",
            &format!("{}[data-read=true]", item(&id)),
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_order_lands_in_the_connected_administrators_inbox() {
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("demo_order").await;
    open_signed_in(&server, &browser, "ada").await;
    browser
        .click("place an order", "[data-testid=place-order]")
        .await;
    browser
        .wait_text("receipt", "[data-testid=order-result]", |text| {
            text.contains("notified ada")
        })
        .await;
    browser
        .wait_text("the bell counts it", "[data-testid=unread-count]", |text| {
            text == "1"
        })
        .await;
    browser
        .wait_text("listed", "[data-testid=inbox]", |text| {
            text.contains("New order")
        })
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_credential_is_renewed_and_no_event_is_lost() {
    let server = Server::start_with(dist_dir(), |config| {
        config.dev_token_ttl = std::time::Duration::from_secs(2);
    })
    .await;
    let browser = Browser::launch("renew").await;
    open_signed_in(&server, &browser, "ada").await;
    let client_id = browser
        .wait_text("client id", "[data-testid=client-id]", |text| {
            text.len() == 32
        })
        .await;
    let first_connection = connection_of(&server, &client_id).await;
    // One event at a time, each shown before the next is published, until the console has
    // renewed its credential and reconnected, and a few more: an event published while the
    // console was between connections must be replayed, not lost.
    let mut after_renewal = 0;
    for n in 0..200 {
        let ack: Value = server
            .http
            .post(server.url("/api/publish"))
            .json(&json!({"topic": "demo", "data": {"n": n}}))
            .send()
            .await
            .expect("publish")
            .json()
            .await
            .expect("an acknowledgement");
        let id = ack["id"].as_str().expect("an id");
        browser
            .wait_for(
                "the event shown",
                &format!("[data-testid=log] [data-event-id='{id}']"),
            )
            .await;
        let current = connection_of(&server, &client_id).await;
        if current.is_some() && current != first_connection {
            after_renewal += 1;
            if after_renewal == 3 {
                break;
            }
        }
    }
    assert_eq!(
        after_renewal, 3,
        "the console renewed its credential and reconnected"
    );
    browser.wait_for("open after renewing", OPEN).await;
    let after = browser
        .wait_text("client id", "[data-testid=client-id]", |text| {
            text.len() == 32
        })
        .await;
    assert_eq!(after, client_id, "renewing keeps the client");
    browser.close().await;
}
