//! Debian's curl, speaking HTTP/2 over TLS, sees an event stream.

use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::tls::https_url;
use crate::support::{TIMEOUT, TestCertificate, TestServer};

#[tokio::test]
async fn curl_http2_sees_http2_200_and_events() {
    let certificate = TestCertificate::generate();
    let server = TestServer::start_https(&certificate, |_| {}).await;
    let ca = certificate.dir.join("ca.pem");
    std::fs::write(&ca, &certificate.pem).unwrap();
    let mut curl = tokio::process::Command::new("curl")
        .args([
            "--http2",
            "--silent",
            "--show-error",
            "--no-buffer",
            "--include",
        ])
        .arg("--cacert")
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", server.address().port()))
        .arg(https_url(&server, "/events?topic=curl"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl runs (apt-get install curl)");
    let mut lines = BufReader::new(curl.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("curl prints in time")
            .unwrap()
            .expect("curl's output goes on")
    };
    let status = next_line().await;
    assert_eq!(status.trim(), "HTTP/2 200");
    let mut content_type = None;
    loop {
        let line = next_line().await;
        if line.trim().is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-type: ") {
            content_type = Some(value.trim().to_owned());
        }
    }
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    while next_line().await.trim() != "event: herald.connected" {}
    let published = server
        .publish("curl", "greeting", json!("hello, curl"))
        .await;
    let mut seen_id = false;
    loop {
        let line = next_line().await;
        if line.trim() == format!("id: {}", published.id) {
            seen_id = true;
        }
        if line.starts_with("data: ") && line.contains("hello, curl") {
            break;
        }
    }
    assert!(seen_id, "the event carries its id");
}
