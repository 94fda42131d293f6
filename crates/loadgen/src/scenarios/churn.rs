//! Subscribers coming and going: whether memory returns after the churn.

use std::rc::Rc;
use std::time::Duration;

use anyhow::Result;

use super::{Pace, Run, SATURATED, SETTLE, Sample, ms};
use crate::pool;
use crate::publish::Publisher;
use crate::worker::{Command, Report};

impl Run {
    /// Opens and closes connections at the churn rate for `secs` while the base subscribers
    /// keep receiving a few events a second; returns the churning connections' report.
    async fn churn_for(&mut self, secs: f64) -> Result<pool::Merged> {
        let workers = self.pool.len() as f64;
        let per_sec = self.args.churn_per_sec / workers;
        let path = self.plan.sub(0, false).path;
        let rate = 5.0;
        let total = (rate * secs) as u64;
        let churn = self.pool.all(|| Command::Churn {
            path: path.clone(),
            per_sec,
            secs,
            hold_ms: 1000,
        });
        let counts = Rc::clone(&self.counts);
        let addr = self.args.addr;
        let token = self.args.token.clone();
        let plan = self.plan.clone();
        let publish_path = plan.publish_path(0);
        let publishing = async move {
            let mut publisher = Publisher::new(addr, token);
            let pace = Pace::start(rate);
            let mut failures = 0u64;
            for index in 0..total {
                let due_us = pace.wait(index).await;
                let number = counts.borrow()[0];
                match publisher
                    .post(&publish_path, &plan.body(0, number, due_us))
                    .await
                {
                    Ok(code) if (200..300).contains(&code) => counts.borrow_mut()[0] += 1,
                    _ => failures += 1,
                }
            }
            failures
        };
        let (reports, failures) = tokio::join!(churn, publishing);
        let reports: Vec<Report> = reports?;
        self.publish_failures += failures;
        let churned = pool::merge(&reports);
        self.absorb(&churned);
        Ok(churned)
    }

    pub(super) async fn churn(&mut self) -> Result<()> {
        let base = self.args.subscribers;
        let subs = self.subscribers(base, false);
        self.connect(subs).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cold = self.sample().await?;
        let mut warmup_failed = 0;
        if self.args.churn_warmup_secs > 0.0 {
            let warmup = self.churn_for(self.args.churn_warmup_secs).await?;
            warmup_failed = warmup.failed;
            tokio::time::sleep(SETTLE).await;
        }
        let start = self.sample().await?;
        let churned = self.churn_for(self.args.churn_secs).await?;
        self.drain().await?;
        tokio::time::sleep(SETTLE).await;
        let end = self.sample().await?;
        let share = self.loadgen_share(&start, &end);
        let saturated = share > SATURATED;
        let growth = |from: &Sample| {
            (end.memory_kib as f64 - from.memory_kib as f64) / from.memory_kib as f64 * 100.0
        };
        self.metric(
            "churned connections",
            "",
            churned.churned as f64,
            "higher",
            saturated,
        );
        self.metric(
            "churn connect failures",
            "",
            (churned.failed + warmup_failed) as f64,
            "zero",
            false,
        );
        self.metric(
            "churn connect p99",
            "ms",
            ms(churned.connect_latency.value_at_quantile(0.99)),
            "lower",
            saturated,
        );
        self.metric(
            "memory before churn",
            "MiB",
            start.memory_kib as f64 / 1024.0,
            "lower",
            false,
        );
        self.metric(
            "memory after churn",
            "MiB",
            end.memory_kib as f64 / 1024.0,
            "lower",
            false,
        );
        self.metric(
            "memory change after churn",
            "%",
            growth(&start),
            "lower",
            false,
        );
        self.metric(
            "memory change from before the warm-up",
            "%",
            growth(&cold),
            "lower",
            false,
        );
        Ok(())
    }
}
