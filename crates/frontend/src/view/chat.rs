//! The chat demo: the answer streams into a bubble token by token.

use herald_protocol::payloads::{
    CHAT_DELTA, CHAT_DONE, CHAT_DONE_SENTINEL, CHAT_ERROR, ChatDelta, ChatError,
};
use leptos::prelude::*;

use crate::source::{Source, SourceSignal};

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
    let send = move || {
        let question = prompt.get_untracked().trim().to_owned();
        if question.is_empty() {
            return;
        }
        let url = format!(
            "/demo/chat?prompt={}",
            String::from(web_sys::js_sys::encode_uri_component(&question))
        );
        asked.set(question);
        answer.set(String::new());
        status.set(Status::Streaming);
        let opened = Source::open(&url, move |signal| match signal {
            SourceSignal::Message(message) => match message.event.as_str() {
                CHAT_DELTA => {
                    if let Ok(delta) = serde_json::from_str::<ChatDelta>(&message.data) {
                        answer.update(|text| text.push_str(&delta.text));
                    }
                }
                CHAT_DONE => status.set(Status::Done),
                CHAT_ERROR => {
                    let reason = serde_json::from_str::<ChatError>(&message.data)
                        .map_or(message.data, |error| error.message);
                    finish(Status::Failed(reason));
                }
                _ if message.data == CHAT_DONE_SENTINEL => finish(Status::Done),
                _ => {}
            },
            // A retrying browser resumes the answer by Last-Event-ID.
            SourceSignal::Error { retrying: true } => {}
            SourceSignal::Error { retrying: false }
                if status.get_untracked() == Status::Streaming =>
            {
                finish(Status::Failed("the connection was lost".into()));
            }
            SourceSignal::Error { retrying: false } => source.set_value(None),
        });
        match opened {
            Ok(opened) => {
                for name in [CHAT_DELTA, CHAT_DONE, CHAT_ERROR, "message"] {
                    opened.listen(name);
                }
                source.set_value(Some(opened));
            }
            Err(error) => status.set(Status::Failed(error)),
        }
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
                    on:click=move |_| finish(Status::Stopped)>"Stop"</button>
            </form>
        </section>
    }
}
