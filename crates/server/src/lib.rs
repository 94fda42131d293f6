//! Herald's server: the hub, its storage boundary, and the HTTP edge.
//!
//! [`run`] is the entry point for the binary and the tests alike.

pub mod auth;
pub mod config;
pub mod error;
mod event_conn;
pub mod http;
pub mod hub;
pub mod ids;
mod listener;
mod memory;
pub mod metrics;
mod server;
pub mod storage;
pub mod time;

pub use config::Config;
pub use server::{open_storage, run, run_with_storage};
