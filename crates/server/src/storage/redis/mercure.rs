//! Mercure ids in Redis: a sorted set of ids, each scored by the position of the newest event
//! holding it (written by `append.lua`), looked up to resume from and forgotten with the
//! history.

use super::{RedisStorage, Seq, StorageError};

impl RedisStorage {
    /// The position of the newest event with the Mercure id `id`.
    pub(super) async fn mercure_id(&self, id: &str) -> Result<Option<Seq>, StorageError> {
        let mut connection = self.connection();
        let score: Option<f64> = Self::call(
            "looking up an event id",
            redis::cmd("ZSCORE")
                .arg(&self.keys().mercure_ids)
                .arg(id)
                .query_async(&mut connection),
        )
        .await?;
        // Positions stay far below 2^53, which a score holds exactly.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(score.map(|score| score as Seq))
    }

    /// Forgets the ids of events before `first_kept`, which retention drops.
    pub(super) async fn forget_mercure_ids(&self, first_kept: &str) -> Result<(), StorageError> {
        let mut connection = self.connection();
        Self::call(
            "forgetting Mercure ids",
            redis::cmd("ZREMRANGEBYSCORE")
                .arg(&self.keys().mercure_ids)
                .arg("-inf")
                .arg(format!("({first_kept}"))
                .exec_async(&mut connection),
        )
        .await
    }
}
