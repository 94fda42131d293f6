//! [`Queue`]: the encoded events waiting for one connection's writer.
//!
//! Bounded, so that a subscriber that stops reading costs at most `capacity` entries (each a
//! position and a handle on a frame shared with every other subscriber), and holding no
//! allocation while empty: thousands of idle connections each keep only the struct itself.
//!
//! A stream whose output is a [`Sink`] lends it to the queue while its task waits for events.
//! Fan-out then writes what it queued straight to the sink ([`Queue::flush`]) instead of waking
//! the task, which for a broadcast to thousands of idle subscribers saves a task switch per
//! delivery. The lock keeps the two writers apart: the fan-out writes only while the task is
//! waiting with nothing of its own to write, under the lock, and hands whatever the sink did
//! not take back to the task, which waits for its output with its write timeout.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::time::Instant;

use super::sink::Sink;
use crate::storage::Seq;

/// An encoded event waiting in a connection's queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: Seq,
    /// Shared with every other connection receiving the same frame.
    pub bytes: Bytes,
}

/// What a writer waiting on [`Queue::recv`] is given.
#[derive(Debug)]
pub enum Received {
    Item(Queued),
    /// The connection is closing.
    Closing,
    /// [`Queue::tick`] was called: its timer is due.
    Tick,
}

/// The queue was full: the event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// What became of an offered item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued, and the writer was woken (or is busy and will find it).
    Queued,
    /// Queued for [`Queue::flush`]: the writer waits and lent its sink.
    ToFlush,
}

/// A queue that kept more than this many slots after a burst gives them back once drained.
const KEEP_SLOTS: usize = 16;
/// The most queued frames [`Queue::flush`] gives the sink in one call.
const FLUSH_SLICES: usize = 16;

#[derive(Debug)]
pub struct Queue {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    items: VecDeque<Queued>,
    /// The writer waiting for the next item.
    waker: Option<Waker>,
    /// Whether the connection's task is writing, or about to: the sink is its alone. Set
    /// until the task first waits for live events, and whenever it takes something to write.
    writing: bool,
    /// The stream's output, lent while the stream is served by a writer that has one.
    sink: Option<Arc<dyn Sink>>,
    /// The newest position written to the stream, handed between the task and the fan-out
    /// whenever one takes the sink from the other: items at or before it are not written.
    written_through: Seq,
    /// When the fan-out last wrote to the sink, for the task's heartbeat timer.
    flushed_at: Option<Instant>,
    /// Set by [`Queue::tick`] until the writer receives it.
    ticked: bool,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                waker: None,
                writing: true,
                sink: None,
                written_through: 0,
                flushed_at: None,
                ticked: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update completes under the lock; a poisoned one still holds a valid queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an item without waiting. Wakes the writer, unless it waits with its sink lent:
    /// then the item is for [`Queue::flush`].
    pub fn offer(&self, item: Queued) -> Result<Offered, Full> {
        let waker = {
            let mut state = self.lock();
            if state.items.len() >= self.capacity {
                return Err(Full);
            }
            state.items.push_back(item);
            if !state.writing && state.sink.is_some() {
                return Ok(Offered::ToFlush);
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(Offered::Queued)
    }

    /// Writes what is queued straight to the lent sink, if the writer is waiting and the
    /// stream is not `closing`; returns how many events were written whole. Whatever the
    /// sink does not take at once (a part of a frame, or all of it) is left at the front of
    /// the queue and the writer is woken to finish it.
    pub fn flush(&self, closing: &AtomicBool, now: Instant) -> usize {
        let mut state = self.lock();
        if state.writing {
            // The task is at work and comes back for the queue when done.
            return 0;
        }
        let mut written_whole = 0;
        let handed_back = match state.sink.clone() {
            Some(sink) if !closing.load(Ordering::Acquire) => {
                let outcome = write_queued(&mut state, &*sink, &mut written_whole);
                if written_whole > 0 || outcome == Written::Part {
                    state.flushed_at = Some(now);
                }
                outcome != Written::All
            }
            _ => true,
        };
        release_if_drained(&mut state);
        let waker = if handed_back {
            state.waker.take()
        } else {
            None
        };
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        written_whole
    }

    /// Lends the stream's output to fan-out.
    pub fn lend(&self, sink: Arc<dyn Sink>) {
        self.lock().sink = Some(sink);
    }

    /// Takes the sink back for good: fan-out no longer writes to it.
    pub fn take_back(&self) {
        self.lock().sink = None;
    }

    /// The next item, without waiting.
    pub fn try_recv(&self) -> Option<Queued> {
        let mut state = self.lock();
        let item = state.items.pop_front();
        release_if_drained(&mut state);
        item
    }

    /// Waits for the next item; [`Received::Closing`] as soon as `closing` is set (checked
    /// first, so a closed connection stops at once rather than after what is queued), and
    /// [`Received::Tick`] after a [`Queue::tick`] once nothing is queued. Whoever sets
    /// `closing` calls [`Queue::wake`] afterwards.
    ///
    /// `written` is the newest position the caller has written. While waiting, the sink is
    /// lent to fan-out from there; once something is returned, the sink is the caller's
    /// again and `written` includes what fan-out wrote meanwhile.
    pub async fn recv(&self, closing: &AtomicBool, written: &mut Seq) -> Received {
        poll_fn(|cx| {
            let mut state = self.lock();
            if closing.load(Ordering::Acquire) {
                take_sink(&mut state, written);
                return Poll::Ready(Received::Closing);
            }
            if let Some(item) = state.items.pop_front() {
                release_if_drained(&mut state);
                take_sink(&mut state, written);
                return Poll::Ready(Received::Item(item));
            }
            if std::mem::take(&mut state.ticked) {
                take_sink(&mut state, written);
                return Poll::Ready(Received::Tick);
            }
            match &mut state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            state.written_through = state.written_through.max(*written);
            state.writing = false;
            Poll::Pending
        })
        .await
    }

    /// Takes the sink back from fan-out to write something of the writer's own (a heartbeat
    /// or the closing frame); `written` then includes what fan-out wrote. The next
    /// [`Queue::recv`] lends it again.
    pub fn take_sink(&self, written: &mut Seq) {
        take_sink(&mut self.lock(), written);
    }

    /// When fan-out last wrote to the lent sink.
    pub fn flushed_at(&self) -> Option<Instant> {
        self.lock().flushed_at
    }

    /// Tells the writer its timer is due: its wait ends with [`Received::Tick`].
    pub fn tick(&self) {
        let waker = {
            let mut state = self.lock();
            state.ticked = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
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

fn take_sink(state: &mut State, written: &mut Seq) {
    state.writing = true;
    *written = (*written).max(state.written_through);
}

/// How much of the queue a flush wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Everything queued.
    All,
    /// Part of it, ending inside a frame: the rest is the writer's to finish.
    Part,
    /// Nothing more: the sink would block or failed, which the writer finds out itself.
    Stopped,
}

/// Writes the queued frames past `written_through` to `sink` until the queue is empty or the
/// sink stops taking them, counting the frames written whole.
fn write_queued(state: &mut State, sink: &dyn Sink, written_whole: &mut usize) -> Written {
    loop {
        while let Some(front) = state.items.front()
            && front.seq <= state.written_through
        {
            state.items.pop_front();
        }
        if state.items.is_empty() {
            return Written::All;
        }
        let mut slices = [IoSlice::new(&[]); FLUSH_SLICES];
        let count = state
            .items
            .iter()
            .zip(slices.iter_mut())
            .map(|(item, slice)| *slice = IoSlice::new(&item.bytes))
            .count();
        let mut taken = match sink.try_write_vectored(&slices[..count]) {
            Ok(0) => return Written::Stopped,
            Ok(taken) => taken,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Written::Stopped,
        };
        while let Some(front) = state.items.front_mut() {
            if taken < front.bytes.len() {
                if taken == 0 {
                    break;
                }
                front.bytes.advance(taken);
                return Written::Part;
            }
            taken -= front.bytes.len();
            state.written_through = front.seq;
            state.items.pop_front();
            *written_whole += 1;
        }
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
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Wake};

    use super::*;

    impl Received {
        fn seq(self) -> Option<Seq> {
            match self {
                Self::Item(item) => Some(item.seq),
                Self::Closing | Self::Tick => None,
            }
        }
    }

    fn item(seq: Seq) -> Queued {
        frame(seq, b"x")
    }

    fn frame(seq: Seq, bytes: &[u8]) -> Queued {
        Queued {
            seq,
            bytes: Bytes::copy_from_slice(bytes),
        }
    }

    /// An output that takes up to `room` bytes, then would block until given more room.
    #[derive(Debug, Default)]
    struct Pipe {
        taken: Mutex<Vec<u8>>,
        room: AtomicUsize,
    }

    impl Pipe {
        fn with_room(room: usize) -> Arc<Self> {
            Arc::new(Self {
                taken: Mutex::default(),
                room: AtomicUsize::new(room),
            })
        }

        fn taken(&self) -> Vec<u8> {
            self.taken.lock().unwrap().clone()
        }
    }

    impl Sink for Pipe {
        fn try_write_vectored(&self, frames: &[IoSlice<'_>]) -> io::Result<usize> {
            let room = self.room.load(Ordering::Relaxed);
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut taken = self.taken.lock().unwrap();
            let mut written = 0;
            for frame in frames {
                let take = frame.len().min(room - written);
                taken.extend_from_slice(&frame[..take]);
                written += take;
            }
            self.room.fetch_sub(written, Ordering::Relaxed);
            Ok(written)
        }
    }

    /// A queue with a roomy pipe lent to it.
    fn lent_queue() -> (Arc<Pipe>, Queue) {
        let pipe = Pipe::with_room(usize::MAX / 2);
        let queue = Queue::new(8);
        queue.lend(Arc::clone(&pipe) as Arc<dyn Sink>);
        (pipe, queue)
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Woken(AtomicUsize);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Polls `recv` once, as a writer that starts waiting at position `written`; it must wait.
    fn start_waiting(queue: &Queue, closing: &AtomicBool, written: &mut Seq, woken: &Arc<Woken>) {
        let waker = Waker::from(Arc::clone(woken));
        let recv = pin!(queue.recv(closing, written));
        assert!(recv.poll(&mut Context::from_waker(&waker)).is_pending());
    }

    #[tokio::test]
    async fn keeps_order_and_refuses_past_capacity() {
        let queue = Queue::new(2);
        assert_eq!(queue.offer(item(1)), Ok(Offered::Queued));
        assert_eq!(queue.offer(item(2)), Ok(Offered::Queued));
        assert_eq!(queue.offer(item(3)), Err(Full));
        let open = AtomicBool::new(false);
        let mut written = 0;
        assert_eq!(queue.recv(&open, &mut written).await.seq(), Some(1));
        assert_eq!(queue.try_recv().map(|item| item.seq), Some(2));
        assert!(queue.try_recv().is_none());
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn wakes_a_waiting_writer() {
        let queue = Queue::new(4);
        let open = AtomicBool::new(false);
        let woken = Arc::new(Woken::default());
        start_waiting(&queue, &open, &mut 0, &woken);
        // No sink lent: the writer is woken to write it.
        assert_eq!(queue.offer(item(7)), Ok(Offered::Queued));
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert_eq!(queue.recv(&open, &mut 0).await.seq(), Some(7));
    }

    #[tokio::test]
    async fn closing_wakes_the_writer_and_wins_over_queued_items() {
        let queue = Queue::new(4);
        let closing = AtomicBool::new(false);
        let woken = Arc::new(Woken::default());
        start_waiting(&queue, &closing, &mut 0, &woken);
        closing.store(true, Ordering::Release);
        queue.wake();
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        queue.offer(item(1)).unwrap();
        assert!(matches!(
            queue.recv(&closing, &mut 0).await,
            Received::Closing
        ));
    }

    #[tokio::test]
    async fn a_tick_wakes_the_writer_after_what_is_queued() {
        let queue = Queue::new(4);
        let open = AtomicBool::new(false);
        let woken = Arc::new(Woken::default());
        start_waiting(&queue, &open, &mut 0, &woken);
        queue.tick();
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        queue.offer(item(1)).unwrap();
        assert_eq!(queue.recv(&open, &mut 0).await.seq(), Some(1));
        assert!(matches!(queue.recv(&open, &mut 0).await, Received::Tick));
        // Received once: the next wait waits.
        start_waiting(&queue, &open, &mut 0, &woken);
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

    #[test]
    fn fan_out_writes_to_a_lent_sink_while_the_writer_waits() {
        let (pipe, queue) = lent_queue();
        let open = AtomicBool::new(false);
        let woken = Arc::new(Woken::default());
        // Before the writer first waits, the sink is its own: nothing is for fan-out.
        assert_eq!(queue.offer(frame(1, b"one ")), Ok(Offered::Queued));
        assert_eq!(queue.flush(&open, Instant::now()), 0);
        assert_eq!(queue.try_recv().map(|item| item.seq), Some(1));

        let mut written = 1;
        start_waiting(&queue, &open, &mut written, &woken);
        assert_eq!(queue.offer(frame(2, b"two ")), Ok(Offered::ToFlush));
        assert_eq!(queue.offer(frame(3, b"three ")), Ok(Offered::ToFlush));
        assert_eq!(queue.flush(&open, Instant::now()), 2);
        assert!(queue.is_empty());
        assert!(queue.flushed_at().is_some());
        assert_eq!(woken.0.load(Ordering::Relaxed), 0, "nothing for the writer");
        assert_eq!(pipe.taken(), b"two three ");

        // Taking the sink back for a frame of its own, the writer learns what was written,
        // and fan-out leaves what comes next to it.
        queue.take_sink(&mut written);
        assert_eq!(written, 3);
        assert_eq!(queue.offer(frame(4, b"four")), Ok(Offered::Queued));
        assert_eq!(queue.flush(&open, Instant::now()), 0);
        assert_eq!(queue.try_recv().map(|item| item.seq), Some(4));
    }

    #[test]
    fn fan_out_skips_what_the_writer_already_wrote() {
        let (pipe, queue) = lent_queue();
        let open = AtomicBool::new(false);
        let woken = Arc::new(Woken::default());
        // Replay wrote through 5; event 4 and 5 reach the queue after it went live.
        start_waiting(&queue, &open, &mut 5, &woken);
        for (seq, bytes) in [(4, &b"four "[..]), (5, b"five "), (6, b"six")] {
            assert_eq!(queue.offer(frame(seq, bytes)), Ok(Offered::ToFlush));
        }
        assert_eq!(queue.flush(&open, Instant::now()), 1);
        queue.take_back();
        assert_eq!(queue.offer(frame(7, b"seven")), Ok(Offered::Queued));
        assert_eq!(pipe.taken(), b"six");
    }

    #[tokio::test]
    async fn what_the_sink_does_not_take_is_handed_back_to_the_writer() {
        let pipe = Pipe::with_room(4096);
        let queue = Queue::new(8);
        queue.lend(Arc::clone(&pipe) as Arc<dyn Sink>);
        let open = AtomicBool::new(false);
        let woken = Arc::new(Woken::default());
        let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let mut written = 0;
        start_waiting(&queue, &open, &mut written, &woken);
        assert_eq!(queue.offer(frame(1, &big)), Ok(Offered::ToFlush));
        assert_eq!(queue.offer(frame(2, b"after")), Ok(Offered::ToFlush));
        assert_eq!(queue.flush(&open, Instant::now()), 0, "nothing whole");
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "the writer finishes it");

        // The writer gets the rest of the frame, and event 1 does not count as written yet.
        let Received::Item(rest) = queue.recv(&open, &mut written).await else {
            panic!("an item")
        };
        assert_eq!(rest.seq, 1);
        assert_eq!(written, 0, "event 1 is not written yet");
        assert_eq!(rest.bytes.len(), big.len() - 4096);
        let mut all = pipe.taken();
        all.extend_from_slice(&rest.bytes);
        assert_eq!(
            all, big,
            "what fan-out wrote and what is left make the frame"
        );
        assert_eq!(queue.try_recv().map(|item| item.seq), Some(2));
    }

    #[test]
    fn a_closing_stream_is_left_to_its_writer() {
        let (pipe, queue) = lent_queue();
        let closing = AtomicBool::new(false);
        let woken = Arc::new(Woken::default());
        start_waiting(&queue, &closing, &mut 0, &woken);
        assert_eq!(queue.offer(item(1)), Ok(Offered::ToFlush));
        closing.store(true, Ordering::Release);
        assert_eq!(queue.flush(&closing, Instant::now()), 0);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert!(!queue.is_empty());
        assert!(pipe.taken().is_empty());
    }

    #[test]
    fn a_full_sink_stops_fan_out_and_wakes_the_writer() {
        let pipe = Pipe::with_room(0);
        let queue = Queue::new(8);
        queue.lend(Arc::clone(&pipe) as Arc<dyn Sink>);
        let open = AtomicBool::new(false);
        let woken = Arc::new(Woken::default());
        start_waiting(&queue, &open, &mut 0, &woken);
        assert_eq!(queue.offer(item(1)), Ok(Offered::ToFlush));
        assert_eq!(queue.flush(&open, Instant::now()), 0);
        assert_eq!(
            woken.0.load(Ordering::Relaxed),
            1,
            "the writer waits for room"
        );
        assert_eq!(queue.try_recv().map(|item| item.seq), Some(1));
    }
}
