//! Everything that touches a socket: the accept loop and the connection limits, Herald's own
//! writer for event streams, the connections served by hyper, and the peer's address.
//!
//! The hub never sees a socket: a stream waiting for events lends its socket to the hub as a
//! [`Sink`](crate::hub::Sink), which this module implements for `TcpStream`.

mod event_conn;
mod gate;
mod head;
mod http_conn;
mod listener;
mod peer;
mod settings;
mod slot;
mod socket;
mod timed;

pub use listener::start;
pub use peer::{PeerAddress, limited_address};
pub use settings::Settings;
pub use slot::EventStreamSlot;
