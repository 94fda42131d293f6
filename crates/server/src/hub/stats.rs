//! The hub's figures (`GET /api/stats`): a sampler takes the counters every second, so rates
//! over the last minute are differences of two samples; publish latencies are kept per second
//! in small histograms and merged for the percentiles. In a cluster each node writes its
//! figures to Redis every second, and any node lists them all.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use herald_protocol::api::{NodeStats, Stats};
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::metrics::CloseLabels;
use crate::storage::StorageError;

/// The window rates and percentiles are taken over.
const WINDOW: Duration = Duration::from_secs(60);
/// How often the counters are sampled.
const EVERY: Duration = Duration::from_secs(1);

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    published: u64,
    delivered: u64,
}

/// The samples of the last minute.
#[derive(Debug, Default)]
pub(super) struct Samples(Mutex<VecDeque<Sample>>);

impl Hub {
    fn sample(&self) -> Sample {
        let metrics = &self.inner.metrics;
        Sample {
            at: Instant::now(),
            published: metrics.events_published.get(),
            delivered: metrics.events_delivered.get(),
        }
    }

    /// Samples the counters every second until `shutdown`; in a cluster, also writes this
    /// node's figures to Redis for the other nodes.
    pub(super) fn start_stats(&self, shutdown: CancellationToken) {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                {
                    let sample = hub.sample();
                    let mut samples = hub
                        .inner
                        .samples
                        .0
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    samples.push_back(sample);
                    while samples
                        .front()
                        .is_some_and(|first| sample.at.duration_since(first.at) > WINDOW)
                    {
                        samples.pop_front();
                    }
                }
                if let Some(cluster) = &hub.inner.cluster {
                    let (redis, node) = cluster.redis();
                    let stats = hub.node_stats(node);
                    if let Err(err) = redis.put_node_stats(node, &stats).await {
                        tracing::debug!(%err, "could not share this node's figures");
                    }
                }
            }
        });
    }

    /// This node's figures now.
    pub fn node_stats(&self, node: &str) -> NodeStats {
        let metrics = &self.inner.metrics;
        let now = self.sample();
        let first = self
            .inner
            .samples
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .front()
            .copied();
        let rate = |count: fn(&Sample) -> u64| match first {
            Some(first) if now.at > first.at => {
                #[allow(clippy::cast_precision_loss)]
                let counted = count(&now).saturating_sub(count(&first)) as f64;
                counted / now.at.duration_since(first.at).as_secs_f64()
            }
            _ => 0.0,
        };
        let slow = CloseLabels {
            reason: "slow_consumer",
        };
        NodeStats {
            node: node.to_owned(),
            time: crate::time::rfc3339(SystemTime::now()),
            connections: u64::try_from(metrics.connections.get()).unwrap_or(0),
            topics: self.inner.registry.topic_count() as u64,
            publishes_per_second: rate(|sample| sample.published),
            deliveries_per_second: rate(|sample| sample.delivered),
            publish_latency_ms: metrics.latency_window.percentiles(),
            replays: metrics.events_replayed.get(),
            slow_consumer_closes: metrics.connections_closed.get_or_create(&slow).get(),
            storage_bytes: self.inner.settings.log_file.as_ref().and_then(|file| {
                let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
                let wal = file.with_extension("db-wal");
                Some(size(file) + size(&wal)).filter(|bytes| *bytes > 0)
            }),
        }
    }

    /// Every live node's figures: this node's, and in a cluster the others' as they last wrote
    /// them.
    pub async fn stats(&self) -> Result<Stats, StorageError> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(Stats {
                nodes: vec![self.node_stats("local")],
            });
        };
        let (redis, node) = cluster.redis();
        let mut nodes = redis.node_stats().await?;
        nodes.retain(|stats| stats.node != node);
        nodes.push(self.node_stats(node));
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(Stats { nodes })
    }
}
