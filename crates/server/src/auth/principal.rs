//! [`Principal`]: the caller of one request, and what it may do.

use std::sync::Arc;

use herald_protocol::auth::any_selector_matches;

use super::Credential;

/// Why a caller may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credential where one is needed.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential that does not allow it.
    #[error("{0}")]
    Forbidden(String),
}

/// The caller of one request: anonymous, or holding a verified credential.
#[derive(Debug, Clone, Default)]
pub struct Principal(pub Option<Credential>);

impl Principal {
    pub fn credential(&self) -> Option<&Credential> {
        self.0.as_ref()
    }

    pub fn user(&self) -> Option<&Arc<str>> {
        self.0.as_ref().map(|credential| &credential.user)
    }

    /// The credential, or [`Denied::Unauthenticated`] for an anonymous caller.
    pub fn require_credential(&self, what: &str) -> Result<&Credential, Denied> {
        self.0.as_ref().ok_or_else(|| {
            Denied::Unauthenticated(format!(
                "{what} needs a credential: send a token as `Authorization: Bearer`, the \
                 `herald_token` cookie or the `access_token` parameter"
            ))
        })
    }

    /// The credential, unless the caller is anonymous or no `publish` selector grants
    /// `target`.
    pub fn require_publish(&self, target: &str) -> Result<&Credential, Denied> {
        let credential = self.require_credential("publishing")?;
        if !any_selector_matches(&credential.grants.publish, target) {
            return Err(Denied::Forbidden(format!(
                "this credential may not publish to {target:?}"
            )));
        }
        Ok(credential)
    }

    /// The credential, unless the caller is anonymous or not an administrator.
    pub fn require_admin(&self) -> Result<&Credential, Denied> {
        let credential = self.require_credential("this admin endpoint")?;
        if !credential.grants.admin {
            return Err(Denied::Forbidden(
                "this endpoint needs a credential with \"admin\": true".into(),
            ));
        }
        Ok(credential)
    }

    /// Nothing, unless `topic` is private (`private`) and no `subscribe` selector of the
    /// caller grants it.
    pub fn require_subscribe(&self, topic: &str, private: bool) -> Result<(), Denied> {
        if private && !self.may_subscribe(topic) {
            self.require_credential(&format!("subscribing to the private topic {topic:?}"))?;
            return Err(Denied::Forbidden(format!(
                "this credential may not subscribe to the private topic {topic:?}"
            )));
        }
        Ok(())
    }

    /// Whether a `subscribe` selector grants `topic`: needed for private topics and events.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|credential| any_selector_matches(&credential.grants.subscribe, topic))
    }

    pub fn is_admin(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|credential| credential.grants.admin)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::auth::test_grants as grants;

    #[test]
    fn anonymous_callers_are_unauthenticated_and_others_forbidden() {
        let anonymous = Principal::default();
        assert!(matches!(
            anonymous.require_publish("rooms/1"),
            Err(Denied::Unauthenticated(_))
        ));
        let user = Principal(Some(Credential {
            user: Arc::from("alice"),
            grants: grants(),
            expires_at: SystemTime::now(),
        }));
        assert!(user.require_publish("rooms/1").is_ok());
        assert!(matches!(
            user.require_publish("orders"),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(user.require_admin(), Err(Denied::Forbidden(_))));
        assert!(user.may_subscribe("anything"));
        assert!(!anonymous.may_subscribe("anything"));
        assert!(anonymous.require_subscribe("public", false).is_ok());
        assert!(matches!(
            anonymous.require_subscribe("secret", true),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(user.require_subscribe("secret", true).is_ok());
    }
}
