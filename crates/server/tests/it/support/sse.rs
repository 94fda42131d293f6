//! [`SseStream`]: a native SSE client reading one response with the protocol's decoder.

use std::collections::VecDeque;

use herald_protocol::Envelope;
use herald_protocol::sse::{Decoder, Item, SseEvent};
use herald_protocol::system::{self, Closing, Connected};

use super::TIMEOUT;

/// A native SSE client reading one response.
pub struct SseStream {
    pub headers: reqwest::header::HeaderMap,
    /// The HTTP version the response came in.
    pub version: reqwest::Version,
    response: reqwest::Response,
    decoder: Decoder,
    items: VecDeque<Item>,
    /// The id in force at the last event handed to the test: what a client that stopped here
    /// would send as `Last-Event-ID` (the decoder may have read further ahead).
    last_event_id: String,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            headers: response.headers().clone(),
            version: response.version(),
            response,
            decoder: Decoder::new(),
            items: VecDeque::new(),
            last_event_id: String::new(),
        }
    }

    /// The next item, or `None` when the server ended the stream.
    pub async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.items.pop_front() {
                if let Item::Event(event) = &item {
                    self.last_event_id.clone_from(&event.id);
                }
                return Some(item);
            }
            let chunk = tokio::time::timeout(TIMEOUT, self.response.chunk())
                .await
                .expect("a frame within the timeout")
                .expect("the stream reads cleanly")?;
            self.items.extend(self.decoder.feed(&chunk));
        }
    }

    /// The next event, or `None` when the stream ends or breaks (its server died, say).
    pub async fn next_event_or_end(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(item) = self.items.pop_front() {
                if let Item::Event(event) = item {
                    self.last_event_id.clone_from(&event.id);
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(TIMEOUT, self.response.chunk())
                .await
                .expect("a frame or the end within the timeout");
            match chunk {
                Ok(Some(chunk)) => self.items.extend(self.decoder.feed(&chunk)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event, skipping comments and `retry`; fails if the stream ends.
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            match self.next_item().await.expect("the stream to go on") {
                Item::Event(event) => return event,
                Item::Comment(_) | Item::Retry(_) => {}
            }
        }
    }

    /// The next event, which must have type `kind`.
    pub async fn expect(&mut self, kind: &str) -> SseEvent {
        let event = self.next_event().await;
        assert_eq!(event.event, kind, "unexpected event: {event:?}");
        event
    }

    pub async fn connected(&mut self) -> Connected {
        serde_json::from_str(&self.expect(system::CONNECTED).await.data).unwrap()
    }

    /// The next event as an envelope, checking that the frame and the envelope agree.
    pub async fn envelope(&mut self) -> Envelope {
        let event = self.next_event().await;
        let envelope: Envelope = serde_json::from_str(&event.data)
            .unwrap_or_else(|err| panic!("event {event:?} carries an envelope: {err}"));
        assert_eq!(envelope.id, event.id, "frame id and envelope id agree");
        assert_eq!(
            envelope.kind, event.event,
            "frame event and envelope type agree"
        );
        envelope
    }

    pub async fn closing(&mut self) -> Closing {
        serde_json::from_str(&self.expect(system::CLOSING).await.data).unwrap()
    }

    /// Asserts the next event is `herald.closing` for a shutdown, asking the client to
    /// reconnect, and that the stream then ends.
    pub async fn assert_closed_for_shutdown(mut self) {
        let closing = self.closing().await;
        assert_eq!(
            (closing.reason, closing.reconnect),
            (system::CloseReason::Shutdown, true)
        );
        self.assert_ends().await;
    }

    /// Asserts the server ends the stream without sending another event.
    pub async fn assert_ends(mut self) {
        while let Some(item) = self.next_item().await {
            assert!(
                !matches!(item, Item::Event(_)),
                "expected the end of the stream, got {item:?}"
            );
        }
    }

    /// What this client would send as `Last-Event-ID` if it reconnected now.
    pub fn last_event_id(&self) -> &str {
        if self.items.is_empty() {
            // Everything decoded was handed out, so the decoder's answer is exact; it includes
            // frames that carry only an id.
            self.decoder.last_event_id()
        } else {
            &self.last_event_id
        }
    }
}
