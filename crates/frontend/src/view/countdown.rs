//! The countdown demo: `customEvent` messages one per interval, then "completed".

use herald_protocol::payloads::COUNTDOWN_EVENT;
use leptos::prelude::*;

use crate::source::{Source, SourceSignal};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Idle,
    Running,
    Completed,
    Stopped,
    Failed(String),
}

impl Status {
    fn text(&self) -> String {
        match self {
            Self::Idle => "not started".into(),
            Self::Running => "running".into(),
            Self::Completed => "completed".into(),
            Self::Stopped => "stopped".into(),
            Self::Failed(reason) => format!("failed: {reason}"),
        }
    }
}

#[component]
pub fn CountdownPanel() -> impl IntoView {
    let count = RwSignal::new("10".to_owned());
    let interval = RwSignal::new("1000".to_owned());
    let messages = RwSignal::new(Vec::<String>::new());
    let status = RwSignal::new(Status::Idle);
    let source = StoredValue::new_local(None::<Source>);
    let stop = move |final_status: Status| {
        source.set_value(None);
        status.set(final_status);
    };
    let start = move || {
        let expected = count
            .get_untracked()
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n));
        let every = interval
            .get_untracked()
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| (10..=60_000).contains(ms));
        let (Some(expected), Some(every)) = (expected, every) else {
            status.set(Status::Failed(
                "count is 1 to 1000 and the interval 10 to 60000 ms".into(),
            ));
            return;
        };
        let url = format!("/demo/countdown?count={expected}&interval_ms={every}");
        messages.set(Vec::new());
        status.set(Status::Running);
        let opened = Source::open(&url, move |signal| match signal {
            SourceSignal::Message(message) => {
                let text = serde_json::from_str::<String>(&message.data).unwrap_or(message.data);
                messages.update(|all| all.push(text));
                if messages.with_untracked(Vec::len) >= expected {
                    stop(Status::Completed);
                }
            }
            // A retrying browser resumes the countdown by Last-Event-ID.
            SourceSignal::Error { retrying: true } => {}
            SourceSignal::Error { retrying: false }
                if status.get_untracked() == Status::Running =>
            {
                stop(Status::Failed("the stream ended early".into()));
            }
            SourceSignal::Error { retrying: false } => {}
        });
        match opened {
            Ok(opened) => {
                opened.listen(COUNTDOWN_EVENT);
                source.set_value(Some(opened));
            }
            Err(error) => status.set(Status::Failed(error)),
        }
    };
    view! {
        <section class="panel" aria-labelledby="countdown-heading">
            <h2 id="countdown-heading">"Countdown demo"</h2>
            <form class="inline" on:submit=move |ev| { ev.prevent_default(); start(); }>
                <label>"Count" <input data-testid="countdown-count" type="number" min="1" max="1000" class="short"
                    prop:value=move || count.get() on:input=move |ev| count.set(event_target_value(&ev)) /></label>
                <label>"Every (ms)" <input data-testid="countdown-interval" type="number" min="0" class="short"
                    prop:value=move || interval.get() on:input=move |ev| interval.set(event_target_value(&ev)) /></label>
                <button type="submit" data-testid="countdown-start" disabled=move || status.get() == Status::Running>"Start"</button>
                <button type="button" class="secondary" data-testid="countdown-stop" disabled=move || status.get() != Status::Running
                    on:click=move |_| stop(Status::Stopped)>"Stop"</button>
            </form>
            <p class="demo-status" data-testid="countdown-status" role="status" data-status=move || status.get().text()>{move || status.get().text()}</p>
            <ol class="countdown" data-testid="countdown-messages">
                {move || messages.get().into_iter().map(|text| view! { <li>{text}</li> }).collect_view()}
            </ol>
        </section>
    }
}
