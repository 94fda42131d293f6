//! [`Delivery`]: what one subscription passes on of what its stream reports: the events of its
//! own topics (and those sent to its client, its user or everyone), each once, in order; its
//! topics' presence if it asked; and, while paused, nothing, keeping the events to deliver on
//! resuming (up to a bound, past which the gap is reported).

use std::collections::VecDeque;

use herald_protocol::system::{Reset, ResetReason};

use crate::ids::is_after;
use crate::stream::Report;

#[derive(Debug)]
pub struct Delivery {
    topics: Vec<String>,
    presence: bool,
    last_delivered: Option<String>,
    paused: bool,
    held: VecDeque<Report>,
    /// The id of the last event let go while paused, if any was.
    overflowed: Option<String>,
    capacity: usize,
}

impl Delivery {
    pub fn new(topics: Vec<String>, presence: bool, capacity: usize) -> Self {
        Self {
            topics,
            presence,
            last_delivered: None,
            paused: false,
            held: VecDeque::new(),
            overflowed: None,
            capacity: capacity.max(1),
        }
    }

    pub fn set_topics(&mut self, topics: Vec<String>) {
        self.topics = topics;
    }

    pub fn presence(&self) -> bool {
        self.presence
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// What of `report` to deliver now.
    pub fn take(&mut self, report: Report) -> Option<Report> {
        match &report {
            Report::Event(envelope) => {
                if envelope
                    .topic
                    .as_ref()
                    .is_some_and(|topic| !self.topics.contains(topic))
                    || !is_after(&envelope.id, self.last_delivered.as_deref())
                {
                    return None;
                }
                self.last_delivered = Some(envelope.id.clone());
                if self.paused {
                    self.held.push_back(report);
                    if self.held.len() > self.capacity
                        && let Some(Report::Event(gone)) = self.held.pop_front()
                    {
                        self.overflowed = Some(gone.id);
                    }
                    return None;
                }
                Some(report)
            }
            Report::Presence(change) => {
                (self.presence && self.topics.contains(&change.topic)).then_some(report)
            }
            _ => Some(report),
        }
    }

    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Resumes; what was kept meanwhile, after a reset if some had to be let go.
    pub fn resume(&mut self) -> Vec<Report> {
        self.paused = false;
        let mut out = Vec::with_capacity(self.held.len() + 1);
        if let Some(latest_id) = self.overflowed.take() {
            out.push(Report::Reset(Reset {
                reason: ResetReason::HistoryExpired,
                latest_id,
            }));
        }
        out.extend(self.held.drain(..));
        out
    }
}
