//! [`TimedStream`]: a connection served by hyper, whose writes fail once they have been stuck
//! for the write timeout.
//!
//! A client that stops reading while keeping its socket open would otherwise hold its
//! connection, and the buffers behind it, forever: once the kernel's send buffer is full, a
//! write never completes. Failing the write makes hyper drop the connection and with it
//! everything held for it. A peer that disappeared altogether is caught by `TCP_USER_TIMEOUT`,
//! set to the same timeout when the connection is accepted.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::metrics::Metrics;

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
    /// `inner`, giving back `unread` (what was read to route the connection) before anything
    /// else it reads.
    pub fn new(
        inner: TcpStream,
        unread: Vec<u8>,
        write_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner,
            unread,
            unread_from: 0,
            write_timeout,
            stalled_since: None,
            metrics,
            timed_out: false,
        }
    }

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
