//! The console's model: plain data and pure functions, independent of the browser.

mod connection;
mod decode;
mod log;
mod publish;

pub use connection::{ConnectionState, Signal, events_url};
pub use decode::{HubEvent, decode_hub_event};
pub use log::{EventLog, LogEntry, LogFilter};
pub use publish::{PublishForm, parse_topics};
