//! Ten tabs of one browser on Herald over HTTPS: over HTTP/2 they share one connection, so every
//! tab's event stream opens and the tenth tab's other requests are answered too, past the six
//! connections per host that HTTP/1.1 allows for all tabs together.

use herald_e2e::{Browser, STEP_TIMEOUT, Server};
use serde_json::json;

/// A page that subscribes with a plain `EventSource` and shows what it receives.
const TAB: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>tab</title></head>
<body>
<p id="state">connecting</p>
<ul id="ticks"></ul>
<script>
  const source = new EventSource("/events?topic=tabs");
  source.addEventListener("herald.connected", () => {
    document.getElementById("state").textContent = "connected";
  });
  source.addEventListener("tick", (event) => {
    const item = document.createElement("li");
    item.textContent = JSON.parse(event.data).data;
    document.getElementById("ticks").appendChild(item);
  });
</script>
</body></html>
"#;

const TABS: usize = 10;

#[tokio::test]
async fn ten_tabs_each_hold_an_event_stream_over_http2() {
    let pages = std::env::temp_dir().join(format!("herald-e2e-tabs-{}", std::process::id()));
    std::fs::create_dir_all(&pages).expect("the page's folder");
    std::fs::write(pages.join("tab.html"), TAB).expect("the page is written");
    let server = Server::start_https(pages.clone(), |_| {}).await;
    let browser = Browser::launch_with("ten_tabs", &["--ignore-certificate-errors"]).await;

    let mut tabs = Vec::new();
    for n in 0..TABS {
        if n > 0 {
            let opened = browser.client.new_window(true).await.expect("a new tab");
            browser
                .client
                .switch_to_window(opened.handle)
                .await
                .expect("switch to the new tab");
        }
        browser.goto(&server.url("/tab.html")).await;
        browser
            .wait_text(&format!("tab {n} connected"), "#state", |text| {
                text == "connected"
            })
            .await;
        tabs.push(browser.client.window().await.expect("the tab's handle"));
    }

    // The tenth tab: its page came over HTTP/2, and a request besides its stream is answered.
    let protocol = browser
        .client
        .execute(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol;",
            vec![],
        )
        .await
        .expect("the navigation's protocol");
    assert_eq!(protocol, json!("h2"));
    let status = tokio::time::timeout(
        STEP_TIMEOUT,
        browser.client.execute_async(
            "const done = arguments[0]; fetch('/healthz').then((r) => done(r.status), (e) => done(String(e)));",
            vec![],
        ),
    )
    .await
    .expect("the fetch is answered in time")
    .expect("the fetch runs");
    assert_eq!(status, json!(200));

    let answer = server
        .http
        .post(server.url("/api/publish"))
        .json(&json!({"topic": "tabs", "type": "tick", "data": "to every tab"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    for (n, tab) in tabs.into_iter().enumerate() {
        browser
            .client
            .switch_to_window(tab)
            .await
            .expect("switch back to a tab");
        browser
            .wait_text(
                &format!("tab {n} received the event"),
                "#ticks li",
                |text| text == "to every tab",
            )
            .await;
    }
    browser.close().await;
    drop(server);
    let _ = std::fs::remove_dir_all(&pages);
}
