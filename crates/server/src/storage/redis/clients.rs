//! The directory of issued client ids in Redis: one sorted set, each id scored by when it was
//! last seen.

use super::{RETENTION_CHUNK, RedisStorage};
use crate::ids::ClientId;
use crate::storage::StorageError;
use crate::time;

impl RedisStorage {
    /// Records a newly issued client id.
    pub(super) async fn register(&self, client: &ClientId) -> Result<(), StorageError> {
        let mut connection = self.connection();
        Self::call(
            "registering a client",
            redis::cmd("ZADD")
                .arg(&self.keys().clients)
                .arg(time::now_ms())
                .arg(client.as_str())
                .exec_async(&mut connection),
        )
        .await
    }

    /// Whether a client id was issued and is still known.
    pub(super) async fn exists(&self, client: &ClientId) -> Result<bool, StorageError> {
        let mut connection = self.connection();
        let seen: Option<String> = Self::call(
            "looking up a client",
            redis::cmd("ZSCORE")
                .arg(&self.keys().clients)
                .arg(client.as_str())
                .query_async(&mut connection),
        )
        .await?;
        Ok(seen.is_some())
    }

    /// Marks clients as seen now.
    pub(super) async fn touch(&self, clients: &[ClientId]) -> Result<(), StorageError> {
        let now = time::now_ms();
        let mut connection = self.connection();
        for chunk in clients.chunks(RETENTION_CHUNK) {
            // XX: a client forgotten meanwhile stays forgotten.
            let mut command = redis::cmd("ZADD");
            command.arg(&self.keys().clients).arg("XX");
            for client in chunk {
                command.arg(now).arg(client.as_str());
            }
            Self::call("marking live clients", command.exec_async(&mut connection)).await?;
        }
        Ok(())
    }

    /// How many client ids are stored.
    pub(super) async fn count_clients(&self) -> Result<u64, StorageError> {
        let mut connection = self.connection();
        Self::call(
            "counting clients",
            redis::cmd("ZCARD")
                .arg(&self.keys().clients)
                .query_async(&mut connection),
        )
        .await
    }

    /// Forgets the clients seen longest ago, with their streams, until at most `keep` remain.
    pub(super) async fn forget_oldest(&self, keep: u64) -> Result<u64, StorageError> {
        let keys = self.keys();
        let mut connection = self.connection();
        let mut forgotten = 0;
        loop {
            let mut invocation = self.scripts().forget_oldest.prepare_invoke();
            invocation
                .key(&keys.clients)
                .key(&keys.streams)
                .arg(keep)
                .arg(&keys.stream_prefix)
                .arg(RETENTION_CHUNK);
            let removed: u64 = Self::call(
                "forgetting the oldest clients",
                invocation.invoke_async(&mut connection),
            )
            .await?;
            forgotten += removed;
            if removed < RETENTION_CHUNK as u64 {
                return Ok(forgotten);
            }
        }
    }
}
