//! Response streams over real sockets: a reader that joins late or reloads mid-answer sees the
//! whole answer exactly once; the end, compaction and ttl; the limits; who may read and write.

use serde_json::{Value, json};

use crate::support::{HeraldProcess, SseStream, TestServer, client_with_token, eventually, token};

mod relay;

/// A publisher that may create streams.
fn writer() -> reqwest::Client {
    client_with_token(&token("writer", &["streams/*"], &[], false))
}

async fn create(server: &TestServer, http: &reqwest::Client, body: Value) -> String {
    create_answer(server, http, body).await
}

/// Creates a stream; its id.
async fn create_answer(server: &TestServer, http: &reqwest::Client, body: Value) -> String {
    let response = http
        .post(server.url("/api/streams"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["url"], format!("/streams/{id}"));
    id
}

async fn post(
    server: &TestServer,
    http: &reqwest::Client,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let response = http
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn append(server: &TestServer, http: &reqwest::Client, id: &str, chunks: Value) -> Value {
    let (status, body) = post(
        server,
        http,
        &format!("/api/streams/{id}/append"),
        json!({"chunks": chunks}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn read(
    server: &TestServer,
    http: &reqwest::Client,
    id: &str,
    last: Option<&str>,
) -> SseStream {
    let mut request = http.get(server.url(&format!("/streams/{id}")));
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    SseStream::new(response)
}

/// The next chunk: its id and data.
async fn chunk(stream: &mut SseStream) -> (String, Value) {
    let event = stream.next_event().await;
    assert_eq!(event.event, "stream.chunk", "{}", event.data);
    let envelope: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(envelope["type"], "stream.chunk");
    assert_eq!(envelope["id"], event.id.as_str());
    (event.id, envelope["data"].clone())
}

/// Reads `stream.end`, then the end of the response.
async fn end(stream: &mut SseStream) -> Value {
    let event = stream.next_event().await;
    assert_eq!(event.event, "stream.end", "{}", event.data);
    assert_eq!(event.id, "end");
    let envelope: Value = serde_json::from_str(&event.data).unwrap();
    assert!(
        stream.next_event_or_end().await.is_none(),
        "the response ends"
    );
    envelope["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reader_gets_every_chunk_then_the_rest_live_then_the_end() {
    let server = TestServer::start().await;
    let writer = writer();
    let id = create(&server, &writer, json!({})).await;
    let appended = append(&server, &writer, &id, json!(["Hel", "lo"])).await;
    assert_eq!(appended, json!({"last_id": "5", "chunks": 2}));

    let anyone = reqwest::Client::new();
    let mut late = read(&server, &anyone, &id, None).await;
    assert_eq!(chunk(&mut late).await, ("3".to_owned(), json!("Hel")));
    assert_eq!(chunk(&mut late).await, ("5".to_owned(), json!("lo")));
    append(&server, &writer, &id, json!([", wörld"])).await;
    assert_eq!(chunk(&mut late).await, ("13".to_owned(), json!(", wörld")));
    let (status, info) = post(
        &server,
        &writer,
        &format!("/api/streams/{id}/end"),
        json!({"status": "done", "result": {"finish_reason": "stop"}}),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["text"], "Hello, wörld");
    assert_eq!(info["status"], "done");
    assert_eq!(
        end(&mut late).await,
        json!({"status": "done", "result": {"finish_reason": "stop"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_reloading_mid_answer_sees_it_all_exactly_once() {
    let server = TestServer::start().await;
    let writer = writer();
    let id = create(&server, &writer, json!({"ttl": "10m"})).await;
    append(&server, &writer, &id, json!(["one ", "two "])).await;
    let anyone = reqwest::Client::new();
    let mut before = read(&server, &anyone, &id, None).await;
    let mut text = String::new();
    for _ in 0..2 {
        text.push_str(chunk(&mut before).await.1.as_str().unwrap());
    }
    let last = before.last_event_id().to_owned();
    drop(before);
    append(&server, &writer, &id, json!(["three "])).await;
    // EventSource comes back with the id it last saw.
    let mut after = read(&server, &anyone, &id, Some(&last)).await;
    text.push_str(chunk(&mut after).await.1.as_str().unwrap());
    append(&server, &writer, &id, json!(["four"])).await;
    text.push_str(chunk(&mut after).await.1.as_str().unwrap());
    assert_eq!(text, "one two three four");
    // A second device opening it now gets the same, from the first chunk.
    let mut fresh = read(&server, &anyone, &id, None).await;
    let mut again = String::new();
    for _ in 0..4 {
        again.push_str(chunk(&mut fresh).await.1.as_str().unwrap());
    }
    assert_eq!(again, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_end_a_reader_gets_the_answer_in_one_frame() {
    let server = TestServer::start().await;
    let writer = writer();
    let id = create(&server, &writer, json!({})).await;
    append(&server, &writer, &id, json!(["α", "β", "γ"])).await;
    let (status, _) = post(
        &server,
        &writer,
        &format!("/api/streams/{id}/end"),
        json!({"status": "done"}),
    )
    .await;
    assert_eq!(status, 200);
    let anyone = reqwest::Client::new();
    let mut late = read(&server, &anyone, &id, None).await;
    assert_eq!(chunk(&mut late).await, ("6".to_owned(), json!("αβγ")));
    assert_eq!(end(&mut late).await, json!({"status": "done"}));
    // Resuming after the first chunk: the rest of the text, from that byte on.
    let mut resumed = read(&server, &anyone, &id, Some("2")).await;
    assert_eq!(chunk(&mut resumed).await, ("6".to_owned(), json!("βγ")));
    end(&mut resumed).await;
    // Read to the end: EventSource's reconnection is told there is nothing more.
    let response = anyone
        .get(server.url(&format!("/streams/{id}")))
        .header("Last-Event-ID", "end")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, info) = server.get_json(&format!("/api/streams/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(info["text"], "αβγ");
    assert_eq!(info["chunks"], 3);
    assert_eq!(info["last_id"], "6");
    assert!(info["ended_at"].is_string());
    let (status, body) = post(
        &server,
        &writer,
        &format!("/api/streams/{id}/append"),
        json!({"chunks": ["more"]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("stream_ended"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_stream_keeps_its_latest_value() {
    let server = TestServer::start().await;
    let writer = writer();
    let id = create(&server, &writer, json!({"kind": "progress"})).await;
    append(
        &server,
        &writer,
        &id,
        json!([{"percent": 10}, {"percent": 40}]),
    )
    .await;
    let (_, info) = server.get_json(&format!("/api/streams/{id}")).await;
    assert_eq!(info["kind"], "progress");
    assert_eq!(info["value"], json!({"percent": 40}));
    let mut reader = read(&server, &reqwest::Client::new(), &id, None).await;
    assert_eq!(
        chunk(&mut reader).await,
        ("1".to_owned(), json!({"percent": 10}))
    );
    assert_eq!(
        chunk(&mut reader).await,
        ("2".to_owned(), json!({"percent": 40}))
    );
    let response = writer
        .delete(server.url(&format!("/api/streams/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(end(&mut reader).await, json!({"status": "cancelled"}));
    // After the end, a late reader gets the last value alone.
    let mut late = read(&server, &reqwest::Client::new(), &id, None).await;
    assert_eq!(
        chunk(&mut late).await,
        ("2".to_owned(), json!({"percent": 40}))
    );
    assert_eq!(end(&mut late).await, json!({"status": "cancelled"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_bad_input_are_clear_4xx_answers() {
    let server = TestServer::start_with(|config| {
        config.streams.stream_max_chunk = 16;
        config.streams.stream_max_chunks = 3;
        config.streams.stream_max_open = 2;
    })
    .await;
    let writer = writer();
    let id = create(&server, &writer, json!({})).await;
    let path = format!("/api/streams/{id}/append");
    for (body, status, code) in [
        (json!({"chunks": []}), 400, "missing_chunks"),
        (json!({"chunks": [42]}), 400, "invalid_chunk"),
        (json!({"chunks": [""]}), 400, "invalid_chunk"),
        (json!({"chunks": ["x".repeat(20)]}), 413, "chunk_too_large"),
        (
            json!({"chunks": ["a", "b", "c", "d"]}),
            413,
            "stream_too_long",
        ),
        (json!({"chunk": ["a"]}), 400, "invalid_body"),
    ] {
        let (got, answer) = post(&server, &writer, &path, body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    // Nothing of a refused append was kept.
    let (_, info) = server.get_json(&format!("/api/streams/{id}")).await;
    assert_eq!(info["chunks"], 0);
    for (body, code) in [
        (json!({"ttl": 0}), "invalid_ttl"),
        (json!({"ttl": "forever"}), "invalid_ttl"),
        (json!({"ttl": "30days"}), "invalid_ttl"),
        (json!({"kind": "video"}), "invalid_body"),
        (json!({"user": ""}), "invalid_user_id"),
        (json!({"user": "tab\there"}), "invalid_user_id"),
    ] {
        let (got, answer) = post(&server, &writer, "/api/streams", body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    create(&server, &writer, json!({})).await;
    let (got, answer) = post(&server, &writer, "/api/streams", json!({})).await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (429, Some("too_many_streams"))
    );
    for unknown in ["nosuchstream", "a%3Ac", "0193aaaabbbbccccddddeeeeffff0000"] {
        let (got, body) = server.get_json(&format!("/api/streams/{unknown}")).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (404, Some("unknown_stream"))
        );
    }
    let response = reqwest::Client::new()
        .get(server.url(&format!("/streams/{id}")))
        .header("Last-Event-ID", "not-a-position")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_creator_writes_and_private_or_personal_streams_are_read_by_whom_they_name() {
    let server = TestServer::start().await;
    let writer = writer();
    let anonymous = reqwest::Client::new();
    let (status, _) = post(&server, &anonymous, "/api/streams", json!({})).await;
    assert_eq!(status, 401);
    let subscriber = client_with_token(&token("sam", &[], &["streams/*"], false));
    let (status, _) = post(&server, &subscriber, "/api/streams", json!({})).await;
    assert_eq!(status, 403, "no publish selector for streams/…");

    let public = create(&server, &writer, json!({})).await;
    let other_writer = client_with_token(&token("mallory", &["*"], &[], false));
    let (status, _) = post(
        &server,
        &other_writer,
        &format!("/api/streams/{public}/append"),
        json!({"chunks": ["x"]}),
    )
    .await;
    assert_eq!(status, 403, "another publisher's stream");
    let (status, _) = post(
        &server,
        &anonymous,
        &format!("/api/streams/{public}/end"),
        json!({"status": "done"}),
    )
    .await;
    assert_eq!(status, 401);

    let private = create(&server, &writer, json!({"private": true})).await;
    let personal = create(&server, &writer, json!({"user": "alice"})).await;
    let alice = client_with_token(&token("alice", &[], &[], false));
    let bob = client_with_token(&token("bob", &[], &[], false));
    let status = |http: reqwest::Client, id: String| {
        let url = server.url(&format!("/api/streams/{id}"));
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(anonymous.clone(), public.clone()).await, 200);
    assert_eq!(status(anonymous.clone(), private.clone()).await, 401);
    assert_eq!(status(bob.clone(), private.clone()).await, 403);
    assert_eq!(status(subscriber.clone(), private.clone()).await, 200);
    assert_eq!(status(anonymous.clone(), personal.clone()).await, 401);
    assert_eq!(status(bob.clone(), personal.clone()).await, 403);
    assert_eq!(status(alice.clone(), personal.clone()).await, 200);
    assert_eq!(
        status(writer.clone(), personal.clone()).await,
        200,
        "its creator"
    );
    let response = bob
        .get(server.url(&format!("/streams/{personal}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "the event stream too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_go_after_their_ttl_and_an_abandoned_one_ends_as_an_error() {
    let server = TestServer::start_with(|config| {
        config.retention_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let writer = writer();
    let ended = create(&server, &writer, json!({"ttl": 1})).await;
    append(&server, &writer, &ended, json!(["bye"])).await;
    post(
        &server,
        &writer,
        &format!("/api/streams/{ended}/end"),
        json!({"status": "done"}),
    )
    .await;
    let abandoned = create(&server, &writer, json!({"ttl": 1})).await;
    append(&server, &writer, &abandoned, json!(["half"])).await;
    let mut reader = read(&server, &reqwest::Client::new(), &abandoned, None).await;
    assert_eq!(chunk(&mut reader).await.1, json!("half"));
    assert_eq!(
        end(&mut reader).await,
        json!({"status": "error", "result": {"reason": "idle"}})
    );
    eventually("the ended stream is gone", || async {
        server.get_json(&format!("/api/streams/{ended}")).await.0 == 404
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_a_restart_on_sqlite() {
    let data_dir = crate::support::fresh_data_dir();
    let writer = writer();
    let herald = HeraldProcess::start(&data_dir, &[]).await;
    let created: Value = writer
        .post(herald.url("/api/streams"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let append_url = |herald: &HeraldProcess| herald.url(&format!("/api/streams/{id}/append"));
    let response = writer
        .post(append_url(&herald))
        .json(&json!({"chunks": ["kept ", "on disk"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "acknowledged once stored");
    assert_eq!(herald.terminate().await.code(), Some(0));

    let herald = HeraldProcess::start(&data_dir, &[]).await;
    let response = reqwest::get(herald.url(&format!("/streams/{id}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut reader = SseStream::new(response);
    assert_eq!(chunk(&mut reader).await.1, json!("kept "));
    assert_eq!(chunk(&mut reader).await.1, json!("on disk"));
    let response = writer
        .post(append_url(&herald))
        .json(&json!({"chunks": ["!"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(chunk(&mut reader).await, ("13".to_owned(), json!("!")));
    drop(herald);
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_through_one_node_is_read_live_on_another() {
    let redis = crate::support::services::RedisServer::start().await;
    let nodes = crate::cluster::nodes(&redis, 2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let writer = writer();
    let id = create(a, &writer, json!({})).await;
    append(a, &writer, &id, json!(["from ", "node a"])).await;
    let mut on_b = read(b, &reqwest::Client::new(), &id, None).await;
    assert_eq!(chunk(&mut on_b).await.1, json!("from "));
    assert_eq!(chunk(&mut on_b).await.1, json!("node a"));
    // Live: appended through a, read through b as it comes.
    append(a, &writer, &id, json!([", live"])).await;
    assert_eq!(chunk(&mut on_b).await, ("17".to_owned(), json!(", live")));
    // The creator may go on through b as well.
    append(b, &writer, &id, json!(["!"])).await;
    assert_eq!(chunk(&mut on_b).await.1, json!("!"));
    let (status, _) = post(
        a,
        &writer,
        &format!("/api/streams/{id}/end"),
        json!({"status": "done"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(end(&mut on_b).await, json!({"status": "done"}));
    let (_, info) = b.get_json(&format!("/api/streams/{id}")).await;
    assert_eq!(info["text"], "from node a, live!");
}
