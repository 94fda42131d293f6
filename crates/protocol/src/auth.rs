//! The claims Herald reads from a JSON Web Token, and the topic selectors that grant access.
//!
//! A token's `herald` claim lists what its holder may do: `publish` and `subscribe` hold
//! selectors, `admin` opens the admin endpoints. A selector is an exact topic, a prefix ending in
//! `/*` (`rooms/*` matches `rooms/42` and `rooms/42/typing`, not `rooms`), or `*` for every topic.

use serde::{Deserialize, Serialize};

/// The claims of a Herald token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claims {
    /// The user id: the connection receives this user's stream and inbox.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// When the token was issued, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default)]
    pub herald: Grants,
}

/// What a token allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grants {
    /// Topic selectors the holder may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic selectors the holder may subscribe to when the topic or event is private.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Whether the holder may list and close clients and broadcast.
    #[serde(default)]
    pub admin: bool,
}

/// Whether `selector` grants `topic`.
pub fn selector_matches(selector: &str, topic: &str) -> bool {
    if selector == "*" {
        return true;
    }
    match selector.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => {
            topic.len() > prefix.len() && topic.starts_with(prefix)
        }
        _ => selector == topic,
    }
}

/// Whether any of `selectors` grants `topic`.
pub fn any_selector_matches<S: AsRef<str>>(selectors: &[S], topic: &str) -> bool {
    selectors
        .iter()
        .any(|selector| selector_matches(selector.as_ref(), topic))
}

/// The pseudo-topic a publish selector must grant to send to one user (`users/<id>`).
pub fn user_target(user: &str) -> String {
    format!("users/{user}")
}

/// The pseudo-topic a publish selector must grant to send to one client (`clients/<id>`).
pub fn client_target(client: &str) -> String {
    format!("clients/{client}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_exactly_by_prefix_or_everything() {
        assert!(selector_matches("*", "anything/at/all"));
        assert!(selector_matches("orders", "orders"));
        assert!(!selector_matches("orders", "orders/1"));
        assert!(selector_matches("rooms/*", "rooms/42"));
        assert!(selector_matches("rooms/*", "rooms/42/typing"));
        assert!(!selector_matches("rooms/*", "rooms"));
        assert!(!selector_matches("rooms/*", "rooms/"));
        assert!(!selector_matches("rooms/*", "roomsx/1"));
        // Only a trailing `/*` is a wildcard.
        assert!(!selector_matches("room*", "rooms"));
        assert!(selector_matches("room*", "room*"));
    }

    #[test]
    fn claims_read_the_herald_grants() {
        let claims: Claims = serde_json::from_str(
            r#"{"sub":"alice","exp":10,"herald":{"publish":["rooms/*"],"admin":true}}"#,
        )
        .unwrap();
        assert_eq!(claims.herald.publish, vec!["rooms/*"]);
        assert!(claims.herald.subscribe.is_empty());
        assert!(claims.herald.admin);
        let bare: Claims = serde_json::from_str(r#"{"sub":"bob","exp":10}"#).unwrap();
        assert_eq!(bare.herald, Grants::default());
    }
}
