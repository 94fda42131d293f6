//! Herald's wire formats, shared by the server and the browser app.
//!
//! Everything that crosses the network is defined here and nowhere else: the event envelope, the
//! system events, the built-in payloads, the HTTP API bodies, the validation rules for names, and
//! the Server-Sent Events codec. The crate depends on serde only, so it compiles both natively and
//! for `wasm32-unknown-unknown`.

pub mod api;
pub mod auth;
pub mod envelope;
pub mod names;
pub mod payloads;
pub mod sse;
pub mod streams;
pub mod system;

pub use envelope::{Envelope, EnvelopeRef};
