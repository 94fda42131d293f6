//! The Lua scripts that make each multi-key change atomic, loaded once per node.

use redis::Script;

#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) append: Script,
    pub(super) latest: Script,
    pub(super) read: Script,
    pub(super) control: Script,
    pub(super) cutoff: Script,
    pub(super) trim: Script,
    pub(super) expire_clients: Script,
    pub(super) forget_oldest: Script,
    pub(super) notify: Script,
    pub(super) inbox: Script,
    pub(super) mark_read: Script,
    pub(super) earliest: Script,
    pub(super) presence: Script,
    pub(super) watched: Script,
    pub(super) stream_create: Script,
    pub(super) stream_append: Script,
    pub(super) stream_end: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            append: with_sequence(include_str!("lua/append.lua")),
            latest: with_sequence(include_str!("lua/latest.lua")),
            read: Script::new(include_str!("lua/read.lua")),
            control: with_sequence(include_str!("lua/control.lua")),
            cutoff: Script::new(include_str!("lua/cutoff.lua")),
            trim: Script::new(include_str!("lua/trim.lua")),
            expire_clients: Script::new(include_str!("lua/expire_clients.lua")),
            forget_oldest: Script::new(include_str!("lua/forget_oldest.lua")),
            notify: Script::new(include_str!("lua/notify.lua")),
            inbox: Script::new(include_str!("lua/inbox.lua")),
            mark_read: Script::new(include_str!("lua/mark_read.lua")),
            earliest: Script::new(include_str!("lua/earliest.lua")),
            presence: Script::new(include_str!("lua/presence.lua")),
            watched: Script::new(include_str!("lua/watched.lua")),
            stream_create: Script::new(include_str!("lua/stream_create.lua")),
            stream_append: Script::new(include_str!("lua/stream_append.lua")),
            stream_end: Script::new(include_str!("lua/stream_end.lua")),
        }
    }
}

/// A script that issues or reads positions, after the function that keeps the sequence.
fn with_sequence(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("lua/sequence.lua")))
}
