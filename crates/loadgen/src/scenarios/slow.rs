//! Slow consumers next to fast ones: what the stalled cost, and whether the fast notice.

use anyhow::Result;

use super::{Run, SATURATED, ms};

impl Run {
    pub(super) async fn slow(&mut self) -> Result<()> {
        let count = self.args.subscribers;
        let slow = ((count as f64) * self.args.slow_share).round() as usize;
        let rate = self.args.rates.first().copied().unwrap_or(20.0);
        let secs = self.args.step_secs;
        let subs = self.subscribers(count - slow, false);
        self.connect(subs).await?;
        let (merged, before, after, _) = self.step(rate, secs).await?;
        let share = self.loadgen_share(&before, &after);
        let p99_alone = ms(merged.latency.value_at_quantile(0.99));
        let subs = self.subscribers(slow, true);
        self.connect(subs).await?;
        let (merged, before, after, _) = self.step(rate, secs).await?;
        let share = share.max(self.loadgen_share(&before, &after));
        let saturated = share > SATURATED;
        let p99_with = ms(merged.latency.value_at_quantile(0.99));
        let grown = after.memory_kib.saturating_sub(before.memory_kib) as f64;
        self.metric(
            "fast subscribers p99, alone",
            "ms",
            p99_alone,
            "lower",
            saturated,
        );
        self.metric(
            format!("fast subscribers p99, with {slow} slow"),
            "ms",
            p99_with,
            "lower",
            saturated,
        );
        self.metric(
            "fast p99 with slow / alone",
            "x",
            p99_with / p99_alone.max(0.001),
            "lower",
            saturated,
        );
        self.metric(
            "memory growth with slow consumers",
            "MiB",
            grown / 1024.0,
            "lower",
            false,
        );
        self.metric(
            "memory growth per slow consumer",
            "KiB",
            grown / slow.max(1) as f64,
            "lower",
            false,
        );
        self.metric(
            "server memory at end",
            "MiB",
            after.memory_kib as f64 / 1024.0,
            "lower",
            false,
        );
        Ok(())
    }
}
