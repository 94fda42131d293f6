//! The accept loop: every connection is counted ([`Gate`]) and gets the socket policy, then
//! its first bytes decide who serves it. In cleartext, `GET /events` is served by Herald's own
//! writer ([`event_conn`]), the HTTP/2 preface by [`h2_conn`], anything else by hyper
//! ([`http_conn`]). With TLS, the protocol the client chose in the handshake (ALPN) decides:
//! `h2` or HTTP/1.1.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::gate::{Gate, Held, Permit, Refused};
use super::head::{Route, first_bytes, refusal_with};
use super::settings::Settings;
use super::socket::{close, configure_accepted, read_more};
use super::timed::TimedStream;
use super::{event_conn, h2_conn, http_conn};
use crate::metrics::{CloseLabels, Metrics};

/// Refused connections kept open at once while their client reads the refusal: each takes
/// an open file, which the reserve left by the connection cap provides. Past this many, a
/// refused connection is closed as soon as its answer is written.
const LINGERING_REFUSALS: usize = 64;
/// How long a refused connection is kept for its client to read the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// Every connection accepted; [`Connections::finished`] waits for the last to close.
#[derive(Debug)]
pub struct Connections {
    alive: mpsc::Receiver<()>,
}

impl Connections {
    /// Completes once the accept loop and every connection have ended.
    pub async fn finished(mut self) {
        while self.alive.recv().await.is_some() {}
    }
}

/// Accepts connections on `listener` and serves them until `shutdown`: then no more are
/// accepted, and those open finish the request in progress and close.
pub fn start(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> Connections {
    let (alive, finished) = mpsc::channel::<()>(1);
    tokio::spawn(accept_loop(listener, settings, shutdown, alive));
    Connections { alive: finished }
}

async fn accept_loop(
    mut listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
    alive: mpsc::Sender<()>,
) {
    let gate = Gate::new(
        settings.max_connections,
        settings.per_address,
        settings.metrics.transport.tcp_connections.clone(),
    );
    let lingering = Arc::new(Semaphore::new(LINGERING_REFUSALS));
    // Shared by every connection: each task holds a pointer, not a copy.
    let settings = Arc::new(settings);
    loop {
        // axum's accept retries transient errors (such as running out of file descriptors,
        // which the gate keeps from happening) with a pause, so this never busy-loops.
        let (stream, address) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
        };
        let permit = match gate.admit(address.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                refuse(stream, refused, &settings.metrics, &lingering);
                continue;
            }
        };
        configure_accepted(&stream, settings.write_timeout, settings.keepalive);
        tokio::spawn(route(
            stream,
            address,
            permit,
            Arc::clone(&settings),
            shutdown.clone(),
            alive.clone(),
        ));
    }
}

/// Reads the start of the connection's first request and serves the connection accordingly.
/// `permit` and `alive` are held until it closes.
async fn route(
    stream: TcpStream,
    address: SocketAddr,
    permit: Permit,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
    alive: mpsc::Sender<()>,
) {
    let head_deadline = Instant::now() + settings.header_timeout;
    if settings.tls.is_some() {
        // Boxed, as hyper's connection below.
        Box::pin(serve_tls(
            stream,
            address,
            head_deadline,
            &settings,
            &shutdown,
        ))
        .await;
        drop(permit);
        drop(alive);
        return;
    }
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        first = tokio::time::timeout_at(head_deadline, first_bytes(&stream)) => first,
    };
    match first {
        Ok(Ok((Route::Events, read))) => {
            // A task of its own, holding only what the stream needs for as long as it is
            // open: this one, sized for everything above, ends here.
            let held = Held::new(permit, alive);
            tokio::spawn(event_conn::serve(Box::new(event_conn::Accepted {
                stream,
                peer: address,
                read,
                head_deadline,
                settings,
                held,
            })));
            return;
        }
        Ok(Ok((route, read))) => {
            let io = TimedStream::new(
                stream,
                read,
                settings.write_timeout,
                Arc::clone(&settings.metrics),
            );
            // Boxed: hyper's connection is large, and every event stream's task would otherwise
            // be sized for it.
            if route == Route::Http2 {
                Box::pin(h2_conn::serve(
                    io,
                    address,
                    head_deadline,
                    &settings,
                    &shutdown,
                ))
                .await;
            } else {
                Box::pin(http_conn::serve(
                    io,
                    address,
                    head_deadline,
                    &settings,
                    &shutdown,
                ))
                .await;
            }
        }
        // Closed, failed or silent before its first request line.
        Ok(Err(_)) | Err(_) => {}
    }
    drop(permit);
    drop(alive);
}

/// Serves a TLS connection: the handshake must be over by `head_deadline`, and the protocol
/// the client chose (ALPN) decides who serves it.
async fn serve_tls(
    stream: TcpStream,
    address: SocketAddr,
    head_deadline: Instant,
    settings: &Arc<Settings>,
    shutdown: &CancellationToken,
) {
    let Some(tls) = &settings.tls else { return };
    let io = TimedStream::new(
        stream,
        Vec::new(),
        settings.write_timeout,
        Arc::clone(&settings.metrics),
    );
    let handshake = tokio::time::timeout_at(head_deadline, tls.acceptor().accept(io));
    let io = tokio::select! {
        () = shutdown.cancelled() => return,
        handshake = handshake => match handshake {
            Ok(Ok(io)) => io,
            Ok(Err(err)) => {
                tracing::debug!(%err, %address, "TLS handshake failed");
                settings.metrics.transport.tls_handshake_failures.inc();
                return;
            }
            Err(_) => {
                tracing::debug!(%address, "no TLS handshake within the header timeout");
                settings.metrics.transport.tls_handshake_failures.inc();
                return;
            }
        },
    };
    if io.get_ref().1.alpn_protocol() == Some(b"h2") {
        h2_conn::serve(io, address, head_deadline, settings, shutdown).await;
    } else {
        http_conn::serve(io, address, head_deadline, settings, shutdown).await;
    }
}

/// Answers a connection past a limit and closes it. The answer is one write, which a fresh
/// socket's send buffer always takes. Closing at once would make the kernel answer the
/// request, arriving just after, with a reset that can discard the answer before the client
/// reads it: so the connection is closed for writing and what the client sends is read and
/// dropped until it closes too, for [`REFUSAL_LINGER`] at most, by a few at a time.
fn refuse(stream: TcpStream, refused: Refused, metrics: &Metrics, lingering: &Arc<Semaphore>) {
    static FULL: LazyLock<Vec<u8>> = LazyLock::new(|| {
        refusal_with(
            503,
            "server_busy",
            "the server holds as many connections as it may; retry later",
            Some(1),
        )
    });
    static ADDRESS_FULL: LazyLock<Vec<u8>> = LazyLock::new(|| {
        refusal_with(
            429,
            "too_many_connections",
            "this address holds as many connections as it may; close one or retry later",
            Some(1),
        )
    });
    metrics
        .transport
        .connections_refused
        .get_or_create(&CloseLabels {
            reason: refused.reason(),
        })
        .inc();
    let answer = match refused {
        Refused::Full => &FULL,
        Refused::AddressFull => &ADDRESS_FULL,
    };
    let _ = stream.try_write(answer);
    close(&stream);
    let Ok(permit) = Arc::clone(lingering).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut discarded = Vec::new();
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while read_more(&stream, &mut discarded).await.is_ok() {
                discarded.clear();
            }
        })
        .await;
        drop(permit);
    });
}
