//! The publish form: validated before sending; shows the new id or the server's error.

use herald_protocol::names::DEFAULT_EVENT_TYPE;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::session::Session;
use crate::state::PublishForm;

#[component]
pub fn PublishPanel(session: Session) -> impl IntoView {
    let topics = RwSignal::new(session.topics.get_untracked().join(", "));
    let kind = RwSignal::new(DEFAULT_EVENT_TYPE.to_owned());
    let data = RwSignal::new("{\"hello\": \"world\"}".to_owned());
    let problems = RwSignal::new(Vec::<String>::new());
    let result = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);
    let submit = move || {
        let form = PublishForm {
            topics: topics.get_untracked(),
            kind: kind.get_untracked(),
            data: data.get_untracked(),
        };
        match form.validate() {
            Err(found) => {
                problems.set(found);
                result.set(None);
            }
            Ok(request) => {
                problems.set(Vec::new());
                busy.set(true);
                spawn_local(async move {
                    let answer = api::publish(&request).await.map(|ack| ack.id);
                    result.set(Some(answer));
                    busy.set(false);
                });
            }
        }
    };
    view! {
        <section class="panel" aria-labelledby="publish-heading">
            <h2 id="publish-heading">"Publish"</h2>
            <form class="stack" on:submit=move |ev| { ev.prevent_default(); submit(); }>
                <label>"Topics"
                    <input data-testid="publish-topics" placeholder="demo, rooms/42"
                        prop:value=move || topics.get() on:input=move |ev| topics.set(event_target_value(&ev)) />
                </label>
                <label>"Type"
                    <input data-testid="publish-type" prop:value=move || kind.get() on:input=move |ev| kind.set(event_target_value(&ev)) />
                </label>
                <label>"Data (JSON)"
                    <textarea data-testid="publish-data" rows="4" spellcheck="false"
                        prop:value=move || data.get() on:input=move |ev| data.set(event_target_value(&ev))></textarea>
                </label>
                <button type="submit" data-testid="publish-submit" disabled=move || busy.get()>"Publish"</button>
            </form>
            <Show when=move || !problems.get().is_empty()>
                <ul class="problems" data-testid="publish-problems" role="alert">
                    {move || problems.get().into_iter().map(|problem| view! { <li>{problem}</li> }).collect_view()}
                </ul>
            </Show>
            {move || result.get().map(|answer| match answer {
                Ok(id) => view! { <p class="ok" data-testid="publish-result">{format!("Published #{id}")}</p> }.into_any(),
                Err(error) => view! { <p class="error" data-testid="publish-result" role="alert">{error}</p> }.into_any(),
            })}
        </section>
    }
}
