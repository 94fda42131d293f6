//! Everything that touches a socket: the accept loop and the connection limits, Herald's own
//! writer for event streams, the HTTP/1.1 connections served by hyper, HTTP/2 connections,
//! TLS and its certificate, and the peer's address.
//!
//! The hub never sees a socket: a stream waiting for events lends its socket to the hub as a
//! [`Sink`](crate::hub::Sink), which this module implements for `TcpStream`.

mod event_conn;
mod gate;
mod h2_conn;
mod head;
mod http_conn;
mod listener;
mod peer;
mod settings;
mod slot;
mod socket;
mod timed;
mod tls;

pub use listener::start;
pub use peer::{PeerAddress, limited_address};
pub use settings::Settings;
pub use slot::EventStreamSlot;
pub use tls::Tls;
