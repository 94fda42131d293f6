//! [`Sink`]: what the hub needs of a subscriber's output to write to it itself.
//!
//! A stream whose task waits for live events lends its output to its connection's queue, and
//! fan-out writes queued frames to it directly instead of waking the task
//! ([`Queue::flush`](super::queue::Queue::flush)). The transport (a TCP socket for Herald's own
//! event-stream writer) implements this; the hub never sees a socket.

use std::fmt;
use std::io::{self, IoSlice};

/// An output that takes bytes without waiting.
pub trait Sink: Send + Sync + fmt::Debug {
    /// Writes as much of `frames` as the output takes now, in order, and returns how many bytes
    /// it took. `Ok(0)` or any error stops fan-out's writing: the stream's own task then finds
    /// out what happened when it writes, and owns whatever was not taken.
    fn try_write_vectored(&self, frames: &[IoSlice<'_>]) -> io::Result<usize>;
}
