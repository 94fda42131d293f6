//! Publishing at a ladder of rates (broadcast, groups, unicast): latency, CPU per delivery, and the highest rate that keeps its p99 under the limit.

use anyhow::Result;

use super::{MAX_P99_MS, Run, SATURATED, Sample, ms};
use crate::pool::Merged;

impl Run {
    pub(super) async fn rates(&mut self, label: &str, defaults: &[f64]) -> Result<()> {
        let subs = self.subscribers(self.args.subscribers, false);
        self.connect(subs).await?;
        let rates = if self.args.rates.is_empty() {
            defaults.to_vec()
        } else {
            self.args.rates.clone()
        };
        let secs = self.args.step_secs;
        // The highest rate so far whose p99 stayed under 100 ms with every event delivered and
        // the publisher keeping pace, and whether the load generator was saturated there.
        let mut best: Option<(f64, bool)> = None;
        let mut rate_list = rates.into_iter();
        let mut next = rate_list.next();
        while let Some(rate) = next {
            let (merged, before, after, achieved) = self.step(rate, secs).await?;
            let share = self.loadgen_share(&before, &after);
            let p99 = ms(merged.latency.value_at_quantile(0.99));
            let passed = p99 < MAX_P99_MS
                && merged.lost == 0
                && merged.behind == 0
                && achieved >= 0.95 * rate;
            eprintln!(
                "  {label} {rate}/s (reached {achieved:.1}/s): p99 {p99:.1} ms, load generator {:.0}%",
                share * 100.0
            );
            self.report_step(label, rate, achieved, &merged, &before, &after);
            if passed && best.is_none_or(|(at, _)| rate > at) {
                best = Some((rate, share > SATURATED));
            }
            next = rate_list.next();
            if next.is_none() && self.args.find_max && passed && share <= SATURATED {
                // Past the listed rates: keep raising until a step fails.
                next = Some((rate * 1.5_f64).round());
            }
        }
        if self.args.find_max {
            let (value, saturated) = best.unwrap_or((0.0, false));
            self.metric(
                format!("{label} max rate with p99 < 100 ms"),
                "ev/s",
                value,
                "higher",
                saturated,
            );
        }
        Ok(())
    }

    fn report_step(
        &mut self,
        label: &str,
        rate: f64,
        achieved: f64,
        merged: &Merged,
        before: &Sample,
        after: &Sample,
    ) {
        let share = self.loadgen_share(before, after);
        let saturated = share > SATURATED;
        let cpu_ns = after.server_cpu_ns.saturating_sub(before.server_cpu_ns) as f64;
        let deliveries = merged.received.max(1) as f64;
        let name = format!("{label} {rate}/s");
        self.metric(
            format!("{name} p50"),
            "ms",
            ms(merged.latency.value_at_quantile(0.5)),
            "lower",
            saturated,
        );
        self.metric(
            format!("{name} p99"),
            "ms",
            ms(merged.latency.value_at_quantile(0.99)),
            "lower",
            saturated,
        );
        self.metric(
            format!("{name} max"),
            "ms",
            ms(merged.latency.max()),
            "lower",
            saturated,
        );
        self.metric(
            format!("{name} CPU per delivery"),
            "µs",
            cpu_ns / deliveries / 1000.0,
            "lower",
            saturated,
        );
        self.metric(
            format!("{name} deliveries"),
            "",
            merged.received as f64,
            "higher",
            saturated,
        );
        self.metric(
            format!("{name} publish rate reached"),
            "ev/s",
            achieved,
            "higher",
            saturated,
        );
    }
}
