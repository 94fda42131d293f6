//! The hub at a glance, for administrators: connections, events per second and publish
//! latency over the last minutes, drawn in the page from `GET /api/stats/stream`, and the
//! nodes of a cluster.

use herald_protocol::api::Stats;
use leptos::prelude::*;

use crate::api;
use crate::session::Session;
use crate::source::{Source, SourceSignal};
use crate::state::{Overview, Series};

const WIDTH: f64 = 299.0;
const HEIGHT: f64 = 60.0;

#[component]
pub fn OverviewPanel(session: Session) -> impl IntoView {
    let overview = RwSignal::new(Overview::default());
    let source = StoredValue::new_local(None::<Source>);
    // Opened when an administrator signs in, with the credential in the query (EventSource
    // sends no header); closed otherwise.
    Effect::new(move |_| {
        let admin = session.account.get().is_some_and(|account| account.admin);
        if !admin {
            source.set_value(None);
            return;
        }
        let token = api::token().unwrap_or_default();
        let encoded = String::from(web_sys::js_sys::encode_uri_component(&token));
        let url = format!("/api/stats/stream?access_token={encoded}");
        if let Ok(opened) = Source::open(&url, move |signal| {
            if let SourceSignal::Message(message) = signal
                && let Ok(stats) = serde_json::from_str::<Stats>(&message.data)
            {
                overview.update(|overview| overview.push(stats));
            }
        }) {
            opened.listen("herald.stats");
            source.set_value(Some(opened));
        }
    });
    let chart = move |label: &'static str,
                      testid: &'static str,
                      series: fn(&Overview) -> Series| {
        view! {
            <figure class="chart" data-testid=testid
                data-points=move || overview.with(|o| series(o).len())
                data-latest=move || overview.with(|o| series(o).latest().unwrap_or(0.0)).to_string()>
                <figcaption>{label}" "<strong>{move || format!("{:.1}", overview.with(|o| series(o).latest().unwrap_or(0.0)))}</strong></figcaption>
                <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img" aria-label=label>
                    <polyline fill="none" stroke="currentColor" stroke-width="1.5"
                        points=move || overview.with(|o| series(o).polyline(WIDTH, HEIGHT)) />
                </svg>
            </figure>
        }
    };
    view! {
        <Show when=move || session.account.get().is_some_and(|account| account.admin)>
            <section class="panel" aria-labelledby="overview-heading" data-testid="overview">
                <h2 id="overview-heading">"Overview"</h2>
                <div class="charts">
                    {chart("Connections", "overview-connections", |o| o.connections.clone())}
                    {chart("Publishes/s", "overview-publishes", |o| o.publishes.clone())}
                    {chart("Deliveries/s", "overview-deliveries", |o| o.deliveries.clone())}
                    {chart("Publish latency p50 (ms)", "overview-p50", |o| o.latency_p50.clone())}
                    {chart("Publish latency p99 (ms)", "overview-p99", |o| o.latency_p99.clone())}
                </div>
                <ul class="nodes" data-testid="overview-nodes">
                    {move || overview.with(|o| o.nodes.iter().map(|node| {
                        let text = format!("{}: {} connections, {} topics", node.node, node.connections, node.topics);
                        view! { <li>{text}</li> }
                    }).collect_view())}
                </ul>
            </section>
        </Show>
    }
}
