//! The accept loop: every connection gets the socket policy, then its first bytes decide who
//! serves it. `GET /events` is served by Herald's own writer ([`event_conn`]); anything else is
//! handed to axum as a [`TimedStream`].

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::event_conn::{self, HEAD_TIMEOUT, Settings};
use super::handoff::{HandOver, Listener};
use super::head::first_bytes;
use super::socket::configure_accepted;
use super::timed::TimedStream;

/// The event streams served outside hyper; [`EventStreams::finished`] waits for the last.
#[derive(Debug)]
pub struct EventStreams {
    alive: mpsc::Receiver<()>,
}

impl EventStreams {
    /// Completes once the accept loop and every event stream have ended.
    pub async fn finished(mut self) {
        while self.alive.recv().await.is_some() {}
    }
}

/// Accepts connections on `inner` until `shutdown`. Returns what axum is to serve, and the
/// event streams served beside it.
pub fn start(
    inner: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> io::Result<(Listener, EventStreams)> {
    let (listener, hand_over) = Listener::new(inner.local_addr()?);
    let (alive, finished) = mpsc::channel::<()>(1);
    tokio::spawn(accept_loop(inner, settings, shutdown, hand_over, alive));
    Ok((listener, EventStreams { alive: finished }))
}

async fn accept_loop(
    mut inner: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
    hand_over: HandOver,
    alive: mpsc::Sender<()>,
) {
    loop {
        // axum's accept retries transient errors (such as running out of file descriptors)
        // with a pause, so this never busy-loops.
        let (stream, address) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = axum::serve::Listener::accept(&mut inner) => accepted,
        };
        configure_accepted(&stream, settings.write_timeout);
        tokio::spawn(route(
            stream,
            address,
            settings.clone(),
            shutdown.clone(),
            hand_over.clone(),
            alive.clone(),
        ));
    }
}

/// Reads the start of the connection's first request and serves it accordingly. `alive` is
/// held for as long as an event stream is served.
async fn route(
    stream: TcpStream,
    address: SocketAddr,
    settings: Settings,
    shutdown: CancellationToken,
    hand_over: HandOver,
    alive: mpsc::Sender<()>,
) {
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        first = tokio::time::timeout(HEAD_TIMEOUT, first_bytes(&stream)) => first,
    };
    match first {
        Ok(Ok((true, read))) => {
            event_conn::serve(stream, address, read, settings).await;
            drop(alive);
        }
        Ok(Ok((false, read))) => {
            drop(alive);
            let stream = TimedStream::new(stream, read, settings.write_timeout, settings.metrics);
            let _ = hand_over.send((stream, address)).await;
        }
        // Closed, failed or silent before its first request line.
        Ok(Err(_)) | Err(_) => {}
    }
}
