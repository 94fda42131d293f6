//! The chat demo: the answer streams into a bubble token by token. It is a response stream
//! (`POST /demo/chat`, read at `/streams/{id}`) whose id the page keeps, so a reload mid-answer
//! shows the whole answer so far, then the rest as it comes.

use herald_protocol::Envelope;
use herald_protocol::streams::{STREAM_CHUNK, STREAM_END, StreamEnd, StreamStatus};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::{Deserialize, Serialize};

use crate::api;
use crate::source::{Source, SourceSignal};

/// Milliseconds between the demo answer's pieces: slow enough to watch, and to reload in.
const ANSWER_DELAY_MS: u64 = 120;
/// Where the page keeps the answer being read.
const STORAGE_KEY: &str = "herald.chat";
/// How long the page follows a kept answer again: less than the demo keeps answers (ten
/// minutes after they end), so a reload never asks for one that is gone.
const KEEP_MS: f64 = 9.0 * 60_000.0;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Idle,
    Streaming,
    Done,
    Stopped,
    Failed(String),
}

impl Status {
    fn text(&self) -> String {
        match self {
            Self::Idle => "ask something".into(),
            Self::Streaming => "streaming".into(),
            Self::Done => "done".into(),
            Self::Stopped => "stopped".into(),
            Self::Failed(reason) => format!("error: {reason}"),
        }
    }
}

/// The answer the page follows, kept across reloads.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    question: String,
    stream: String,
    /// Until when (milliseconds since the epoch) it is followed again after a reload.
    until: f64,
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn kept() -> Option<Kept> {
    let text = storage()?.get_item(STORAGE_KEY).ok().flatten()?;
    let kept: Kept = serde_json::from_str(&text).ok()?;
    if kept.until < web_sys::js_sys::Date::now() {
        forget();
        return None;
    }
    Some(kept)
}

fn keep(kept: &Kept) {
    if let (Some(storage), Ok(text)) = (storage(), serde_json::to_string(kept)) {
        let _ = storage.set_item(STORAGE_KEY, &text);
    }
}

fn forget() {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(STORAGE_KEY);
    }
}

/// Why a stream ended, as the status line says it.
fn ended(data: &str) -> Status {
    let Ok(envelope) = serde_json::from_str::<Envelope>(data) else {
        return Status::Done;
    };
    let Ok(end) = serde_json::from_value::<StreamEnd>(envelope.data) else {
        return Status::Done;
    };
    match end.status {
        StreamStatus::Done => Status::Done,
        StreamStatus::Cancelled => Status::Stopped,
        StreamStatus::Open | StreamStatus::Error => Status::Failed(
            end.result
                .as_ref()
                .and_then(|result| result["reason"].as_str())
                .unwrap_or("the answer failed")
                .to_owned(),
        ),
    }
}

#[component]
pub fn ChatPanel() -> impl IntoView {
    let prompt = RwSignal::new("What is Herald?".to_owned());
    let asked = RwSignal::new(String::new());
    let answer = RwSignal::new(String::new());
    let status = RwSignal::new(Status::Idle);
    let source = StoredValue::new_local(None::<Source>);
    let finish = move |final_status: Status| {
        source.set_value(None);
        status.set(final_status);
    };
    // Reads the answer from its first piece: a reader that comes back gets it whole.
    let follow = move |kept: Kept| {
        asked.set(kept.question);
        answer.set(String::new());
        status.set(Status::Streaming);
        let url = format!("/streams/{}", kept.stream);
        let opened = Source::open(&url, move |signal| match signal {
            SourceSignal::Message(message) => match message.event.as_str() {
                STREAM_CHUNK => {
                    if let Ok(envelope) = serde_json::from_str::<Envelope>(&message.data)
                        && let Some(piece) = envelope.data.as_str()
                    {
                        answer.update(|text| text.push_str(piece));
                    }
                }
                STREAM_END => finish(ended(&message.data)),
                _ => {}
            },
            // A retrying browser resumes the answer by Last-Event-ID.
            SourceSignal::Error { retrying: true } => {}
            SourceSignal::Error { retrying: false }
                if status.get_untracked() == Status::Streaming =>
            {
                finish(Status::Failed("the answer is no longer available".into()));
            }
            SourceSignal::Error { retrying: false } => source.set_value(None),
        });
        match opened {
            Ok(opened) => {
                for name in [STREAM_CHUNK, STREAM_END] {
                    opened.listen(name);
                }
                source.set_value(Some(opened));
            }
            Err(error) => status.set(Status::Failed(error)),
        }
    };
    if let Some(kept) = kept() {
        follow(kept);
    }
    let send = move || {
        let question = prompt.get_untracked().trim().to_owned();
        if question.is_empty() {
            return;
        }
        source.set_value(None);
        asked.set(question.clone());
        answer.set(String::new());
        status.set(Status::Streaming);
        spawn_local(async move {
            match api::demo_answer(&question, ANSWER_DELAY_MS).await {
                Ok(created) => {
                    let kept = Kept {
                        question,
                        stream: created.id,
                        until: web_sys::js_sys::Date::now() + KEEP_MS,
                    };
                    keep(&kept);
                    follow(kept);
                }
                Err(error) => status.set(Status::Failed(error)),
            }
        });
    };
    view! {
        <section class="panel" aria-labelledby="chat-heading">
            <h2 id="chat-heading">"Chat demo"</h2>
            <div class="chat" data-testid="chat">
                <Show when=move || !asked.get().is_empty()>
                    <p class="bubble user">{move || asked.get()}</p>
                    <p class="bubble assistant" data-testid="chat-answer" aria-busy=move || (status.get() == Status::Streaming).to_string()>{move || answer.get()}</p>
                </Show>
            </div>
            <p class="demo-status" data-testid="chat-status" role="status" data-status=move || status.get().text()>{move || status.get().text()}</p>
            <form class="inline" on:submit=move |ev| { ev.prevent_default(); send(); }>
                <label for="chat-prompt" class="visually-hidden">"Prompt"</label>
                <input id="chat-prompt" data-testid="chat-prompt" class="grow"
                    prop:value=move || prompt.get() on:input=move |ev| prompt.set(event_target_value(&ev)) />
                <button type="submit" data-testid="chat-send" disabled=move || status.get() == Status::Streaming>"Send"</button>
                <button type="button" class="secondary" data-testid="chat-stop" disabled=move || status.get() != Status::Streaming
                    on:click=move |_| { forget(); finish(Status::Stopped); }>"Stop"</button>
            </form>
        </section>
    }
}
