//! Who the console is signed in as: a demo user picker in development mode, otherwise a field
//! for a token.

use leptos::prelude::*;

use crate::session::Session;

#[component]
pub fn AccountBar(session: Session) -> impl IntoView {
    let pasted = RwSignal::new(String::new());
    view! {
        <div class="account" data-testid="account">
            {move || {
                let users = session.dev_users.get();
                if users.is_empty() {
                    view! {
                        <form class="token-form" on:submit=move |ev| {
                            ev.prevent_default();
                            let token = pasted.get_untracked().trim().to_owned();
                            if !token.is_empty() {
                                session.sign_in_with_token(token);
                            }
                        }>
                            <label class="visually-hidden" for="token-input">"Token"</label>
                            <input id="token-input" data-testid="token-input" type="password" autocomplete="off" placeholder="Paste a token to sign in"
                                prop:value=move || pasted.get() on:input=move |ev| pasted.set(event_target_value(&ev)) />
                            <button type="submit" class="small">"Sign in"</button>
                        </form>
                    }.into_any()
                } else {
                    view! {
                        <label class="user-picker">"Signed in as "
                            <select data-testid="user-select"
                                on:change=move |ev| session.sign_in_as(event_target_value(&ev))>
                                {users.into_iter().map(|user| {
                                    let id = user.id.clone();
                                    let selected = move || session.account.get().is_some_and(|account| account.user == id);
                                    view! { <option value=user.id.clone() selected=selected>{user.name}</option> }
                                }).collect_view()}
                            </select>
                        </label>
                    }.into_any()
                }
            }}
            <span class="who" data-testid="signed-in-user">
                {move || session.account.get().map(|account| account.user).unwrap_or_else(|| "anonymous".into())}
            </span>
            {move || session.account_error.get().map(|message| view! { <span class="error" role="alert">{message}</span> })}
        </div>
    }
}
