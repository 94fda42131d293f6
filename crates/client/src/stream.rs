//! [`StreamMachine`]: one stream from Herald, as a machine that takes what happened and says
//! what to do, so that its rules are the same wherever it runs and are tested natively. It
//! opens `/events`, reconnects with the server's delay and a jittered back-off, resumes after
//! the last event id with the same client id, renews the credential, and stops for good when
//! the server says not to come back.

use std::time::Duration;

use herald_protocol::Envelope;
use herald_protocol::names::DEFAULT_EVENT_TYPE;
use herald_protocol::system::{
    CLOSING, CONNECTED, CloseReason, Closing, Connected, PRESENCE, PresenceChange, RESET, Reset,
};
use serde::{Deserialize, Serialize};

use crate::ids::is_after;

/// Where a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Connecting,
    Open,
    /// Lost, or told to come back: waiting to reconnect.
    Reconnecting,
    /// Closed until resumed; it resumes where it stopped.
    Paused,
    /// Closed for good (the server said not to come back, or the subscription was closed).
    Closed,
}

impl State {
    /// The name the TypeScript library uses too.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Open => "open",
            Self::Reconnecting => "reconnecting",
            Self::Paused => "paused",
            Self::Closed => "closed",
        }
    }
}

/// What a stream reports to its subscriber, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A published event, after the last one, never twice.
    Event(Envelope),
    Connected(Connected),
    Reset(Reset),
    Closing(Closing),
    Presence(PresenceChange),
    /// The state changed; the detail says why (`lost`, `refused`, a close reason).
    State(State, Option<String>),
}

/// What a stream asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Wants {
    pub topics: Vec<String>,
    pub presence: bool,
}

/// How a stream is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Herald's base URL (`https://events.example.com`), or `""` for the page's origin.
    pub url: String,
    pub wants: Wants,
    pub client_id: Option<String>,
    pub last_event_id: Option<String>,
    /// Whether a credential provider is there to ask.
    pub credential: bool,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
}

/// The timers a stream sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    Reconnect,
    Renew,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Start,
    Pause,
    Close,
    SetWants(Wants),
    /// A frame arrived on the open source: its event name, data and `lastEventId`.
    Frame {
        event: String,
        data: String,
        last_event_id: String,
    },
    /// The source failed: `refused` when the browser gave up on it (an HTTP error), else the
    /// connection dropped.
    Error {
        refused: bool,
    },
    Timer(Timer),
    /// The credential provider's answer.
    Credential(Option<String>),
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Close the current source, if any, and open one on this URL.
    Open(String),
    /// Close the current source.
    CloseSource,
    SetTimer(Timer, Duration),
    CancelTimer(Timer),
    /// Ask the credential provider; `renew` when the current one must not be given again (an
    /// answer of `None` then ends the stream).
    AskCredential {
        renew: bool,
    },
    Report(Report),
}

/// The delay before the first reconnection when the server has not said.
const DEFAULT_RETRY: Duration = Duration::from_secs(3);
/// How long before its expiry a credential is renewed, at most.
const RENEW_AHEAD: Duration = Duration::from_secs(60);

/// Why the provider is being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asking {
    /// To open the stream; `renew` when the current credential must not be given again.
    ToOpen { renew: bool },
    /// To replace a credential about to expire, on a stream that stays open meanwhile.
    ToRenew,
}

#[derive(Debug)]
pub struct StreamMachine {
    config: StreamConfig,
    state: State,
    token: Option<String>,
    retry: Duration,
    attempt: u32,
    refusals: u32,
    /// Whether the next attempt asks for a new credential.
    renew_next: bool,
    asking: Option<Asking>,
}

impl StreamMachine {
    pub fn new(config: StreamConfig) -> Self {
        Self {
            config,
            state: State::Paused,
            token: None,
            retry: DEFAULT_RETRY,
            attempt: 0,
            refusals: 0,
            renew_next: false,
            asking: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn client_id(&self) -> Option<&str> {
        self.config.client_id.as_deref()
    }

    pub fn last_event_id(&self) -> Option<&str> {
        self.config.last_event_id.as_deref()
    }

    /// Takes in what happened at `now_ms` (milliseconds since the epoch); `random` is a number
    /// in [0, 1) for the jitter. Returns what to do, in order.
    pub fn handle(&mut self, input: Input, now_ms: u64, random: f64) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                if self.state == State::Paused {
                    self.set_state(State::Connecting, None, &mut out);
                    self.open(false, &mut out);
                }
            }
            Input::Pause => {
                if self.state != State::Closed {
                    self.drop_source(&mut out);
                    self.set_state(State::Paused, None, &mut out);
                }
            }
            Input::Close => {
                if self.state != State::Closed {
                    self.drop_source(&mut out);
                    self.set_state(State::Closed, None, &mut out);
                }
            }
            Input::SetWants(wants) => self.set_wants(wants, &mut out),
            Input::Frame {
                event,
                data,
                last_event_id,
            } => self.on_frame(&event, &data, last_event_id, now_ms, &mut out),
            Input::Error { refused } => self.on_error(refused, random, &mut out),
            Input::Timer(Timer::Reconnect) => {
                if self.state == State::Reconnecting {
                    let renew = std::mem::take(&mut self.renew_next);
                    self.open(renew, &mut out);
                }
            }
            Input::Timer(Timer::Renew) => {
                if self.state == State::Open && self.config.credential && self.asking.is_none() {
                    self.asking = Some(Asking::ToRenew);
                    out.push(Output::AskCredential { renew: true });
                }
            }
            Input::Credential(token) => self.on_credential(token, &mut out),
        }
        out
    }

    fn set_state(&mut self, state: State, detail: Option<String>, out: &mut Vec<Output>) {
        self.state = state;
        out.push(Output::Report(Report::State(state, detail)));
    }

    fn drop_source(&mut self, out: &mut Vec<Output>) {
        self.asking = None;
        out.push(Output::CloseSource);
        out.push(Output::CancelTimer(Timer::Reconnect));
        out.push(Output::CancelTimer(Timer::Renew));
    }

    /// Asks for a credential first when one is needed, else opens the source.
    fn open(&mut self, renew: bool, out: &mut Vec<Output>) {
        if self.config.credential && (renew || self.token.is_none()) {
            self.asking = Some(Asking::ToOpen { renew });
            out.push(Output::AskCredential { renew });
            return;
        }
        out.push(Output::Open(self.url()));
    }

    /// The `/events` URL for what is wanted, keeping the client id and resuming after the last
    /// event id.
    pub fn url(&self) -> String {
        events_url(
            &self.config.url,
            &self.config.wants,
            self.config.client_id.as_deref(),
            self.config.last_event_id.as_deref(),
            self.token.as_deref(),
        )
    }

    fn set_wants(&mut self, wants: Wants, out: &mut Vec<Output>) {
        if wants == self.config.wants {
            return;
        }
        self.config.wants = wants;
        if matches!(
            self.state,
            State::Open | State::Connecting | State::Reconnecting
        ) {
            self.drop_source(out);
            self.set_state(State::Connecting, None, out);
            self.open(false, out);
        }
    }

    fn on_credential(&mut self, token: Option<String>, out: &mut Vec<Output>) {
        match self.asking.take() {
            // Nothing to replace the credential with: the stream ends rather than going on
            // anonymously.
            Some(Asking::ToOpen { renew: true }) if token.is_none() => {
                self.set_state(State::Closed, Some("no credential".into()), out);
            }
            Some(Asking::ToOpen { .. }) => {
                self.token = token;
                out.push(Output::Open(self.url()));
            }
            Some(Asking::ToRenew) => {
                if token.is_none() || token == self.token || self.state != State::Open {
                    return;
                }
                self.token = token;
                // The new stream resumes after the last event: nothing is missed or repeated.
                self.drop_source(out);
                self.set_state(State::Connecting, Some("credential renewed".into()), out);
                out.push(Output::Open(self.url()));
            }
            None => {}
        }
    }

    fn on_frame(
        &mut self,
        event: &str,
        data: &str,
        last_event_id: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if matches!(self.state, State::Closed | State::Paused) {
            return;
        }
        match event {
            DEFAULT_EVENT_TYPE => {
                let Ok(envelope) = serde_json::from_str::<Envelope>(data) else {
                    return;
                };
                if !is_after(&envelope.id, self.config.last_event_id.as_deref()) {
                    return;
                }
                self.config.last_event_id = Some(envelope.id.clone());
                out.push(Output::Report(Report::Event(envelope)));
            }
            CONNECTED => {
                let Ok(connected) = serde_json::from_str::<Connected>(data) else {
                    return;
                };
                self.config.client_id = Some(connected.client_id.clone());
                if connected.retry_ms > 0 {
                    self.retry = Duration::from_millis(connected.retry_ms);
                }
                // Without a last event id, the greeting names the position it starts from.
                if !last_event_id.is_empty()
                    && is_after(&last_event_id, self.config.last_event_id.as_deref())
                {
                    self.config.last_event_id = Some(last_event_id);
                }
                self.attempt = 0;
                self.refusals = 0;
                self.schedule_renewal(now_ms, out);
                out.push(Output::Report(Report::Connected(connected)));
                self.set_state(State::Open, None, out);
            }
            RESET => {
                if let Ok(reset) = serde_json::from_str::<Reset>(data) {
                    self.config.last_event_id = Some(reset.latest_id.clone());
                    out.push(Output::Report(Report::Reset(reset)));
                }
            }
            PRESENCE => {
                if let Ok(change) = serde_json::from_str::<PresenceChange>(data) {
                    out.push(Output::Report(Report::Presence(change)));
                }
            }
            CLOSING => {
                if let Ok(closing) = serde_json::from_str::<Closing>(data) {
                    self.on_closing(closing, out);
                }
            }
            _ => {}
        }
    }

    fn on_closing(&mut self, closing: Closing, out: &mut Vec<Output>) {
        let reason = closing.reason;
        out.push(Output::Report(Report::Closing(closing.clone())));
        // The browser would come back by itself with the URL it was opened with.
        self.drop_source(out);
        if reason == CloseReason::CredentialExpired && self.config.credential {
            self.set_state(State::Reconnecting, Some(reason.as_str().into()), out);
            self.open(true, out);
        } else if closing.reconnect {
            self.reconnect_later(reason.as_str(), 0.5, out);
        } else {
            self.set_state(State::Closed, Some(reason.as_str().into()), out);
        }
    }

    fn on_error(&mut self, refused: bool, random: f64, out: &mut Vec<Output>) {
        if matches!(self.state, State::Closed | State::Paused) {
            return;
        }
        self.drop_source(out);
        if refused {
            // Refused: most likely the server forgot the client id, else the credential is no
            // good.
            self.refusals += 1;
            if self.refusals == 1 && self.config.client_id.is_some() {
                self.config.client_id = None;
            } else {
                self.renew_next = self.config.credential;
            }
        }
        self.reconnect_later(if refused { "refused" } else { "lost" }, random, out);
    }

    fn reconnect_later(&mut self, detail: &str, random: f64, out: &mut Vec<Output>) {
        self.attempt += 1;
        self.set_state(State::Reconnecting, Some(detail.into()), out);
        let delay = backoff(self.attempt, self.retry, self.config.max_delay, random);
        out.push(Output::SetTimer(Timer::Reconnect, delay));
    }

    /// Renews the credential shortly before it expires.
    fn schedule_renewal(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        out.push(Output::CancelTimer(Timer::Renew));
        if !self.config.credential {
            return;
        }
        let Some(expiry) = self.token.as_deref().and_then(expiry_ms) else {
            return;
        };
        let left = expiry.saturating_sub(now_ms);
        let ahead = (left / 10).min(RENEW_AHEAD.as_millis() as u64);
        out.push(Output::SetTimer(
            Timer::Renew,
            Duration::from_millis(left - ahead),
        ));
    }
}

/// The `/events` URL for `wants`, keeping `client_id` and resuming after `last_event_id`.
pub fn events_url(
    base: &str,
    wants: &Wants,
    client_id: Option<&str>,
    last_event_id: Option<&str>,
    token: Option<&str>,
) -> String {
    let mut query: Vec<String> = wants
        .topics
        .iter()
        .map(|topic| format!("topic={}", encode(topic)))
        .collect();
    if let Some(client) = client_id {
        query.push(format!("client_id={}", encode(client)));
    }
    if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
        query.push(format!("last_event_id={}", encode(id)));
    }
    // EventSource cannot send an Authorization header; the query parameter carries the token.
    if let Some(token) = token {
        query.push(format!("access_token={}", encode(token)));
    }
    if wants.presence {
        query.push("presence=true".to_owned());
    }
    // Every event arrives as `message`, whatever its type: none needs naming in advance.
    query.push("all_types=true".to_owned());
    format!("{}/events?{}", base.trim_end_matches('/'), query.join("&"))
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The delay before reconnection attempt `attempt` (1 for the first): the server's delay, then
/// doubling up to `max`, each time half to all of it at random.
pub fn backoff(attempt: u32, retry: Duration, max: Duration, random: f64) -> Duration {
    if attempt <= 1 {
        return retry.min(max);
    }
    let doubled = retry.saturating_mul(1 << (attempt - 1).min(16)).min(max);
    doubled.mul_f64(0.5 + random.clamp(0.0, 1.0) / 2.0)
}

/// The `exp` claim of a JWT, in milliseconds, if it has one.
pub fn expiry_ms(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&json).ok()?["exp"].as_u64()?;
    exp.checked_mul(1000)
}
