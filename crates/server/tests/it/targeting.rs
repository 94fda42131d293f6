//! Audiences: one client, everyone, and closing a client.

use crate::support::{TestServer, eventually};
use herald_protocol::system::CloseReason;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_targeted_event_reaches_only_that_client() {
    let server = TestServer::start().await;
    let mut alice = server.subscribe("topic=lobby").await;
    let mut bob = server.subscribe("topic=lobby").await;
    let alice_id = alice.connected().await.client_id;
    bob.connected().await;

    let response = server
        .post_json(
            &format!("/api/clients/{alice_id}/events"),
            &json!({"type": "dm", "data": {"text": "hi"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let ack: herald_protocol::api::SendResponse = response.json().await.unwrap();
    server.publish("lobby", "message", json!("marker")).await;

    let direct = alice.envelope().await;
    assert_eq!(
        (direct.id.as_str(), direct.kind.as_str(), direct.topic),
        (ack.id.as_str(), "dm", None)
    );
    assert_eq!(direct.data, json!({"text": "hi"}));
    assert_eq!(alice.envelope().await.data, json!("marker"));
    assert_eq!(
        bob.envelope().await.data,
        json!("marker"),
        "bob's next event is the marker, not alice's message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_holding_a_client_id_receives_its_events() {
    let server = TestServer::start().await;
    let mut first_tab = server.subscribe("topic=a").await;
    let client_id = first_tab.connected().await.client_id;
    let mut second_tab = server.subscribe(&format!("client_id={client_id}")).await;
    let connected = second_tab.connected().await;
    assert_eq!(
        connected.client_id, client_id,
        "reconnecting with client_id keeps it"
    );
    assert!(connected.topics.is_empty());

    server
        .post_json(
            &format!("/api/clients/{client_id}/events"),
            &json!({"data": 7}),
        )
        .await;
    assert_eq!(first_tab.envelope().await.data, json!(7));
    assert_eq!(second_tab.envelope().await.data, json!(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_issued_client_id_is_refused() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url(&format!("/events?topic=a&client_id={}", "ab".repeat(16))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_client_id");

    let response = server
        .post_json(
            &format!("/api/clients/{}/events", "ab".repeat(16)),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "client_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_connection() {
    let server = TestServer::start().await;
    let mut streams = Vec::new();
    for query in ["topic=a", "topic=b", "topic=c&topic=d"] {
        let mut stream = server.subscribe(query).await;
        stream.connected().await;
        streams.push(stream);
    }
    let response = server
        .post_json(
            "/api/broadcast",
            &json!({"type": "maintenance", "data": {"in": "5m"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    for stream in &mut streams {
        let envelope = stream.envelope().await;
        assert_eq!(
            (envelope.kind.as_str(), envelope.topic),
            ("maintenance", None)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_close_ends_the_clients_streams_without_reconnect() {
    let server = TestServer::start().await;
    let mut target = server.subscribe("topic=a").await;
    let mut bystander = server.subscribe("topic=a").await;
    let client_id = target.connected().await.client_id;
    bystander.connected().await;

    let (_, clients) = server.get_json("/api/clients").await;
    let listed = clients.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let entry = listed
        .iter()
        .find(|c| c["client_id"] == client_id.as_str())
        .expect("target listed");
    assert_eq!(entry["topics"], json!(["a"]));
    assert_eq!(entry["user"], "operator", "the credential's user");
    assert!(humantime::parse_rfc3339(entry["connected_at"].as_str().unwrap()).is_ok());

    let response = server
        .http
        .delete(server.url(&format!("/api/clients/{client_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let closing = target.closing().await;
    assert_eq!(
        (closing.reason, closing.reconnect),
        (CloseReason::AdminClose, false)
    );
    target.assert_ends().await;

    server.publish("a", "message", json!("still here")).await;
    assert_eq!(bystander.envelope().await.data, json!("still here"));
    eventually("only the bystander is listed", || async {
        server.live_connections().await == 1
    })
    .await;
    let response = server
        .http
        .delete(server.url(&format!("/api/clients/{client_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "a client with no live connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_topics_receives_its_client_stream_and_broadcasts() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("").await;
    let connected = stream.connected().await;
    assert!(connected.topics.is_empty());
    server
        .publish("anything", "message", json!("not for me"))
        .await;
    server
        .post_json(
            &format!("/api/clients/{}/events", connected.client_id),
            &json!({"data": "direct"}),
        )
        .await;
    server
        .post_json("/api/broadcast", &json!({"data": "everyone"}))
        .await;
    assert_eq!(stream.envelope().await.data, json!("direct"));
    assert_eq!(stream.envelope().await.data, json!("everyone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_away_from_every_tab_is_still_sent_to_and_catches_up() {
    let server = TestServer::start().await;
    let mut stream = server.subscribe("topic=a").await;
    let client_id = stream.connected().await.client_id;
    server.publish("a", "message", json!("seen")).await;
    stream.envelope().await;
    let last_seen = stream.last_event_id().to_owned();
    drop(stream);
    eventually("the client has no live connection", || async {
        server.live_connections().await == 0
    })
    .await;

    let response = server
        .post_json(
            &format!("/api/clients/{client_id}/events"),
            &json!({"data": "while away"}),
        )
        .await;
    assert_eq!(
        response.status(),
        200,
        "known to storage, not only while live"
    );
    let mut back = server
        .subscribe_after(&format!("topic=a&client_id={client_id}"), Some(&last_seen))
        .await;
    assert_eq!(back.connected().await.client_id, client_id);
    assert_eq!(back.envelope().await.data, json!("while away"));
}
