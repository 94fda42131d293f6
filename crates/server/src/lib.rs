//! Herald's server: the hub, its storage boundary, the use cases, and the HTTP edge.
//!
//! [`run`] is the entry point for the binary and the tests alike; `ARCHITECTURE.md` maps the
//! modules.

pub mod app;
pub mod auth;
pub mod config;
pub mod http;
pub mod hub;
pub mod ids;
mod memory;
pub mod mercure;
pub mod metrics;
mod server;
pub mod storage;
mod stream;
pub mod time;

pub use config::Config;
pub use server::{check_certificate, open_storage, run, run_with_storage};
