//! Holding connections open: every connection counts toward `--max-connections` and, per
//! address, toward `--max-connections-per-address`, from its accept; one past a limit gets a
//! JSON refusal with `Retry-After` at once. With 19,000 half-open connections held, Herald
//! still answers everyone else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{HeraldProcess, TIMEOUT, TestServer, eventually, token};

/// A connection to `server` from `from` (any address in 127.0.0.0/8 is this machine's).
async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(server).await
}

fn socket_address(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

/// Opens a connection and sends the start of a request head that never ends.
async fn half_open(from: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let mut stream = connect_from(from, server).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    stream
}

/// Everything the server sends on a new connection from `from` before closing it.
async fn answer_to_new_connection(from: Ipv4Addr, server: SocketAddr) -> String {
    let mut stream = connect_from(from, server).await.unwrap();
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap_or_default();
    String::from_utf8_lossy(&answer).into_owned()
}

fn header_value<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer
        .lines()
        .find_map(|line| {
            line.split_once(':')
                .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        })
        .map(|(_, value)| value.trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_new_connection_gets_503_until_one_closes() {
    const MAX: usize = 40;
    let server = TestServer::start_with(|config| {
        config.max_connections = Some(MAX);
        config.header_timeout = TIMEOUT * 6;
    })
    .await;
    let address = socket_address(&server.base);
    let local = Ipv4Addr::LOCALHOST;
    let mut held = Vec::new();
    for _ in 0..MAX {
        held.push(half_open(local, address).await);
    }
    let answer = answer_to_new_connection(local, address).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(header_value(&answer, "retry-after"), Some("1"));
    assert!(answer.contains("\"server_busy\""), "{answer}");

    held.pop();
    eventually("a connection is served again", || async {
        answer_to_new_connection(local, address)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    drop(held);
    // The connections just dropped may not all be closed on the server's side yet: a refused
    // request is asked again.
    eventually("the refusals are counted", || async {
        server
            .try_metric("herald_connections_refused_total{reason=\"max_connections\"}")
            .await
            .is_some_and(|refused| refused >= 1.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_limited_and_others_are_served() {
    const PER_ADDRESS: usize = 30;
    let server = TestServer::start_with(|config| {
        config.max_connections_per_address = PER_ADDRESS;
        config.header_timeout = TIMEOUT * 6;
    })
    .await;
    let address = socket_address(&server.base);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push(half_open(attacker, address).await);
    }
    let answer = answer_to_new_connection(attacker, address).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");
    assert_eq!(header_value(&answer, "retry-after"), Some("1"));

    // Another address is served, event streams included.
    let answer = answer_to_new_connection(Ipv4Addr::LOCALHOST, address).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut stream = server.subscribe("topic=a").await;
    stream.connected().await;
    drop(held);
}

/// The attack as it was first tried: thousands of requests that never finish, held open.
/// Herald runs as its own process (each side needs 19,000 open files), from twenty addresses
/// so that the default per-address limit (1,000) lets them all in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nineteen_thousand_half_open_connections_do_not_stop_herald() {
    const HELD: usize = 19_000;
    const ADDRESSES: usize = 20;
    raise_open_files_limit(HELD + 1_000);
    let herald = HeraldProcess::start_fresh(&[
        "--header-timeout",
        "10m",
        "--max-connections-per-address",
        "1000",
    ])
    .await;
    let address = socket_address(&herald.url(""));
    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let from = Ipv4Addr::new(127, 0, 1, u8::try_from(1 + i % ADDRESSES).unwrap());
        held.push(half_open(from, address).await);
    }
    let http = reqwest::Client::new();
    let metrics = http
        .get(herald.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("herald_tcp_connections "))
        .and_then(|value| value.parse().ok())
        .expect("herald_tcp_connections is exported");
    assert!(open >= HELD as f64, "{open} connections held");

    let health = http.get(herald.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let subscriber = crate::support::client_with_token(&token("reader", &[], &["news"], false));
    let response = subscriber
        .get(herald.url("/events?topic=news"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = crate::support::SseStream::new(response);
    stream.connected().await;
    let publisher = crate::support::client_with_token(&token("writer", &["news"], &[], false));
    let published = publisher
        .post(herald.url("/api/publish"))
        .json(&serde_json::json!({"topic": "news", "type": "headline", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    assert_eq!(stream.envelope().await.data, serde_json::json!(1));
    // Every held connection is still open: nothing was dropped to make room (a closed one
    // would read its end at once).
    let mut buf = [0u8; 64];
    for stream in &held {
        let read = stream.try_read(&mut buf);
        assert!(
            matches!(&read, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock),
            "a held connection ended: {read:?}"
        );
    }
    drop(held);
}

/// Raises this process's open-files limit to `needed`, failing with a clear message where the
/// hard limit does not allow it.
fn raise_open_files_limit(needed: usize) {
    let raised = rlimit::increase_nofile_limit(needed as u64).unwrap();
    assert!(
        raised >= needed as u64,
        "this test holds {needed} sockets, above the open-files limit ({raised}); raise it \
         (`ulimit -n 20000`)"
    );
}
