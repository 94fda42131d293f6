//! The overview's model: the hub's figures over the last minutes (one point a second, from
//! `GET /api/stats/stream`), summed over the nodes, and the points of a chart drawn from them.

use std::collections::VecDeque;

use herald_protocol::api::{NodeStats, Stats};

/// How many points a chart keeps: five minutes, one a second.
pub const POINTS: usize = 300;

/// One figure over time, the newest last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series(VecDeque<f64>);

impl Series {
    fn push(&mut self, value: f64) {
        self.0.push_back(value);
        while self.0.len() > POINTS {
            self.0.pop_front();
        }
    }

    pub fn latest(&self) -> Option<f64> {
        self.0.back().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The SVG `points` of a line through the series in a `width` × `height` box: the newest at
    /// the right edge, one step per point, scaled so the largest value (or 1) reaches the top.
    pub fn polyline(&self, width: f64, height: f64) -> String {
        let top = self.0.iter().copied().fold(1.0_f64, f64::max);
        #[allow(clippy::cast_precision_loss)]
        let step = width / (POINTS - 1) as f64;
        let first = POINTS - self.0.len();
        self.0
            .iter()
            .enumerate()
            .map(|(at, value)| {
                #[allow(clippy::cast_precision_loss)]
                let x = (first + at) as f64 * step;
                let y = height - value / top * height;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The figures of the whole hub over time, and its nodes as last reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    pub connections: Series,
    pub publishes: Series,
    pub deliveries: Series,
    /// The slowest node's publish latency, in milliseconds.
    pub latency_p50: Series,
    pub latency_p99: Series,
    pub nodes: Vec<NodeStats>,
}

impl Overview {
    /// Adds the figures of one moment.
    pub fn push(&mut self, stats: Stats) {
        let sum = |figure: fn(&NodeStats) -> f64| stats.nodes.iter().map(figure).sum::<f64>();
        #[allow(clippy::cast_precision_loss)]
        self.connections.push(sum(|node| node.connections as f64));
        self.publishes.push(sum(|node| node.publishes_per_second));
        self.deliveries.push(sum(|node| node.deliveries_per_second));
        let slowest = |figure: fn(&herald_protocol::api::LatencyPercentiles) -> f64| {
            stats
                .nodes
                .iter()
                .filter_map(|node| node.publish_latency_ms.as_ref().map(figure))
                .fold(0.0_f64, f64::max)
        };
        self.latency_p50.push(slowest(|latency| latency.p50));
        self.latency_p99.push(slowest(|latency| latency.p99));
        self.nodes = stats.nodes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::api::LatencyPercentiles;

    fn node(name: &str, connections: u64, publishes: f64, p99: Option<f64>) -> NodeStats {
        NodeStats {
            node: name.into(),
            time: "2026-12-02T10:00:00Z".into(),
            connections,
            topics: 1,
            publishes_per_second: publishes,
            deliveries_per_second: publishes * 2.0,
            publish_latency_ms: p99.map(|p99| LatencyPercentiles {
                p50: p99 / 2.0,
                p99,
                max: p99,
            }),
            replays: 0,
            slow_consumer_closes: 0,
            storage_bytes: None,
        }
    }

    #[test]
    fn figures_are_summed_over_nodes_and_the_latency_is_the_slowest() {
        let mut overview = Overview::default();
        overview.push(Stats {
            nodes: vec![node("a", 3, 1.5, Some(4.0)), node("b", 2, 0.5, None)],
        });
        assert_eq!(overview.connections.latest(), Some(5.0));
        assert_eq!(overview.publishes.latest(), Some(2.0));
        assert_eq!(overview.deliveries.latest(), Some(4.0));
        assert_eq!(overview.latency_p99.latest(), Some(4.0));
        assert_eq!(overview.nodes.len(), 2);
    }

    #[test]
    fn a_series_keeps_five_minutes_and_draws_the_newest_at_the_right() {
        let mut series = Series::default();
        for value in 0..400 {
            series.push(f64::from(value));
        }
        assert_eq!(series.len(), POINTS);
        let points = series.polyline(299.0, 100.0);
        let last = points.split(' ').next_back().unwrap();
        assert_eq!(
            last, "299.0,0.0",
            "the largest, newest value at the top right"
        );
        let mut short = Series::default();
        short.push(0.0);
        short.push(1.0);
        assert_eq!(short.polyline(299.0, 10.0), "298.0,10.0 299.0,0.0");
    }
}
