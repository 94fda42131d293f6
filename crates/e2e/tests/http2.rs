//! Ten event streams in one browser on Herald over HTTPS, in one page and in ten tabs: over
//! HTTP/2 they share one connection, so every stream opens, each receives a published event
//! within a second, and other requests are answered too, past the six connections per host that
//! HTTP/1.1 allows for all tabs together (over HTTP/1.1 the same page opens six streams and the
//! other four wait: see the README's production section).

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

/// A page that opens ten `EventSource`s and notes, for each, when it connected and when (by the
/// page's clock, in milliseconds since the epoch) the published event arrived.
const SOURCES: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>sources</title></head>
<body>
<ol id="sources"></ol>
<script>
  for (let n = 0; n < 10; n++) {
    const item = document.createElement("li");
    item.dataset.state = "connecting";
    document.getElementById("sources").appendChild(item);
    const source = new EventSource("/events?topic=sources");
    source.addEventListener("herald.connected", () => { item.dataset.state = "connected"; });
    source.addEventListener("tick", () => {
      item.dataset.state = "received";
      item.dataset.at = String(Date.now());
    });
  }
</script>
</body></html>
"#;

/// Milliseconds since the epoch by this machine's clock, which the browser shares.
fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64()
        * 1000.0
}

#[tokio::test]
async fn one_page_with_ten_event_sources_receives_each_event_within_a_second() {
    let pages = std::env::temp_dir().join(format!("herald-e2e-sources-{}", std::process::id()));
    std::fs::create_dir_all(&pages).expect("the page's folder");
    std::fs::write(pages.join("sources.html"), SOURCES).expect("the page is written");
    let server = Server::start_https(pages.clone(), |_| {}).await;
    let browser = Browser::launch_with("ten_sources", &["--ignore-certificate-errors"]).await;
    browser.goto(&server.url("/sources.html")).await;
    let connected = "#sources li[data-state=connected]";
    let deadline = std::time::Instant::now() + STEP_TIMEOUT;
    while browser.count(connected).await < 10 {
        if std::time::Instant::now() > deadline {
            let open = browser.count(connected).await;
            browser
                .fail("ten sources connected", &format!("{open} of 10 connected"))
                .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    let sent = now_ms();
    let answer = server
        .http
        .post(server.url("/api/publish"))
        .json(&json!({"topic": "sources", "type": "tick", "data": "to every source"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(answer.status(), 200);
    let received = "#sources li[data-state=received]";
    let deadline = std::time::Instant::now() + STEP_TIMEOUT;
    while browser.count(received).await < 10 {
        if std::time::Instant::now() > deadline {
            let got = browser.count(received).await;
            browser
                .fail("ten sources received", &format!("{got} of 10 received"))
                .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let stamps = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#sources li'), (item) => Number(item.dataset.at));",
            vec![],
        )
        .await
        .expect("the arrival times");
    let stamps: Vec<f64> = serde_json::from_value(stamps).expect("ten numbers");
    assert_eq!(stamps.len(), 10);
    for (n, at) in stamps.into_iter().enumerate() {
        let took = at - sent;
        assert!(
            took < 1000.0,
            "source {n} received the event {took:.0} ms after it was published"
        );
    }
    browser.close().await;
    drop(server);
    let _ = std::fs::remove_dir_all(&pages);
}

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
