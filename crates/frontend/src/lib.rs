//! Herald's web console. The model (`state`) is plain Rust, independent of the browser and unit
//! tested natively; `source` wraps `EventSource`, `alerts` the Notification API, `api` the HTTP
//! API; `view` renders with Leptos.
//! Every frame received is decoded into a `herald_protocol` type.

mod alerts;
mod api;
mod session;
mod source;
pub mod state;
mod view;

pub use view::App;
