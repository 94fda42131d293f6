//! The live event log: filter, pause, clear.

use herald_protocol::Envelope;
use leptos::prelude::*;

use crate::session::Session;
use crate::state::{LogEntry, LogFilter};

#[component]
pub fn LogPanel(session: Session) -> impl IntoView {
    let paused = move || session.log.with(|log| log.paused());
    view! {
        <section class="panel log-panel" aria-labelledby="log-heading">
            <div class="panel-head">
                <h2 id="log-heading">"Live events"</h2>
                <span class="count" data-testid="log-count">{move || format!("{} shown", session.filter.with(|filter| session.log.with(|log| log.visible(filter).len())))}</span>
            </div>
            <div class="toolbar">
                <label>"Topic"
                    <input data-testid="filter-topic" placeholder="filter"
                        prop:value=move || session.filter.get().topic
                        on:input=move |ev| session.filter.update(|f: &mut LogFilter| f.topic = event_target_value(&ev)) />
                </label>
                <label>"Type"
                    <input data-testid="filter-type" placeholder="filter"
                        prop:value=move || session.filter.get().kind
                        on:input=move |ev| session.filter.update(|f: &mut LogFilter| f.kind = event_target_value(&ev)) />
                </label>
                <button class="secondary" data-testid="pause" aria-pressed=move || paused().to_string()
                    on:click=move |_| session.log.update(|log| log.set_paused(!log.paused()))>
                    {move || if paused() { format!("Resume ({} waiting)", session.log.with(|log| log.waiting())) } else { "Pause".to_owned() }}
                </button>
                <button class="secondary" data-testid="clear" on:click=move |_| session.log.update(|log| log.clear())>"Clear"</button>
            </div>
            <Show when=move || !session.log.with(|log| log.is_empty()) fallback=|| view! { <p class="empty">"No events yet. Publish one with the form."</p> }>
                <ol class="log" data-testid="log">
                    <For
                        each=move || session.filter.with(|filter| session.log.with(|log| log.visible(filter)))
                        key=|(key, _)| *key
                        children=|(_, entry)| view! { <LogLine entry=entry /> }
                    />
                </ol>
            </Show>
        </section>
    }
}

#[component]
fn LogLine(entry: LogEntry) -> impl IntoView {
    match entry {
        LogEntry::Event(envelope) => event_line(envelope).into_any(),
        LogEntry::Gap { reason } => view! {
            <li class="gap" role="note" data-testid="gap">{format!("Gap: {reason}. Events may be missing here.")}</li>
        }
        .into_any(),
    }
}

fn event_line(envelope: Envelope) -> impl IntoView {
    let data = serde_json::to_string_pretty(&envelope.data).unwrap_or_default();
    let time = envelope
        .time
        .get(11..23)
        .unwrap_or(&envelope.time)
        .to_owned();
    view! {
        <li data-event-id=envelope.id.clone()>
            <div class="meta">
                <time datetime=envelope.time.clone()>{time}</time>
                <span class="topic">{envelope.topic.unwrap_or_else(|| "(direct)".into())}</span>
                <span class="kind">{envelope.kind}</span>
                <span class="id">{format!("#{}", envelope.id)}</span>
            </div>
            <pre>{data}</pre>
        </li>
    }
}
