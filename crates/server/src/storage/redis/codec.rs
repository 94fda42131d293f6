//! Herald's values as Redis stores them: events as stream entries, read back as [`FeedEntry`]s.

use std::sync::Arc;

use redis::Value;
use serde_json::value::RawValue;

use crate::storage::{MercureFields, Seq, StorageError, StoredEvent, StreamKey};
use crate::time;

/// One entry of the feed, in log order.
#[derive(Debug)]
pub enum FeedEntry {
    Event(Arc<StoredEvent>),
    /// A message for every node; it takes a position but no stream holds it.
    Control {
        seq: Seq,
        message: String,
    },
    /// An entry at this position that cannot be decoded.
    Unreadable {
        seq: Seq,
        reason: String,
    },
}

impl FeedEntry {
    pub fn seq(&self) -> Seq {
        match self {
            Self::Event(event) => event.seq,
            Self::Control { seq, .. } | Self::Unreadable { seq, .. } => *seq,
        }
    }
}

fn malformed(what: impl std::fmt::Display) -> StorageError {
    StorageError::unavailable(format!("Redis holds a malformed entry: {what}"))
}

fn text(value: Value) -> Result<String, StorageError> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| malformed("not UTF-8")),
        Value::SimpleString(text) => Ok(text),
        other => Err(malformed(format!("expected text, found {other:?}"))),
    }
}

/// The position of a stream entry id `<seq>-0`.
fn seq_of(id: &str) -> Result<Seq, StorageError> {
    id.split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| malformed(format!("entry id {id:?}")))
}

/// The position of an entry, from its id.
pub fn entry_seq(id: &Value) -> Result<Seq, StorageError> {
    match id {
        Value::BulkString(bytes) => seq_of(&String::from_utf8_lossy(bytes)),
        Value::SimpleString(text) => seq_of(text),
        other => Err(malformed(format!("entry id {other:?}"))),
    }
}

/// One stream entry, as XRANGE and XREAD return it: its id and its field/value pairs. Events
/// carry `s` (their stream keys, one per line), `k`, `d`, `t` and, for a Mercure update, `m`;
/// control messages carry `c`.
pub fn entry(id: Value, fields: Value) -> Result<FeedEntry, StorageError> {
    let seq = seq_of(&text(id)?)?;
    let Value::Array(fields) = fields else {
        return Err(malformed("fields are not a list"));
    };
    let (mut streams, mut kind, mut data, mut time) = (None, None, None, None);
    let mut mercure = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let value = text(value)?;
        match text(name)?.as_str() {
            "s" => streams = Some(value),
            "k" => kind = Some(value),
            "d" => data = Some(value),
            "t" => time = Some(value),
            "m" => mercure = Some(value),
            "c" => {
                return Ok(FeedEntry::Control {
                    seq,
                    message: value,
                });
            }
            _ => {}
        }
    }
    let (Some(streams), Some(kind), Some(data), Some(time)) = (streams, kind, data, time) else {
        return Err(malformed(format!("event {seq} lacks a field")));
    };
    let streams = streams
        .split('\n')
        .map(|key| StreamKey::decode(key).ok_or_else(|| malformed(format!("stream key {key:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let data = RawValue::from_string(data).map_err(|_| malformed(format!("event {seq}'s data")))?;
    let micros: u64 = time
        .parse()
        .map_err(|_| malformed(format!("event {seq}'s time")))?;
    Ok(FeedEntry::Event(Arc::new(StoredEvent {
        seq,
        id: crate::storage::decimal_id(seq),
        streams,
        kind,
        data,
        time: time::from_unix_micros(micros),
        mercure: match mercure {
            Some(text) => {
                Some(Box::new(MercureFields::decode(&text).ok_or_else(|| {
                    malformed(format!("event {seq}'s Mercure fields"))
                })?))
            }
            None => None,
        },
    })))
}

/// An integer Redis sent as a number or as text.
pub fn integer(value: Value) -> Result<u64, StorageError> {
    match value {
        Value::Int(n) => u64::try_from(n).map_err(|_| malformed(format!("negative number {n}"))),
        other => text(other)?
            .parse()
            .map_err(|_| malformed("expected a number")),
    }
}
