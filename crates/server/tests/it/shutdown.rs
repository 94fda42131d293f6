//! Graceful shutdown: every stream is told, and the process exits promptly even when thousands
//! of connections are open.

use std::time::{Duration, Instant};

use herald_protocol::system::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_gets_herald_closing_on_shutdown() {
    let server = crate::demo::demo_server().await;
    let streams = server.connected_streams(&["a", "b", "c"]).await;
    let mut countdown = server
        .get_stream("/demo/countdown?count=100&interval_ms=50")
        .await;
    countdown.expect("customEvent").await;

    let took = server.shutdown().await;
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    for stream in streams {
        stream.assert_closed_for_shutdown().await;
    }
    assert_eq!(countdown.closing().await.reason, CloseReason::Shutdown);
}

/// Opens a raw subscription and reads until its `herald.connected` frame has arrived.
async fn open_raw(address: &str, n: usize) -> TcpStream {
    let mut socket = TcpStream::connect(address).await.expect("connect");
    let request = format!(
        "GET /events?topic=t{} HTTP/1.1\r\nHost: {address}\r\n\r\n",
        n % 50
    );
    socket
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("herald.connected") {
        let read = tokio::time::timeout(crate::support::TIMEOUT, socket.read(&mut buf))
            .await
            .expect("data in time")
            .expect("read");
        assert!(read > 0, "connection {n} closed before herald.connected");
        seen.extend_from_slice(&buf[..read]);
    }
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_within_two_seconds_of_sigterm_with_thousands_of_streams() {
    // This process holds one socket per stream.
    rlimit::increase_nofile_limit(u64::MAX).expect("the open files limit can be raised");
    let herald = crate::support::HeraldProcess::start_fresh(&[]).await;
    let address = herald.base.trim_start_matches("http://").to_owned();

    let mut sockets = Vec::with_capacity(CONNECTIONS);
    for n in 0..CONNECTIONS {
        sockets.push(open_raw(&address, n).await);
    }

    let started = Instant::now();
    let exit = herald.terminate().await;
    let took = started.elapsed();
    assert!(exit.success(), "herald exited with {exit}");
    println!("herald exited {took:?} after SIGTERM with {CONNECTIONS} open streams");
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?} with {CONNECTIONS} streams"
    );

    let mut told = 0;
    for mut socket in sockets {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(crate::support::TIMEOUT, socket.read_to_end(&mut rest))
            .await
            .unwrap();
        if String::from_utf8_lossy(&rest).contains(r#""reason":"shutdown""#) {
            told += 1;
        }
    }
    assert_eq!(told, CONNECTIONS, "every stream received herald.closing");
}
