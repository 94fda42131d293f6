//! The Prometheus metrics Herald exports at `/metrics`.

use std::collections::VecDeque;
use std::sync::atomic::AtomicI64;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram as Hdr;
use herald_protocol::api::LatencyPercentiles;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// The window publish latencies are kept over, for `GET /api/stats`.
const LATENCY_WINDOW_SECONDS: u64 = 60;

/// Publish latencies, one histogram per second of the window.
#[derive(Debug, Default)]
pub struct LatencyWindow {
    seconds: Mutex<VecDeque<(u64, Hdr<u64>)>>,
}

impl LatencyWindow {
    /// Records one publish's latency.
    pub fn record(&self, latency: Duration) {
        let second = crate::time::now_ms() / 1000;
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        if seconds.back().is_none_or(|(at, _)| *at != second) {
            // Three significant digits, up to an hour: a few kilobytes a second.
            let Ok(histogram) = Hdr::new_with_bounds(1, 3_600_000_000, 3) else {
                return;
            };
            seconds.push_back((second, histogram));
            while seconds.len() > 61 {
                seconds.pop_front();
            }
        }
        if let Some((_, histogram)) = seconds.back_mut() {
            histogram.saturating_record(micros);
        }
    }

    /// The percentiles over the last minute, in milliseconds; `None` without a publish.
    pub fn percentiles(&self) -> Option<LatencyPercentiles> {
        let since = (crate::time::now_ms() / 1000).saturating_sub(LATENCY_WINDOW_SECONDS);
        let seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        let mut merged: Option<Hdr<u64>> = None;
        for (_, histogram) in seconds.iter().filter(|(at, _)| *at > since) {
            match &mut merged {
                Some(merged) => {
                    let _ = merged.add(histogram);
                }
                None => merged = Some(histogram.clone()),
            }
        }
        let merged = merged.filter(|merged| !merged.is_empty())?;
        #[allow(clippy::cast_precision_loss)]
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(LatencyPercentiles {
            p50: ms(merged.value_at_quantile(0.5)),
            p99: ms(merged.value_at_quantile(0.99)),
            max: ms(merged.max()),
        })
    }
}

/// Label of a connection closed by the server.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub reason: &'static str,
}

/// Label of an attempt's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Labels of an HTTP request: the route it matched, its method and the answer's status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// Label of an HTTP route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Label of a storage operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
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
    pub replays_waiting: Gauge<i64, AtomicI64>,
    pub replays_in_flight: Gauge<i64, AtomicI64>,
    /// The process: its memory and open files, read when the metrics are.
    pub process: Process,
    /// The connections themselves, below HTTP.
    pub transport: Transport,
    /// HTTP requests by route.
    pub requests: Requests,
    /// Publish latencies of the last minute, for `GET /api/stats`.
    pub latency_window: LatencyWindow,
    /// The identity provider's key set.
    pub identity: Identity,
    /// Storage operations.
    pub storage: StorageMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let r = &mut registry;
        Self {
            connections: add(
                r,
                "connections",
                "Live subscriber connections",
                Gauge::default(),
            ),
            connections_opened: add(
                r,
                "connections_opened",
                "Subscriber connections accepted",
                Counter::default(),
            ),
            events_published: add(
                r,
                "events_published",
                "Events durably accepted from publishers",
                Counter::default(),
            ),
            events_delivered: add(
                r,
                "events_delivered",
                "Events written to subscriber streams, live or replayed",
                Counter::default(),
            ),
            events_replayed: add(
                r,
                "events_replayed",
                "Events replayed to reconnecting subscribers",
                Counter::default(),
            ),
            resets: add(
                r,
                "resets",
                "herald.reset frames sent because history could not be replayed",
                Counter::default(),
            ),
            connections_closed: add(
                r,
                "connections_closed_by_server",
                "Connections the server closed on purpose, by reason (slow_consumer counts lagged subscribers)",
                Family::<CloseLabels, Counter>::default(),
            ),
            publish_latency: add(
                r,
                "publish_latency_seconds",
                "Time from receiving a publish to acknowledging it",
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            ),
            write_timeouts: add(
                r,
                "write_timeouts",
                "Connections dropped because the peer stopped reading or vanished for the write timeout",
                Counter::default(),
            ),
            demo_streams_cancelled: add(
                r,
                "demo_streams_cancelled",
                "Demo streams stopped early because their client went away",
                Family::<DemoLabels, Counter>::default(),
            ),
            client_ids_forgotten: add(
                r,
                "client_ids_forgotten",
                "Client ids forgotten to keep their number under --max-client-ids, the oldest first",
                Counter::default(),
            ),
            replays_waiting: add(
                r,
                "replays_waiting",
                "Replay reads waiting for a place under --max-concurrent-replays or --max-replays-per-address",
                Gauge::default(),
            ),
            replays_in_flight: add(
                r,
                "replays_in_flight",
                "Replay reads holding a place under --max-concurrent-replays, reading a page of history",
                Gauge::default(),
            ),
            process: Process::register(r),
            transport: Transport::register(r),
            requests: Requests::register(r),
            latency_window: LatencyWindow::default(),
            identity: Identity::register(r),
            storage: StorageMetrics::register(r),
            registry,
        }
    }

    /// The metrics in the OpenMetrics text format, which Prometheus scrapes.
    pub fn encode(&self) -> String {
        self.process.refresh();
        let mut out = String::new();
        // Encoding into a String only fails if a metric's own encoder fails, which the built-in
        // metric types never do.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%err, "encoding metrics failed");
        }
        out
    }
}

/// The metrics of connections below HTTP: how many are open, refused, TLS, HTTP/2 streams.
#[derive(Debug)]
pub struct Transport {
    pub tcp_connections: Gauge<i64, AtomicI64>,
    pub connections_refused: Family<CloseLabels, Counter>,
    pub tls_handshake_failures: Counter,
    pub tls_certificate_loads: Family<ResultLabels, Counter>,
    pub http2_streams: Gauge<i64, AtomicI64>,
}

impl Transport {
    fn register(registry: &mut Registry) -> Self {
        Self {
            tcp_connections: add(
                registry,
                "tcp_connections",
                "Open TCP connections of every kind: event streams and other requests",
                Gauge::default(),
            ),
            connections_refused: add(
                registry,
                "connections_refused",
                "Connections refused at accept, by the limit reached (max_connections or max_connections_per_address)",
                Family::<CloseLabels, Counter>::default(),
            ),
            tls_handshake_failures: add(
                registry,
                "tls_handshake_failures",
                "TLS handshakes that failed or did not complete within --header-timeout",
                Counter::default(),
            ),
            tls_certificate_loads: add(
                registry,
                "tls_certificate_loads",
                "Times the TLS certificate and key were read again (SIGHUP or a changed file), by result (ok, failed: the previous pair stays in use)",
                Family::<ResultLabels, Counter>::default(),
            ),
            http2_streams: add(
                registry,
                "http2_streams",
                "Open HTTP/2 streams (requests, event streams among them) on every HTTP/2 connection",
                Gauge::default(),
            ),
        }
    }
}

/// Storage operations: how long each takes and how many fail, by operation (`append`,
/// `read_after`, ...).
#[derive(Debug)]
pub struct StorageMetrics {
    pub duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<OperationLabels, Counter>,
}

impl StorageMetrics {
    fn register(registry: &mut Registry) -> Self {
        fn histogram() -> Histogram {
            // 20 µs to about 5 s.
            Histogram::new(exponential_buckets(0.000_02, 2.0, 19))
        }
        Self {
            duration: add(
                registry,
                "storage_operation_duration_seconds",
                "How long storage operations take, by operation (append, read_after, register_client, add_notification, ...)",
                Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                    histogram,
                ),
            ),
            errors: add(
                registry,
                "storage_operation_errors",
                "Storage operations that failed, by operation",
                Family::<OperationLabels, Counter>::default(),
            ),
        }
    }

    /// The histogram and error counter of `operation`.
    pub fn meters(&self, operation: &'static str) -> (Histogram, Counter) {
        let labels = OperationLabels { operation };
        (
            self.duration.get_or_create(&labels).clone(),
            self.errors.get_or_create(&labels).clone(),
        )
    }
}

/// The identity provider's key set (--jwks-url).
#[derive(Debug)]
pub struct Identity {
    pub jwks_fetches: Family<ResultLabels, Counter>,
    pub jwks_keys: Gauge<i64, AtomicI64>,
}

impl Identity {
    fn register(registry: &mut Registry) -> Self {
        Self {
            jwks_fetches: add(
                registry,
                "jwks_fetches",
                "Fetches of the JSON Web Key Set at --jwks-url (at start, periodic, or for a token naming an unknown key), by result (ok, failed: the keys fetched before stay in use)",
                Family::<ResultLabels, Counter>::default(),
            ),
            jwks_keys: add(
                registry,
                "jwks_keys",
                "Signing keys held from the JSON Web Key Set at --jwks-url",
                Gauge::default(),
            ),
        }
    }
}

/// The process, as the kernel sees it: read again whenever the metrics are encoded.
#[derive(Debug)]
pub struct Process {
    pub resident_memory_bytes: Gauge<i64, AtomicI64>,
    pub open_fds: Gauge<i64, AtomicI64>,
}

impl Process {
    fn register(registry: &mut Registry) -> Self {
        Self {
            resident_memory_bytes: add(
                registry,
                "process_resident_memory_bytes",
                "Memory the process holds in RAM (VmRSS)",
                Gauge::default(),
            ),
            open_fds: add(
                registry,
                "process_open_fds",
                "Files the process holds open, connections among them",
                Gauge::default(),
            ),
        }
    }

    /// Reads the figures again from `/proc` (Linux; elsewhere they stay at 0).
    fn refresh(&self) {
        #[cfg(target_os = "linux")]
        {
            let rss_kib = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|line| line.strip_prefix("VmRSS:"))
                        .and_then(|value| {
                            value
                                .trim()
                                .trim_end_matches("kB")
                                .trim()
                                .parse::<i64>()
                                .ok()
                        })
                });
            if let Some(kib) = rss_kib {
                self.resident_memory_bytes.set(kib * 1024);
            }
            if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
                self.open_fds
                    .set(i64::try_from(entries.count()).unwrap_or(i64::MAX));
            }
        }
    }
}

/// A histogram of request durations, from 0.1 ms to about 6.5 s.
type DurationHistogram = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// HTTP requests: how many, by route, method and status, and how long until their answer's
/// head (for an event stream: until it opened).
#[derive(Debug)]
pub struct Requests {
    pub total: Family<RequestLabels, Counter>,
    pub duration: DurationHistogram,
}

impl Requests {
    fn register(registry: &mut Registry) -> Self {
        fn histogram() -> Histogram {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
        }
        Self {
            total: add(
                registry,
                "http_requests",
                "HTTP requests answered, by route, method and status",
                Family::<RequestLabels, Counter>::default(),
            ),
            duration: add(
                registry,
                "http_request_duration_seconds",
                "Time from a request's arrival to its answer's head, by route",
                Family::new_with_constructor(histogram as fn() -> Histogram),
            ),
        }
    }
}

/// Registers `metric` as `name` with its `help`, and returns it for updating.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The metric families Herald exports, as their `# TYPE` lines name them: a family with
    /// labels is named once it has a sample, so each gets one.
    fn families() -> BTreeSet<String> {
        let metrics = Metrics::new();
        let reason = CloseLabels { reason: "test" };
        metrics.connections_closed.get_or_create(&reason).inc();
        metrics
            .transport
            .connections_refused
            .get_or_create(&reason)
            .inc();
        metrics
            .transport
            .tls_certificate_loads
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        metrics
            .demo_streams_cancelled
            .get_or_create(&DemoLabels { demo: "test" })
            .inc();
        metrics
            .identity
            .jwks_fetches
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        let (duration, errors) = metrics.storage.meters("append");
        duration.observe(0.001);
        errors.inc();
        let route = "/test".to_owned();
        metrics
            .requests
            .total
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: "GET".into(),
                status: 200,
            })
            .inc();
        metrics
            .requests
            .duration
            .get_or_create(&RouteLabels { route })
            .observe(0.001);
        metrics
            .encode()
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// The Grafana dashboard in `docs/` queries only metrics Herald exports.
    #[test]
    fn the_dashboard_names_only_exported_metrics() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana/herald.json");
        let dashboard = std::fs::read_to_string(path).unwrap();
        let families = families();
        let mut named = 0;
        for (at, _) in dashboard.match_indices("herald_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                families.contains(family),
                "the dashboard queries {name}, which Herald does not export ({families:?})"
            );
            named += 1;
        }
        assert!(named >= 15, "the dashboard names {named} metrics");
    }
}
