//! What the nodes of a cluster share besides the log: the feed each one follows, control
//! messages for all of them, and the connections each one holds.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use serde::{Deserialize, Serialize};

use super::codec::{self, FeedEntry};
use super::{OPERATION_TIMEOUT, RedisStorage, redis_error};
use crate::storage::{Seq, StorageError};
use crate::time;

/// One live connection as its node announces it to the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub client_id: String,
    pub connection_id: String,
    pub user: Option<String>,
    pub admin: bool,
    pub topics: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    /// The node holding the connection; filled in when listed.
    #[serde(skip)]
    pub node: String,
    /// For a subscriber of the Mercure hub: its id and its credential's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mercure: Option<MercureRecord>,
}

/// A Mercure subscriber, as the subscriptions API lists it; its selectors are the record's
/// topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MercureRecord {
    pub subscriber: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// A connection of its own that follows the feed: blocking reads do not hold up the commands
/// every other task sends.
#[derive(Debug)]
pub struct FeedReader {
    connection: MultiplexedConnection,
    storage: RedisStorage,
}

impl RedisStorage {
    /// Opens a dedicated connection for following the feed.
    pub async fn feed_reader(&self, longest_wait: Duration) -> Result<FeedReader, StorageError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(OPERATION_TIMEOUT))
            .set_response_timeout(Some(longest_wait + OPERATION_TIMEOUT));
        let connect = self
            .shared
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let connection = Self::call("opening the feed connection", connect).await?;
        Ok(FeedReader {
            connection,
            storage: self.clone(),
        })
    }

    /// Appends a message every node receives, in log order, through its feed.
    pub async fn send_control(&self, message: &str) -> Result<(), StorageError> {
        let keys = self.keys();
        let mut invocation = self.scripts().control.prepare_invoke();
        invocation
            .key(&keys.seq)
            .key(&keys.floor)
            .key(&keys.feed)
            .arg(self.shared.feed_max_len)
            .arg(message)
            .arg(self.seen());
        let mut connection = self.connection();
        let seq: Seq = Self::call(
            "sending a message to the nodes",
            invocation.invoke_async(&mut connection),
        )
        .await?;
        self.observe(seq);
        Ok(())
    }

    /// Records changes to `node`'s connections (replacing all of them when `replace`), and that
    /// the node is alive for `ttl`: a node that stops refreshing drops out of every listing.
    pub async fn announce(
        &self,
        node: &str,
        joined: &[NodeRecord],
        left: &[String],
        replace: bool,
        ttl: Duration,
    ) -> Result<(), StorageError> {
        let key = self.keys().node(node);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if replace {
            pipe.cmd("DEL").arg(&key).ignore();
        }
        if !joined.is_empty() {
            let mut hset = redis::cmd("HSET");
            hset.arg(&key);
            for record in joined {
                let json = serde_json::to_string(record).map_err(|err| {
                    StorageError::unavailable(format!("encoding a connection: {err}"))
                })?;
                hset.arg(&record.connection_id).arg(json);
            }
            pipe.add_command(hset).ignore();
        }
        if !left.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(left).ignore();
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        pipe.cmd("ZADD")
            .arg(&self.keys().nodes)
            .arg(time::now_ms() + ttl_ms)
            .arg(node)
            .ignore();
        let mut connection = self.connection();
        Self::call("announcing connections", pipe.exec_async(&mut connection)).await
    }

    /// Removes `node` from the cluster's listings, when it shuts down.
    pub async fn withdraw(&self, node: &str) -> Result<(), StorageError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.keys().node(node))
            .ignore()
            .cmd("ZREM")
            .arg(&self.keys().nodes)
            .arg(node)
            .ignore();
        let mut connection = self.connection();
        Self::call("withdrawing the node", pipe.exec_async(&mut connection)).await
    }

    /// Every connection every live node has announced.
    pub async fn cluster_connections(&self) -> Result<Vec<NodeRecord>, StorageError> {
        let keys = self.keys();
        let now = time::now_ms();
        let mut connection = self.connection();
        let (nodes,): (Vec<String>,) = Self::call(
            "listing nodes",
            redis::pipe()
                .cmd("ZRANGEBYSCORE")
                .arg(&keys.nodes)
                .arg(now)
                .arg("+inf")
                .cmd("ZREMRANGEBYSCORE")
                .arg(&keys.nodes)
                .arg("-inf")
                .arg(format!("({now}"))
                .ignore()
                .query_async(&mut connection),
        )
        .await?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.cmd("HVALS").arg(keys.node(node));
        }
        let values: Vec<Vec<String>> =
            Self::call("listing connections", pipe.query_async(&mut connection)).await?;
        let mut records = Vec::new();
        for (node, values) in nodes.iter().zip(values) {
            for json in values {
                let mut record: NodeRecord = serde_json::from_str(&json).map_err(|err| {
                    StorageError::unavailable(format!("Redis holds a malformed connection: {err}"))
                })?;
                record.node.clone_from(node);
                records.push(record);
            }
        }
        Ok(records)
    }
}

impl FeedReader {
    /// Checks that this Redis can hold Herald's log: version 7.0 or newer (replays rely on the
    /// streams' record of deleted entries). Warns when Redis may evict keys, which would lose
    /// history and client ids without anyone knowing.
    pub async fn check_server(&mut self) -> Result<(), StorageError> {
        let info: String = RedisStorage::call(
            "describing itself",
            redis::cmd("INFO")
                .arg("server")
                .arg("memory")
                .query_async(&mut self.connection),
        )
        .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let version = field("redis_version").unwrap_or("unknown");
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|major| major.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(StorageError::unavailable(format!(
                "Herald needs Redis 7.0 or newer; this one is {version}"
            )));
        }
        if let Some(policy) = field("maxmemory_policy").filter(|policy| *policy != "noeviction") {
            tracing::error!(
                policy,
                "Redis may evict keys (maxmemory-policy is not noeviction): history, client ids and inboxes can vanish; set maxmemory-policy noeviction"
            );
        }
        Ok(())
    }

    /// The log's newest position, read on this connection.
    pub async fn latest(&mut self) -> Result<Seq, StorageError> {
        let keys = self.storage.keys();
        let mut invocation = self.storage.scripts().latest.prepare_invoke();
        invocation
            .key(&keys.seq)
            .key(&keys.floor)
            .arg(self.storage.seen());
        let latest = RedisStorage::call(
            "reading the log's position",
            invocation.invoke_async(&mut self.connection),
        )
        .await?;
        self.storage.observe(latest);
        Ok(latest)
    }

    /// Up to `count` entries after `after`, waiting up to `wait` for the first one.
    pub async fn read(
        &mut self,
        after: Seq,
        wait: Duration,
        count: usize,
    ) -> Result<Vec<FeedEntry>, StorageError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(wait_ms)
            .arg("STREAMS")
            .arg(&self.storage.keys().feed)
            .arg(format!("{after}-0"))
            .query_async(&mut self.connection)
            .await
            .map_err(|err| redis_error("reading the feed", &err))?;
        let mut entries = Vec::new();
        // Nothing within the wait is nil; otherwise [[feed, [[id, fields], ...]]].
        let Value::Array(streams) = reply else {
            return Ok(entries);
        };
        for stream in streams {
            let Value::Array(mut parts) = stream else {
                continue;
            };
            let Some(Value::Array(items)) = parts.pop() else {
                continue;
            };
            for item in items {
                let Value::Array(mut item) = item else {
                    continue;
                };
                if let (Some(fields), Some(id)) = (item.pop(), item.pop()) {
                    let seq = codec::entry_seq(&id)?;
                    entries.push(codec::entry(id, fields).unwrap_or_else(|err| {
                        FeedEntry::Unreadable {
                            seq,
                            reason: err.message,
                        }
                    }));
                }
            }
        }
        Ok(entries)
    }
}
