//! Everything that touches a socket: the accept loop, Herald's own writer for event streams,
//! the connections handed to hyper, and the peer's address.
//!
//! The hub never sees a socket: a stream waiting for events lends its socket to the hub as a
//! [`Sink`](crate::hub::Sink), which this module implements for `TcpStream`.

mod event_conn;
mod handoff;
mod head;
mod listener;
mod peer;
mod slot;
mod socket;
mod timed;

pub use event_conn::Settings;
pub use listener::start;
pub use peer::PeerAddress;
pub use slot::EventStreamSlot;
