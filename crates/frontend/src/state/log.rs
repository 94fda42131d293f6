use std::collections::VecDeque;

use herald_protocol::Envelope;

/// One line of the event log.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    Event(Envelope),
    /// `herald.reset`: the server could not replay everything; shown as a visible gap.
    Gap {
        reason: String,
    },
}

/// The newest received events, bounded so a long session cannot grow the page without limit.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLog {
    capacity: usize,
    entries: VecDeque<(u64, LogEntry)>,
    next_key: u64,
}

impl EventLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: VecDeque::with_capacity(capacity),
            next_key: 0,
        }
    }

    /// Adds an entry, dropping the oldest past the capacity.
    pub fn push(&mut self, entry: LogEntry) {
        self.entries.push_front((self.next_key, entry));
        self.next_key += 1;
        self.entries.truncate(self.capacity);
    }

    /// Newest first, each with a stable key for rendering.
    pub fn entries(&self) -> impl Iterator<Item = &(u64, LogEntry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
