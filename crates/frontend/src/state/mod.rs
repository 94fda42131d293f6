//! The console's model: plain data and pure functions, independent of the browser.

mod account;
mod connection;
mod decode;
mod inbox;
mod log;
mod overview;
mod publish;

pub use account::Account;
pub use connection::{ConnectionState, Signal, events_url};
pub use decode::{HubEvent, decode_hub_event};
pub use inbox::Inbox;
pub use log::{EventLog, LogEntry, LogFilter};
pub use overview::{Overview, Series};
pub use publish::{PublishForm, parse_topics};
