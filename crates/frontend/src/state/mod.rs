//! The console's model: what the connection is doing and what it has received. Plain data and
//! pure functions, independent of the browser.

mod connection;
mod log;

pub use connection::{ConnectionInfo, ConnectionState};
pub use log::{EventLog, LogEntry};
