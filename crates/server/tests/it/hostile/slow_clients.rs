//! Slow and silent clients (slowloris): a connection that never completes its request head,
//! trickles it a byte at a time, stalls its body or idles between requests is closed at its
//! deadline, on either path (event streams and everything else), and nothing is left held.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TIMEOUT, TestServer, eventually, token};

const HEADER_TIMEOUT: Duration = Duration::from_millis(800);
const BODY_TIMEOUT: Duration = Duration::from_millis(800);

async fn server() -> TestServer {
    TestServer::start_with(|config| {
        config.header_timeout = HEADER_TIMEOUT;
        config.body_timeout = BODY_TIMEOUT;
    })
    .await
}

fn address(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (end of file or a reset), failing the test
/// after [`TIMEOUT`]; returns what was read.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&read).into_owned(),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection is still open after {TIMEOUT:?}"),
        }
    }
}

/// Sends `start`, then one byte of a header every 100 ms for as long as the server reads
/// them: a head that makes progress but never ends. Returns how long it was served, once the
/// server closed it (failing the test if it has not after [`TIMEOUT`]).
async fn trickle(address: String, start: &'static str) -> Duration {
    let opened = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(start.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let mut buf = [0u8; 1024];
    let closed = async { while !matches!(reader.read(&mut buf).await, Ok(0) | Err(_)) {} };
    let dripping = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"a").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::time::timeout(TIMEOUT, async {
        tokio::select! {
            () = closed => {}
            () = dripping => {}
        }
    })
    .await
    .expect("a trickled head is cut off");
    opened.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_request_heads_are_closed_at_the_header_timeout_on_both_paths() {
    let server = server().await;
    const EACH: usize = 100;
    let starts = [
        "",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n",
        "GET /events?topic=a HTTP/1.1\r\nHost: x\r\n",
        "GET /ev",
    ];
    // Stamped before the first connection: each one's deadline runs from its accept, which
    // may come before its connect returns here.
    let opened = Instant::now();
    let mut silent = Vec::new();
    for start in starts {
        for _ in 0..EACH {
            let mut stream = TcpStream::connect(address(&server)).await.unwrap();
            stream.write_all(start.as_bytes()).await.unwrap();
            silent.push(stream);
        }
    }
    let trickled: Vec<_> = [
        "GET /healthz HTTP/1.1\r\nX-Slow: ",
        "GET /events?topic=a HTTP/1.1\r\nX-Slow: ",
    ]
    .into_iter()
    .flat_map(|start| (0..25).map(move |_| start))
    .map(|start| tokio::spawn(trickle(address(&server), start)))
    .collect();
    // Each wait fails the test if the connection is still open after TIMEOUT, many times
    // the header timeout.
    for stream in &mut silent {
        read_until_closed(stream).await;
    }
    assert!(
        opened.elapsed() >= HEADER_TIMEOUT,
        "closed before the timeout"
    );
    for task in trickled {
        let lasted = task.await.unwrap();
        assert!(lasted >= HEADER_TIMEOUT, "cut off after {lasted:?}");
    }
    eventually("no connection is held", || async {
        server.metric("herald_tcp_connections").await <= 1.0
    })
    .await;
    // Herald answers as before.
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = server().await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    // Taken before the request is sent: the server answers, and starts counting the idle
    // time, only after it has it, however late this task is scheduled again.
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let idle = started.elapsed();
    assert!(idle >= HEADER_TIMEOUT, "closed after {idle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let server = server().await;
    let credential = token("publisher", &["news"], &[], false);
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\n\
         Content-Type: application/json\r\nContent-Length: 9000\r\n\r\n{{\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_but_never_sent_does_not_hold_the_connection() {
    let server = server().await;
    for (request, status) in [
        // Larger than any body accepted: refused at once, before authentication.
        (
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 9000000\r\n\r\n{\"",
            "HTTP/1.1 413",
        ),
        // Whatever the route.
        (
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\nab",
            "HTTP/1.1 413",
        ),
        // A route that reads no body, announced within the limit: answered, then closed as
        // the body never comes.
        (
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\nab",
            "HTTP/1.1 200",
        ),
    ] {
        let mut stream = TcpStream::connect(address(&server)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut stream).await;
        assert!(answer.starts_with(status), "{request}: {answer}");
    }
}
