//! [`Session`]: the console's connection to `/events`, tying the model in `state` to a
//! [`Source`]. All fields are arena handles, so a `Session` is `Copy` and every view shares it.

use std::time::Duration;

use herald_protocol::Envelope;
use herald_protocol::api::DevUser;
use herald_protocol::names::DEFAULT_EVENT_TYPE;
use herald_protocol::payloads::{NOTIFICATION, NOTIFICATION_READ, Notification, NotificationRead};
use herald_protocol::system::CloseReason;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::source::{Source, SourceSignal};
use crate::state::{
    Account, ConnectionState, EventLog, HubEvent, Inbox, LogEntry, LogFilter, Signal,
    decode_hub_event, events_url,
};
use crate::{alerts, api};

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
    pub client_id: RwSignal<Option<String>>,
    pub last_event_id: RwSignal<Option<String>>,
    pub log: RwSignal<EventLog>,
    pub filter: RwSignal<LogFilter>,
    /// Who the console is signed in as; `None` while anonymous.
    pub account: RwSignal<Option<Account>>,
    /// The demo users, when the server runs in development mode.
    pub dev_users: RwSignal<Vec<DevUser>>,
    /// Why signing in failed, if it did.
    pub account_error: RwSignal<Option<String>>,
    pub inbox: RwSignal<Inbox>,
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
            client_id: RwSignal::new(None),
            last_event_id: RwSignal::new(None),
            log: RwSignal::new(EventLog::new(LOG_CAPACITY)),
            filter: RwSignal::new(LogFilter::default()),
            account: RwSignal::new(None),
            dev_users: RwSignal::new(Vec::new()),
            account_error: RwSignal::new(None),
            inbox: RwSignal::new(Inbox::default()),
            source: StoredValue::new_local(None),
            incoming: StoredValue::new_local(Vec::new()),
            flush_scheduled: StoredValue::new_local(false),
            retried_as_new: StoredValue::new_local(false),
        }
    }

    /// Starts the console: in development mode signs in as the demo administrator without any
    /// copy-paste; otherwise connects anonymously until a token is given.
    pub fn start(self) {
        spawn_local(async move {
            // Asked first, so a console outside development mode sends no request bound to
            // fail (the development endpoints answer 404 there).
            let development = api::me().await.is_ok_and(|me| me.development);
            if !development {
                self.connect();
                return;
            }
            match api::dev_users().await {
                Some(users) => {
                    let first = users
                        .iter()
                        .find(|user| user.admin)
                        .or(users.first())
                        .map(|user| user.id.clone());
                    self.dev_users.set(users);
                    match first {
                        Some(user) => self.sign_in_as(user),
                        None => self.connect(),
                    }
                }
                None => self.connect(),
            }
        });
    }

    /// Signs in as a demo user (development mode) and reconnects as them.
    pub fn sign_in_as(self, user: String) {
        spawn_local(async move {
            match api::dev_token(&user).await {
                Ok(answer) => {
                    let account = Account {
                        user: answer.claims.sub,
                        admin: answer.claims.herald.admin,
                        development: true,
                    };
                    self.signed_in(answer.token, account).await;
                }
                Err(message) => self.account_error.set(Some(message)),
            }
        });
    }

    /// Signs in with a token pasted by the person (a server outside development mode).
    pub fn sign_in_with_token(self, token: String) {
        spawn_local(async move {
            let previous = api::token();
            api::set_token(Some(token.clone()));
            match api::me().await {
                Ok(identity) => {
                    let account = Account {
                        user: identity.user.unwrap_or_default(),
                        admin: identity.admin,
                        development: false,
                    };
                    self.signed_in(token, account).await;
                }
                Err(message) => {
                    api::set_token(previous);
                    self.account_error.set(Some(message));
                }
            }
        });
    }

    /// Uses a new credential: a different user starts a fresh stream (their own client and
    /// position); the same user resumes where the stream was.
    async fn signed_in(self, token: String, account: Account) {
        let same_user = self
            .account
            .get_untracked()
            .is_some_and(|current| current.user == account.user);
        api::set_token(Some(token));
        self.account_error.set(None);
        if !same_user {
            self.client_id.set(None);
            self.last_event_id.set(None);
            self.inbox.set(Inbox::default());
        }
        self.account.set(Some(account));
        self.connect();
        self.reload_inbox().await;
    }

    /// Reads the inbox afresh.
    pub async fn reload_inbox(self) {
        if self.account.get_untracked().is_none() {
            return;
        }
        match api::notifications().await {
            Ok(page) => self.inbox.update(|inbox| inbox.load(page)),
            Err(message) => leptos::logging::warn!("cannot read the inbox: {message}"),
        }
    }

    /// Renews an expired development credential and resumes the stream where it stopped.
    fn renew_credential(self) {
        match self.account.get_untracked() {
            Some(account) if account.development => self.sign_in_as(account.user),
            _ => self
                .account_error
                .set(Some("the credential expired; sign in again".into())),
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
            api::token().as_deref(),
            encode,
        );
        match Source::open(&url, move |signal| self.on_signal(signal)) {
            Ok(source) => {
                // With `all_types`, every event comes as `message`; Herald's own keep their
                // names.
                for name in [
                    herald_protocol::system::CONNECTED,
                    herald_protocol::system::RESET,
                    herald_protocol::system::CLOSING,
                    DEFAULT_EVENT_TYPE,
                ] {
                    source.listen(name);
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
                    self.apply_to_inbox(&envelope);
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
                    if closing.reason == CloseReason::CredentialExpired {
                        self.renew_credential();
                    }
                }
                Err(error) => leptos::logging::warn!("{error}"),
            },
        }
    }

    /// Keeps the inbox in step with the user's stream, and shows new notifications.
    fn apply_to_inbox(self, envelope: &Envelope) {
        if envelope.kind == NOTIFICATION {
            if let Ok(notification) = serde_json::from_value::<Notification>(envelope.data.clone())
            {
                let mut new = false;
                self.inbox
                    .update(|inbox| new = inbox.add(notification.clone()));
                if new {
                    alerts::show(&notification);
                }
            }
        } else if envelope.kind == NOTIFICATION_READ
            && let Ok(read) = serde_json::from_value::<NotificationRead>(envelope.data.clone())
        {
            self.inbox.update(|inbox| inbox.apply_read(&read));
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
        CloseReason::Resync => "the server is catching up with its cluster".into(),
    }
}
