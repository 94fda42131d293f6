//! The administrators' demo: placing an order notifies every connected administrator, in their
//! inbox and as a private `order.placed` event on `admin/orders`.

use herald_protocol::api::OrderReceipt;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::session::Session;

const ORDERS_TOPIC: &str = "admin/orders";

#[component]
pub fn OrdersPanel(session: Session) -> impl IntoView {
    let receipt = RwSignal::new(None::<Result<OrderReceipt, String>>);
    let place = move || {
        spawn_local(async move {
            receipt.set(Some(api::place_order().await));
        });
    };
    let watch = move || {
        let mut topics = session.topics.get_untracked();
        if !topics.iter().any(|topic| topic == ORDERS_TOPIC) {
            topics.push(ORDERS_TOPIC.to_owned());
            session.set_topics(topics);
        }
    };
    view! {
        <section class="panel" aria-labelledby="orders-heading">
            <h2 id="orders-heading">"Orders (admin demo)"</h2>
            <p class="hint">
                "Placing an order puts a notification in the inbox of every administrator connected now, and publishes a private "
                <code>"order.placed"</code>" event on "<code>{ORDERS_TOPIC}</code>" that only administrators receive."
            </p>
            <div class="buttons">
                <button data-testid="place-order" disabled=move || session.account.get().is_none()
                    on:click=move |_| place()>"Place a demo order"</button>
                {move || session.account.get().is_some_and(|account| account.admin).then(|| view! {
                    <button class="secondary" data-testid="watch-orders" on:click=move |_| watch()>
                        "Watch " <code>{ORDERS_TOPIC}</code>
                    </button>
                })}
            </div>
            {move || receipt.get().map(|answer| match answer {
                Ok(receipt) => {
                    let notified = if receipt.notified_admins.is_empty() {
                        "no administrator is connected".to_owned()
                    } else {
                        format!("notified {}", receipt.notified_admins.join(", "))
                    };
                    view! { <p class="ok" data-testid="order-result">{format!("Order #{} placed; {notified}.", receipt.order.order_id)}</p> }.into_any()
                }
                Err(message) => view! { <p class="error" data-testid="order-result" role="alert">{message}</p> }.into_any(),
            })}
        </section>
    }
}
