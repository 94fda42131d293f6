//! HTTP/2 connections (`h2` over TLS, or h2c with prior knowledge): every request is a stream
//! of the connection, answered through the same [`Router`](axum::Router) in a task of its own.
//!
//! An event stream's frames are sent as the stream's data, each as soon as the stream's
//! flow-control window has room for it: a client that stops reading one stream (its window
//! stays shut) holds at most a window and a frame of it, and after the write timeout that
//! stream alone is reset, while the other streams of the connection go on. A client that stops
//! reading the connection altogether is caught below, by the connection's write timeout
//! ([`TimedStream`](super::timed::TimedStream)).
//!
//! The connection has the deadlines an HTTP/1.1 one has: its preface by the header deadline,
//! and no more than `header_timeout` without an open stream (then `GOAWAY`). On shutdown, the
//! event streams end with their `herald.closing` frame, and the connection then says `GOAWAY`.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, Response, header};
use bytes::Bytes;
use futures_util::StreamExt;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use super::peer::PeerAddress;
use super::settings::Settings;
use super::slot::EventStreamSlot;
use crate::hub::Subscription;

/// The receive window of each stream (request bodies), and of the connection.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// The largest request head, as on HTTP/1.1.
const MAX_HEAD: u32 = 16 * 1024;
/// The most data h2 keeps for a stream beyond its window.
const SEND_BUFFER: usize = 64 * 1024;

/// Serves an HTTP/2 connection on `io` until the client or the server closes it. The client's
/// preface must have arrived by `head_deadline`.
pub async fn serve<I>(
    io: I,
    peer: SocketAddr,
    head_deadline: Instant,
    settings: &Arc<Settings>,
    shutdown: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEAD)
        .max_concurrent_streams(settings.http2_max_streams)
        .max_send_buffer_size(SEND_BUFFER)
        .handshake::<_, Bytes>(io);
    let mut connection = match tokio::time::timeout_at(head_deadline, handshake).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(err)) => {
            tracing::debug!(%err, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("no HTTP/2 preface within the header timeout");
            return;
        }
    };
    let open = Arc::new(OpenStreams::default());
    // While no stream is open: when the connection is given up as idle. The first request is
    // due by the header deadline.
    let mut idle_until = Some(head_deadline);
    let mut shutting_down = false;
    let mut said_goaway = false;
    loop {
        let idle = async move {
            match idle_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    idle_until = None;
                    let guard = OpenStreams::opened(&open, &settings.metrics);
                    tokio::spawn(answer(request, respond, peer, Arc::clone(settings), guard));
                }
                Some(Err(err)) => {
                    tracing::debug!(%err, "HTTP/2 connection ended with an error");
                    return;
                }
                None => return,
            },
            () = open.emptied.notified() => {
                if open.count() == 0 {
                    idle_until = Some(Instant::now() + settings.header_timeout);
                    if shutting_down && !said_goaway {
                        said_goaway = true;
                        connection.graceful_shutdown();
                    }
                }
            }
            () = idle => {
                if open.count() > 0 {
                    idle_until = None;
                } else if said_goaway {
                    // The client did not close after GOAWAY.
                    return;
                } else {
                    said_goaway = true;
                    connection.graceful_shutdown();
                    idle_until = Some(Instant::now() + settings.header_timeout);
                }
            }
            () = shutdown.cancelled(), if !shutting_down => {
                // The event streams end with their closing frame; GOAWAY follows once the
                // last stream has ended.
                shutting_down = true;
                if open.count() == 0 {
                    said_goaway = true;
                    connection.graceful_shutdown();
                }
            }
        }
    }
}

/// The streams open on a connection.
#[derive(Debug, Default)]
struct OpenStreams {
    count: AtomicUsize,
    /// Notified when the last open stream ends.
    emptied: Notify,
}

impl OpenStreams {
    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn opened(open: &Arc<Self>, metrics: &Arc<crate::metrics::Metrics>) -> StreamGuard {
        open.count.fetch_add(1, Ordering::AcqRel);
        metrics.transport.http2_streams.inc();
        StreamGuard {
            open: Arc::clone(open),
            metrics: Arc::clone(metrics),
        }
    }
}

/// Counts a stream as open until dropped.
#[derive(Debug)]
struct StreamGuard {
    open: Arc<OpenStreams>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.transport.http2_streams.dec();
        if self.open.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.open.emptied.notify_one();
        }
    }
}

/// Answers one request: through the router, then its body or its event stream.
async fn answer(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: SocketAddr,
    settings: Arc<Settings>,
    open: StreamGuard,
) {
    let mut request =
        request.map(|body| Body::new(TimeoutBody::new(settings.body_timeout, RequestBody(body))));
    with_host(&mut request);
    request
        .extensions_mut()
        .insert(ConnectInfo(PeerAddress(peer)));
    // Boxed: the router's future is large. A request the client resets is given up at once, so
    // that a client resetting what it asked for cannot keep more requests at work than the
    // streams it may have open.
    let answering = Box::pin(settings.app.clone().oneshot(request));
    let Ok(mut response) = tokio::select! {
        answered = answering => answered,
        _ = poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let subscription = response
        .extensions_mut()
        .remove::<EventStreamSlot>()
        .and_then(|slot| slot.take());
    let (head, body) = response_parts(response);
    let ends_here = subscription.is_none() && http_body::Body::is_end_stream(&body);
    let send = match respond.send_response(head, ends_here) {
        Ok(send) => send,
        Err(err) => {
            tracing::debug!(%err, "sending an HTTP/2 response head failed");
            return;
        }
    };
    drop(respond);
    match subscription {
        // A task of its own, holding only what the stream needs for as long as it is open:
        // this one, sized for the router's answer, ends here.
        Some(subscription) => drop(tokio::spawn(events(send, subscription, settings, open))),
        None if !ends_here => send_body(send, body, &settings).await,
        None => {}
    }
}

/// HTTP/2 names the host in the `:authority` pseudo-header: the handlers read it as `Host`.
fn with_host<B>(request: &mut Request<B>) {
    if request.headers().contains_key(header::HOST) {
        return;
    }
    let host = request
        .uri()
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok());
    if let Some(host) = host {
        request.headers_mut().insert(header::HOST, host);
    }
}

/// The response's head without the headers HTTP/2 forbids (RFC 9113, 8.2.2), and its body.
fn response_parts(response: Response<Body>) -> (Response<()>, Body) {
    let (mut parts, body) = response.into_parts();
    strip_connection_headers(&mut parts.headers);
    (Response::from_parts(parts, ()), body)
}

fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Writes an event stream's chunks until it ends, the client resets it, or it stalls for the
/// write timeout (then it is reset). `_open` counts the stream as open until then.
async fn events(
    mut send: SendStream<Bytes>,
    mut subscription: Subscription,
    settings: Arc<Settings>,
    _open: StreamGuard,
) {
    loop {
        let next = tokio::select! {
            chunk = subscription.next() => chunk,
            _ = poll_fn(|cx| send.poll_reset(cx)) => return,
        };
        let Some(chunk) = next else { break };
        if send_chunk(&mut send, chunk, &settings).await.is_err() {
            return;
        }
    }
    let _ = send.send_data(Bytes::new(), true);
}

/// Writes a response body as the stream's data.
async fn send_body(mut send: SendStream<Bytes>, body: Body, settings: &Settings) {
    let mut chunks = body.into_data_stream();
    loop {
        let chunk = tokio::select! {
            chunk = chunks.next() => match chunk {
                Some(chunk) => chunk,
                None => break,
            },
            // Reset by the client while the body waits for its next chunk (a demo stream, say).
            _ = poll_fn(|cx| send.poll_reset(cx)) => return,
        };
        match chunk {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => {
                if send_chunk(&mut send, chunk, settings).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::debug!(%err, "a response body failed");
                send.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
        }
    }
    let _ = send.send_data(Bytes::new(), true);
}

/// The stream stopped taking data: reset, or gone with its connection.
#[derive(Debug)]
struct Stopped;

/// Hands `chunk` to the stream once its window has room: a frame beyond the room left is kept
/// by h2 until the window opens, and the next one waits. A stream whose window stays shut for
/// the write timeout is reset.
async fn send_chunk(
    send: &mut SendStream<Bytes>,
    chunk: Bytes,
    settings: &Settings,
) -> Result<(), Stopped> {
    send.reserve_capacity(chunk.len());
    if send.capacity() == 0 {
        let room = tokio::time::timeout(settings.write_timeout, poll_fn(|cx| room(send, cx)));
        match room.await {
            Ok(Ok(())) => {}
            Ok(Err(Stopped)) => return Err(Stopped),
            Err(_) => {
                settings.metrics.write_timeouts.inc();
                send.send_reset(Reason::CANCEL);
                return Err(Stopped);
            }
        }
    }
    send.send_data(chunk, false).map_err(|_| Stopped)
}

/// Ready once the stream's window has room.
fn room(send: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> Poll<Result<(), Stopped>> {
    loop {
        match ready!(send.poll_capacity(cx)) {
            Some(Ok(0)) => {}
            Some(Ok(_)) => return Poll::Ready(Ok(())),
            Some(Err(_)) | None => return Poll::Ready(Err(Stopped)),
        }
    }
}

/// A request's body, read from its HTTP/2 stream: what is read is given back to the client's
/// window at once.
#[derive(Debug)]
struct RequestBody(RecvStream);

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        let stream = &mut self.0;
        match ready!(stream.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = stream.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(http_body::Frame::data(data))))
            }
            Some(Err(err)) => Poll::Ready(Some(Err(err))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_are_not_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_connection_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn the_authority_stands_for_the_host() {
        let mut request = Request::builder()
            .uri("https://localhost:8443/api/me")
            .body(())
            .unwrap();
        with_host(&mut request);
        assert_eq!(request.headers()[header::HOST], "localhost:8443");
    }
}
