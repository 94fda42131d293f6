//! Connections whose first request is `GET /events`: Herald's own writer for event streams.
//!
//! Through hyper, every connection keeps a read buffer and a write buffer of 8 KiB each for as
//! long as it is open, which for an idle event stream is most of what it costs. Here the request
//! head is read into a buffer that is freed once parsed, the request goes through the same
//! [`Router`] (authentication, CORS, tracing, metrics and the `/events` handler all apply), and
//! the stream's frames are then written straight from the bytes shared by every subscriber.
//! While the stream waits for live events, its socket is lent to fan-out, which writes events
//! to it without waking the connection's task (see `hub/queue.rs`).
//! The body is delimited by closing the connection (`Connection: close`), which spares the
//! chunk framing on every write; EventSource and proxies read such bodies as any other.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, header};
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::http::EventStreamSlot;
use crate::hub::Connection;
use crate::listener::PeerAddress;
use crate::metrics::Metrics;

/// The request line that sends a connection here.
const PREFIX: &[u8] = b"GET /events";
/// The most a request head may take; browsers send well under 2 KiB.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest non-stream answer (an error) read back from the router.
const MAX_ANSWER: usize = 64 * 1024;

/// Reads the start of a connection's first request: until it is known whether it is
/// `GET /events` (followed by a space or a query), which is the answer, with the bytes read.
/// Whatever is not an event stream goes to hyper with those bytes put back in front.
pub async fn first_bytes(stream: &TcpStream) -> io::Result<(bool, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        read_more(stream, &mut buf).await?;
        if buf.len() > PREFIX.len() {
            let wants = buf.starts_with(PREFIX) && matches!(buf[PREFIX.len()], b' ' | b'?');
            return Ok((wants, buf));
        }
        if !PREFIX.starts_with(&buf) {
            return Ok((false, buf));
        }
    }
}

/// What a connection needs from the server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app: Router,
    pub write_timeout: Duration,
    /// The kernel send buffer of each stream (`stream_send_buffer`); `None` leaves it alone.
    pub send_buffer: Option<usize>,
    /// The most each stream leaves unsent in the kernel (`stream_unsent_limit`); `None`: no limit.
    pub unsent_limit: Option<usize>,
    pub metrics: Arc<Metrics>,
}

/// Serves one `GET /events` request on `stream` and closes it.
/// `read` holds what [`first_bytes`] read.
pub async fn serve(stream: TcpStream, peer: SocketAddr, read: Vec<u8>, settings: Settings) {
    let stream = Arc::new(stream);
    {
        let socket = socket2::SockRef::from(&*stream);
        if let Some(bytes) = settings.send_buffer
            && let Err(err) = socket.set_send_buffer_size(bytes)
        {
            tracing::debug!(%err, "could not set SO_SNDBUF");
        }
        // Validated at start-up to fit.
        if let Some(bytes) = settings
            .unsent_limit
            .and_then(|bytes| u32::try_from(bytes).ok())
            && let Err(err) = socket.set_tcp_notsent_lowat(bytes)
        {
            tracing::debug!(%err, "could not set TCP_NOTSENT_LOWAT");
        }
    }
    let mut request = match tokio::time::timeout(HEAD_TIMEOUT, read_request(&stream, read)).await {
        Ok(Ok(Ok(request))) => request,
        Ok(Ok(Err(refusal))) => {
            let _ = write_all(&stream, &refusal, settings.write_timeout, &settings.metrics).await;
            return close(&stream);
        }
        Ok(Err(err)) => {
            tracing::debug!(%err, "reading an event-stream request failed");
            return;
        }
        Err(_) => {
            tracing::debug!("no request head within the timeout");
            return;
        }
    };
    request
        .extensions_mut()
        .insert(ConnectInfo(PeerAddress(peer)));
    let Ok(mut response) = settings.app.clone().oneshot(request).await;
    let subscription = response
        .extensions_mut()
        .remove::<EventStreamSlot>()
        .and_then(|slot| slot.take());
    let head = response_head(&response);
    let Some(mut subscription) = subscription else {
        // Not a stream (an error, say): send the whole answer and close.
        let body = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
            .await
            .unwrap_or_default();
        let mut answer = head;
        answer.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        answer.extend_from_slice(&body);
        let _ = write_all(&stream, &answer, settings.write_timeout, &settings.metrics).await;
        return close(&stream);
    };
    drop(response);
    // The head and the stream's first frame (its greeting, ready at once) leave in one write.
    let mut head = head;
    head.extend_from_slice(b"\r\n");
    if let Some(greeting) = subscription.next().await {
        head.extend_from_slice(&greeting);
    }
    if write_all(&stream, &head, settings.write_timeout, &settings.metrics)
        .await
        .is_err()
    {
        return;
    }
    drop(head);
    let lent = Lent::new(subscription.connection(), &stream);
    loop {
        tokio::select! {
            chunk = subscription.next() => match chunk {
                Some(chunk) => {
                    if write_all(&stream, &chunk, settings.write_timeout, &settings.metrics)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                None => break,
            },
            // The client sends nothing more on an event stream: readable means it has gone
            // (end of file or an error), or sent bytes that are read and ignored.
            ready = stream.readable() => {
                if ready.is_err() || peer_gone(&stream) {
                    return;
                }
            }
        }
    }
    drop(lent);
    close(&stream);
}

/// The socket lent to fan-out for as long as the stream is served; taken back when dropped.
struct Lent(Arc<Connection>);

impl Lent {
    fn new(connection: &Arc<Connection>, stream: &Arc<TcpStream>) -> Self {
        connection.queue.lend(Arc::clone(stream));
        Self(Arc::clone(connection))
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.0.queue.take_back();
    }
}

/// Reads and parses the request head. `Ok(Err(answer))` is a complete refusal to send back.
async fn read_request(
    stream: &TcpStream,
    mut buf: Vec<u8>,
) -> io::Result<Result<Request<Body>, Vec<u8>>> {
    loop {
        if let Some(parsed) = parse_head(&buf) {
            return Ok(parsed);
        }
        read_more(stream, &mut buf).await?;
    }
}

/// Appends the next bytes the client sends to `buf`; the end of the stream is an error.
async fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        stream.readable().await?;
        // Declared after the await, so it lives on the stack and not in the future: every
        // connection's task is sized for its largest state, for as long as it lives.
        let mut chunk = [0u8; 2048];
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => {
                buf.extend_from_slice(&chunk[..read]);
                return Ok(());
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        }
    }
}

/// The request in `buf` once its head is complete, or a refusal; `None` while more is needed.
fn parse_head(buf: &[u8]) -> Option<Result<Request<Body>, Vec<u8>>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(_)) => Some(build_request(&parsed)),
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => None,
        Ok(httparse::Status::Partial) => Some(Err(refusal(
            431,
            "request_header_too_large",
            "the request head is larger than 16 KiB",
        ))),
        Err(httparse::Error::TooManyHeaders) => Some(Err(refusal(
            431,
            "request_header_too_large",
            "a request may carry at most 64 headers",
        ))),
        Err(err) => Some(Err(refusal(
            400,
            "bad_request",
            &format!("malformed request head: {err}"),
        ))),
    }
}

fn build_request(parsed: &httparse::Request<'_, '_>) -> Result<Request<Body>, Vec<u8>> {
    let mut builder = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"));
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    builder
        .body(Body::empty())
        .map_err(|err| refusal(400, "bad_request", &format!("malformed request: {err}")))
}

/// A complete JSON error answer, in the shape of every other Herald error.
fn refusal(status: u16, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let reason = match status {
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status line and headers of `response`, ending with `connection: close` but not with
/// the blank line.
fn response_head(response: &Response<Body>) -> Vec<u8> {
    let status = response.status();
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n");
    head
}

/// Reads whatever the client sent; true when it closed its side or the connection failed.
fn peer_gone(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 64];
    match stream.try_read(&mut sink) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != io::ErrorKind::WouldBlock,
    }
}

/// Writes all of `bytes`. The first attempt is a plain non-blocking write, which is all an
/// event takes while the client keeps up; a write that then makes no progress for
/// `write_timeout` fails, which ends the connection and frees what it held.
async fn write_all(
    stream: &TcpStream,
    mut bytes: &[u8],
    write_timeout: Duration,
    metrics: &Metrics,
) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(write_timeout, stream.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        metrics.write_timeouts.inc();
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
            }
            Err(err) => {
                if err.kind() == io::ErrorKind::TimedOut {
                    // The kernel gave up on the peer (TCP_USER_TIMEOUT).
                    metrics.write_timeouts.inc();
                }
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Ends the connection after everything written so far: the write side is shut first so the
/// last frames are delivered before the close.
fn close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task holds its future for as long as the stream is open, sized for the
    /// largest state it can be in: a read buffer kept across an await would cost every idle
    /// subscriber its size.
    #[tokio::test]
    async fn an_open_stream_holds_a_small_future() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let settings = Settings {
            app: Router::new(),
            write_timeout: Duration::from_secs(1),
            send_buffer: None,
            unsent_limit: None,
            metrics: Arc::new(Metrics::default()),
        };
        let serving = serve(stream, peer, Vec::new(), settings);
        let size = std::mem::size_of_val(&serving);
        assert!(
            size < 2048,
            "the event-stream task's future takes {size} bytes"
        );
    }
}
