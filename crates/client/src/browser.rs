//! The browser driver: runs a subscription's [`Machine`] with an `EventSource`, timers, a
//! `BroadcastChannel`, the Web Locks API and the credential provider, and hands what it
//! delivers to the application's callbacks and event streams.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use herald_protocol::Envelope;
use herald_protocol::names::DEFAULT_EVENT_TYPE;
use herald_protocol::system::{
    CLOSING, CONNECTED, Closing, Connected, PRESENCE, PresenceChange, RESET, Reset,
};
use serde::de::DeserializeOwned;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, EventSource, MessageEvent};

use crate::Machine;
use crate::delivery::Delivery;
use crate::group::{GroupMessage, Member, MemberInput, MemberOutput};
use crate::stream::{self, Report, State, StreamConfig, StreamMachine, Timer, Wants};

/// A credential provider's answer, to come.
pub type CredentialFuture = Pin<Box<dyn Future<Output = Option<String>>>>;
type Provider = Rc<dyn Fn(bool) -> CredentialFuture>;

/// How to subscribe.
#[derive(Clone)]
pub struct Options {
    url: String,
    credential: Option<Provider>,
    client_id: Option<String>,
    last_event_id: Option<String>,
    presence: bool,
    /// `None`: a connection of its own; else the group's name, `""` for the URL's.
    share: Option<String>,
    max_delay: Duration,
    pause_buffer: usize,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("credential", &self.credential.is_some())
            .field("client_id", &self.client_id)
            .field("last_event_id", &self.last_event_id)
            .field("presence", &self.presence)
            .field("share", &self.share)
            .field("max_delay", &self.max_delay)
            .field("pause_buffer", &self.pause_buffer)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            url: String::new(),
            credential: None,
            client_id: None,
            last_event_id: None,
            presence: false,
            share: Some(String::new()),
            max_delay: Duration::from_secs(30),
            pause_buffer: 10_000,
        }
    }
}

impl Options {
    /// Herald's base URL; by default the page's own origin.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Gives the credential (a JWT), or `None` for none. Called before the first connection,
    /// shortly before the credential expires, when the server closes the stream because it
    /// expired, and after the server refused the stream; `renew` is true when the current one
    /// must not be given again.
    #[must_use]
    pub fn credential<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn(bool) -> Fut + 'static,
        Fut: Future<Output = Option<String>> + 'static,
    {
        self.credential = Some(Rc::new(move |renew| {
            Box::pin(provider(renew)) as CredentialFuture
        }));
        self
    }

    /// A client id from an earlier `herald.connected`, to keep its identity.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Resume after this event id.
    #[must_use]
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// Also receive `herald.presence` for the topics.
    #[must_use]
    pub fn presence(mut self, presence: bool) -> Self {
        self.presence = presence;
        self
    }

    /// Share one connection with the other tabs (the default), or not.
    #[must_use]
    pub fn share(mut self, share: bool) -> Self {
        self.share = share.then(String::new);
        self
    }

    /// Share with the tabs of this group only: tabs signed in as different users must not
    /// share, so give each user's tabs a group of their own.
    #[must_use]
    pub fn share_group(mut self, group: impl Into<String>) -> Self {
        self.share = Some(group.into());
        self
    }

    /// The longest wait between two reconnection attempts (default 30 s).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Events kept while paused on a shared connection (default 10,000).
    #[must_use]
    pub fn pause_buffer(mut self, events: usize) -> Self {
        self.pause_buffer = events;
        self
    }
}

/// An event as published, with its data typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    pub id: String,
    pub topic: Option<String>,
    /// The event's type.
    pub kind: String,
    pub data: T,
    pub time: String,
}

/// An event whose data is not a `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    pub envelope: Box<Envelope>,
    pub error: String,
}

fn decode<T: DeserializeOwned>(envelope: &Envelope) -> Result<Event<T>, Undecodable> {
    match serde_json::from_value::<T>(envelope.data.clone()) {
        Ok(data) => Ok(Event {
            id: envelope.id.clone(),
            topic: envelope.topic.clone(),
            kind: envelope.kind.clone(),
            data,
            time: envelope.time.clone(),
        }),
        Err(err) => Err(Undecodable {
            envelope: Box::new(envelope.clone()),
            error: err.to_string(),
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TimerKey {
    Stream(Timer),
    Refresh,
}

/// An open `EventSource` and its listeners, detached when dropped.
struct Source {
    source: EventSource,
    listeners: Vec<(&'static str, MessageListener)>,
    _errors: Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.source.close();
        self.source.set_onerror(None);
        for (name, listener) in &self.listeners {
            let _ = self
                .source
                .remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
    }
}

type Listener = Rc<dyn Fn(&Report)>;
type MessageListener = Closure<dyn FnMut(MessageEvent)>;

struct Core {
    machine: Machine,
    delivery: Delivery,
    group: String,
    source: Option<Source>,
    /// Moved on with each source, so a late callback of an old one is ignored.
    generation: u64,
    timers: HashMap<TimerKey, i32>,
    channel: Option<(BroadcastChannel, MessageListener)>,
    lock_callback: Option<Closure<dyn FnMut(JsValue) -> JsValue>>,
    release: Option<js_sys::Function>,
    provider: Option<Provider>,
    state: State,
    /// Asked to close; `closed` once done.
    closing: bool,
    closed: bool,
    listeners: Vec<Listener>,
    /// Events for the streams of [`Subscription::events`], once one was asked for.
    queue: Option<VecDeque<Envelope>>,
    waker: Option<Waker>,
}

struct Inner {
    core: RefCell<Core>,
    pending: RefCell<VecDeque<MemberInput>>,
    processing: Cell<bool>,
    _page_hide: RefCell<Option<Closure<dyn FnMut()>>>,
}

/// A subscription to some topics. Cloning it gives another handle to the same one.
pub struct Subscription<T> {
    inner: Rc<Inner>,
    _data: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let core = self.inner.core.borrow();
        f.debug_struct("Subscription")
            .field("state", &core.state)
            .field("group", &core.group)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for Subscription<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Rc::clone(&self.inner),
            _data: PhantomData,
        }
    }
}

/// Subscribes to `topics`; see [`Options`].
pub fn subscribe<T: DeserializeOwned + 'static>(
    topics: &[&str],
    options: Options,
) -> Subscription<T> {
    Subscription::new(topics.iter().map(ToString::to_string).collect(), options)
}

fn window() -> Option<web_sys::Window> {
    web_sys::window()
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The name of the group of a Herald URL, as the TypeScript library names it.
fn group_name(url: &str, share: &str) -> String {
    if !share.is_empty() {
        return format!("herald-client:{share}");
    }
    let base = window()
        .and_then(|window| window.location().href().ok())
        .unwrap_or_else(|| "http://localhost/".into());
    let target = if url.is_empty() { "/" } else { url };
    let resolved = web_sys::Url::new_with_base(target, &base)
        .map(|parsed| format!("{}{}", parsed.origin(), parsed.pathname()))
        .unwrap_or_else(|_| target.to_owned());
    format!("herald-client:{resolved}")
}

/// Whether the browser has what sharing needs.
fn can_share() -> bool {
    let Some(window) = window() else {
        return false;
    };
    let locks = js_sys::Reflect::get(&window.navigator(), &JsValue::from_str("locks"));
    locks.is_ok_and(|locks| !locks.is_undefined())
        && js_sys::Reflect::has(&window, &JsValue::from_str("BroadcastChannel")).unwrap_or(false)
}

impl<T: DeserializeOwned + 'static> Subscription<T> {
    fn new(topics: Vec<String>, options: Options) -> Self {
        let mut sorted = topics.clone();
        sorted.sort();
        sorted.dedup();
        let config = StreamConfig {
            url: options.url.clone(),
            wants: Wants {
                topics: sorted,
                presence: options.presence,
            },
            client_id: options.client_id.clone(),
            last_event_id: options.last_event_id.clone(),
            credential: options.credential.is_some(),
            max_delay: options.max_delay,
        };
        let shared = options.share.clone().filter(|_| can_share());
        let group = shared
            .as_deref()
            .map(|share| group_name(&options.url, share))
            .unwrap_or_default();
        let machine = match shared {
            Some(_) => Machine::Shared(Member::new(random_id(), config)),
            None => Machine::Alone(StreamMachine::new(config)),
        };
        let inner = Rc::new(Inner {
            core: RefCell::new(Core {
                machine,
                delivery: Delivery::new(topics, options.presence, options.pause_buffer),
                group,
                source: None,
                generation: 0,
                timers: HashMap::new(),
                channel: None,
                lock_callback: None,
                release: None,
                provider: options.credential,
                state: State::Connecting,
                closing: false,
                closed: false,
                listeners: Vec::new(),
                queue: None,
                waker: None,
            }),
            pending: RefCell::new(VecDeque::new()),
            processing: Cell::new(false),
            _page_hide: RefCell::new(None),
        });
        let subscription = Self {
            inner,
            _data: PhantomData,
        };
        subscription.open_channel();
        subscription.close_on_page_hide();
        // Started once the caller had a chance to add its callbacks.
        let weak = Rc::downgrade(&subscription.inner);
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(inner) = weak.upgrade() {
                feed(&inner, MemberInput::Start);
            }
        });
        subscription
    }

    fn open_channel(&self) {
        let mut core = self.inner.core.borrow_mut();
        if !matches!(core.machine, Machine::Shared(_)) {
            return;
        }
        let Ok(channel) = BroadcastChannel::new(&core.group) else {
            return;
        };
        let weak = Rc::downgrade(&self.inner);
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let text = js_sys::JSON::stringify(&message.data())
                .ok()
                .and_then(|text| text.as_string());
            if let Some(message) =
                text.and_then(|text| serde_json::from_str::<GroupMessage>(&text).ok())
            {
                feed(&inner, MemberInput::Message(message));
            }
        });
        channel.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        core.channel = Some((channel, onmessage));
    }

    fn close_on_page_hide(&self) {
        let Some(window) = window() else {
            return;
        };
        let weak = Rc::downgrade(&self.inner);
        let listener = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                close(&inner);
            }
        });
        let _ =
            window.add_event_listener_with_callback("pagehide", listener.as_ref().unchecked_ref());
        *self.inner._page_hide.borrow_mut() = Some(listener);
    }

    fn listen(&self, listener: impl Fn(&Report) + 'static) {
        self.inner
            .core
            .borrow_mut()
            .listeners
            .push(Rc::new(listener));
    }

    /// Calls `handler` with each event (its data decoded as a `T`, or why it was not).
    pub fn on_event(&self, handler: impl Fn(Result<Event<T>, Undecodable>) + 'static) {
        self.listen(move |report| {
            if let Report::Event(envelope) = report {
                handler(decode(envelope));
            }
        });
    }

    /// Calls `handler` each time the stream opens.
    pub fn on_connected(&self, handler: impl Fn(&Connected) + 'static) {
        self.listen(move |report| {
            if let Report::Connected(connected) = report {
                handler(connected);
            }
        });
    }

    /// Calls `handler` when events were missed and cannot be replayed: the gap, said out loud.
    pub fn on_reset(&self, handler: impl Fn(&Reset) + 'static) {
        self.listen(move |report| {
            if let Report::Reset(reset) = report {
                handler(reset);
            }
        });
    }

    /// Calls `handler` when the server ends the stream, saying whether to come back.
    pub fn on_closing(&self, handler: impl Fn(&Closing) + 'static) {
        self.listen(move |report| {
            if let Report::Closing(closing) = report {
                handler(closing);
            }
        });
    }

    /// Calls `handler` when a user comes to or leaves one of the topics (with presence on).
    pub fn on_presence(&self, handler: impl Fn(&PresenceChange) + 'static) {
        self.listen(move |report| {
            if let Report::Presence(change) = report {
                handler(change);
            }
        });
    }

    /// Calls `handler` when the stream's state changes, with why.
    pub fn on_state(&self, handler: impl Fn(State, Option<&str>) + 'static) {
        self.listen(move |report| {
            if let Report::State(state, detail) = report {
                handler(*state, detail.as_deref());
            }
        });
    }

    /// The events delivered from now on, as a stream that ends when the subscription closes.
    pub fn events(&self) -> Events<T> {
        self.inner
            .core
            .borrow_mut()
            .queue
            .get_or_insert_with(VecDeque::new);
        Events {
            inner: Rc::clone(&self.inner),
            _data: PhantomData,
        }
    }

    pub fn state(&self) -> State {
        self.inner.core.borrow().state
    }

    /// The client id the server issued (kept across reconnections).
    pub fn client_id(&self) -> Option<String> {
        self.inner
            .core
            .borrow()
            .machine
            .client_id()
            .map(str::to_owned)
    }

    /// The last event id received: keep it to resume from it later.
    pub fn last_event_id(&self) -> Option<String> {
        self.inner
            .core
            .borrow()
            .machine
            .last_event_id()
            .map(str::to_owned)
    }

    /// Whether this subscription holds the connection its group shares.
    pub fn is_leader(&self) -> bool {
        self.inner.core.borrow().machine.is_leader()
    }

    /// Asks for other topics; the stream reconnects at once, missing nothing.
    pub fn set_topics(&self, topics: &[String]) {
        let presence = {
            let mut core = self.inner.core.borrow_mut();
            core.delivery.set_topics(topics.to_vec());
            core.delivery.presence()
        };
        let mut sorted = topics.to_vec();
        sorted.sort();
        sorted.dedup();
        feed(
            &self.inner,
            MemberInput::SetWants(Wants {
                topics: sorted,
                presence,
            }),
        );
    }

    /// Stops delivering events until [`Subscription::resume`]; none is lost. A connection of
    /// its own is closed meanwhile and resumes after the last event; on a shared one the events
    /// are kept.
    pub fn pause(&self) {
        let alone = {
            let mut core = self.inner.core.borrow_mut();
            if core.closing || core.delivery.is_paused() {
                return;
            }
            core.delivery.pause();
            matches!(core.machine, Machine::Alone(_))
        };
        if alone {
            feed(&self.inner, MemberInput::Stream(stream::Input::Pause));
        }
    }

    pub fn resume(&self) {
        let (kept, alone) = {
            let mut core = self.inner.core.borrow_mut();
            if !core.delivery.is_paused() {
                return;
            }
            (
                core.delivery.resume(),
                matches!(core.machine, Machine::Alone(_)),
            )
        };
        for report in kept {
            hand_out(&self.inner, &report);
        }
        if alone {
            feed(&self.inner, MemberInput::Stream(stream::Input::Start));
        }
    }

    /// Ends the subscription; a tab leading its group hands the connection to another.
    pub fn close(&self) {
        close(&self.inner);
    }
}

/// The events of a subscription, as a stream.
pub struct Events<T> {
    inner: Rc<Inner>,
    _data: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Events<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> futures_core::Stream for Events<T> {
    type Item = Result<Event<T>, Undecodable>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut core = self.inner.core.borrow_mut();
        if let Some(envelope) = core.queue.as_mut().and_then(VecDeque::pop_front) {
            return Poll::Ready(Some(decode(&envelope)));
        }
        if core.closed {
            return Poll::Ready(None);
        }
        core.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn random_id() -> String {
    format!(
        "{:x}{:x}",
        (js_sys::Math::random() * 2f64.powi(52)) as u64,
        now_ms()
    )
}

/// Takes in what happened, and does what the machine says; inputs that arrive meanwhile (from
/// a callback) wait their turn.
fn feed(inner: &Rc<Inner>, input: MemberInput) {
    inner.pending.borrow_mut().push_back(input);
    if inner.processing.replace(true) {
        return;
    }
    loop {
        let Some(input) = inner.pending.borrow_mut().pop_front() else {
            break;
        };
        let outputs = {
            let mut core = inner.core.borrow_mut();
            if core.closed {
                Vec::new()
            } else {
                core.machine.handle(input, now_ms(), js_sys::Math::random())
            }
        };
        for output in outputs {
            apply(inner, output);
        }
    }
    inner.processing.set(false);
    let closing = {
        let core = inner.core.borrow();
        core.closing && !core.closed
    };
    if closing {
        finish_close(inner);
    }
}

fn apply(inner: &Rc<Inner>, output: MemberOutput) {
    match output {
        MemberOutput::Stream(output) => apply_stream(inner, output),
        MemberOutput::Report(report) => {
            let delivered = {
                let mut core = inner.core.borrow_mut();
                if let Report::State(state, _) = &report {
                    core.state = *state;
                }
                core.delivery.take(report)
            };
            if let Some(report) = delivered {
                hand_out(inner, &report);
            }
        }
        MemberOutput::Post(message) => {
            let core = inner.core.borrow();
            if let (Some((channel, _)), Ok(text)) = (&core.channel, serde_json::to_string(&message))
                && let Ok(object) = js_sys::JSON::parse(&text)
            {
                let _ = channel.post_message(&object);
            }
        }
        MemberOutput::RequestLeadership => request_lock(inner),
        MemberOutput::ReleaseLeadership => {
            let release = inner.core.borrow_mut().release.take();
            if let Some(release) = release {
                let _ = release.call0(&JsValue::NULL);
            }
        }
        MemberOutput::SetRefresh(after) => set_timer(inner, TimerKey::Refresh, after),
    }
}

fn apply_stream(inner: &Rc<Inner>, output: stream::Output) {
    match output {
        stream::Output::Open(url) => open_source(inner, &url),
        stream::Output::CloseSource => {
            let mut core = inner.core.borrow_mut();
            core.generation += 1;
            core.source = None;
        }
        stream::Output::SetTimer(timer, after) => set_timer(inner, TimerKey::Stream(timer), after),
        stream::Output::CancelTimer(timer) => cancel_timer(inner, TimerKey::Stream(timer)),
        stream::Output::AskCredential { renew } => {
            let provider = inner.core.borrow().provider.clone();
            let weak = Rc::downgrade(inner);
            wasm_bindgen_futures::spawn_local(async move {
                let token = match provider {
                    Some(provider) => provider(renew).await,
                    None => None,
                };
                if let Some(inner) = weak.upgrade() {
                    feed(
                        &inner,
                        MemberInput::Stream(stream::Input::Credential(token)),
                    );
                }
            });
        }
        stream::Output::Report(report) => apply(inner, MemberOutput::Report(report)),
    }
}

/// Gives a report to the callbacks and the event streams, holding no borrow while they run.
fn hand_out(inner: &Rc<Inner>, report: &Report) {
    let listeners = {
        let mut core = inner.core.borrow_mut();
        if let (Report::Event(envelope), Some(queue)) = (report, core.queue.as_mut()) {
            queue.push_back(envelope.clone());
            if let Some(waker) = core.waker.take() {
                waker.wake();
            }
        }
        core.listeners.clone()
    };
    for listener in listeners {
        listener(report);
    }
}

fn open_source(inner: &Rc<Inner>, url: &str) {
    let generation = {
        let mut core = inner.core.borrow_mut();
        core.generation += 1;
        core.source = None;
        core.generation
    };
    let Ok(source) = EventSource::new(url) else {
        feed(
            inner,
            MemberInput::Stream(stream::Input::Error { refused: true }),
        );
        return;
    };
    let weak: Weak<Inner> = Rc::downgrade(inner);
    let current = move |weak: &Weak<Inner>| {
        weak.upgrade()
            .filter(|inner| inner.core.borrow().generation == generation)
    };
    let mut listeners = Vec::new();
    for name in [DEFAULT_EVENT_TYPE, CONNECTED, RESET, CLOSING, PRESENCE] {
        let weak = weak.clone();
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            if let Some(inner) = current(&weak) {
                let input = stream::Input::Frame {
                    event: name.to_owned(),
                    data: message.data().as_string().unwrap_or_default(),
                    last_event_id: message.last_event_id(),
                };
                feed(&inner, MemberInput::Stream(input));
            }
        });
        let _ = source.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        listeners.push((name, listener));
    }
    let errors = {
        let source = source.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            // A frame named `error` reaches `onerror` too, as a MessageEvent: not a failure.
            if event.dyn_ref::<MessageEvent>().is_some() {
                return;
            }
            if let Some(inner) = current(&weak) {
                let refused = source.ready_state() == EventSource::CLOSED;
                feed(
                    &inner,
                    MemberInput::Stream(stream::Input::Error { refused }),
                );
            }
        })
    };
    source.set_onerror(Some(errors.as_ref().unchecked_ref()));
    inner.core.borrow_mut().source = Some(Source {
        source,
        listeners,
        _errors: errors,
    });
}

fn set_timer(inner: &Rc<Inner>, key: TimerKey, after: Duration) {
    cancel_timer(inner, key);
    let Some(window) = window() else {
        return;
    };
    let weak = Rc::downgrade(inner);
    let callback = Closure::once_into_js(move || {
        if let Some(inner) = weak.upgrade() {
            inner.core.borrow_mut().timers.remove(&key);
            let input = match key {
                TimerKey::Stream(timer) => MemberInput::Stream(stream::Input::Timer(timer)),
                TimerKey::Refresh => MemberInput::Refresh,
            };
            feed(&inner, input);
        }
    });
    let millis = i32::try_from(after.as_millis()).unwrap_or(i32::MAX);
    if let Ok(handle) = window
        .set_timeout_with_callback_and_timeout_and_arguments_0(callback.unchecked_ref(), millis)
    {
        inner.core.borrow_mut().timers.insert(key, handle);
    }
}

fn cancel_timer(inner: &Rc<Inner>, key: TimerKey) {
    let handle = inner.core.borrow_mut().timers.remove(&key);
    if let (Some(handle), Some(window)) = (handle, window()) {
        window.clear_timeout_with_handle(handle);
    }
}

/// Asks for the group's Web Lock; while this member holds it, it leads. The lock is held until
/// the promise given to `navigator.locks.request` settles, which `ReleaseLeadership` does (and
/// the browser, when the tab goes).
fn request_lock(inner: &Rc<Inner>) {
    let Some(window) = window() else {
        return;
    };
    let Ok(locks) = js_sys::Reflect::get(&window.navigator(), &JsValue::from_str("locks")) else {
        return;
    };
    let Ok(request) = js_sys::Reflect::get(&locks, &JsValue::from_str("request"))
        .and_then(|request| request.dyn_into::<js_sys::Function>())
    else {
        return;
    };
    let weak = Rc::downgrade(inner);
    let callback = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |_lock: JsValue| {
        let Some(inner) = weak.upgrade().filter(|inner| !inner.core.borrow().closing) else {
            return js_sys::Promise::resolve(&JsValue::UNDEFINED).into();
        };
        let held = js_sys::Promise::new(&mut |resolve, _reject| {
            inner.core.borrow_mut().release = Some(resolve);
        });
        feed(&inner, MemberInput::Granted);
        held.into()
    });
    let group = JsValue::from_str(&inner.core.borrow().group);
    let _ = request.call2(&locks, &group, callback.as_ref().unchecked_ref());
    inner.core.borrow_mut().lock_callback = Some(callback);
}

/// Closes the subscription: the machine says goodbye first (when called from a callback, once
/// the input being handled is done), then everything is let go.
fn close(inner: &Rc<Inner>) {
    {
        let mut core = inner.core.borrow_mut();
        if core.closing {
            return;
        }
        core.closing = true;
    }
    feed(inner, MemberInput::Close);
}

fn finish_close(inner: &Rc<Inner>) {
    let (was, waker, channel) = {
        let mut core = inner.core.borrow_mut();
        core.closed = true;
        core.generation += 1;
        core.source = None;
        let was = std::mem::replace(&mut core.state, State::Closed);
        (was, core.waker.take(), core.channel.take())
    };
    for key in [
        TimerKey::Stream(Timer::Reconnect),
        TimerKey::Stream(Timer::Renew),
        TimerKey::Refresh,
    ] {
        cancel_timer(inner, key);
    }
    if let Some((channel, _)) = channel {
        channel.close();
    }
    if let Some(waker) = waker {
        waker.wake();
    }
    if was != State::Closed {
        hand_out(inner, &Report::State(State::Closed, None));
    }
}
