//! Relay mode against a local upstream speaking the OpenAI wire format: its bytes split mid-line
//! and mid-character, a failure mid-stream, a stall, an error answer, and a cancel that aborts
//! the upstream call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{chunk, create_answer, end, read, writer};
use crate::support::TestServer;

/// What the upstream does with a request.
#[derive(Clone, Copy)]
enum Plan {
    /// Sends `parts` (byte pieces) as the test feeds them.
    Feed,
    /// Answers 500.
    Fail,
}

/// A local OpenAI-compatible endpoint: each request's body and headers are recorded, and its
/// answer is the bytes the test sends, until the test drops the sender.
struct Upstream {
    url: String,
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

#[derive(Clone)]
struct Shared {
    plan: Plan,
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    parts: Arc<Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>>,
    dropped: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

/// Tells the test when the answer's body is dropped (the caller went away).
struct Watched {
    parts: mpsc::UnboundedReceiver<Bytes>,
    dropped: Option<oneshot::Sender<()>>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(dropped) = self.dropped.take() {
            let _ = dropped.send(());
        }
    }
}

async fn completions(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.requests.lock().unwrap().push((headers, json));
    if matches!(shared.plan, Plan::Fail) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the model is overloaded").into_response();
    }
    let parts = shared.parts.lock().unwrap().take().expect("one request");
    let watched = Watched {
        parts,
        dropped: shared.dropped.lock().unwrap().take(),
    };
    let stream = futures_util::stream::unfold(watched, |mut watched| async move {
        let part = watched.parts.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(part), watched))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

impl Upstream {
    async fn start(plan: Plan) -> (Self, mpsc::UnboundedSender<Bytes>, oneshot::Receiver<()>) {
        let (feed, parts) = mpsc::unbounded_channel();
        let (dropped, was_dropped) = oneshot::channel();
        let shared = Shared {
            plan,
            requests: Arc::default(),
            parts: Arc::new(Mutex::new(Some(parts))),
            dropped: Arc::new(Mutex::new(Some(dropped))),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(completions))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let upstream = Self {
            url,
            requests: shared.requests,
        };
        (upstream, feed, was_dropped)
    }

    async fn herald(&self, silence: Duration) -> TestServer {
        let prefix = self.url.clone();
        TestServer::start_with(move |config| {
            config.streams.stream_upstream = vec![prefix];
            config.streams.stream_upstream_timeout = silence;
        })
        .await
    }

    fn body(&self, question: &str) -> Value {
        json!({
            "url": format!("{}chat/completions", self.url),
            "headers": {"authorization": "Bearer provider-key"},
            "body": {"model": "tiny", "messages": [{"role": "user", "content": question}]},
        })
    }
}

/// The bytes of a delta event.
fn delta(text: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_answer_is_appended_as_it_arrives_and_ends_on_done() {
    let (upstream, feed, _) = Upstream::start(Plan::Feed).await;
    let server = upstream.herald(Duration::from_secs(10)).await;
    let writer = writer();
    let id = create_answer(&server, &writer, json!({"upstream": upstream.body("hi")})).await;
    let mut reader = read(&server, &reqwest::Client::new(), &id, None).await;

    // A role-only first delta, then text split mid-line and inside "ö" (0xC3 0xB6).
    let mut bytes = format!(
        "data: {}\n\n",
        json!({"choices": [{"delta": {"role": "assistant"}}]})
    )
    .into_bytes();
    bytes.extend(delta("Hel").into_bytes());
    bytes.extend(delta("lö wörld").into_bytes());
    let split = bytes.len() - 12;
    let o_umlaut = bytes
        .windows(2)
        .position(|pair| pair == [0xC3, 0xB6])
        .unwrap();
    feed.send(Bytes::copy_from_slice(&bytes[..o_umlaut + 1]))
        .unwrap();
    feed.send(Bytes::copy_from_slice(&bytes[o_umlaut + 1..split]))
        .unwrap();
    assert_eq!(chunk(&mut reader).await.1, json!("Hel"));
    feed.send(Bytes::copy_from_slice(&bytes[split..])).unwrap();
    assert_eq!(chunk(&mut reader).await.1, json!("lö wörld"));
    let last = format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    );
    feed.send(Bytes::from(last)).unwrap();
    assert_eq!(
        end(&mut reader).await,
        json!({"status": "done", "result": {"finish_reason": "stop"}})
    );
    let (_, info) = server.get_json(&format!("/api/streams/{id}")).await;
    assert_eq!(info["text"], "Hellö wörld");

    let requests = upstream.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (headers, body) = &requests[0];
    assert_eq!(headers["authorization"], "Bearer provider-key");
    assert_eq!(body["stream"], true, "streaming is asked for");
    assert_eq!(body["messages"][0]["content"], "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_fails_stalls_or_refuses_ends_the_stream_as_an_error() {
    // Closed mid-answer.
    let (upstream, feed, _) = Upstream::start(Plan::Feed).await;
    let server = upstream.herald(Duration::from_millis(500)).await;
    let writer = writer();
    let id = create_answer(&server, &writer, json!({"upstream": upstream.body("a")})).await;
    let mut reader = read(&server, &reqwest::Client::new(), &id, None).await;
    feed.send(Bytes::from(delta("partial"))).unwrap();
    assert_eq!(chunk(&mut reader).await.1, json!("partial"));
    drop(feed);
    let ended = end(&mut reader).await;
    assert_eq!(ended["status"], "error");
    assert!(
        ended["result"]["reason"]
            .as_str()
            .unwrap()
            .contains("before [DONE]"),
        "{ended}"
    );

    // Silent past the timeout.
    let (stalling, feed, _) = Upstream::start(Plan::Feed).await;
    let server = stalling.herald(Duration::from_millis(300)).await;
    let id = create_answer(&server, &writer, json!({"upstream": stalling.body("b")})).await;
    let mut reader = read(&server, &reqwest::Client::new(), &id, None).await;
    feed.send(Bytes::from(delta("and then"))).unwrap();
    assert_eq!(chunk(&mut reader).await.1, json!("and then"));
    let ended = end(&mut reader).await;
    assert_eq!(ended["result"]["reason"], "the upstream stalled");

    // An error answer.
    let (refusing, _, _) = Upstream::start(Plan::Fail).await;
    let server = refusing.herald(Duration::from_secs(5)).await;
    let id = create_answer(&server, &writer, json!({"upstream": refusing.body("c")})).await;
    let mut reader = read(&server, &reqwest::Client::new(), &id, None).await;
    let ended = end(&mut reader).await;
    let reason = ended["result"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("500") && reason.contains("overloaded"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_relayed_stream_aborts_the_upstream_call() {
    let (upstream, feed, dropped) = Upstream::start(Plan::Feed).await;
    let server = upstream.herald(Duration::from_secs(10)).await;
    let writer = writer();
    let id = create_answer(&server, &writer, json!({"upstream": upstream.body("long")})).await;
    let mut reader = read(&server, &reqwest::Client::new(), &id, None).await;
    feed.send(Bytes::from(delta("one"))).unwrap();
    assert_eq!(chunk(&mut reader).await.1, json!("one"));
    let response = writer
        .delete(server.url(&format!("/api/streams/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(end(&mut reader).await, json!({"status": "cancelled"}));
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the upstream call is aborted")
        .expect("the body was dropped");
    // What the upstream still sends goes nowhere.
    let _ = feed.send(Bytes::from(delta("two")));
    let (_, info) = server.get_json(&format!("/api/streams/{id}")).await;
    assert_eq!(
        (info["status"].as_str(), info["text"].as_str()),
        (Some("cancelled"), Some("one"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_upstreams_are_called() {
    let (upstream, _, _) = Upstream::start(Plan::Feed).await;
    // Not allowed: no --stream-upstream at all.
    let server = TestServer::start().await;
    let writer = writer();
    let refused = |server: &TestServer, body: Value| {
        let request = writer.post(server.url("/api/streams")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            (
                status,
                answer["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    assert_eq!(
        refused(&server, json!({"upstream": upstream.body("x")})).await,
        (403, "upstream_not_allowed".to_owned())
    );
    let server = upstream.herald(Duration::from_secs(5)).await;
    let mut elsewhere = upstream.body("x");
    elsewhere["url"] = json!("http://169.254.169.254/latest/meta-data/");
    assert_eq!(
        refused(&server, json!({"upstream": elsewhere})).await,
        (403, "upstream_not_allowed".to_owned())
    );
    let mut not_an_object = upstream.body("x");
    not_an_object["body"] = json!("text");
    assert_eq!(
        refused(&server, json!({"upstream": not_an_object})).await,
        (400, "invalid_upstream".to_owned())
    );
    assert_eq!(
        refused(
            &server,
            json!({"kind": "progress", "upstream": upstream.body("x")})
        )
        .await,
        (400, "invalid_upstream".to_owned())
    );
    assert!(
        upstream.requests.lock().unwrap().is_empty(),
        "nothing was called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_longer_than_a_stream_holds_ends_it_as_an_error() {
    let (upstream, feed, _) = Upstream::start(Plan::Feed).await;
    let prefix = upstream.url.clone();
    let server = TestServer::start_with(move |config| {
        config.streams.stream_upstream = vec![prefix];
        config.streams.stream_max_bytes = 40;
    })
    .await;
    let writer = writer();
    let id = create_answer(&server, &writer, json!({"upstream": upstream.body("long")})).await;
    let mut reader = read(&server, &reqwest::Client::new(), &id, None).await;
    feed.send(Bytes::from(delta("0123456789"))).unwrap();
    assert_eq!(chunk(&mut reader).await.1, json!("0123456789"));
    for _ in 0..4 {
        let _ = feed.send(Bytes::from(delta("0123456789")));
    }
    // Three pieces of 12 bytes of JSON fit in 40; the fourth does not.
    for _ in 0..2 {
        assert_eq!(chunk(&mut reader).await.1, json!("0123456789"));
    }
    let ended = end(&mut reader).await;
    assert_eq!(ended["status"], "error");
    let reason = ended["result"]["reason"].as_str().unwrap();
    assert!(reason.contains("could not be kept"), "{reason}");
}
