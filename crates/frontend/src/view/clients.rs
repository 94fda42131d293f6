//! The live connections, refreshed, each with a disconnect button; and a broadcast form.

use std::time::Duration;

use herald_protocol::api::{ClientInfo, SendRequest};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::value::RawValue;

use crate::api;
use crate::session::Session;

const REFRESH_EVERY: Duration = Duration::from_secs(2);

#[component]
pub fn ClientsPanel(session: Session) -> impl IntoView {
    let clients = RwSignal::new(Vec::<ClientInfo>::new());
    let error = RwSignal::new(None::<String>);
    // Only an administrator may list the clients: nobody else asks, so a console that is not
    // signed in (or not as an administrator) sends no request bound to fail.
    let is_admin = move || {
        session
            .account
            .get_untracked()
            .is_some_and(|account| account.admin)
    };
    let refresh = move || {
        if !is_admin() {
            clients.set(Vec::new());
            return;
        }
        spawn_local(async move {
            match api::clients().await {
                Ok(list) => {
                    clients.set(list);
                    error.set(None);
                }
                Err(message) => error.set(Some(message)),
            }
        });
    };
    // Asked at once when an administrator signs in, then every few seconds.
    Effect::new(move |_| {
        if session.account.get().is_some_and(|account| account.admin) {
            refresh();
        }
    });
    if let Ok(handle) = set_interval_with_handle(refresh, REFRESH_EVERY) {
        on_cleanup(move || handle.clear());
    }
    let close = move |client_id: String| {
        spawn_local(async move {
            if let Err(message) = api::close_client(&client_id).await {
                error.set(Some(message));
            }
            refresh();
        });
    };

    let broadcast_type = RwSignal::new("announcement".to_owned());
    let broadcast_data = RwSignal::new("{\"text\": \"Hello, everyone\"}".to_owned());
    let broadcast_result = RwSignal::new(None::<Result<String, String>>);
    let send_broadcast = move || {
        let kind = broadcast_type.get_untracked().trim().to_owned();
        let data = match RawValue::from_string(broadcast_data.get_untracked()) {
            Ok(data) => data,
            Err(err) => {
                broadcast_result.set(Some(Err(format!("Data is not valid JSON: {err}."))));
                return;
            }
        };
        if let Err(err) = herald_protocol::names::validate_publishable_event_type(&kind) {
            broadcast_result.set(Some(Err(format!("Type: {err}."))));
            return;
        }
        let request = SendRequest {
            kind: Some(kind),
            data: Some(data),
        };
        spawn_local(async move {
            broadcast_result.set(Some(api::broadcast(&request).await.map(|ack| ack.id)));
        });
    };

    view! {
        <section class="panel" aria-labelledby="clients-heading">
            <div class="panel-head">
                <h2 id="clients-heading">"Clients"</h2>
                <button class="secondary small" on:click=move |_| refresh()>"Refresh"</button>
            </div>
            {move || error.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
            <table class="clients" data-testid="clients">
                <thead><tr><th scope="col">"Client"</th><th scope="col">"Topics"</th><th scope="col">"Since"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr></thead>
                <tbody>
                    <For
                        each=move || clients.get()
                        key=|client| client.connection_id.clone()
                        children=move |client| {
                            let own_id = client.client_id.clone();
                            let own = move || session.client_id.get().as_deref() == Some(own_id.as_str());
                            let short = client.client_id.chars().take(8).collect::<String>();
                            let id = client.client_id.clone();
                            let since = client.connected_at.get(11..19).unwrap_or(&client.connected_at).to_owned();
                            let label = format!("Disconnect client {short}");
                            view! {
                                <tr data-client-id=client.client_id.clone()>
                                    <td><code title=client.client_id.clone()>{short}</code>{move || own().then_some(" (this console)")}</td>
                                    <td>{client.topics.join(", ")}</td>
                                    <td>{since}</td>
                                    <td><button class="danger small" data-testid="disconnect-client" aria-label=label
                                        on:click=move |_| close(id.clone())>"Disconnect"</button></td>
                                </tr>
                            }
                        }
                    />
                </tbody>
            </table>
            <form class="stack" on:submit=move |ev| { ev.prevent_default(); send_broadcast(); }>
                <h3>"Broadcast to everyone"</h3>
                <label>"Type"
                    <input data-testid="broadcast-type" prop:value=move || broadcast_type.get() on:input=move |ev| broadcast_type.set(event_target_value(&ev)) />
                </label>
                <label>"Data (JSON)"
                    <textarea data-testid="broadcast-data" rows="2" spellcheck="false"
                        prop:value=move || broadcast_data.get() on:input=move |ev| broadcast_data.set(event_target_value(&ev))></textarea>
                </label>
                <button type="submit" data-testid="broadcast-submit">"Broadcast"</button>
            </form>
            {move || broadcast_result.get().map(|answer| match answer {
                Ok(id) => view! { <p class="ok" data-testid="broadcast-result">{format!("Broadcast #{id}")}</p> }.into_any(),
                Err(message) => view! { <p class="error" data-testid="broadcast-result" role="alert">{message}</p> }.into_any(),
            })}
        </section>
    }
}
