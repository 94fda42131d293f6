//! [`Listener`]: the TCP listener Herald serves on, with the socket policy every connection gets.
//!
//! A subscriber that stops reading while keeping its socket open would otherwise hold its
//! connection, and the buffers behind it, forever: once the kernel's send buffer is full, a write
//! never completes. [`TimedStream`] fails a write that has made no progress for the write timeout,
//! which makes hyper drop the connection and with it everything the hub held for it. A peer that
//! disappeared altogether is caught by `TCP_USER_TIMEOUT`, set to the same timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::event_conn;

use crate::metrics::Metrics;

/// What axum serves: the connections that are not event streams, handed over by the accept
/// loop [`start`] runs.
#[derive(Debug)]
pub struct Listener {
    incoming: mpsc::Receiver<(TimedStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for Listener {
    type Io = TimedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accept loop ended (shutdown): axum stops asking soon after.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

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

/// Accepts connections on `inner` until `shutdown`: each is given the socket policy, then
/// those whose first request is `GET /events` are served by [`event_conn`] and the rest are
/// passed to axum through the returned [`Listener`].
pub fn start(
    inner: TcpListener,
    settings: event_conn::Settings,
    shutdown: CancellationToken,
) -> io::Result<(Listener, EventStreams)> {
    let local = inner.local_addr()?;
    let (hand_over, incoming) = mpsc::channel(1024);
    let (alive, finished) = mpsc::channel::<()>(1);
    tokio::spawn(accept_loop(inner, settings, shutdown, hand_over, alive));
    Ok((
        Listener { incoming, local },
        EventStreams { alive: finished },
    ))
}

async fn accept_loop(
    mut inner: TcpListener,
    settings: event_conn::Settings,
    shutdown: CancellationToken,
    hand_over: mpsc::Sender<(TimedStream, SocketAddr)>,
    alive: mpsc::Sender<()>,
) {
    loop {
        // axum's accept retries transient errors (such as running out of file descriptors)
        // with a pause, so this never busy-loops.
        let (stream, address) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = axum::serve::Listener::accept(&mut inner) => accepted,
        };
        // Events are small writes that must leave at once rather than wait to be coalesced.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        // A peer that vanished without closing never acknowledges what we send: the kernel
        // gives up on it after the same write timeout instead of retrying for many minutes.
        if let Err(err) =
            socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(settings.write_timeout))
        {
            tracing::debug!(%err, "could not set TCP_USER_TIMEOUT");
        }
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        let hand_over = hand_over.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                first = tokio::time::timeout(
                    event_conn::HEAD_TIMEOUT,
                    event_conn::first_bytes(&stream),
                ) => first,
            };
            match first {
                Ok(Ok((true, read))) => {
                    event_conn::serve(stream, address, read, settings).await;
                    drop(alive);
                }
                Ok(Ok((false, read))) => {
                    drop(alive);
                    let stream = TimedStream {
                        inner: stream,
                        unread: read,
                        unread_from: 0,
                        write_timeout: settings.write_timeout,
                        stalled_since: None,
                        metrics: settings.metrics,
                        timed_out: false,
                    };
                    let _ = hand_over.send((stream, address)).await;
                }
                // Closed, failed or silent before its first request line.
                Ok(Err(_)) | Err(_) => {}
            }
        });
    }
}

/// The peer address of a connection, as handlers see it through `ConnectInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>>
    for PeerAddress
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// A TCP stream whose writes fail once they have been stuck for the write timeout.
#[derive(Debug)]
pub struct TimedStream {
    inner: TcpStream,
    /// Bytes read to tell event streams apart, given to hyper before anything else.
    unread: Vec<u8>,
    unread_from: usize,
    write_timeout: Duration,
    /// Started when a write first returns `Pending`, cleared when one completes.
    stalled_since: Option<Pin<Box<Sleep>>>,
    /// Counts connections dropped for timing out.
    metrics: Arc<Metrics>,
    /// Whether this connection was counted already: reads and writes may both report it.
    timed_out: bool,
}

impl TimedStream {
    fn count_timeout(&mut self) {
        if !self.timed_out {
            self.timed_out = true;
            self.metrics.write_timeouts.inc();
        }
    }

    fn on_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.stalled_since = None;
                if let Err(err) = &result
                    && err.kind() == io::ErrorKind::TimedOut
                {
                    // The kernel gave up on the peer (TCP_USER_TIMEOUT).
                    self.count_timeout();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stalled = self
                    .stalled_since
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.count_timeout();
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the peer stopped reading for longer than the write timeout",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unread_from < this.unread.len() {
            let rest = &this.unread[this.unread_from..];
            let take = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..take]);
            this.unread_from += take;
            if this.unread_from == this.unread.len() {
                this.unread = Vec::new();
                this.unread_from = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(err)) = &result
            && err.kind() == io::ErrorKind::TimedOut
        {
            // The kernel gave up on the peer (TCP_USER_TIMEOUT) and says so on either side.
            this.count_timeout();
        }
        result
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_write(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
