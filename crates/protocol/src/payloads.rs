//! The data of Herald's built-in event types: the demo streams and the notification inbox.

use serde::{Deserialize, Serialize};

/// Event name of each `/demo/countdown` message; its data is a JSON string `"Message N"`.
pub const COUNTDOWN_EVENT: &str = "customEvent";
/// Event name of a piece of a `/demo/chat` answer.
pub const CHAT_DELTA: &str = "chat.delta";
/// Event name of the end of a `/demo/chat` answer.
pub const CHAT_DONE: &str = "chat.done";
/// Event name of a `/demo/chat` upstream failure.
pub const CHAT_ERROR: &str = "chat.error";
/// The data of the last frame of a chat stream, sent as a plain `message` event.
pub const CHAT_DONE_SENTINEL: &str = "[DONE]";
/// Event name of a new notification.
pub const NOTIFICATION: &str = "notification";
/// Event name of a change in a user's read state.
pub const NOTIFICATION_READ: &str = "notification.read";

/// The text of countdown message `n` (1-based).
pub fn countdown_message(n: u32) -> String {
    format!("Message {n}")
}

/// Data of `chat.delta`: the next piece of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ChatDelta {
    pub text: String,
}

/// Data of `chat.done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ChatDone {
    /// `"stop"` when the answer is complete.
    pub finish_reason: String,
}

/// Data of `chat.error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ChatError {
    pub code: String,
    pub message: String,
}

/// A stored notification, as pushed in `event: notification` and listed in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Notification {
    pub id: String,
    pub title: String,
    pub body: String,
    pub url: Option<String>,
    pub kind: Option<String>,
    /// RFC 3339 in UTC.
    pub created_at: String,
    pub read: bool,
}

/// Data of `notification.read`: what changed and the new unread count, so every tab agrees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct NotificationRead {
    pub ids: Vec<String>,
    #[cfg_attr(feature = "typescript", ts(type = "number"))]
    pub unread_count: u64,
}
