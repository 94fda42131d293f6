//! Connect and disconnect, the topics and event types the stream carries, and its identity.

use leptos::prelude::*;

use crate::session::Session;
use crate::state::parse_topics;

#[component]
pub fn ConnectionPanel(session: Session) -> impl IntoView {
    let new_topic = RwSignal::new(String::new());
    let add_topic = move || {
        let mut topics = session.topics.get_untracked();
        let before = topics.len();
        for topic in parse_topics(&new_topic.get_untracked()) {
            if herald_protocol::names::validate_topic(&topic).is_ok() && !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        new_topic.set(String::new());
        if topics.len() != before {
            session.set_topics(topics);
        }
    };
    view! {
        <section class="panel" aria-labelledby="connection-heading">
            <h2 id="connection-heading">"Connection"</h2>
            <div class="buttons">
                <button
                    data-testid="connect"
                    disabled=move || session.state.get().wants_stream()
                    on:click=move |_| session.connect()
                >"Connect"</button>
                <button
                    data-testid="disconnect"
                    class="secondary"
                    disabled=move || !session.state.get().wants_stream()
                    on:click=move |_| session.disconnect()
                >"Disconnect"</button>
            </div>
            <h3>"Topics"</h3>
            <ul class="chips" data-testid="topics">
                <For
                    each=move || session.topics.get()
                    key=|topic| topic.clone()
                    children=move |topic| {
                        let label = format!("Remove topic {topic}");
                        let removed = topic.clone();
                        view! {
                            <li class="chip">
                                <span>{topic}</span>
                                <button class="chip-remove" aria-label=label on:click=move |_| {
                                    let topics = session.topics.get_untracked().into_iter().filter(|t| *t != removed).collect();
                                    session.set_topics(topics);
                                }>"×"</button>
                            </li>
                        }
                    }
                />
            </ul>
            <form class="inline" on:submit=move |ev| { ev.prevent_default(); add_topic(); }>
                <label for="new-topic" class="visually-hidden">"Add a topic"</label>
                <input id="new-topic" data-testid="new-topic" placeholder="rooms/42"
                    prop:value=move || new_topic.get() on:input=move |ev| new_topic.set(event_target_value(&ev)) />
                <button type="submit" class="secondary">"Add topic"</button>
            </form>
            <dl>
                <dt>"Client id"</dt>
                <dd data-testid="client-id">{move || session.client_id.get().unwrap_or_default()}</dd>
                <dt>"Last event id"</dt>
                <dd data-testid="last-event-id">{move || session.last_event_id.get().unwrap_or_default()}</dd>
            </dl>
        </section>
    }
}
