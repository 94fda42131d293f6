//! Idle subscribers: connect rate and memory per subscriber.

use std::time::Duration;

use anyhow::Result;

use super::{Run, SATURATED};

impl Run {
    pub(super) async fn idle(&mut self) -> Result<()> {
        let count = self.args.subscribers;
        let before = self.sample().await?;
        let subs = self.subscribers(count, false);
        let (merged, secs) = self.connect(subs).await?;
        // Let the server finish whatever the connection storm left behind before measuring.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = self.sample().await?;
        let share = self.loadgen_share(&before, &after);
        let saturated = share > SATURATED;
        self.metric(
            format!("connect rate, {count} subscribers"),
            "conn/s",
            merged.connected as f64 / secs,
            "higher",
            saturated,
        );
        self.metric(
            format!("memory per idle subscriber, {count}"),
            "KiB",
            after.memory_kib.saturating_sub(before.memory_kib) as f64 / count as f64,
            "lower",
            false,
        );
        self.metric(
            format!("server memory, {count} idle"),
            "MiB",
            after.memory_kib as f64 / 1024.0,
            "lower",
            false,
        );
        Ok(())
    }
}
