//! Herald's integration tests: the real server, over real sockets, one module per feature. The
//! support code (`support`) compiles once for all of them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any surprise, helpers outside #[test] functions included"
)]

mod support;

mod architecture;
mod authorization;
mod bad_input;
mod batch_publish;
mod cluster;
mod config_tools;
mod console;
mod demo;
mod durability;
mod event_connections;
mod hostile;
mod inbox;
mod mercure;
mod operations;
mod presence;
mod protocols;
mod replay;
mod shutdown;
mod slow_consumer;
mod stats;
mod storage_contract;
mod streaming;
mod streams;
mod targeting;
