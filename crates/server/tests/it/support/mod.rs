//! Test helpers, one module per concern: a real Herald in this process ([`TestServer`]) or
//! as a child process ([`HeraldProcess`]), a native SSE client built on the protocol's decoder
//! ([`SseStream`]), credentials, the real Redis and nginx the cluster tests run, and a storage
//! wrapper that injects faults. Every wait is bounded by a deadline and ends as soon as its
//! condition holds.

pub mod process;
pub mod server;
pub mod services;
pub mod sse;
pub mod tls;
pub mod tokens;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use process::{HeraldProcess, herald_refuses, herald_refuses_with};
pub use server::{Store, TestServer};
pub use sse::SseStream;
pub use tls::TestCertificate;
pub use tokens::{TEST_SECRET, client_with_token, operator_client, token, token_with};

/// How long any single wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `check` comes to hold within `limit`, checked again every few milliseconds: true as
/// soon as it does.
pub async fn holds_within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `check` holds, for at most [`TIMEOUT`]; fails the test naming `what` (and where
/// it waited) if it never does.
#[track_caller]
pub fn eventually<F, Fut>(what: &str, check: F) -> impl Future<Output = ()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = std::panic::Location::caller();
    let what = what.to_owned();
    async move {
        assert!(
            holds_within(TIMEOUT, check).await,
            "timed out waiting until {what} ({caller})"
        );
    }
}

/// A data directory of its own for each server a test starts.
pub fn fresh_data_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "herald-test-{}-{n}-{}",
        std::process::id(),
        herald_server::ids::random_u32()
    ))
}
