//! Herald's web console. The model (`state`) is plain Rust, independent of the browser and unit
//! tested natively; its stream is a `herald_client` subscription (shared by the console's tabs),
//! `source` wraps `EventSource` for the demos' and the overview's own streams, `alerts` the
//! Notification API, `api` the HTTP API; `view` renders with Leptos.

mod alerts;
mod api;
mod session;
mod source;
pub mod state;
mod view;

pub use view::App;
