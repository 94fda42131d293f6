//! [`MercureSubscriber`]: what a Mercure subscriber asked for and may receive, and the one rule
//! deciding whether an update reaches it.

use crate::storage::{StoredEvent, StreamKey};

use super::Selector;

/// A subscriber of the Mercure hub.
#[derive(Debug, Clone)]
pub struct MercureSubscriber {
    /// Its id (`urn:uuid:…`), as the subscriptions API names it.
    pub id: String,
    /// The `topic` selectors it asked for.
    pub selectors: Vec<Selector>,
    /// Its credential's `mercure.subscribe` selectors: a private update reaches it when one of
    /// them matches one of the update's topics. Empty for an anonymous subscriber.
    pub allowed: Vec<Selector>,
    /// Its credential's `mercure.payload`.
    pub payload: Option<serde_json::Value>,
}

impl MercureSubscriber {
    /// Whether `event` is for this subscriber: one of its topics matches one of the
    /// subscriber's selectors, and it is public or one of its topics is allowed. Events without
    /// a topic (to a client, a user, everyone) are Herald's alone.
    pub fn accepts(&self, event: &StoredEvent) -> bool {
        let topics = || event.streams.iter().filter_map(StreamKey::topic);
        if topics().next().is_none() || !super::any_matches(&self.selectors, topics()) {
            return false;
        }
        let private = event
            .streams
            .iter()
            .any(|stream| matches!(stream, StreamKey::Private(_)));
        !private || super::any_matches(&self.allowed, topics())
    }

    /// The topics its exact selectors name: the streams it is found under.
    pub fn exact_topics(&self) -> impl Iterator<Item = &str> {
        self.selectors.iter().filter_map(Selector::exact)
    }

    /// Whether a selector is `*` or a template: such a subscriber is offered every event with a
    /// topic.
    pub fn has_patterns(&self) -> bool {
        self.selectors
            .iter()
            .any(|selector| selector.exact().is_none())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;

    fn event(topics: &[&str], private: bool) -> StoredEvent {
        StoredEvent {
            seq: 1,
            id: "1".into(),
            streams: topics
                .iter()
                .map(|topic| {
                    let topic = Arc::from(*topic);
                    if private {
                        StreamKey::Private(topic)
                    } else {
                        StreamKey::Topic(topic)
                    }
                })
                .collect(),
            kind: "message".into(),
            data: serde_json::value::to_raw_value("x").unwrap(),
            time: SystemTime::now(),
            mercure: None,
        }
    }

    fn subscriber(selectors: &[&str], allowed: &[&str]) -> MercureSubscriber {
        MercureSubscriber {
            id: "urn:uuid:test".into(),
            selectors: selectors.iter().map(|s| Selector::new(s)).collect(),
            allowed: allowed.iter().map(|s| Selector::new(s)).collect(),
            payload: None,
        }
    }

    #[test]
    fn an_update_is_for_a_subscriber_selecting_any_of_its_topics() {
        let books = subscriber(&["https://example.com/books/{id}", "news"], &[]);
        assert!(books.accepts(&event(&["https://example.com/books/1"], false)));
        assert!(
            books.accepts(&event(&["elsewhere", "news"], false)),
            "an alternate topic"
        );
        assert!(!books.accepts(&event(&["https://example.com/authors/1"], false)));
        assert!(books.has_patterns());
        assert_eq!(books.exact_topics().collect::<Vec<_>>(), ["news"]);
    }

    #[test]
    fn a_private_update_needs_an_allowed_topic_which_may_be_another_one() {
        let anonymous = subscriber(&["*"], &[]);
        assert!(!anonymous.accepts(&event(&["a"], true)));
        assert!(anonymous.accepts(&event(&["a"], false)));
        let allowed_b = subscriber(&["a"], &["b"]);
        assert!(!allowed_b.accepts(&event(&["a"], true)));
        assert!(
            allowed_b.accepts(&event(&["a", "b"], true)),
            "allowed through its alternate"
        );
        let everything = subscriber(&["a"], &["*"]);
        assert!(everything.accepts(&event(&["a"], true)));
    }
}
