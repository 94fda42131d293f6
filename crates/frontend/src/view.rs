//! The console's components.

use herald_protocol::Envelope;
use leptos::prelude::*;

use crate::source::{Source, SourceEvent};
use crate::state::{ConnectionInfo, ConnectionState, EventLog, LogEntry};

/// How many events the log keeps.
const LOG_CAPACITY: usize = 500;
/// The topic the console subscribes to unless the page's `?topic=` names others.
const DEFAULT_TOPIC: &str = "demo";

/// The topics named in the page's query string, or the default.
fn page_topics() -> Vec<String> {
    let search = window().location().search().unwrap_or_default();
    let topics: Vec<String> = search
        .trim_start_matches('?')
        .split('&')
        .filter_map(|pair| pair.strip_prefix("topic="))
        .filter_map(decode_component)
        .filter(|topic| herald_protocol::names::validate_topic(topic).is_ok())
        .collect();
    if topics.is_empty() {
        vec![DEFAULT_TOPIC.to_owned()]
    } else {
        topics
    }
}

fn decode_component(value: &str) -> Option<String> {
    web_sys::js_sys::decode_uri_component(value)
        .ok()
        .and_then(|decoded| decoded.as_string())
}

fn events_url(topics: &[String]) -> String {
    let query: Vec<String> = topics
        .iter()
        .map(|topic| {
            format!(
                "topic={}",
                String::from(web_sys::js_sys::encode_uri_component(topic))
            )
        })
        .collect();
    format!("/events?{}", query.join("&"))
}

#[component]
pub fn App() -> impl IntoView {
    let state = RwSignal::new(ConnectionState::Connecting);
    let info = RwSignal::new(ConnectionInfo::default());
    let log = RwSignal::new(EventLog::new(LOG_CAPACITY));
    let topics = page_topics();
    let url = events_url(&topics);

    let mut attempts = 0u32;
    let handler = move |event: SourceEvent| match event {
        SourceEvent::Connected {
            connected,
            last_event_id,
        } => {
            attempts = 0;
            state.set(ConnectionState::Open);
            info.update(|info| {
                info.client_id = Some(connected.client_id);
                info.connection_id = Some(connected.connection_id);
                if !last_event_id.is_empty() {
                    info.last_event_id = Some(last_event_id);
                }
            });
        }
        SourceEvent::Event(envelope) => {
            info.update(|info| info.last_event_id = Some(envelope.id.clone()));
            log.update(|log| log.push(LogEntry::Event(envelope)));
        }
        SourceEvent::Reset(reset) => {
            info.update(|info| info.last_event_id = Some(reset.latest_id.clone()));
            log.update(|log| {
                log.push(LogEntry::Gap {
                    reason: format!("{:?}", reset.reason),
                })
            });
        }
        SourceEvent::Closing(closing) if !closing.reconnect => {
            state.set(ConnectionState::ClosedByServer {
                reason: closing.reason.as_str().to_owned(),
            });
        }
        SourceEvent::Closing(_) => {}
        SourceEvent::Lost { retrying: true } => {
            attempts += 1;
            state.set(ConnectionState::Reconnecting { attempt: attempts });
        }
        SourceEvent::Lost { retrying: false } => {
            if !matches!(
                state.get_untracked(),
                ConnectionState::ClosedByServer { .. }
            ) {
                state.set(ConnectionState::ClosedByServer {
                    reason: "the server refused the connection".into(),
                });
            }
        }
        SourceEvent::Undecodable { event, error } => {
            leptos::logging::warn!("could not decode a {event} event: {error}");
        }
    };
    let source = StoredValue::new_local(None::<Source>);
    match Source::open(&url, &["message"], handler) {
        Ok(opened) => source.set_value(Some(opened)),
        Err(error) => state.set(ConnectionState::ClosedByServer { reason: error }),
    }

    view! {
        <header>
            <h1>"Herald console"</h1>
            <span class="status" data-testid="status" data-state=move || state.get().key()>
                {move || state.get().to_string()}
            </span>
        </header>
        <main>
            <ConnectionPanel topics=topics info=info />
            <section aria-labelledby="log-heading">
                <h2 id="log-heading">"Live events"</h2>
                <Show when=move || !log.with(EventLog::is_empty) fallback=|| view! { <p class="empty">"No events yet."</p> }>
                    <ol class="log" data-testid="log">
                        <For
                            each=move || log.with(|log| log.entries().cloned().collect::<Vec<_>>())
                            key=|(key, _)| *key
                            children=|(_, entry)| view! { <LogLine entry=entry /> }
                        />
                    </ol>
                </Show>
            </section>
        </main>
    }
}

#[component]
fn ConnectionPanel(topics: Vec<String>, info: RwSignal<ConnectionInfo>) -> impl IntoView {
    view! {
        <section aria-labelledby="connection-heading">
            <h2 id="connection-heading">"Connection"</h2>
            <dl>
                <dt>"Topics"</dt>
                <dd data-testid="topics">{topics.join(", ")}</dd>
                <dt>"Client id"</dt>
                <dd data-testid="client-id">{move || info.with(|info| info.client_id.clone().unwrap_or_default())}</dd>
                <dt>"Last event id"</dt>
                <dd data-testid="last-event-id">{move || info.with(|info| info.last_event_id.clone().unwrap_or_default())}</dd>
            </dl>
        </section>
    }
}

#[component]
fn LogLine(entry: LogEntry) -> impl IntoView {
    match entry {
        LogEntry::Event(envelope) => event_line(envelope).into_any(),
        LogEntry::Gap { reason } => view! {
            <li class="gap" role="note">{format!("Gap: the server could not replay missed events ({reason}).")}</li>
        }
        .into_any(),
    }
}

fn event_line(envelope: Envelope) -> impl IntoView {
    let data = serde_json::to_string_pretty(&envelope.data).unwrap_or_default();
    view! {
        <li data-event-id=envelope.id.clone()>
            <div class="meta">
                <time>{envelope.time}</time>
                <span>{envelope.topic.unwrap_or_else(|| "(direct)".into())}</span>
                <span class="kind">{envelope.kind}</span>
                <span>{format!("#{}", envelope.id)}</span>
            </div>
            <pre>{data}</pre>
        </li>
    }
}
