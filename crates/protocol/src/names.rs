//! Validation rules for topics, event types and ids, so the server and the browser agree on them.

use std::fmt;

/// The longest topic accepted, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// The longest event type accepted, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 64;
/// Event types with this prefix are sent by Herald itself and may not be published.
pub const RESERVED_PREFIX: &str = "herald.";
/// Event types that `EventSource` would mistake for its own `error` and `open` events.
pub const RESERVED_TYPES: [&str; 2] = ["error", "open"];
/// The longest user id (a token's `sub`) accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;
/// The event type used when a publisher names none.
pub const DEFAULT_EVENT_TYPE: &str = "message";

/// Why a name was refused. The `Display` text is a sentence meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    EmptyTopic,
    TopicTooLong { len: usize },
    TopicControlCharacter,
    EventTypeLength { len: usize },
    EventTypeCharacter { found: char },
    ReservedEventType,
    InvalidUserId,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyTopic => write!(f, "a topic must not be empty"),
            Self::TopicTooLong { len } => {
                write!(
                    f,
                    "a topic is at most {MAX_TOPIC_BYTES} bytes, this one has {len}"
                )
            }
            Self::TopicControlCharacter => write!(f, "a topic must not contain control characters"),
            Self::EventTypeLength { len } => write!(
                f,
                "an event type is 1 to {MAX_EVENT_TYPE_BYTES} bytes long, this one has {len}"
            ),
            Self::EventTypeCharacter { found } => write!(
                f,
                "an event type may only contain A-Z, a-z, 0-9 and . _ : -, found {found:?}"
            ),
            Self::InvalidUserId => write!(
                f,
                "a user id is 1 to {MAX_USER_ID_BYTES} bytes without control characters"
            ),
            Self::ReservedEventType => write!(
                f,
                "event types beginning with \"{RESERVED_PREFIX}\" are reserved, and so are \"error\" and \
                 \"open\", which browsers would take for EventSource's own events"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a topic: non-empty UTF-8, at most [`MAX_TOPIC_BYTES`] bytes, no control characters.
pub fn validate_topic(topic: &str) -> Result<(), NameError> {
    if topic.is_empty() {
        return Err(NameError::EmptyTopic);
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(NameError::TopicTooLong { len: topic.len() });
    }
    if topic.chars().any(char::is_control) {
        return Err(NameError::TopicControlCharacter);
    }
    Ok(())
}

/// Checks a user id, as tokens carry it in `sub` and paths name it: 1 to
/// [`MAX_USER_ID_BYTES`] bytes, no control characters (stored stream keys are separated by
/// newlines).
pub fn validate_user_id(user: &str) -> Result<(), NameError> {
    if user.is_empty() || user.len() > MAX_USER_ID_BYTES || user.chars().any(char::is_control) {
        return Err(NameError::InvalidUserId);
    }
    Ok(())
}

/// Checks an event type's syntax: 1 to 64 bytes of `[A-Za-z0-9._:-]`. Reserved names pass; see
/// [`validate_publishable_event_type`].
pub fn validate_event_type(kind: &str) -> Result<(), NameError> {
    if kind.is_empty() || kind.len() > MAX_EVENT_TYPE_BYTES {
        return Err(NameError::EventTypeLength { len: kind.len() });
    }
    if let Some(found) = kind
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(NameError::EventTypeCharacter { found });
    }
    Ok(())
}

/// Checks an event type a publisher sent: valid syntax and not in the reserved `herald.` space.
pub fn validate_publishable_event_type(kind: &str) -> Result<(), NameError> {
    validate_event_type(kind)?;
    if kind.starts_with(RESERVED_PREFIX) || RESERVED_TYPES.contains(&kind) {
        return Err(NameError::ReservedEventType);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_short_and_free_of_control_characters() {
        assert_eq!(validate_user_id("alice@example.com"), Ok(()));
        assert_eq!(validate_user_id(&"u".repeat(MAX_USER_ID_BYTES)), Ok(()));
        for bad in ["", "a\nb", &"u".repeat(MAX_USER_ID_BYTES + 1)] {
            assert_eq!(
                validate_user_id(bad),
                Err(NameError::InvalidUserId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn accepts_the_topics_the_api_names() {
        for topic in [
            "orders",
            "rooms/42",
            "https://example.com/books/1",
            "ünïcödé",
        ] {
            assert_eq!(validate_topic(topic), Ok(()), "{topic}");
        }
        assert_eq!(validate_topic(&"x".repeat(MAX_TOPIC_BYTES)), Ok(()));
    }

    #[test]
    fn refuses_empty_long_and_control_topics() {
        assert_eq!(validate_topic(""), Err(NameError::EmptyTopic));
        assert_eq!(
            validate_topic(&"x".repeat(MAX_TOPIC_BYTES + 1)),
            Err(NameError::TopicTooLong { len: 257 })
        );
        for topic in ["a\nb", "a\rb", "a\0b", "tab\there", "del\u{7f}"] {
            assert_eq!(
                validate_topic(topic),
                Err(NameError::TopicControlCharacter),
                "{topic:?}"
            );
        }
    }

    #[test]
    fn event_types_follow_the_character_class() {
        for kind in ["message", "order.created", "a:b_c-d", &"x".repeat(64)] {
            assert_eq!(validate_publishable_event_type(kind), Ok(()), "{kind}");
        }
        assert!(matches!(
            validate_event_type(""),
            Err(NameError::EventTypeLength { len: 0 })
        ));
        assert!(validate_event_type(&"x".repeat(65)).is_err());
        assert_eq!(
            validate_event_type("a b"),
            Err(NameError::EventTypeCharacter { found: ' ' })
        );
        assert!(validate_event_type("line\nbreak").is_err());
    }

    #[test]
    fn reserved_types_cannot_be_published() {
        assert_eq!(validate_event_type("herald.connected"), Ok(()));
        for kind in ["herald.connected", "error", "open"] {
            assert_eq!(
                validate_publishable_event_type(kind),
                Err(NameError::ReservedEventType),
                "{kind}"
            );
        }
    }
}
