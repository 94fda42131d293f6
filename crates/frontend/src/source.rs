//! The browser's `EventSource`, with every frame decoded into a `herald_protocol` type.

use std::cell::RefCell;
use std::rc::Rc;

use herald_protocol::Envelope;
use herald_protocol::system::{self, Closing, Connected, Reset};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, EventSource, MessageEvent};

/// What the stream delivered, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    Connected {
        connected: Connected,
        last_event_id: String,
    },
    Event(Envelope),
    Reset(Reset),
    Closing(Closing),
    /// The browser lost the stream; `retrying` says whether it is reconnecting by itself.
    Lost {
        retrying: bool,
    },
    /// A frame whose data did not decode as its type promises.
    Undecodable {
        event: String,
        error: String,
    },
}

type Handler = Rc<RefCell<dyn FnMut(SourceEvent)>>;

/// An open `EventSource` and the listeners attached to it. Dropping it closes the stream.
pub struct Source {
    source: EventSource,
    _messages: Vec<Closure<dyn FnMut(MessageEvent)>>,
    _errors: Closure<dyn FnMut(Event)>,
}

impl Source {
    /// Opens `url` and calls `handler` for Herald's system events and for each of `event_types`.
    pub fn open(
        url: &str,
        event_types: &[&str],
        handler: impl FnMut(SourceEvent) + 'static,
    ) -> Result<Self, String> {
        let source = EventSource::new(url).map_err(|err| format!("cannot open {url}: {err:?}"))?;
        let handler: Handler = Rc::new(RefCell::new(handler));
        let names = [system::CONNECTED, system::RESET, system::CLOSING]
            .into_iter()
            .chain(event_types.iter().copied());
        let mut messages = Vec::new();
        for name in names {
            let handler = Rc::clone(&handler);
            let owned_source = source.clone();
            let name_owned = name.to_owned();
            let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
                let decoded = decode(&name_owned, &message);
                if let SourceEvent::Closing(closing) = &decoded
                    && !closing.reconnect
                {
                    // EventSource reconnects by itself unless told otherwise.
                    owned_source.close();
                }
                (handler.borrow_mut())(decoded);
            });
            source
                .add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
                .map_err(|err| format!("cannot listen for {name}: {err:?}"))?;
            messages.push(listener);
        }
        let errors = {
            let handler = Rc::clone(&handler);
            let owned_source = source.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                let retrying = owned_source.ready_state() == EventSource::CONNECTING;
                (handler.borrow_mut())(SourceEvent::Lost { retrying });
            })
        };
        source.set_onerror(Some(errors.as_ref().unchecked_ref()));
        Ok(Self {
            source,
            _messages: messages,
            _errors: errors,
        })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.source.close();
    }
}

fn decode(event: &str, message: &MessageEvent) -> SourceEvent {
    let data = message.data().as_string().unwrap_or_default();
    let result = match event {
        system::CONNECTED => serde_json::from_str(&data).map(|connected| SourceEvent::Connected {
            connected,
            last_event_id: message.last_event_id(),
        }),
        system::RESET => serde_json::from_str(&data).map(SourceEvent::Reset),
        system::CLOSING => serde_json::from_str(&data).map(SourceEvent::Closing),
        _ => serde_json::from_str(&data).map(SourceEvent::Event),
    };
    result.unwrap_or_else(|err| SourceEvent::Undecodable {
        event: event.to_owned(),
        error: err.to_string(),
    })
}
