//! Presence across a cluster: for each user on each topic, a hash of every node's connections
//! (`presence.lua`), so that a user's arrival and departure are announced once, by whichever
//! node sees them, and a node that dies does not keep its users present for ever (the
//! retention pass forgets its counts).

use super::{RedisStorage, StorageError};
use crate::time;

/// What a change of a user's connections on a topic means for its presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceStep {
    /// The user arrived: announce it.
    Arrived,
    /// Nothing to announce.
    Unchanged,
    /// The user has no connection left on a live node (after a close): settle after the grace
    /// period.
    Vacated,
    /// The user left: announce it.
    Departed,
}

/// A change to a user's presence on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceOperation {
    /// A node holds one more connection of the user.
    Open,
    /// A node holds one less.
    Close,
    /// After the grace period, or from the retention pass: has the user left?
    Settle,
}

impl RedisStorage {
    fn presence_key(&self, topic: &str, user: &str) -> String {
        format!("{}presence:{topic}\n{user}", self.keys().prefix)
    }

    /// Applies `operation` for `user` on `topic` from `node` (empty for the retention pass)
    /// and says what it means; see `presence.lua`.
    pub async fn presence(
        &self,
        operation: PresenceOperation,
        topic: &str,
        user: &str,
        node: &str,
    ) -> Result<PresenceStep, StorageError> {
        let name = match operation {
            PresenceOperation::Open => "open",
            PresenceOperation::Close => "close",
            PresenceOperation::Settle => "settle",
        };
        let mut invocation = self.scripts().presence.prepare_invoke();
        invocation
            .key(self.presence_key(topic, user))
            .key(&self.keys().nodes)
            .arg(name)
            .arg(node)
            .arg(time::now_ms());
        let mut connection = self.connection();
        let answer: i64 =
            Self::call("keeping presence", invocation.invoke_async(&mut connection)).await?;
        Ok(match (operation, answer) {
            (PresenceOperation::Open, 1) => PresenceStep::Arrived,
            (PresenceOperation::Close, 0) => PresenceStep::Vacated,
            (PresenceOperation::Settle, 1) => PresenceStep::Departed,
            _ => PresenceStep::Unchanged,
        })
    }

    /// Counts `change` (1, -1 or 0) to `node`'s connections watching `topic`'s presence;
    /// whether a live node has one: only then is a change of presence worth publishing.
    pub async fn presence_watched(
        &self,
        topic: &str,
        node: &str,
        change: i64,
    ) -> Result<bool, StorageError> {
        let mut invocation = self.scripts().watched.prepare_invoke();
        invocation
            .key(format!("{}presence-watchers:{topic}", self.keys().prefix))
            .key(&self.keys().nodes)
            .arg(change)
            .arg(node)
            .arg(time::now_ms());
        let mut connection = self.connection();
        let watched: i64 = Self::call(
            "counting presence watchers",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        Ok(watched == 1)
    }

    /// The (topic, user) pairs with a presence record, for the retention pass.
    pub async fn presence_records(&self) -> Result<Vec<(String, String)>, StorageError> {
        let pattern = format!("{}presence:*", self.keys().prefix);
        let prefix_len = self.keys().prefix.len() + "presence:".len();
        let mut connection = self.connection();
        let mut cursor: u64 = 0;
        let mut records = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = Self::call(
                "listing presence",
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut connection),
            )
            .await?;
            records.extend(keys.iter().filter_map(|key| {
                let (topic, user) = key.get(prefix_len..)?.split_once('\n')?;
                Some((topic.to_owned(), user.to_owned()))
            }));
            if next == 0 {
                return Ok(records);
            }
            cursor = next;
        }
    }
}

impl RedisStorage {
    fn stats_key(&self, node: &str) -> String {
        format!("{}stats:{node}", self.keys().prefix)
    }

    /// Writes `node`'s figures for the other nodes, for a few seconds.
    pub async fn put_node_stats(
        &self,
        node: &str,
        stats: &herald_protocol::api::NodeStats,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_string(stats)
            .map_err(|err| StorageError::unavailable(format!("encoding figures: {err}")))?;
        let mut connection = self.connection();
        Self::call(
            "sharing figures",
            redis::cmd("SET")
                .arg(self.stats_key(node))
                .arg(json)
                .arg("PX")
                .arg(3000)
                .exec_async(&mut connection),
        )
        .await
    }

    /// The figures the live nodes last wrote.
    pub async fn node_stats(&self) -> Result<Vec<herald_protocol::api::NodeStats>, StorageError> {
        let mut connection = self.connection();
        let nodes: Vec<String> = Self::call(
            "listing nodes",
            redis::cmd("ZRANGEBYSCORE")
                .arg(&self.keys().nodes)
                .arg(time::now_ms())
                .arg("+inf")
                .query_async(&mut connection),
        )
        .await?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = redis::cmd("MGET");
        for node in &nodes {
            mget.arg(self.stats_key(node));
        }
        let values: Vec<Option<String>> =
            Self::call("reading figures", mget.query_async(&mut connection)).await?;
        Ok(values
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }
}
