//! The Prometheus metrics Herald exports at `/metrics`.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of a connection closed by the server.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub reason: &'static str,
}

/// Label of a demo stream.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DemoLabels {
    pub demo: &'static str,
}

/// Every metric, cheap to update from any task: each is an atomic behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge<i64, AtomicI64>,
    pub connections_opened: Counter,
    pub events_published: Counter,
    pub events_delivered: Counter,
    pub events_replayed: Counter,
    pub resets: Counter,
    pub connections_closed: Family<CloseLabels, Counter>,
    pub publish_latency: Histogram,
    pub write_timeouts: Counter,
    pub demo_streams_cancelled: Family<DemoLabels, Counter>,
    pub client_ids_forgotten: Counter,
    pub tcp_connections: Gauge<i64, AtomicI64>,
    pub connections_refused: Family<CloseLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Live subscriber connections",
            connections.clone(),
        );
        let connections_opened = Counter::default();
        registry.register(
            "connections_opened",
            "Subscriber connections accepted",
            connections_opened.clone(),
        );
        let events_published = Counter::default();
        registry.register(
            "events_published",
            "Events durably accepted from publishers",
            events_published.clone(),
        );
        let events_delivered = Counter::default();
        registry.register(
            "events_delivered",
            "Events written to subscriber streams, live or replayed",
            events_delivered.clone(),
        );
        let events_replayed = Counter::default();
        registry.register(
            "events_replayed",
            "Events replayed to reconnecting subscribers",
            events_replayed.clone(),
        );
        let resets = Counter::default();
        registry.register(
            "resets",
            "herald.reset frames sent because history could not be replayed",
            resets.clone(),
        );
        let connections_closed = Family::<CloseLabels, Counter>::default();
        registry.register(
            "connections_closed_by_server",
            "Connections the server closed on purpose, by reason (slow_consumer counts lagged subscribers)",
            connections_closed.clone(),
        );
        let publish_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "publish_latency_seconds",
            "Time from receiving a publish to acknowledging it",
            publish_latency.clone(),
        );
        let write_timeouts = Counter::default();
        registry.register(
            "write_timeouts",
            "Connections dropped because the peer stopped reading or vanished for the write timeout",
            write_timeouts.clone(),
        );
        let demo_streams_cancelled = Family::<DemoLabels, Counter>::default();
        registry.register(
            "demo_streams_cancelled",
            "Demo streams stopped early because their client went away",
            demo_streams_cancelled.clone(),
        );
        let client_ids_forgotten = Counter::default();
        registry.register(
            "client_ids_forgotten",
            "Client ids forgotten to keep their number under --max-client-ids, the oldest first",
            client_ids_forgotten.clone(),
        );
        let tcp_connections = Gauge::default();
        registry.register(
            "tcp_connections",
            "Open TCP connections of every kind: event streams and other requests",
            tcp_connections.clone(),
        );
        let connections_refused = Family::<CloseLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections refused at accept, by the limit reached (max_connections or max_connections_per_address)",
            connections_refused.clone(),
        );
        Self {
            registry,
            connections,
            connections_opened,
            events_published,
            events_delivered,
            events_replayed,
            resets,
            connections_closed,
            publish_latency,
            write_timeouts,
            demo_streams_cancelled,
            client_ids_forgotten,
            tcp_connections,
            connections_refused,
        }
    }

    /// The metrics in the OpenMetrics text format, which Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String only fails if a metric's own encoder fails, which the built-in
        // metric types never do.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%err, "encoding metrics failed");
        }
        out
    }
}
