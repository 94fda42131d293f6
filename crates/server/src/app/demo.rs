//! The demos the product was specified from: a countdown and a token-by-token chat answer,
//! each a fixed sequence of frames written at a pace; and the administrators' demo, where
//! placing an order notifies every connected administrator.
//!
//! Each demo frame has an id, so a client that reconnects with `Last-Event-ID` resumes after
//! it, and one that already saw the end gets no stream at all (the HTTP edge answers
//! `204 No Content`, which tells `EventSource` to stop reconnecting).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::Stream;
use herald_protocol::api::{OrderPlaced, OrderReceipt};
use herald_protocol::payloads::{
    CHAT_DELTA, CHAT_DONE, CHAT_DONE_SENTINEL, CHAT_ERROR, COUNTDOWN_EVENT, ChatDelta, ChatDone,
    ChatError, countdown_message,
};
use herald_protocol::sse::Frame;
use herald_protocol::system::CloseReason;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::{App, AppError, Target};
use crate::hub::frames::{closing, encode, to_json};
use crate::ids::random_u32;
use crate::metrics::{DemoLabels, Metrics};
use crate::storage::NewInboxItem;

const MAX_COUNT: u32 = 1000;
const MIN_INTERVAL_MS: u64 = 10;
const MAX_INTERVAL_MS: u64 = 60_000;
const MAX_PROMPT_BYTES: usize = 4096;

/// The topic administrators watch in the orders demo.
pub const ORDERS_TOPIC: &str = "admin/orders";
/// The event type of a placed order.
pub const ORDER_PLACED: &str = "order.placed";

impl App {
    /// `count` events named `customEvent` with data `"Message 1"` ... `"Message N"`,
    /// `interval_ms` apart, after the frame `resume_after` names; `None` when the client saw
    /// them all.
    pub fn countdown(
        &self,
        count: u32,
        interval_ms: u64,
        resume_after: usize,
    ) -> Result<Option<DemoStream>, AppError> {
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(AppError::invalid(
                "invalid_parameter",
                format!("count must be between 1 and {MAX_COUNT}"),
            ));
        }
        check_interval("interval_ms", interval_ms)?;
        let frames = (1..=count)
            .map(|n| {
                let data = to_json(&countdown_message(n));
                encode(
                    Frame::new()
                        .id(&n.to_string())
                        .event(COUNTDOWN_EVENT)
                        .data(&data),
                )
            })
            .collect();
        Ok(self.demo_stream("countdown", frames, interval_ms, resume_after))
    }

    /// A chat-style answer to `prompt`: `chat.delta` pieces `delay_ms` apart, then `chat.done`
    /// and a final `data: [DONE]`; with `fail_after`, a simulated upstream failure after that
    /// many pieces ends it with `chat.error` instead. The answer is written into a response
    /// stream, and this reads it, in the frames above, skipping the `resume_after` a
    /// reconnecting client saw; `None` when it saw them all.
    pub async fn chat(
        &self,
        prompt: &str,
        delay_ms: u64,
        fail_after: Option<usize>,
        resume_after: usize,
    ) -> Result<Option<impl Stream<Item = Bytes> + Send + 'static>, AppError> {
        let pieces = answer_pieces(checked_prompt(prompt)?).len();
        check_interval("delay_ms", delay_ms)?;
        let frames = match fail_after {
            Some(n) => n.min(pieces) + 1,
            None => pieces + 2,
        };
        if resume_after >= frames {
            return Ok(None);
        }
        let id = self.demo_answer(prompt, delay_ms, fail_after).await?;
        let stream = self.response_stream(&id).await?;
        let framer = ChatFrames {
            sent: 0,
            skip: resume_after,
        };
        Ok(Some(self.read_with(
            stream,
            0,
            Bytes::from_static(b":\n\n"),
            framer,
        )))
    }

    /// The chat demo's answer to `prompt` as a response stream, written in the background one
    /// piece every `delay_ms` (an upstream failure after `fail_after` ends it as an error); the
    /// stream's id. A reader that reloads mid-answer reads it whole from the stream.
    pub async fn demo_answer(
        &self,
        prompt: &str,
        delay_ms: u64,
        fail_after: Option<usize>,
    ) -> Result<String, AppError> {
        let prompt = checked_prompt(prompt)?;
        check_interval("delay_ms", delay_ms)?;
        let request = herald_protocol::streams::CreateStream {
            ttl: Some(serde_json::json!(DEMO_ANSWER_TTL_SECS)),
            ..Default::default()
        };
        let id = crate::ids::ClientId::generate().to_string();
        let id = self.create_stream(id, DEMO_OWNER, &request).await?;
        let pieces = answer_pieces(prompt);
        let app = self.clone();
        let answer = id.clone();
        tokio::spawn(async move {
            let shutdown = app.inner.shutdown.clone();
            tokio::select! {
                () = app.write_answer(&answer, pieces, delay_ms, fail_after) => {}
                () = shutdown.cancelled() => {}
            }
        });
        Ok(id)
    }

    async fn write_answer(
        &self,
        id: &str,
        pieces: Vec<String>,
        delay_ms: u64,
        fail_after: Option<usize>,
    ) {
        let failure_point = fail_after.map(|n| n.min(pieces.len()));
        for piece in pieces.into_iter().take(failure_point.unwrap_or(usize::MAX)) {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let piece = vec![serde_json::Value::String(piece)];
            if self
                .append_chunks(id, herald_protocol::streams::StreamKind::Text, piece)
                .await
                .is_err()
            {
                // Cancelled, or gone.
                return;
            }
        }
        let (status, result) = match failure_point {
            Some(_) => (
                herald_protocol::streams::StreamStatus::Error,
                serde_json::json!({"reason": "the model stopped answering; try again"}),
            ),
            None => (
                herald_protocol::streams::StreamStatus::Done,
                serde_json::json!({"finish_reason": "stop"}),
            ),
        };
        let _ = self.end_stream(id, status, Some(result)).await;
    }

    fn demo_stream(
        &self,
        demo: &'static str,
        frames: Vec<Bytes>,
        interval_ms: u64,
        resume_after: usize,
    ) -> Option<DemoStream> {
        let mut guard = EarlyStop {
            demo,
            finished: false,
            metrics: Arc::clone(&self.inner.metrics),
        };
        if resume_after >= frames.len() {
            guard.finished = true;
            return None;
        }
        Some(DemoStream {
            frames,
            next: resume_after,
            interval: Duration::from_millis(interval_ms),
            ends_at: self
                .inner
                .settings
                .connection_lifetime
                .map(|lifetime| tokio::time::Instant::now() + lifetime),
            shutdown: self.inner.shutdown.clone(),
            guard,
        })
    }

    /// Places a demo order as `customer`: publishes a private `order.placed` event on
    /// `admin/orders`, which reaches only connections allowed to subscribe to it, and puts a
    /// notification in the inbox of every administrator connected now.
    pub async fn place_order(&self, customer: &str) -> Result<OrderReceipt, AppError> {
        let order = OrderPlaced {
            order_id: format!("{:06}", random_u32() % 1_000_000),
            customer: customer.to_owned(),
            total_cents: 500 + u64::from(random_u32() % 20_000),
        };
        let data = RawValue::from_string(to_json(&order))
            .map_err(|_| AppError::invalid("invalid_body", "the order could not be encoded"))?;
        let target = Target::Topics {
            topics: vec![Arc::from(ORDERS_TOPIC)],
            private: true,
        };
        self.publish(target, Some(ORDER_PLACED), Some(data)).await?;
        let admins = self.hub().connected_admins().await?;
        for admin in &admins {
            let item = NewInboxItem {
                title: format!("New order #{}", order.order_id),
                body: format!(
                    "{} ordered for ${}.{:02}",
                    order.customer,
                    order.total_cents / 100,
                    order.total_cents % 100
                ),
                url: Some(format!("/?order={}", order.order_id)),
                kind: Some("order".into()),
                created_at: SystemTime::now(),
            };
            self.notify_item(admin, item).await?;
        }
        Ok(OrderReceipt {
            order,
            notified_admins: admins,
        })
    }
}

/// The owner of the chat demo's answers.
const DEMO_OWNER: &str = "herald-demo";
/// How long a demo answer is kept after it ends.
const DEMO_ANSWER_TTL_SECS: u64 = 600;

/// A prompt, trimmed, if it is not empty or too long.
fn checked_prompt(prompt: &str) -> Result<&str, AppError> {
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err(AppError::invalid(
            "invalid_parameter",
            format!("a prompt is at most {MAX_PROMPT_BYTES} bytes"),
        ));
    }
    let prompt = prompt.trim();
    if prompt.is_empty() {
        return Err(AppError::invalid(
            "missing_prompt",
            "give a prompt (?prompt=...)",
        ));
    }
    Ok(prompt)
}

fn check_interval(name: &str, millis: u64) -> Result<(), AppError> {
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&millis) {
        return Err(AppError::invalid(
            "invalid_parameter",
            format!("{name} must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}"),
        ));
    }
    Ok(())
}

/// The chat demo's frames of a response stream: `chat.delta` per piece (numbered from 1, the
/// first `skip` left out), then `chat.done` and `data: [DONE]`, or `chat.error`.
struct ChatFrames {
    sent: usize,
    skip: usize,
}

impl ChatFrames {
    fn next_id(&mut self) -> Option<String> {
        self.sent += 1;
        (self.sent > self.skip).then(|| self.sent.to_string())
    }

    fn delta(&mut self, text: String) -> Option<Bytes> {
        let id = self.next_id()?;
        let data = to_json(&ChatDelta { text });
        Some(encode(Frame::new().id(&id).event(CHAT_DELTA).data(&data)))
    }
}

impl super::stream_frames::Framer for ChatFrames {
    fn chunk(&mut self, _position: u64, data: &RawValue) -> Option<Bytes> {
        let text = serde_json::from_str::<String>(data.get()).ok()?;
        self.delta(text)
    }

    fn end(&mut self, stream: &crate::storage::streams::ResponseStream, after: u64) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(3);
        // Pieces compacted before this reader had them come as one.
        if let Some(rest) = super::stream_frames::rest(stream, after)
            .and_then(|rest| serde_json::from_str::<String>(rest.get()).ok())
            && let Some(frame) = self.delta(rest)
        {
            frames.push(frame);
        }
        if stream.status == herald_protocol::streams::StreamStatus::Done {
            let done = to_json(&ChatDone {
                finish_reason: "stop".into(),
            });
            if let Some(id) = self.next_id() {
                frames.push(encode(Frame::new().id(&id).event(CHAT_DONE).data(&done)));
            }
            if let Some(id) = self.next_id() {
                frames.push(encode(Frame::new().id(&id).data(CHAT_DONE_SENTINEL)));
            }
        } else if let Some(id) = self.next_id() {
            let error = ChatError {
                code: "upstream_error".into(),
                message: "the model stopped answering; try again".into(),
            };
            frames.push(encode(
                Frame::new()
                    .id(&id)
                    .event(CHAT_ERROR)
                    .data(&to_json(&error)),
            ));
        }
        frames
    }
}

/// The demo's answer to `prompt`, cut into the pieces a language model would stream: words with
/// their following space.
fn answer_pieces(prompt: &str) -> Vec<String> {
    let answer = format!(
        "You asked: \u{201c}{prompt}\u{201d}. Herald streams this answer to your browser one piece at a time \
         over Server-Sent Events, the way a language model's reply arrives, and stops the moment you do."
    );
    answer.split_inclusive(' ').map(str::to_owned).collect()
}

/// A fixed sequence of frames written `interval` apart; it stops producing as soon as it is
/// dropped (the client went away), and ends with `herald.closing` at shutdown or at the
/// connection's maximum lifetime, as an event stream does.
#[derive(Debug)]
pub struct DemoStream {
    frames: Vec<Bytes>,
    next: usize,
    interval: Duration,
    /// When the connection reaches its maximum lifetime, if it has one.
    ends_at: Option<tokio::time::Instant>,
    shutdown: CancellationToken,
    guard: EarlyStop,
}

impl DemoStream {
    /// The frames as they are due.
    pub fn into_chunks(self) -> impl Stream<Item = Bytes> + Send + 'static {
        futures_util::stream::unfold(self, |mut demo| async move {
            let chunk = demo.next_frame().await?;
            Some((chunk, demo))
        })
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.guard.finished {
            return None;
        }
        let Some(frame) = self.frames.get(self.next).cloned() else {
            self.guard.finished = true;
            return None;
        };
        if self.next > 0 {
            let lifetime = async {
                match self.ends_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.guard.finished = true;
                    return Some(closing(CloseReason::Shutdown, None));
                }
                () = lifetime => {
                    self.guard.finished = true;
                    return Some(closing(CloseReason::MaxLifetime, None));
                }
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        self.next += 1;
        Some(frame)
    }
}

/// Counts and logs a demo stream dropped before its end: the client went away, and the stream
/// stops producing with it.
#[derive(Debug)]
struct EarlyStop {
    demo: &'static str,
    finished: bool,
    metrics: Arc<Metrics>,
}

impl Drop for EarlyStop {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics
                .demo_streams_cancelled
                .get_or_create(&DemoLabels { demo: self.demo })
                .inc();
            tracing::info!(
                demo = self.demo,
                "demo stream stopped: the client went away"
            );
        }
    }
}
