//! The socket side of an event stream: the options every accepted connection gets, Herald's
//! socket as the hub's [`Sink`], and writing with the write timeout.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::hub::Sink;
use crate::metrics::Metrics;

/// Fan-out writes to the socket of a stream waiting for events.
impl Sink for TcpStream {
    fn try_write_vectored(&self, frames: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, frames)
    }
}

/// The policy every accepted connection gets: `keepalive` is the idle time before TCP
/// keepalive probes (`None`: off).
pub fn configure_accepted(
    stream: &TcpStream,
    write_timeout: Duration,
    keepalive: Option<Duration>,
) {
    // Events are small writes that must leave at once rather than wait to be coalesced.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "could not set TCP_NODELAY");
    }
    // A peer that vanished without closing never acknowledges what we send: the kernel
    // gives up on it after the same write timeout instead of retrying for many minutes.
    // (Linux only; elsewhere the write timeout alone ends such a stream.)
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(err) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(write_timeout)) {
        tracing::debug!(%err, "could not set TCP_USER_TIMEOUT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = write_timeout;
    // A peer gone without a word is found even where nothing is written to it; the probes
    // follow each other more closely than the idle time, three of them unanswered ending it.
    if let Some(idle) = keepalive {
        let probes = keepalive_probes(idle);
        if let Err(err) = socket2::SockRef::from(stream).set_tcp_keepalive(&probes) {
            tracing::debug!(%err, "could not set TCP keepalive");
        }
    }
}

/// Probes after `idle`, then every 10 seconds at most, three unanswered ending the connection
/// where the system lets the interval and count be set.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd"
))]
fn keepalive_probes(idle: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(idle.min(Duration::from_secs(10)))
        .with_retries(3)
}

/// Probes after `idle`, at the system's interval and count.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
fn keepalive_probes(idle: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new().with_time(idle)
}

/// The kernel buffers of an event stream: its send buffer (`None` leaves it to the kernel)
/// and the most it leaves unsent (`None`: no limit).
pub fn configure_stream(
    stream: &TcpStream,
    send_buffer: Option<usize>,
    unsent_limit: Option<usize>,
) {
    let socket = socket2::SockRef::from(stream);
    if let Some(bytes) = send_buffer
        && let Err(err) = socket.set_send_buffer_size(bytes)
    {
        tracing::debug!(%err, "could not set SO_SNDBUF");
    }
    // Validated at start-up to fit. (Linux only; elsewhere the kernel's send buffer is the
    // limit.)
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(bytes) = unsent_limit.and_then(|bytes| u32::try_from(bytes).ok())
        && let Err(err) = socket.set_tcp_notsent_lowat(bytes)
    {
        tracing::debug!(%err, "could not set TCP_NOTSENT_LOWAT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = unsent_limit;
}

/// Appends the next bytes the client sends to `buf`; the end of the stream is an error.
pub async fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
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

/// Reads whatever the client sent; true when it closed its side or the connection failed.
pub fn peer_gone(stream: &TcpStream) -> bool {
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
///
/// The socket is waited on through its own write-readiness slot, and the timer is allocated
/// only once a write has to wait: an idle stream's task holds this future's largest state, so
/// a `writable()` future and a timer kept inline would cost every subscriber their size.
pub async fn write_all(
    stream: &TcpStream,
    mut bytes: &[u8],
    write_timeout: Duration,
    metrics: &Metrics,
) -> io::Result<()> {
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    // Whether bytes left since the timer was last set: each wait gets the whole timeout.
    let mut progressed = true;
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(written) => {
                bytes = &bytes[written..];
                progressed = true;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let deadline = Instant::now() + write_timeout;
                let timer = match &mut timer {
                    Some(timer) => {
                        if progressed {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                progressed = false;
                let ready = poll_fn(|cx| match stream.poll_write_ready(cx) {
                    Poll::Ready(ready) => Poll::Ready(Some(ready)),
                    Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
                })
                .await;
                match ready {
                    Some(ready) => ready?,
                    None => {
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
pub fn close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_get_tcp_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(!socket.keepalive().unwrap());
        configure_accepted(
            &stream,
            Duration::from_secs(30),
            Some(Duration::from_secs(45)),
        );
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(45)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(30))
        );
    }
}
