//! Giving freed memory back to the operating system after connections come and go.
//!
//! glibc's allocator keeps what a thread freed in that thread's arena and only returns the top
//! of an arena to the system. A burst of connections that then close leaves their memory free
//! but resident between allocations that live on, so the process stays at its high-water mark.
//! `malloc_trim` walks every arena and hands back whole free pages (`madvise`), which is what
//! brings the resident size back down once a burst is over. Opening a connection leaves such
//! memory too: its request went through the router, whose state (several kilobytes) is freed
//! once the stream is open, so a wave of connects raises the high-water mark far above what the
//! open streams hold.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How often the connections that came and went are counted, and so the soonest a trim
/// follows a burst.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Connections opened or closed since the last trim that make the next check trim. Below this,
/// what a trim could return is not worth the walk over every arena and the page faults when
/// the memory is used again.
const CHANGES_PER_TRIM: u64 = 256;

/// Runs until `shutdown`: after every check that finds enough connections opened or closed
/// since the last trim (`changes` counts them since the start), returns the allocator's free
/// pages to the system on a blocking thread.
pub async fn release_after_churn(changes: impl Fn() -> u64, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trimmed_at = changes();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now_changed = changes();
        if now_changed.saturating_sub(trimmed_at) < CHANGES_PER_TRIM {
            continue;
        }
        trimmed_at = now_changed;
        let trim = tokio::task::spawn_blocking(|| {
            let started = Instant::now();
            (release_free_memory(), started.elapsed())
        });
        if let Ok((released, elapsed)) = trim.await {
            tracing::debug!(released, ?elapsed, "returned free memory to the system");
        }
    }
}

/// Asks the allocator to return the free pages of every arena; true when some came back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "malloc_trim is glibc's own entry point for this; no Rust allocator API offers it"
)]
fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes a plain size, touches only the allocator's own state under its
    // arena locks, and may be called from any thread at any time.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// Other allocators (musl's, macOS's) keep no arenas to trim.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> bool {
    false
}
