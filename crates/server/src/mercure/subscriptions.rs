//! Mercure's active subscriptions: the private update published when a subscription starts or
//! ends, on the topic `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, and the JSON-LD
//! documents of the subscriptions API.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::storage::{MercureFields, NewEvent, StreamKey};

/// Where subscriptions are published and listed.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";
/// The JSON-LD context of every document.
pub const CONTEXT: &str = "https://mercure.rocks/";
/// The event type subscription updates carry for Herald's subscribers (Mercure's see none).
pub const SUBSCRIPTION_TYPE: &str = "mercure.subscription";

/// One subscription: a subscriber's selector.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSubscription {
    pub topic: String,
    pub subscriber: String,
    pub payload: Option<Value>,
}

impl ActiveSubscription {
    /// Its topic, and its id in the API: `/.well-known/mercure/subscriptions/{topic}/{subscriber}`,
    /// each part encoded.
    pub fn id(&self) -> String {
        format!(
            "{SUBSCRIPTIONS_PATH}/{}/{}",
            encode(&self.topic),
            encode(&self.subscriber)
        )
    }

    /// Its JSON-LD document; `context` for one standing alone rather than in a collection.
    pub fn document(&self, active: bool, context: bool) -> Value {
        let mut document = json!({
            "id": self.id(),
            "type": "Subscription",
            "topic": self.topic,
            "subscriber": self.subscriber,
            "active": active,
        });
        if let Some(object) = document.as_object_mut() {
            if context {
                object.insert("@context".into(), CONTEXT.into());
            }
            if let Some(payload) = &self.payload {
                object.insert("payload".into(), payload.clone());
            }
        }
        document
    }

    /// The private update saying the subscription started (`active`) or ended.
    pub fn update(&self, active: bool) -> NewEvent {
        let document = self.document(active, true);
        let text = serde_json::to_string_pretty(&document).unwrap_or_default();
        NewEvent {
            streams: vec![StreamKey::Private(Arc::from(self.id()))],
            kind: SUBSCRIPTION_TYPE.to_owned(),
            data: serde_json::value::to_raw_value(&text).unwrap_or_default(),
            time: SystemTime::now(),
            mercure: Some(Box::new(MercureFields {
                id: crate::ids::urn_uuid(),
                untyped: true,
                retry: None,
            })),
        }
    }
}

/// The collection document of `subscriptions`, found at `id`, as of `last_event_id`.
pub fn collection(id: &str, last_event_id: &str, subscriptions: &[ActiveSubscription]) -> Value {
    json!({
        "@context": CONTEXT,
        "id": id,
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": subscriptions
            .iter()
            .map(|subscription| subscription.document(true, false))
            .collect::<Vec<_>>(),
    })
}

/// A topic or subscriber as one path segment: unreserved characters as they are, a space as
/// `+`, anything else percent-encoded.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_is_named_by_its_encoded_topic_and_subscriber() {
        let subscription = ActiveSubscription {
            topic: "https://example.com/{selector}".into(),
            subscriber: "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6".into(),
            payload: Some(json!({"foo": "bar"})),
        };
        assert_eq!(
            subscription.id(),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/\
             urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6"
        );
        let document = subscription.document(false, true);
        assert_eq!(document["@context"], CONTEXT);
        assert_eq!(document["type"], "Subscription");
        assert_eq!(document["topic"], "https://example.com/{selector}");
        assert_eq!(document["active"], false);
        assert_eq!(document["payload"], json!({"foo": "bar"}));
        assert!(subscription.document(true, false).get("@context").is_none());
        assert_eq!(encode("a b+c"), "a+b%2Bc");
    }
}
