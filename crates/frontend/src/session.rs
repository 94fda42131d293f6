//! [`Session`]: the console's connection to `/events`, tying the model in `state` to a
//! [`Source`]. All fields are arena handles, so a `Session` is `Copy` and every view shares it.

use std::time::Duration;

use herald_client::{Options, State, Subscription};
use herald_protocol::Envelope;
use herald_protocol::api::DevUser;
use herald_protocol::payloads::{NOTIFICATION, NOTIFICATION_READ, Notification, NotificationRead};
use herald_protocol::system::{Connected, Reset, ResetReason};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

use crate::state::{Account, ConnectionState, EventLog, Inbox, LogEntry, LogFilter};
use crate::{alerts, api};

/// How many events the log keeps.
const LOG_CAPACITY: usize = 500;
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
    /// The stream, shared with the console's other tabs signed in as the same user.
    subscription: StoredValue<Option<Subscription<Value>>, LocalStorage>,
    /// Reconnection attempts since the stream was last open.
    attempts: StoredValue<u32, LocalStorage>,
    incoming: StoredValue<Vec<LogEntry>, LocalStorage>,
    flush_scheduled: StoredValue<bool, LocalStorage>,
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
            subscription: StoredValue::new_local(None),
            attempts: StoredValue::new_local(0),
            incoming: StoredValue::new_local(Vec::new()),
            flush_scheduled: StoredValue::new_local(false),
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
        self.close_subscription();
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

    /// The credential for the stream: the current token; asked to renew, a development
    /// session signs in again as the same demo user, and any other has none to give (the
    /// stream ends, and the person is asked to sign in again).
    async fn credential(self, renew: bool) -> Option<String> {
        if renew {
            let account = self.account.get_untracked()?;
            if !account.development {
                self.account_error
                    .set(Some("the credential expired; sign in again".into()));
                return None;
            }
            let answer = api::dev_token(&account.user).await.ok()?;
            api::set_token(Some(answer.token));
        }
        api::token()
    }

    /// Opens the stream, keeping the client id and resuming after the last event id.
    pub fn connect(self) {
        self.close_subscription();
        let user = self
            .account
            .get_untracked()
            .map_or_else(|| "anonymous".to_owned(), |account| account.user);
        let mut options = Options::default()
            // The console's tabs signed in as one user share one connection.
            .share_group(format!("console:{user}"))
            .credential(move |renew| self.credential(renew));
        if let Some(client_id) = self.client_id.get_untracked() {
            options = options.client_id(client_id);
        }
        if let Some(id) = self.last_event_id.get_untracked() {
            options = options.last_event_id(id);
        }
        let topics = self.topics.get_untracked();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let subscription = herald_client::subscribe::<Value>(&topics, options);
        subscription.on_event(move |event| match event {
            Ok(event) => self.on_envelope(Envelope {
                id: event.id,
                topic: event.topic,
                kind: event.kind,
                data: event.data,
                time: event.time,
            }),
            Err(undecodable) => leptos::logging::warn!("{}", undecodable.error),
        });
        subscription.on_connected(move |connected| self.on_connected(connected));
        subscription.on_reset(move |reset| self.on_reset(reset));
        subscription.on_state(move |state, detail| self.on_state(state, detail));
        self.attempts.set_value(0);
        self.state.set(ConnectionState::Connecting);
        self.subscription.set_value(Some(subscription));
    }

    /// Closes the stream on purpose: the state says so, and it is not an error.
    pub fn disconnect(self) {
        self.close_subscription();
        self.state.set(ConnectionState::ClosedByYou);
    }

    /// Replaces the topics; a live stream reconnects with its last event id, so nothing is missed.
    pub fn set_topics(self, topics: Vec<String>) {
        self.topics.set(topics.clone());
        if self.state.get_untracked().wants_stream() {
            self.subscription.with_value(|subscription| {
                if let Some(subscription) = subscription {
                    subscription.set_topics(&topics);
                }
            });
        }
    }

    fn close_subscription(self) {
        if let Some(subscription) = self.subscription.try_update_value(Option::take).flatten() {
            // Position and identity are kept for the next stream.
            self.client_id.set(subscription.client_id());
            if let Some(id) = subscription.last_event_id() {
                self.last_event_id.set(Some(id));
            }
            subscription.close();
        }
    }

    fn on_state(self, state: State, detail: Option<&str>) {
        match state {
            State::Open => {
                self.attempts.set_value(0);
                // A tab that joined a shared stream learns its client from the leading tab.
                let client_id = self.subscription.with_value(|subscription| {
                    subscription.as_ref().and_then(Subscription::client_id)
                });
                if client_id.is_some() && client_id != self.client_id.get_untracked() {
                    self.client_id.set(client_id);
                }
            }
            State::Reconnecting => self.attempts.update_value(|attempts| *attempts += 1),
            _ => {}
        }
        // A close asked for here is shown by `disconnect`.
        if state == State::Closed && detail.is_none() {
            return;
        }
        self.state.set(ConnectionState::from_client(
            state,
            detail,
            self.attempts.get_value(),
        ));
    }

    fn on_connected(self, connected: &Connected) {
        self.client_id.set(Some(connected.client_id.clone()));
        let position = self
            .subscription
            .with_value(|subscription| subscription.as_ref().and_then(Subscription::last_event_id));
        if position.is_some() {
            self.last_event_id.set(position);
        }
    }

    fn on_envelope(self, envelope: Envelope) {
        self.last_event_id.set(Some(envelope.id.clone()));
        self.apply_to_inbox(&envelope);
        self.enqueue(LogEntry::Event(envelope));
    }

    fn on_reset(self, reset: &Reset) {
        self.last_event_id.set(Some(reset.latest_id.clone()));
        let reason = match reset.reason {
            ResetReason::UnknownId => "the last event id was unknown",
            ResetReason::HistoryExpired => "missed events are no longer kept",
        };
        self.enqueue(LogEntry::Gap {
            reason: reason.to_owned(),
        });
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
