//! HTTP/1.1 connections served by hyper (keep-alive), through the same
//! [`Router`](axum::Router): in cleartext, those whose first request is anything but
//! `GET /events`; over TLS, every HTTP/1.1 connection, event streams included.
//!
//! Every wait on the client has a deadline. The first request head must be complete within
//! `header_timeout` of the accept, each later one within `header_timeout` of the answer before
//! it (hyper's header read timeout, which also ends an idle keep-alive connection), and a
//! request body may make no progress for longer than `body_timeout` (408). Writes that make no
//! progress fail after the write timeout ([`TimedStream`](super::timed::TimedStream), which
//! the connection is read and written through).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use super::peer::PeerAddress;
use super::settings::Settings;

/// Serves `io` until the client or the server closes it; the first request head must be
/// complete by `head_deadline`. On `shutdown`, the request in progress is answered and the
/// connection closed.
pub async fn serve<I>(
    io: I,
    peer: SocketAddr,
    head_deadline: Instant,
    settings: &Settings,
    shutdown: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    // Set once hyper has a whole request head, and hands it to the router.
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let app = settings.app.clone();
        let body_timeout = settings.body_timeout;
        let started = Arc::clone(&started);
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            started.store(true, Ordering::Release);
            request
                .extensions_mut()
                .insert(ConnectInfo(PeerAddress(peer)));
            let request = request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
            app.clone().oneshot(request)
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    // hyper's own timer starts when it first reads: the first head is also held to the
    // deadline counted from the accept.
    let first_head = tokio::time::sleep_until(head_deadline);
    tokio::pin!(first_head);
    let mut awaiting_first = true;
    let mut closing = false;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(err) = result {
                    tracing::debug!(%err, "connection ended with an error");
                }
                return;
            }
            () = &mut first_head, if awaiting_first => {
                if !started.load(Ordering::Acquire) {
                    tracing::debug!("no request head within the header timeout");
                    return;
                }
                awaiting_first = false;
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
