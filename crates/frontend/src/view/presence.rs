//! Who is on the console's topics: each topic's connections, clients and (for a credential
//! that may see the topic's private events) users, refreshed every few seconds.

use std::time::Duration;

use herald_protocol::api::Presence;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::session::Session;

const REFRESH_EVERY: Duration = Duration::from_secs(3);

#[component]
pub fn PresencePanel(session: Session) -> impl IntoView {
    let seen = RwSignal::new(Vec::<Presence>::new());
    let refresh = move || {
        let topics = session.topics.get_untracked();
        spawn_local(async move {
            let mut found = Vec::new();
            for topic in topics {
                if let Ok(presence) = api::presence(&topic).await {
                    found.push(presence);
                }
            }
            seen.set(found);
        });
    };
    // Asked again when the topics or the account change, then every few seconds.
    Effect::new(move |_| {
        session.topics.track();
        session.account.track();
        refresh();
    });
    if let Ok(handle) = set_interval_with_handle(refresh, REFRESH_EVERY) {
        on_cleanup(move || handle.clear());
    }
    view! {
        <section class="panel" aria-labelledby="presence-heading">
            <h2 id="presence-heading">"Who is here"</h2>
            <ul class="presence" data-testid="presence">
                {move || seen.get().into_iter().map(|presence| {
                    let counts = format!(
                        "{}: {} connection{}, {} client{}",
                        presence.topic,
                        presence.connections,
                        if presence.connections == 1 { "" } else { "s" },
                        presence.clients,
                        if presence.clients == 1 { "" } else { "s" },
                    );
                    let users = presence.users.map(|users| {
                        users
                            .into_iter()
                            .map(|user| format!("{} ({})", user.user, user.connections))
                            .collect::<Vec<_>>()
                            .join(", ")
                    });
                    view! {
                        <li data-topic=presence.topic.clone()>
                            {counts}
                            {users.filter(|users| !users.is_empty()).map(|users| view! { <span class="users">" — "{users}</span> })}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}
