//! A reconnect storm: every subscriber resumes from its last event id.

use anyhow::Result;

use super::{Run, SATURATED};
use crate::pool;
use crate::worker::Command;

impl Run {
    pub(super) async fn resume(&mut self) -> Result<()> {
        let count = self.args.subscribers;
        let topics = self.plan.streams.len() as u64;
        let subs = self.subscribers(count, false);
        self.connect(subs).await?;
        // Everyone receives a few events live, so each holds a recent last event id.
        let (merged, _, _, _) = self.step(2000.0, (5 * topics) as f64 / 2000.0).await?;
        anyhow::ensure!(
            merged.behind == 0,
            "subscribers missed live events before the storm"
        );
        self.pool.all(|| Command::Drop).await?;
        // Ten events per topic while everyone is away: within nchan's 16-message buffer.
        self.publish(2000.0, 10 * topics).await?;
        let counts = self.counts.borrow().clone();
        let before = self.sample().await?;
        let reports = self
            .pool
            .all(|| Command::Resume {
                counts: counts.clone(),
                timeout_ms: 60_000,
            })
            .await?;
        let after = self.sample().await?;
        let merged = pool::merge(&reports);
        self.absorb(&merged);
        let share = self.loadgen_share(&before, &after);
        let saturated = share > SATURATED;
        let secs = after.at.duration_since(before.at).as_secs_f64();
        self.metric(
            format!("resume storm, {count} reconnects, time to caught up"),
            "s",
            secs,
            "lower",
            saturated,
        );
        self.metric(
            "resume storm reconnects",
            "conn/s",
            merged.connected as f64 / secs,
            "higher",
            saturated,
        );
        self.metric(
            "resume storm server CPU",
            "s",
            after.server_cpu_ns.saturating_sub(before.server_cpu_ns) as f64 / 1e9,
            "lower",
            false,
        );
        self.metric(
            "resume storm resets (gaps announced)",
            "",
            merged.resets as f64,
            "zero",
            false,
        );
        self.metric(
            "resume storm subscribers behind",
            "",
            merged.behind as f64,
            "zero",
            false,
        );
        Ok(())
    }
}
