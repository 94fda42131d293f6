//! Batch publishing: `POST /api/publish` with `{"events": [...]}` stores the events together,
//! in order, all or none, and answers each one's id.

use serde_json::{Value, json};

use crate::support::{TestServer, client_with_token, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_stored_in_order_and_each_event_acknowledged() {
    let server = TestServer::start().await;
    let mut a = server.subscribe("topic=a").await;
    let mut both = server.subscribe("topic=a&topic=b").await;
    a.connected().await;
    both.connected().await;
    let response = server
        .post_json(
            "/api/publish",
            &json!({"events": [
                {"topic": "a", "type": "n", "data": 1},
                {"topics": ["a", "b"], "data": {"big": 12345678901234567890u64}},
                {"topic": "b", "type": "n", "data": 3},
            ]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1]["topics"], json!(["a", "b"]));
    let ids: Vec<u64> = events
        .iter()
        .map(|event| event["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    let first = a.envelope().await;
    assert_eq!(
        (first.id.as_str(), first.data.clone()),
        (events[0]["id"].as_str().unwrap(), json!(1))
    );
    let second = a.envelope().await;
    assert_eq!(second.id, events[1]["id"].as_str().unwrap());
    for event in events {
        assert_eq!(both.envelope().await.id, event["id"].as_str().unwrap());
    }
    // Numbers keep every digit.
    let raw = server.get_stream("/events?topic=b&last_event_id=0").await;
    drop(raw);
    assert_eq!(second.data, json!({"big": 12345678901234567890u64}));

    // A single event still answers as before.
    let single: Value = server
        .post_json("/api/publish", &json!({"topic": "a", "data": "one"}))
        .await
        .json()
        .await
        .unwrap();
    assert!(single["id"].is_string() && single["topics"] == json!(["a"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_event_stores_nothing() {
    let server = TestServer::start().await;
    let mut watcher = server.subscribe("topic=a&topic=secret").await;
    watcher.connected().await;
    let limited = client_with_token(&token("writer", &["a"], &[], false));
    let post = |http: reqwest::Client, body: Value| {
        let url = server.url("/api/publish");
        async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            (
                status,
                answer["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    let good = json!({"topic": "a", "data": "should not be stored"});
    for (http, body, expected) in [
        (
            limited.clone(),
            json!({"events": [good.clone(), {"topic": "secret", "data": 1}]}),
            (403, "forbidden"),
        ),
        (
            limited.clone(),
            json!({"events": [good.clone(), {"topic": "a", "type": "herald.fake"}]}),
            (400, "invalid_type"),
        ),
        (
            limited.clone(),
            json!({"events": [good.clone(), {"topic": "", "data": 1}]}),
            (400, "invalid_topic"),
        ),
        (
            limited.clone(),
            json!({"events": []}),
            (400, "missing_events"),
        ),
        (
            limited.clone(),
            json!({"events": [good.clone()], "topic": "a"}),
            (400, "invalid_body"),
        ),
        (
            limited.clone(),
            json!({"events": vec![good.clone(); 1001]}),
            (413, "too_many_events"),
        ),
    ] {
        let (status, code) = post(http, body.clone()).await;
        assert_eq!(
            (status, code.as_str()),
            expected,
            "{}",
            &body.to_string()[..80.min(body.to_string().len())]
        );
    }
    // Nothing of the refused batches arrived: the next event is this marker.
    let marker = server.publish("a", "marker", json!("after")).await;
    assert_eq!(watcher.envelope().await.id, marker.id);
}
