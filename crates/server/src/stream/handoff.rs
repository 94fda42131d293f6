//! [`Listener`]: what axum serves. The accept loop hands it every connection that is not an
//! event stream, as a [`TimedStream`].

use std::io;
use std::net::SocketAddr;

use tokio::sync::mpsc;

use super::timed::TimedStream;

/// The connections for hyper (through axum), handed over by the accept loop.
#[derive(Debug)]
pub struct Listener {
    incoming: mpsc::Receiver<(TimedStream, SocketAddr)>,
    local: SocketAddr,
}

/// The accept loop's end of a [`Listener`].
pub type HandOver = mpsc::Sender<(TimedStream, SocketAddr)>;

impl Listener {
    /// A listener serving what is handed over, and the sender to hand over with.
    pub fn new(local: SocketAddr) -> (Self, HandOver) {
        let (hand_over, incoming) = mpsc::channel(1024);
        (Self { incoming, local }, hand_over)
    }
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
