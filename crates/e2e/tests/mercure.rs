//! The Mercure hub in Chromium, as Mercure's own clients use it: a page subscribes with a plain
//! `EventSource` to `/.well-known/mercure` with topic selectors and publishes with `fetch` and a
//! form (which the browser sends with `;charset=UTF-8`); what the page receives (data, last
//! event id, type) is what the publisher sent, multi-line data and a publisher's id included,
//! and a private update never reaches the anonymous page.

use herald_e2e::{Browser, Server, mercure_token};

/// A page that subscribes to the `selector` parameters of its URL and lists every message it
/// receives; `publish(fields)` posts a form with the credential in the URL's fragment.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>mercure</title></head>
<body>
<p id="state">connecting</p>
<ol id="received"></ol>
<script>
  const token = location.hash.slice(1);
  const url = new URL("/.well-known/mercure", location.origin);
  for (const selector of new URLSearchParams(location.search).getAll("selector")) {
    url.searchParams.append("topic", selector);
  }
  const source = new EventSource(url);
  source.onopen = () => { document.getElementById("state").textContent = "open"; };
  const show = (event) => {
    const item = document.createElement("li");
    item.dataset.id = event.lastEventId;
    item.dataset.type = event.type;
    // In an attribute too: an element's text as WebDriver reads it has its spaces collapsed.
    item.dataset.data = event.data;
    item.textContent = event.data;
    document.getElementById("received").appendChild(item);
  };
  source.onmessage = show;
  source.addEventListener("note", show);
  window.publish = async (fields) => {
    const body = new URLSearchParams();
    for (const [name, value] of fields) body.append(name, value);
    const response = await fetch("/.well-known/mercure", {
      method: "POST",
      headers: { Authorization: "Bearer " + token },
      body,
    });
    return [response.status, response.headers.get("content-type"), await response.text()];
  };
</script>
</body></html>
"#;

#[tokio::test]
async fn a_browser_subscribes_and_publishes_as_mercure_clients_do() {
    let pages = std::env::temp_dir().join(format!("herald-e2e-mercure-{}", std::process::id()));
    std::fs::create_dir_all(&pages).expect("the page's folder");
    std::fs::write(pages.join("mercure.html"), PAGE).expect("the page is written");
    // Development mode, as every browser test runs: anonymous subscribers are allowed.
    let server = Server::start(pages.clone()).await;
    let browser = Browser::launch("mercure").await;
    let publisher = mercure_token(&["*"], &[]);
    let query = "selector=https%3A%2F%2Fexample.net%2Ffoo%2F%7Bid%7D&selector=plain";
    browser
        .goto(&server.url(&format!("/mercure.html?{query}#{publisher}")))
        .await;
    browser
        .wait_text("the stream opens", "#state", |state| state == "open")
        .await;
    let publish = |fields: serde_json::Value| {
        let client = browser.client.clone();
        async move {
            client
                .execute("return await window.publish(arguments[0]);", vec![fields])
                .await
                .expect("the page publishes")
        }
    };
    let data = "data for\n\n        a template";
    let answer = publish(serde_json::json!([
        ["topic", "https://example.net/foo/42"],
        ["data", data],
        ["id", "id-[\"https://example.net/foo/42\"]"],
    ]))
    .await;
    assert_eq!(
        answer,
        serde_json::json!([
            200,
            "text/plain; charset=utf-8",
            "id-[\"https://example.net/foo/42\"]"
        ])
    );
    // Private: not for this anonymous page. Then one on an alternate topic, which is.
    publish(serde_json::json!([
        ["topic", "https://example.net/foo/43"],
        ["data", "secret"],
        ["private", "on"]
    ]))
    .await;
    publish(serde_json::json!([
        ["topic", "elsewhere"],
        ["topic", "plain"],
        ["data", "last"],
        ["type", "note"]
    ]))
    .await;
    let received = "#received li";
    let deadline = std::time::Instant::now() + herald_e2e::STEP_TIMEOUT;
    while browser.count(received).await < 2 {
        if std::time::Instant::now() > deadline {
            browser.fail("two messages arrive", "they did not").await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(browser.count(received).await, 2, "never the private one");
    let first = browser
        .wait_for("the first message", "#received li:nth-child(1)")
        .await;
    assert_eq!(
        first.attr("data-id").await.unwrap().as_deref(),
        Some("id-[\"https://example.net/foo/42\"]")
    );
    assert_eq!(
        first.attr("data-type").await.unwrap().as_deref(),
        Some("message")
    );
    assert_eq!(
        first.attr("data-data").await.unwrap().as_deref(),
        Some(data),
        "multi-line data, its empty line and leading spaces as sent"
    );
    let second = browser
        .wait_for("the second message", "#received li:nth-child(2)")
        .await;
    assert_eq!(
        second.attr("data-type").await.unwrap().as_deref(),
        Some("note")
    );
    assert_eq!(
        second.attr("data-data").await.unwrap().as_deref(),
        Some("last"),
        "the update on an alternate topic, published after the private one"
    );
    let generated = second.attr("data-id").await.unwrap().unwrap_or_default();
    assert!(generated.starts_with("urn:uuid:"), "{generated}");
    browser.close().await;
    let _ = std::fs::remove_dir_all(pages);
}
