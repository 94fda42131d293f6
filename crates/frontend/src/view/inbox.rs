//! The bell: the unread badge, the inbox list, marking read, and browser notifications.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::session::Session;
use crate::{alerts, api};

#[component]
pub fn InboxPanel(session: Session) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let permission = RwSignal::new(alerts::permission());
    let mark = move |id: String| {
        spawn_local(async move {
            match api::mark_read(&id).await {
                // The pushed `notification.read` updates every tab; this one need not wait for it.
                Ok(read) => session.inbox.update(|inbox| inbox.apply_read(&read)),
                Err(message) => error.set(Some(message)),
            }
        });
    };
    let mark_all = move || {
        spawn_local(async move {
            match api::mark_all_read().await {
                Ok(read) => session.inbox.update(|inbox| inbox.apply_read(&read)),
                Err(message) => error.set(Some(message)),
            }
        });
    };
    view! {
        <section class="panel" aria-labelledby="inbox-heading">
            <div class="panel-head">
                <h2 id="inbox-heading">
                    <svg class="bell" viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">
                        <path fill="currentColor" d="M12 22a2 2 0 0 0 2-2h-4a2 2 0 0 0 2 2zm6-6v-5a6 6 0 0 0-5-5.9V4a1 1 0 0 0-2 0v1.1A6 6 0 0 0 6 11v5l-2 2v1h16v-1z"/>
                    </svg>
                    " Notifications "
                    <span class="badge" data-testid="unread-count"
                        data-unread=move || session.inbox.get().unread.to_string()
                        aria-label=move || format!("{} unread", session.inbox.get().unread)>
                        {move || session.inbox.get().unread.to_string()}
                    </span>
                </h2>
                <button class="secondary small" data-testid="mark-all-read"
                    disabled=move || session.inbox.get().unread == 0
                    on:click=move |_| mark_all()>"Mark all read"</button>
            </div>
            {move || session.account.get().is_none().then(|| view! {
                <p class="hint">"Sign in to see your notifications."</p>
            })}
            {move || (permission.get() == "default").then(|| view! {
                <button class="secondary small" data-testid="enable-alerts"
                    on:click=move |_| alerts::ask(move |answer| permission.set(answer))>
                    "Show browser notifications"
                </button>
            })}
            {move || error.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
            <ul class="inbox" data-testid="inbox">
                <For
                    each=move || session.inbox.get().items
                    key=|item| (item.id.clone(), item.read)
                    children=move |item| {
                        let id = item.id.clone();
                        let read = item.read;
                        view! {
                            <li class:unread=!read data-testid="notification" data-id=item.id.clone() data-read=read.to_string()>
                                <div class="inbox-text">
                                    <strong>{match item.url.clone() {
                                        Some(url) => view! { <a href=url>{item.title.clone()}</a> }.into_any(),
                                        None => view! { <span>{item.title.clone()}</span> }.into_any(),
                                    }}</strong>
                                    <span class="inbox-body">{item.body.clone()}</span>
                                    <time class="count">{item.created_at.get(11..19).unwrap_or_default().to_owned()}</time>
                                </div>
                                {(!read).then(|| view! {
                                    <button class="secondary small" data-testid="mark-read"
                                        on:click=move |_| mark(id.clone())>"Mark read"</button>
                                })}
                            </li>
                        }
                    }
                />
            </ul>
            {move || session.inbox.get().items.is_empty().then(|| view! { <p class="empty">"No notifications."</p> })}
        </section>
    }
}
