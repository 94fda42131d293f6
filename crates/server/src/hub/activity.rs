//! Client activity and retention: live clients are recorded as seen before their record
//! grows stale, so no live client expires, and storage forgets expired clients and history.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::storage::StorageError;
use crate::time::now_ms;

impl Hub {
    /// How old storage's record of a live client may grow before it is written again. A
    /// record stays well inside `client_ttl` (at most a quarter of it plus one retention
    /// interval old), so no live client expires, without rewriting every live client at every
    /// pass. With a `client_ttl` under four retention intervals, every pass records them all.
    fn record_refresh(&self) -> Duration {
        let settings = &self.inner.settings;
        if settings.client_ttl > settings.retention_interval * 4 {
            settings.client_ttl / 4
        } else {
            Duration::ZERO
        }
    }

    /// Keeps live clients fresh and lets storage forget expired clients and history, every
    /// retention interval until `shutdown`.
    pub async fn retain(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.inner.settings.retention_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let storage = &self.inner.storage;
            let now = SystemTime::now();
            let now_ms = now_ms();
            let refresh = u64::try_from(self.record_refresh().as_millis()).unwrap_or(u64::MAX);
            let registry = &self.inner.registry;
            let seen = registry.clients_to_record(now_ms.saturating_sub(refresh), now_ms);
            let cutoff = now
                .checked_sub(self.inner.settings.client_ttl)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let oldest_kept = now
                .checked_sub(self.inner.settings.history_max_age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            // If live clients cannot be marked as seen (a full disk, say), history retention still
            // runs, but no client expires: one of them might be live.
            let cutoff = match storage.touch_clients(&seen).await {
                Ok(()) => cutoff,
                Err(err) => {
                    registry.record_failed(&seen);
                    tracing::warn!(%err, "recording live clients failed; no client expires this round");
                    SystemTime::UNIX_EPOCH
                }
            };
            if let Err(err) = storage.expire(cutoff, oldest_kept).await {
                tracing::warn!(%err, "applying retention failed; will retry");
            }
            if let Err(err) = self.cap_clients().await {
                tracing::warn!(%err, "keeping client ids under their cap failed; will retry");
            }
            self.sweep_presence_pace();
            if let Err(err) = self.settle_departed_nodes().await {
                tracing::warn!(%err, "settling the presence of departed nodes failed; will retry");
            }
        }
    }

    /// Keeps the stored client ids under `max_client_ids`, forgetting those seen longest ago.
    /// The clients with a live connection are marked as seen first, so none of them is.
    async fn cap_clients(&self) -> Result<(), StorageError> {
        let storage = &self.inner.storage;
        let max = self.inner.settings.max_client_ids;
        if storage.client_count().await? <= max {
            return Ok(());
        }
        storage
            .touch_clients(&self.inner.registry.live_clients())
            .await?;
        let forgotten = storage.forget_oldest_clients(max).await?;
        self.inner.metrics.client_ids_forgotten.inc_by(forgotten);
        tracing::warn!(
            forgotten,
            max,
            "more client ids than --max-client-ids: forgot those seen longest ago"
        );
        Ok(())
    }
}
