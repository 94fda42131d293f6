//! [`Queue`]: the encoded events waiting for one connection's writer.
//!
//! Bounded, so that a subscriber that stops reading costs at most `capacity` entries (each a
//! position and a handle on a frame shared with every other subscriber), and holding no
//! allocation while empty: thousands of idle connections each keep only the struct itself.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use bytes::Bytes;

use crate::storage::Seq;

/// An encoded event waiting in a connection's queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: Seq,
    /// Shared with every other connection receiving the same frame.
    pub bytes: Bytes,
}

/// The queue was full: the event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A queue that kept more than this many slots after a burst gives them back once drained.
const KEEP_SLOTS: usize = 16;

#[derive(Debug)]
pub struct Queue {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Queued>,
    /// The writer waiting for the next item.
    waker: Option<Waker>,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update completes under the lock; a poisoned one still holds a valid queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an item without waiting, and wakes the writer.
    pub fn offer(&self, item: Queued) -> Result<(), Full> {
        let waker = {
            let mut state = self.lock();
            if state.items.len() >= self.capacity {
                return Err(Full);
            }
            state.items.push_back(item);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The next item, without waiting.
    pub fn try_recv(&self) -> Option<Queued> {
        let mut state = self.lock();
        let item = state.items.pop_front();
        release_if_drained(&mut state);
        item
    }

    /// Waits for the next item; `None` as soon as `closing` is set (checked first, so a closed
    /// connection stops at once rather than after what is queued). Whoever sets `closing` calls
    /// [`Queue::wake`] afterwards.
    pub async fn recv(&self, closing: &AtomicBool) -> Option<Queued> {
        poll_fn(|cx| {
            let mut state = self.lock();
            if closing.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            if let Some(item) = state.items.pop_front() {
                release_if_drained(&mut state);
                return Poll::Ready(Some(item));
            }
            match &mut state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Wakes the writer if it is waiting.
    pub fn wake(&self) {
        let waker = self.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Drops everything queued.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.items.clear();
        release_if_drained(&mut state);
    }
}

/// Frees the slots a burst left behind once the queue is empty again, so an idle connection
/// holds no buffer.
fn release_if_drained(state: &mut State) {
    if state.items.is_empty() && state.items.capacity() > KEEP_SLOTS {
        state.items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: Seq) -> Queued {
        Queued {
            seq,
            bytes: Bytes::from_static(b"x"),
        }
    }

    #[tokio::test]
    async fn keeps_order_and_refuses_past_capacity() {
        let queue = Queue::new(2);
        assert_eq!(queue.offer(item(1)), Ok(()));
        assert_eq!(queue.offer(item(2)), Ok(()));
        assert_eq!(queue.offer(item(3)), Err(Full));
        let open = AtomicBool::new(false);
        assert_eq!(queue.recv(&open).await.map(|item| item.seq), Some(1));
        assert_eq!(queue.try_recv().map(|item| item.seq), Some(2));
        assert!(queue.try_recv().is_none());
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn wakes_a_waiting_writer() {
        let queue = std::sync::Arc::new(Queue::new(4));
        let waiting = tokio::spawn({
            let queue = std::sync::Arc::clone(&queue);
            async move {
                queue
                    .recv(&AtomicBool::new(false))
                    .await
                    .map(|item| item.seq)
            }
        });
        tokio::task::yield_now().await;
        queue.offer(item(7)).unwrap();
        assert_eq!(waiting.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn closing_wakes_the_writer_and_wins_over_queued_items() {
        let queue = std::sync::Arc::new(Queue::new(4));
        let closing = std::sync::Arc::new(AtomicBool::new(false));
        let waiting = tokio::spawn({
            let queue = std::sync::Arc::clone(&queue);
            let closing = std::sync::Arc::clone(&closing);
            async move { queue.recv(&closing).await.map(|item| item.seq) }
        });
        tokio::task::yield_now().await;
        closing.store(true, Ordering::Release);
        queue.wake();
        assert_eq!(waiting.await.unwrap(), None);
        queue.offer(item(1)).unwrap();
        assert_eq!(queue.recv(&closing).await.map(|item| item.seq), None);
    }

    #[test]
    fn gives_back_slots_after_a_burst() {
        let queue = Queue::new(1024);
        for seq in 0..500 {
            queue.offer(item(seq)).unwrap();
        }
        while queue.try_recv().is_some() {}
        assert_eq!(queue.lock().items.capacity(), 0);
        queue.offer(item(1)).unwrap();
        queue.clear();
        assert!(queue.is_empty());
    }
}
