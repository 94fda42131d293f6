//! The console's components. Each panel is a module; they share one [`Session`].

mod account;
mod chat;
mod clients;
mod connection;
mod countdown;
mod inbox;
mod log;
mod orders;
mod overview;
mod presence;
mod publish;

use leptos::prelude::*;

use crate::session::Session;
use crate::state::parse_topics;

/// The topic the console subscribes to unless the page's `?topic=` names others.
const DEFAULT_TOPIC: &str = "demo";

/// The topics named in the page's query string, or the default.
fn page_topics() -> Vec<String> {
    let search = window().location().search().unwrap_or_default();
    let named: Vec<String> = search
        .trim_start_matches('?')
        .split('&')
        .filter_map(|pair| pair.strip_prefix("topic="))
        .filter_map(|value| {
            web_sys::js_sys::decode_uri_component(value)
                .ok()?
                .as_string()
        })
        .collect();
    let topics = parse_topics(&named.join(","));
    if topics.is_empty() {
        vec![DEFAULT_TOPIC.to_owned()]
    } else {
        topics
    }
}

#[component]
pub fn App() -> impl IntoView {
    let session = Session::new(page_topics());
    session.start();
    view! {
        <header class="topbar">
            <h1>"Herald"<span class="subtitle">" console"</span></h1>
            <span class="status" data-testid="status" data-state=move || session.state.get().key() role="status">
                {move || session.state.get().to_string()}
            </span>
            <account::AccountBar session=session />
        </header>
        <main class="layout">
            <div class="column">
                <connection::ConnectionPanel session=session />
                <inbox::InboxPanel session=session />
                <publish::PublishPanel session=session />
                <orders::OrdersPanel session=session />
                <presence::PresencePanel session=session />
                <clients::ClientsPanel session=session />
            </div>
            <div class="column wide">
                <overview::OverviewPanel session=session />
                <log::LogPanel session=session />
                <div class="demos">
                    <countdown::CountdownPanel />
                    <chat::ChatPanel />
                </div>
            </div>
        </main>
    }
}
