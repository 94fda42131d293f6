//! The notification inbox kept beside the event log: the types the [`Storage`] boundary speaks.
//!
//! Notifications belong to one user; every query names the user, so one user never reads or
//! changes another's. Ids increase with creation, so "newest first" is "highest id first" and a
//! page boundary is an id.
//!
//! [`Storage`]: super::Storage

use std::time::SystemTime;

/// A notification to store.
#[derive(Debug, Clone)]
pub struct NewInboxItem {
    pub title: String,
    pub body: String,
    pub url: Option<String>,
    pub kind: Option<String>,
    pub created_at: SystemTime,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    pub id: u64,
    pub title: String,
    pub body: String,
    pub url: Option<String>,
    pub kind: Option<String>,
    pub created_at: SystemTime,
    pub read: bool,
}

/// Which part of an inbox to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxQuery {
    pub unread_only: bool,
    /// At most this many items.
    pub limit: usize,
    /// Only items older than (with an id below) this one.
    pub before: Option<u64>,
}

/// One page of an inbox, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    /// Unread items in the whole inbox.
    pub unread_count: u64,
    /// The `before` of the next page, when there are older items.
    pub next_before: Option<u64>,
}

/// What to mark read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTarget {
    One(u64),
    All,
}

/// The outcome of marking read: the items that changed (none when already read) and the
/// unread count after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChange {
    pub ids: Vec<u64>,
    pub unread_count: u64,
}
