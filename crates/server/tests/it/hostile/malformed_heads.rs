//! Generated hostile request heads, sent over real sockets to both paths (`/events`, served by
//! Herald's own writer, and everything else, served by hyper): each is answered with a 2xx or
//! 4xx, or closed at the header timeout, never with a 5xx, and Herald goes on serving.

use std::time::Duration;

use futures_util::future::join_all;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TIMEOUT, TestServer};

const CASES: usize = 300;

/// Heads that look like requests, with hostile parts: odd methods, paths and queries of any
/// bytes, headers of any names and values (repeated `Last-Event-ID` and `Authorization`
/// among them), sometimes no end.
fn heads() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just(b"GET".to_vec()),
        Just(b"HEAD".to_vec()),
        Just(b"POST".to_vec()),
        Just(b"OPTIONS".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
    ];
    let path = prop_oneof![
        Just(b"/events?topic=".to_vec()),
        Just(b"/events?".to_vec()),
        Just(b"/api/publish?".to_vec()),
        Just(b"/healthz".to_vec()),
    ];
    // Mostly what a URL or a header may hold, sometimes any bytes at all.
    let text = |visible: &'static str, most: usize| {
        prop_oneof![
            19 => proptest::string::string_regex(&format!("{visible}{{0,{most}}}"))
                .unwrap()
                .prop_map(String::into_bytes),
            1 => proptest::collection::vec(any::<u8>(), 0..most),
        ]
    };
    let query = text("[!-~]", 40);
    let name = prop_oneof![
        Just(b"Last-Event-ID".to_vec()),
        Just(b"Authorization".to_vec()),
        Just(b"Cookie".to_vec()),
        Just(b"Content-Length".to_vec()),
        Just(b"Transfer-Encoding".to_vec()),
        Just(b"Origin".to_vec()),
        text("[A-Za-z-]", 12),
    ];
    let header = (name, text("[ -~]", 48));
    let headers = proptest::collection::vec(header, 0..6);
    (method, path, query, headers, any::<bool>()).prop_map(
        |(method, path, query, headers, ends)| {
            let mut head = method;
            head.push(b' ');
            head.extend_from_slice(&path);
            head.extend_from_slice(&query);
            head.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n");
            for (name, value) in headers {
                head.extend_from_slice(&name);
                head.extend_from_slice(b": ");
                head.extend_from_slice(&value);
                head.extend_from_slice(b"\r\n");
            }
            if ends {
                head.extend_from_slice(b"\r\n");
            }
            head
        },
    )
}

/// Sends `head` and returns the status line of the answer, if any, once the server closed the
/// connection or went quiet after answering.
async fn status_of(address: String, head: Vec<u8>) -> Option<String> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let _ = stream.write_all(&head).await;
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let limit = if read.is_empty() {
            TIMEOUT
        } else {
            Duration::from_millis(200)
        };
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read.extend_from_slice(&buf[..n]),
            Ok(_) => break,
            // Quiet after an answer: an event stream or a keep-alive connection.
            Err(_) if !read.is_empty() => break,
            Err(_) => panic!(
                "neither answered nor closed: {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let text = String::from_utf8_lossy(&read).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostile_heads_never_get_a_server_error() {
    let server = TestServer::start_with(|config| {
        config.header_timeout = Duration::from_millis(500);
    })
    .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut runner = TestRunner::deterministic();
    let strategy = heads();
    let cases: Vec<Vec<u8>> = (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let statuses = join_all(
        cases
            .iter()
            .map(|head| tokio::spawn(status_of(address.clone(), head.clone()))),
    )
    .await;
    let mut answered = 0;
    for (head, status) in cases.iter().zip(statuses) {
        let Some(status) = status.unwrap() else {
            continue;
        };
        answered += 1;
        let code = status.split(' ').nth(1).unwrap_or_default();
        assert!(
            status.starts_with("HTTP/1.1 ") && (code.starts_with('2') || code.starts_with('4')),
            "{status:?} for {:?}",
            String::from_utf8_lossy(head)
        );
    }
    assert!(answered > CASES / 4, "only {answered} of {CASES} answered");
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200);
}
