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

/// What the log shows: entries whose topic and type contain these texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub topic: String,
    pub kind: String,
}

impl LogFilter {
    pub fn matches(&self, entry: &LogEntry) -> bool {
        match entry {
            LogEntry::Event(envelope) => {
                envelope
                    .topic
                    .as_deref()
                    .unwrap_or("")
                    .contains(self.topic.trim())
                    && envelope.kind.contains(self.kind.trim())
            }
            // A gap matters whatever the filter.
            LogEntry::Gap { .. } => true,
        }
    }
}

/// The newest received events, bounded so a long session cannot grow the page without limit.
/// While paused, new entries wait (also bounded) and appear on resume.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLog {
    capacity: usize,
    entries: VecDeque<(u64, LogEntry)>,
    waiting: VecDeque<LogEntry>,
    paused: bool,
    next_key: u64,
    /// Entries that fell out of the bound while paused, so the user can be told.
    dropped_while_paused: u64,
}

impl EventLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: VecDeque::with_capacity(capacity),
            waiting: VecDeque::new(),
            paused: false,
            next_key: 0,
            dropped_while_paused: 0,
        }
    }

    /// Adds entries in arrival order, dropping the oldest past the capacity.
    pub fn extend(&mut self, batch: impl IntoIterator<Item = LogEntry>) {
        for entry in batch {
            if self.paused {
                self.waiting.push_back(entry);
                if self.waiting.len() > self.capacity {
                    // Drop the oldest event, never a gap marker: gaps must stay visible.
                    if let Some(at) = self
                        .waiting
                        .iter()
                        .position(|entry| matches!(entry, LogEntry::Event(_)))
                    {
                        self.waiting.remove(at);
                        self.dropped_while_paused += 1;
                    }
                }
            } else {
                self.insert(entry);
            }
        }
    }

    fn insert(&mut self, entry: LogEntry) {
        self.entries.push_front((self.next_key, entry));
        self.next_key += 1;
        self.entries.truncate(self.capacity);
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        if !paused {
            if self.dropped_while_paused > 0 {
                let dropped = std::mem::take(&mut self.dropped_while_paused);
                self.insert(LogEntry::Gap {
                    reason: format!("{dropped} events were not kept while paused"),
                });
            }
            let waiting = std::mem::take(&mut self.waiting);
            for entry in waiting {
                self.insert(entry);
            }
        }
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.waiting.clear();
        self.dropped_while_paused = 0;
    }

    /// Newest first, each with a stable key for rendering, filtered.
    pub fn visible(&self, filter: &LogFilter) -> Vec<(u64, LogEntry)> {
        self.entries
            .iter()
            .filter(|(_, entry)| filter.matches(entry))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u32, topic: &str, kind: &str) -> LogEntry {
        LogEntry::Event(Envelope {
            id: id.to_string(),
            topic: Some(topic.into()),
            kind: kind.into(),
            data: serde_json::Value::Null,
            time: String::new(),
        })
    }

    fn ids(log: &EventLog, filter: &LogFilter) -> Vec<String> {
        log.visible(filter)
            .into_iter()
            .map(|(_, entry)| match entry {
                LogEntry::Event(envelope) => envelope.id,
                LogEntry::Gap { .. } => "gap".into(),
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_entries_up_to_its_capacity() {
        let mut log = EventLog::new(3);
        log.extend((1..=5).map(|n| event(n, "a", "message")));
        assert_eq!(ids(&log, &LogFilter::default()), ["5", "4", "3"]);
        assert_eq!(log.len(), 3);
    }

    #[test]
    fn filters_by_topic_and_type_but_always_shows_gaps() {
        let mut log = EventLog::new(10);
        log.extend([
            event(1, "orders", "created"),
            LogEntry::Gap { reason: "x".into() },
            event(2, "rooms/1", "msg"),
        ]);
        let filter = LogFilter {
            topic: "ord".into(),
            kind: String::new(),
        };
        assert_eq!(ids(&log, &filter), ["gap", "1"]);
        let filter = LogFilter {
            topic: String::new(),
            kind: "msg".into(),
        };
        assert_eq!(ids(&log, &filter), ["2", "gap"]);
    }

    #[test]
    fn pausing_holds_new_entries_until_resumed() {
        let mut log = EventLog::new(2);
        log.extend([event(1, "a", "m")]);
        log.set_paused(true);
        log.extend([event(2, "a", "m"), event(3, "a", "m"), event(4, "a", "m")]);
        assert_eq!(ids(&log, &LogFilter::default()), ["1"]);
        assert_eq!(log.waiting(), 2, "the wait is bounded too");
        log.set_paused(false);
        assert_eq!(ids(&log, &LogFilter::default()), ["4", "3"]);
        log.set_paused(true);
        log.extend([
            LogEntry::Gap {
                reason: "reset".into(),
            },
            event(5, "a", "m"),
            event(6, "a", "m"),
        ]);
        log.set_paused(false);
        assert_eq!(
            ids(&log, &LogFilter::default()),
            ["6", "gap"],
            "the gap marker survives the overflow"
        );
        log.clear();
        assert!(log.is_empty());
    }
}
