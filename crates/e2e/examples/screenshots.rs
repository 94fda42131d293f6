//! Takes the console screenshots shown in the README: `docs/console.png` (signed in, connected,
//! with live events and two unread notifications) and `docs/chat.png` (the chat demo mid-stream).
//!
//! Run: `cargo xtask dist && cargo run -p herald-e2e --example screenshots`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use herald_e2e::{Browser, Server, dist_dir};
use serde_json::json;

#[tokio::main]
async fn main() {
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let server = Server::start(dist_dir()).await;
    let browser = Browser::launch("screenshots").await;
    browser.goto(&server.url("/?topic=demo&topic=orders")).await;
    browser
        .wait_for("connected", "[data-testid=status][data-state=open]")
        .await;

    let http = server.http.clone();
    let events = [
        (
            "orders",
            "order.created",
            json!({"order": 1042, "customer": "ada", "total": 99.5}),
        ),
        ("demo", "message", json!({"hello": "world"})),
        (
            "orders",
            "order.shipped",
            json!({"order": 1041, "carrier": "DHL"}),
        ),
    ];
    browser.fill("listen", "#new-type", "order.created").await;
    browser.click("listen", "#new-type + button").await;
    browser.fill("listen", "#new-type", "order.shipped").await;
    browser.click("listen", "#new-type + button").await;
    for (topic, kind, data) in events {
        http.post(server.url("/api/publish"))
            .json(&json!({"topic": topic, "type": kind, "data": data}))
            .send()
            .await
            .unwrap();
    }
    browser
        .wait_text("events shown", "[data-testid=log-count]", |text| {
            text.starts_with('3')
        })
        .await;
    for title in ["Order #1041 shipped", "Order #1042 placed by ada"] {
        http.post(server.url("/api/users/ada/notifications"))
            .json(&json!({"title": title, "body": "See the order for details.", "url": "/"}))
            .send()
            .await
            .unwrap();
    }
    browser
        .wait_text("bell", "[data-testid=unread-count]", |text| text == "2")
        .await;
    browser
        .fill("interval", "[data-testid=countdown-interval]", "200")
        .await;
    browser
        .click("countdown", "[data-testid=countdown-start]")
        .await;
    browser
        .wait_text("countdown", "[data-testid=countdown-status]", |text| {
            text == "completed"
        })
        .await;
    browser
        .client
        .execute("window.scrollTo(0, 0)", Vec::new())
        .await
        .unwrap();
    browser.screenshot_to(&docs.join("console.png")).await;

    browser.click("chat", "[data-testid=chat-send]").await;
    browser
        .wait_text("mid-stream", "[data-testid=chat-answer]", |text| {
            text.split(' ').count() > 12
        })
        .await;
    browser.screenshot_to(&docs.join("chat.png")).await;
    browser.close().await;
    println!(
        "wrote {} and {}",
        docs.join("console.png").display(),
        docs.join("chat.png").display()
    );
}
