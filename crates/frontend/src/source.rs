//! The browser's `EventSource`, wrapped: listeners are added by name and removed with it.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, EventSource, MessageEvent};

/// One frame as the browser delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub event: String,
    pub data: String,
    pub last_event_id: String,
}

/// What the stream reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSignal {
    Message(RawMessage),
    /// The browser lost or could not open the stream; `retrying` when the browser would reconnect
    /// by itself (the session closes it and reconnects with its own URL instead).
    Error {
        retrying: bool,
    },
}

type Handler = Rc<RefCell<dyn FnMut(SourceSignal)>>;
/// A listener attached to the stream, kept with its event name so it can be removed.
type Listener = (String, Closure<dyn FnMut(MessageEvent)>);

/// An open `EventSource`. Dropping it closes the stream and releases its listeners.
pub struct Source {
    source: EventSource,
    handler: Handler,
    listeners: RefCell<Vec<Listener>>,
    _errors: Closure<dyn FnMut(Event)>,
}

impl Source {
    /// Opens `url`; frames of the event types passed to [`Source::listen`] reach `handler`.
    pub fn open(url: &str, handler: impl FnMut(SourceSignal) + 'static) -> Result<Self, String> {
        let source = EventSource::new(url).map_err(|err| format!("cannot open {url}: {err:?}"))?;
        let handler: Handler = Rc::new(RefCell::new(handler));
        let errors = {
            let handler = Rc::clone(&handler);
            let source = source.clone();
            Closure::<dyn FnMut(Event)>::new(move |event: Event| {
                // A frame named `error` reaches `onerror` too, as a MessageEvent: not a failure.
                if event.dyn_ref::<MessageEvent>().is_some() {
                    return;
                }
                let retrying = source.ready_state() == EventSource::CONNECTING;
                (handler.borrow_mut())(SourceSignal::Error { retrying });
            })
        };
        source.set_onerror(Some(errors.as_ref().unchecked_ref()));
        Ok(Self {
            source,
            handler,
            listeners: RefCell::new(Vec::new()),
            _errors: errors,
        })
    }

    /// Delivers frames named `event` to the handler; a name already listened for is ignored.
    pub fn listen(&self, event: &str) {
        if self
            .listeners
            .borrow()
            .iter()
            .any(|(name, _)| name == event)
        {
            return;
        }
        let handler = Rc::clone(&self.handler);
        let name = event.to_owned();
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            let raw = RawMessage {
                event: name.clone(),
                data: message.data().as_string().unwrap_or_default(),
                last_event_id: message.last_event_id(),
            };
            (handler.borrow_mut())(SourceSignal::Message(raw));
        });
        if self
            .source
            .add_event_listener_with_callback(event, listener.as_ref().unchecked_ref())
            .is_ok()
        {
            self.listeners
                .borrow_mut()
                .push((event.to_owned(), listener));
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.source.close();
        self.source.set_onerror(None);
        for (name, listener) in self.listeners.borrow().iter() {
            let _ = self
                .source
                .remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
    }
}
