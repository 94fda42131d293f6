//! [`Member`]: one connection for all the tabs of a browser profile on one origin. Every
//! subscription that shares is a member of a group: the member holding the group's Web Lock
//! leads, running the one [`StreamMachine`] for the union of what the members want, and relays
//! everything it receives on a BroadcastChannel; each member keeps what is meant for it. When
//! the leader goes, the lock passes to another member, which resumes after the last event
//! relayed with the same client id: nothing is lost, and members drop what they already had.
//!
//! The messages are those of the TypeScript library, so tabs running either share.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_protocol::Envelope;
use herald_protocol::system::{Closing, Connected, PresenceChange, Reset};
use serde::{Deserialize, Serialize};

use crate::ids::is_after;
use crate::stream::{self, Report, State, StreamConfig, StreamMachine, Wants};

/// What members tell each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum GroupMessage {
    Want {
        from: String,
        topics: Vec<String>,
        presence: bool,
    },
    Bye {
        from: String,
    },
    Hello {
        from: String,
    },
    Leader {
        from: String,
    },
    Event {
        envelope: Envelope,
    },
    Connected {
        connected: Connected,
        #[serde(rename = "lastEventId")]
        last_event_id: Option<String>,
    },
    Reset {
        reset: Reset,
    },
    Closing {
        closing: Closing,
    },
    Presence {
        change: PresenceChange,
    },
    State {
        state: State,
        detail: Option<String>,
        #[serde(rename = "clientId")]
        client_id: Option<String>,
        #[serde(rename = "lastEventId")]
        last_event_id: Option<String>,
    },
}

/// How often a member says again what it wants, and after how long silence it is forgotten.
pub const REFRESH: Duration = Duration::from_secs(10);
const FORGET: Duration = Duration::from_secs(35);

/// What happened to a member.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberInput {
    Start,
    /// The group's lock was granted: this member leads.
    Granted,
    Message(GroupMessage),
    /// Something happened to the stream this member runs as leader.
    Stream(stream::Input),
    /// The refresh timer fired.
    Refresh,
    SetWants(Wants),
    Close,
}

/// What a member does.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOutput {
    /// Something for the stream this member runs (never a report: those come as `Report`).
    Stream(stream::Output),
    Report(Report),
    Post(GroupMessage),
    /// Ask for the group's lock (granted when no other member holds it).
    RequestLeadership,
    /// Let the lock go.
    ReleaseLeadership,
    /// Fire `Refresh` after this long.
    SetRefresh(Duration),
}

/// The union of what members want: topics sorted, presence if any asks.
pub fn union<'a>(all: impl IntoIterator<Item = &'a Wants>) -> Wants {
    let mut topics: Vec<String> = Vec::new();
    let mut presence = false;
    for wants in all {
        topics.extend(wants.topics.iter().cloned());
        presence |= wants.presence;
    }
    topics.sort();
    topics.dedup();
    Wants { topics, presence }
}

#[derive(Debug)]
pub struct Member {
    id: String,
    config: StreamConfig,
    others: BTreeMap<String, (Wants, u64)>,
    stream: Option<StreamMachine>,
    closed: bool,
}

impl Member {
    /// A member with id `id` wanting what `config` says, resuming from its position.
    pub fn new(id: String, config: StreamConfig) -> Self {
        Self {
            id,
            config,
            others: BTreeMap::new(),
            stream: None,
            closed: false,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.stream.is_some()
    }

    /// The stream's client id, as last known here.
    pub fn client_id(&self) -> Option<&str> {
        match &self.stream {
            Some(stream) => stream.client_id(),
            None => self.config.client_id.as_deref(),
        }
    }

    /// The last event id of the stream, as last known here.
    pub fn last_event_id(&self) -> Option<&str> {
        match &self.stream {
            Some(stream) => stream.last_event_id(),
            None => self.config.last_event_id.as_deref(),
        }
    }

    fn want(&self) -> GroupMessage {
        GroupMessage::Want {
            from: self.id.clone(),
            topics: self.config.wants.topics.clone(),
            presence: self.config.wants.presence,
        }
    }

    fn union(&self) -> Wants {
        union(
            std::iter::once(&self.config.wants).chain(self.others.values().map(|(wants, _)| wants)),
        )
    }

    pub fn handle(&mut self, input: MemberInput, now_ms: u64, random: f64) -> Vec<MemberOutput> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        match input {
            MemberInput::Start => {
                out.push(MemberOutput::Post(self.want()));
                out.push(MemberOutput::Post(GroupMessage::Hello {
                    from: self.id.clone(),
                }));
                out.push(MemberOutput::SetRefresh(REFRESH));
                out.push(MemberOutput::RequestLeadership);
            }
            MemberInput::Granted => self.lead(now_ms, random, &mut out),
            MemberInput::Message(message) => self.receive(message, now_ms, random, &mut out),
            MemberInput::Stream(input) => self.drive(input, now_ms, random, &mut out),
            MemberInput::Refresh => {
                out.push(MemberOutput::Post(self.want()));
                let before = self.others.len();
                self.others.retain(|_, (_, seen)| {
                    now_ms.saturating_sub(*seen) <= FORGET.as_millis() as u64
                });
                if self.others.len() != before {
                    self.follow_wants(now_ms, random, &mut out);
                }
                out.push(MemberOutput::SetRefresh(REFRESH));
            }
            MemberInput::SetWants(wants) => {
                self.config.wants = wants;
                out.push(MemberOutput::Post(self.want()));
                self.follow_wants(now_ms, random, &mut out);
            }
            MemberInput::Close => {
                out.push(MemberOutput::Post(GroupMessage::Bye {
                    from: self.id.clone(),
                }));
                if self.stream.is_some() {
                    // Closed quietly: the others hear `bye`, and the next leader takes over.
                    let mut closing = Vec::new();
                    self.drive(stream::Input::Close, now_ms, random, &mut closing);
                    out.extend(
                        closing
                            .into_iter()
                            .filter(|output| matches!(output, MemberOutput::Stream(_))),
                    );
                    self.stream = None;
                }
                out.push(MemberOutput::ReleaseLeadership);
                self.closed = true;
            }
        }
        out
    }

    fn lead(&mut self, now_ms: u64, random: f64, out: &mut Vec<MemberOutput>) {
        if self.stream.is_some() {
            return;
        }
        out.push(MemberOutput::Post(GroupMessage::Leader {
            from: self.id.clone(),
        }));
        let config = StreamConfig {
            wants: self.union(),
            ..self.config.clone()
        };
        self.stream = Some(StreamMachine::new(config));
        self.drive(stream::Input::Start, now_ms, random, out);
    }

    /// A leader follows the members' wants.
    fn follow_wants(&mut self, now_ms: u64, random: f64, out: &mut Vec<MemberOutput>) {
        if self.stream.is_some() {
            let wants = self.union();
            self.drive(stream::Input::SetWants(wants), now_ms, random, out);
        }
    }

    /// Runs the leader's stream: what it reports is relayed to the others and kept here too.
    fn drive(
        &mut self,
        input: stream::Input,
        now_ms: u64,
        random: f64,
        out: &mut Vec<MemberOutput>,
    ) {
        let Some(stream) = &mut self.stream else {
            return;
        };
        for output in stream.handle(input, now_ms, random) {
            let stream::Output::Report(report) = output else {
                out.push(MemberOutput::Stream(output));
                continue;
            };
            let relayed = match &report {
                Report::Event(envelope) => GroupMessage::Event {
                    envelope: envelope.clone(),
                },
                Report::Connected(connected) => GroupMessage::Connected {
                    connected: connected.clone(),
                    last_event_id: stream.last_event_id().map(str::to_owned),
                },
                Report::Reset(reset) => GroupMessage::Reset {
                    reset: reset.clone(),
                },
                Report::Closing(closing) => GroupMessage::Closing {
                    closing: closing.clone(),
                },
                Report::Presence(change) => GroupMessage::Presence {
                    change: change.clone(),
                },
                Report::State(state, detail) => GroupMessage::State {
                    state: *state,
                    detail: detail.clone(),
                    client_id: stream.client_id().map(str::to_owned),
                    last_event_id: stream.last_event_id().map(str::to_owned),
                },
            };
            out.push(MemberOutput::Post(relayed));
            out.push(MemberOutput::Report(report));
        }
    }

    fn receive(
        &mut self,
        message: GroupMessage,
        now_ms: u64,
        random: f64,
        out: &mut Vec<MemberOutput>,
    ) {
        match message {
            GroupMessage::Want {
                from,
                topics,
                presence,
            } => {
                self.others
                    .insert(from, (Wants { topics, presence }, now_ms));
                self.follow_wants(now_ms, random, out);
            }
            GroupMessage::Bye { from } if self.others.remove(&from).is_some() => {
                self.follow_wants(now_ms, random, out);
            }
            GroupMessage::Bye { .. } => {}
            GroupMessage::Hello { .. } => {
                out.push(MemberOutput::Post(self.want()));
                if let Some(stream) = &self.stream {
                    out.push(MemberOutput::Post(GroupMessage::State {
                        state: stream.state(),
                        detail: None,
                        client_id: stream.client_id().map(str::to_owned),
                        last_event_id: stream.last_event_id().map(str::to_owned),
                    }));
                }
            }
            GroupMessage::Leader { .. } => out.push(MemberOutput::Post(self.want())),
            relayed if self.stream.is_none() => self.follow(relayed, out),
            // A leader ignores what another relayed: its own stream resumes after it.
            _ => {}
        }
    }

    /// A follower takes in what the leader relays.
    fn follow(&mut self, message: GroupMessage, out: &mut Vec<MemberOutput>) {
        let report = match message {
            GroupMessage::Event { envelope } => {
                self.advance(Some(envelope.id.clone()));
                Report::Event(envelope)
            }
            GroupMessage::Connected {
                connected,
                last_event_id,
            } => {
                self.config.client_id = Some(connected.client_id.clone());
                self.advance(last_event_id);
                Report::Connected(connected)
            }
            GroupMessage::Reset { reset } => {
                self.config.last_event_id = Some(reset.latest_id.clone());
                Report::Reset(reset)
            }
            GroupMessage::Closing { closing } => Report::Closing(closing),
            GroupMessage::Presence { change } => Report::Presence(change),
            GroupMessage::State {
                state,
                detail,
                client_id,
                last_event_id,
            } => {
                if client_id.is_some() {
                    self.config.client_id = client_id;
                }
                self.advance(last_event_id);
                Report::State(state, detail)
            }
            GroupMessage::Want { .. }
            | GroupMessage::Bye { .. }
            | GroupMessage::Hello { .. }
            | GroupMessage::Leader { .. } => return,
        };
        out.push(MemberOutput::Report(report));
    }

    fn advance(&mut self, id: Option<String>) {
        if let Some(id) = id
            && is_after(&id, self.config.last_event_id.as_deref())
        {
            self.config.last_event_id = Some(id);
        }
    }
}
