//! The new ways in keep the deadlines every connection has: a TLS handshake that never comes
//! and an HTTP/2 connection that never asks for anything are closed after the header timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TIMEOUT, TestCertificate, TestServer};

/// Everything the server sends until it closes the connection.
async fn read_to_close(socket: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(TIMEOUT, socket.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .expect("the connection reads cleanly");
    received
}

/// The types of the HTTP/2 frames in `bytes`.
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let length =
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + length).min(bytes.len())..];
    }
    types
}

#[tokio::test]
async fn an_http2_connection_that_asks_for_nothing_gets_goaway_and_is_closed() {
    let server = TestServer::start_with(|config| {
        config.header_timeout = Duration::from_millis(300);
    })
    .await;
    let mut socket = TcpStream::connect(server.address()).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame, and then nothing.
    socket
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let received = read_to_close(&mut socket).await;
    const GOAWAY: u8 = 7;
    assert!(
        frame_types(&received).contains(&GOAWAY),
        "frames {:?}",
        frame_types(&received)
    );
}

#[tokio::test]
async fn a_tls_handshake_that_never_comes_is_closed_after_the_header_timeout() {
    let certificate = TestCertificate::generate();
    let server = TestServer::start_https(&certificate, |config| {
        config.header_timeout = Duration::from_millis(300);
    })
    .await;
    let mut silent = TcpStream::connect(server.address()).await.unwrap();
    let received = read_to_close(&mut silent).await;
    assert!(received.is_empty());
    assert!(server.metric("herald_tls_handshake_failures_total").await >= 1.0);
}
