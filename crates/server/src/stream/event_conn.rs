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

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

use super::gate::Held;
use super::head::{read_request, response_head};
use super::peer::PeerAddress;
use super::settings::Settings;
use super::slot::EventStreamSlot;
use super::socket::{close, configure_stream, peer_gone, write_all};
use crate::hub::{Sink, Subscription};

/// The largest non-stream answer (an error) read back from the router.
const MAX_ANSWER: usize = 64 * 1024;

/// What a connection routed here brings with it: `read` holds what was read to route it, and
/// the rest of the request head must arrive by `head_deadline`. `held` is kept until the
/// connection closes.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub read: Vec<u8>,
    pub head_deadline: Instant,
    pub settings: Arc<Settings>,
    pub held: Held,
}

/// Serves one `GET /events` request and closes the connection. While the stream waits for
/// events its socket is lent to fan-out.
///
/// The connection arrives boxed and is unpacked inside: an async function keeps a slot for
/// each of its arguments for as long as it runs, so arguments passed one by one would cost
/// every idle stream their size (some 150 bytes) on top of the locals moved out of them.
pub async fn serve(accepted: Box<Accepted>) {
    let Accepted {
        stream,
        peer,
        read,
        head_deadline,
        settings,
        held: _held,
    } = unbox(accepted);
    let stream = Arc::new(stream);
    configure_stream(&stream, settings.send_buffer, settings.unsent_limit);
    // Opening runs the request through the router, whose future is the largest this
    // connection ever awaits: boxed, it is held only while the request is answered, and every
    // idle stream's task is sized for waiting on events alone.
    let Some(mut subscription) =
        Box::pin(open(&stream, peer, read, head_deadline, &settings)).await
    else {
        return;
    };
    let loan = subscription.lend(Arc::clone(&stream) as Arc<dyn Sink>);
    loop {
        let chunk = match next_chunk(&stream, &mut subscription).await {
            Next::Chunk(chunk) => chunk,
            Next::Ended => break,
            Next::ClientGone => return,
        };
        if write_all(&stream, &chunk, settings.write_timeout, &settings.metrics)
            .await
            .is_err()
        {
            return;
        }
    }
    drop(loan);
    close(&stream);
}

/// Moves a value out of its box and frees the box at once. Destructuring `*boxed` would free it
/// only when the boxed variable goes out of scope: for a stream, when the connection closes.
#[allow(clippy::boxed_local)] // Freeing the box here is the point.
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// Reads the request and runs it through the router. A stream's subscription is returned;
/// any other answer (an error) is written whole and the connection closed.
async fn open(
    stream: &TcpStream,
    peer: SocketAddr,
    read: Vec<u8>,
    head_deadline: Instant,
    settings: &Settings,
) -> Option<Subscription> {
    let reading = tokio::time::timeout_at(head_deadline, read_request(stream, read));
    let mut request = match reading.await {
        Ok(Ok(Ok(request))) => request,
        Ok(Ok(Err(refusal))) => {
            let _ = write_all(stream, &refusal, settings.write_timeout, &settings.metrics).await;
            close(stream);
            return None;
        }
        Ok(Err(err)) => {
            tracing::debug!(%err, "reading an event-stream request failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("no request head within the timeout");
            return None;
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
    let mut head = response_head(&response);
    let Some(mut subscription) = subscription else {
        // Not a stream (an error, say): send the whole answer and close.
        let body = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
            .await
            .unwrap_or_default();
        head.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        head.extend_from_slice(&body);
        let _ = write_all(stream, &head, settings.write_timeout, &settings.metrics).await;
        close(stream);
        return None;
    };
    drop(response);
    // The head and the stream's first frame (its greeting, ready at once) leave in one write.
    head.extend_from_slice(b"\r\n");
    if let Some(greeting) = subscription.next().await {
        head.extend_from_slice(&greeting);
    }
    let written = write_all(stream, &head, settings.write_timeout, &settings.metrics).await;
    written.is_ok().then_some(subscription)
}

/// What happened while waiting for the stream's next chunk.
enum Next {
    Chunk(Bytes),
    /// The stream ended.
    Ended,
    ClientGone,
}

/// Waits for the stream's next chunk while watching the client. It sends nothing more on an
/// event stream: readable means it has gone (end of file or an error), or sent bytes that are
/// read and ignored while the same wait goes on, so a replay read in progress is not started
/// again. The socket is watched through its own read-readiness slot rather than a
/// `readable()` future, which would add its waiter (some 160 bytes) to every idle stream.
async fn next_chunk(stream: &TcpStream, subscription: &mut Subscription) -> Next {
    let next = subscription.next();
    tokio::pin!(next);
    poll_fn(|cx| {
        if let Poll::Ready(chunk) = next.as_mut().poll(cx) {
            return Poll::Ready(chunk.map_or(Next::Ended, Next::Chunk));
        }
        match stream.poll_read_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Next::ClientGone),
            Poll::Ready(Ok(())) => {
                if peer_gone(stream) {
                    return Poll::Ready(Next::ClientGone);
                }
                // What the client sent was read (or nothing was there, which cleared the
                // readiness): look again on the next poll, after other tasks had their turn.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream's task is this future, held for as long as the stream is open and sized for
    /// the largest state it can be in: a read buffer kept across an await, the router's future
    /// held inline rather than boxed (some 900 bytes), a copy of the settings, a replay's reads,
    /// or the routing that came before (hyper's connection, some 500 bytes) would cost every
    /// idle subscriber its size. Tokio allocates a task in steps of 128 bytes, with some 100
    /// bytes of its own: up to 408 bytes of future, a task takes 512 bytes; past it, 640.
    #[tokio::test]
    async fn an_open_stream_holds_a_small_future() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let settings = Arc::new(Settings::for_tests(axum::Router::new()));
        let gate = super::super::gate::Gate::new(1, None, Default::default());
        let (alive, _finished) = tokio::sync::mpsc::channel(1);
        let held = Held::new(gate.admit(peer.ip()).unwrap(), alive);
        let serving = serve(Box::new(Accepted {
            stream,
            peer,
            read: Vec::new(),
            head_deadline: Instant::now(),
            settings,
            held,
        }));
        let size = std::mem::size_of_val(&serving);
        assert!(
            size <= 408,
            "the event-stream task's future takes {size} bytes"
        );
    }
}
