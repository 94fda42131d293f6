//! [`Session`]: the console's connection to `/events`, tying the model in `state` to a
//! [`Source`]. All fields are arena handles, so a `Session` is `Copy` and every view shares it.

use std::time::Duration;

use herald_protocol::names::DEFAULT_EVENT_TYPE;
use herald_protocol::system::CloseReason;
use leptos::prelude::*;

use crate::source::{Source, SourceSignal};
use crate::state::{
    ConnectionState, EventLog, HubEvent, LogEntry, LogFilter, Signal, decode_hub_event, events_url,
};

/// How many events the log keeps.
const LOG_CAPACITY: usize = 500;
/// The first reconnection delay; it doubles with each failed attempt up to the maximum.
const RECONNECT_BASE: Duration = Duration::from_millis(1000);
const RECONNECT_MAX: Duration = Duration::from_secs(15);
/// How long received events gather before the log re-renders, so bursts do not freeze the page.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub state: RwSignal<ConnectionState>,
    pub topics: RwSignal<Vec<String>>,
    /// Event types the stream listens for: `EventSource` only delivers types it was told about.
    pub types: RwSignal<Vec<String>>,
    pub client_id: RwSignal<Option<String>>,
    pub last_event_id: RwSignal<Option<String>>,
    pub log: RwSignal<EventLog>,
    pub filter: RwSignal<LogFilter>,
    source: StoredValue<Option<Source>, LocalStorage>,
    incoming: StoredValue<Vec<LogEntry>, LocalStorage>,
    flush_scheduled: StoredValue<bool, LocalStorage>,
    /// Whether the last refusal was already answered by reconnecting without the client id.
    retried_as_new: StoredValue<bool, LocalStorage>,
}

impl Session {
    pub fn new(topics: Vec<String>) -> Self {
        Self {
            state: RwSignal::new(ConnectionState::ClosedByYou),
            topics: RwSignal::new(topics),
            types: RwSignal::new(vec![DEFAULT_EVENT_TYPE.to_owned()]),
            client_id: RwSignal::new(None),
            last_event_id: RwSignal::new(None),
            log: RwSignal::new(EventLog::new(LOG_CAPACITY)),
            filter: RwSignal::new(LogFilter::default()),
            source: StoredValue::new_local(None),
            incoming: StoredValue::new_local(Vec::new()),
            flush_scheduled: StoredValue::new_local(false),
            retried_as_new: StoredValue::new_local(false),
        }
    }

    /// Opens the stream, keeping the client id and resuming after the last event id.
    pub fn connect(self) {
        self.state
            .update(|state| *state = state.next(Signal::UserConnect));
        self.open_stream();
    }

    /// Opens an `EventSource` whose URL carries the current topics, client id and position.
    fn open_stream(self) {
        self.drop_source();
        let encode = |text: &str| String::from(web_sys::js_sys::encode_uri_component(text));
        let url = events_url(
            &self.topics.get_untracked(),
            self.client_id.get_untracked().as_deref(),
            self.last_event_id.get_untracked().as_deref(),
            encode,
        );
        match Source::open(&url, move |signal| self.on_signal(signal)) {
            Ok(source) => {
                for name in [
                    herald_protocol::system::CONNECTED,
                    herald_protocol::system::RESET,
                    herald_protocol::system::CLOSING,
                ] {
                    source.listen(name);
                }
                for kind in self.types.get_untracked() {
                    source.listen(&kind);
                }
                self.source.set_value(Some(source));
            }
            Err(error) => {
                self.state
                    .set(ConnectionState::ClosedByServer { reason: error });
            }
        }
    }

    /// Closes the stream on purpose: the state says so, and it is not an error.
    pub fn disconnect(self) {
        self.drop_source();
        self.state
            .update(|state| *state = state.next(Signal::UserDisconnect));
    }

    /// Replaces the topics; a live stream reconnects with its last event id, so nothing is missed.
    pub fn set_topics(self, topics: Vec<String>) {
        self.topics.set(topics);
        if self.state.get_untracked().wants_stream() {
            self.connect();
        }
    }

    /// Makes the stream deliver events of type `kind` from now on.
    pub fn listen_for(self, kind: &str) {
        if self.types.get_untracked().iter().any(|known| known == kind) {
            return;
        }
        self.types.update(|types| types.push(kind.to_owned()));
        self.source.with_value(|source| {
            if let Some(source) = source {
                source.listen(kind);
            }
        });
    }

    fn drop_source(self) {
        // Dropping the source closes it and detaches its listeners.
        self.source.set_value(None);
    }

    fn on_signal(self, signal: SourceSignal) {
        match signal {
            SourceSignal::Error { .. } if !self.state.get_untracked().wants_stream() => {}
            SourceSignal::Error { retrying } => {
                // The browser would reconnect with the URL it was opened with, which may lack
                // the client id issued since; reconnect here instead, with identity and position.
                self.drop_source();
                if retrying {
                    self.state
                        .update(|state| *state = state.next(Signal::Lost { retrying }));
                    self.reconnect_later();
                } else if self.client_id.get_untracked().is_some()
                    && !self.retried_as_new.get_value()
                {
                    // Refused: most likely the server no longer knows this client id. Try once
                    // as a new client, still resuming by event id.
                    self.retried_as_new.set_value(true);
                    self.client_id.set(None);
                    self.state
                        .update(|state| *state = state.next(Signal::Lost { retrying: true }));
                    self.reconnect_later();
                } else {
                    self.state
                        .update(|state| *state = state.next(Signal::Lost { retrying: false }));
                }
            }
            SourceSignal::Message(message) => match decode_hub_event(&message.event, &message.data)
            {
                Ok(HubEvent::Connected(connected)) => {
                    self.client_id.set(Some(connected.client_id));
                    if !message.last_event_id.is_empty() {
                        self.last_event_id.set(Some(message.last_event_id));
                    }
                    self.retried_as_new.set_value(false);
                    self.state
                        .update(|state| *state = state.next(Signal::Opened));
                }
                Ok(HubEvent::Event(envelope)) => {
                    self.last_event_id.set(Some(envelope.id.clone()));
                    self.enqueue(LogEntry::Event(envelope));
                }
                Ok(HubEvent::Reset(reset)) => {
                    self.last_event_id.set(Some(reset.latest_id.clone()));
                    let reason = match reset.reason {
                        herald_protocol::system::ResetReason::UnknownId => {
                            "the last event id was unknown"
                        }
                        herald_protocol::system::ResetReason::HistoryExpired => {
                            "missed events are no longer kept"
                        }
                    };
                    self.enqueue(LogEntry::Gap {
                        reason: reason.to_owned(),
                    });
                }
                Ok(HubEvent::Closing(closing)) => {
                    let signal = Signal::Closing {
                        reason: describe(closing.reason),
                        reconnect: closing.reconnect,
                    };
                    self.state.update(|state| *state = state.next(signal));
                    if !closing.reconnect {
                        // EventSource reconnects by itself unless closed.
                        self.drop_source();
                    }
                }
                Err(error) => leptos::logging::warn!("{error}"),
            },
        }
    }

    /// Reopens the stream after a back-off that doubles with each attempt (with jitter), unless
    /// the user disconnected meanwhile.
    fn reconnect_later(self) {
        let attempt = match self.state.get_untracked() {
            ConnectionState::Reconnecting { attempt } => attempt,
            _ => 1,
        };
        let base =
            RECONNECT_BASE.as_millis() as f64 * 2f64.powi(attempt.saturating_sub(1).min(6) as i32);
        let delay = base.min(RECONNECT_MAX.as_millis() as f64)
            * (0.75 + web_sys::js_sys::Math::random() / 2.0);
        set_timeout(
            move || {
                if matches!(
                    self.state.get_untracked(),
                    ConnectionState::Reconnecting { .. }
                ) {
                    self.open_stream();
                }
            },
            Duration::from_millis(delay as u64),
        );
    }

    /// Collects an entry and renders the batch shortly, once, however many arrive meanwhile.
    fn enqueue(self, entry: LogEntry) {
        self.incoming.update_value(|incoming| incoming.push(entry));
        if self.flush_scheduled.get_value() {
            return;
        }
        self.flush_scheduled.set_value(true);
        set_timeout(
            move || {
                self.flush_scheduled.set_value(false);
                let batch = self
                    .incoming
                    .try_update_value(std::mem::take)
                    .unwrap_or_default();
                self.log.update(|log| log.extend(batch));
            },
            FLUSH_EVERY,
        );
    }
}

/// A reason as a person reads it.
fn describe(reason: CloseReason) -> String {
    match reason {
        CloseReason::AdminClose => "an administrator closed this client".into(),
        CloseReason::Shutdown => "the server is shutting down".into(),
        CloseReason::SlowConsumer => "this client fell too far behind".into(),
        CloseReason::MaxLifetime => "the connection reached its maximum lifetime".into(),
        CloseReason::CredentialExpired => "the credential expired".into(),
        CloseReason::StorageUnavailable => "the event store is unavailable".into(),
    }
}
