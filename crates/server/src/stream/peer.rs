//! [`PeerAddress`]: the address a connection comes from, as handlers see it through axum's
//! `ConnectInfo`, whichever writer serves the connection.

use std::net::SocketAddr;

use super::handoff::Listener;

/// The peer address of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>>
    for PeerAddress
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        Self(*stream.remote_addr())
    }
}
