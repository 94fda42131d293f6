//! What the Mercure hub asks of Redis: ids in a sorted set, each scored by the position of the
//! newest event holding it (written by `append.lua`), looked up to resume from and forgotten
//! with the history; the topic streams, for selectors that are not one topic; and where a
//! replay may start from, for `earliest`.

use super::{RedisStorage, Seq, StorageError, StreamKey};

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

    /// The streams of topics, public and private, that hold history.
    pub(super) async fn stored_topic_streams(&self) -> Result<Vec<StreamKey>, StorageError> {
        let mut connection = self.connection();
        let keys: Vec<String> = Self::call(
            "listing the streams",
            redis::cmd("SMEMBERS")
                .arg(&self.keys().streams)
                .query_async(&mut connection),
        )
        .await?;
        Ok(keys
            .iter()
            .filter_map(|key| StreamKey::decode(key))
            .filter(|stream| stream.topic().is_some())
            .collect())
    }

    /// See [`crate::storage::Storage::earliest`].
    pub(super) async fn earliest_of(&self, streams: &[StreamKey]) -> Result<Seq, StorageError> {
        let keys = self.keys();
        let mut invocation = self.scripts().earliest.prepare_invoke();
        invocation.key(&keys.floor).key(&keys.forgotten);
        for stream in streams {
            invocation.key(keys.stream(stream));
        }
        let mut connection = self.connection();
        let earliest: String = Self::call(
            "finding where history begins",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        earliest.parse().map_err(|_| {
            StorageError::unavailable(format!("Redis answered {earliest:?} as a position"))
        })
    }
}
