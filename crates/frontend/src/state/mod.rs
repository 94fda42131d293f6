//! The console's model: plain data and pure functions, independent of the browser.

mod account;
mod connection;
mod inbox;
mod log;
mod overview;
mod publish;

pub use account::Account;
pub use connection::ConnectionState;
pub use inbox::Inbox;
pub use log::{EventLog, LogEntry, LogFilter};
pub use overview::{Overview, Series};
pub use publish::{PublishForm, parse_topics};
