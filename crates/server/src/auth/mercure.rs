//! Mercure credentials: tokens whose `mercure` claim lists the topic selectors the holder may
//! publish to (`publish`) and receive private updates of (`subscribe`), with an optional
//! `payload`. `exp` is optional, as the Mercure protocol allows, and checked when present.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::names::validate_user_id;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{Authenticator, CredentialError, LATEST_TIME, read_public_key_pem};
use crate::mercure::Selector;

/// The most selectors a claim may list.
const MAX_SELECTORS: usize = 1000;

/// Whose token it is: publishers and subscribers may have keys of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MercureRole {
    Publisher,
    Subscriber,
}

/// A verified Mercure credential.
#[derive(Debug, Clone, Default)]
pub struct MercureCredential {
    /// Selectors of the topics the holder may publish to.
    pub publish: Vec<Selector>,
    /// Selectors of the topics whose private updates the holder may receive.
    pub subscribe: Vec<Selector>,
    pub payload: Option<serde_json::Value>,
    /// The token's `sub`, if it has one.
    pub user: Option<Arc<str>>,
    /// The token's `exp` (and leeway), if it has one: a stream is closed then.
    pub expires_at: Option<SystemTime>,
}

/// A key of Mercure tokens: a shared secret, or a public key with the one algorithm it is used
/// with.
pub(super) struct MercureKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

impl MercureKey {
    /// A key as configured: PEM text is a public key, anything else a shared secret.
    pub(super) fn parse(text: &str, what: &str) -> Result<Self, String> {
        if text.trim_start().starts_with("-----BEGIN") {
            let (key, algorithm) =
                read_public_key_pem(text.as_bytes()).map_err(|err| format!("{what}: {err}"))?;
            return Ok(Self { key, algorithm });
        }
        Ok(Self {
            key: DecodingKey::from_secret(text.as_bytes()),
            algorithm: Algorithm::HS256,
        })
    }
}

#[derive(Deserialize)]
struct MercureTokenClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    mercure: Option<MercureClaim>,
    /// The claim under its namespaced name, which some libraries write.
    #[serde(default, rename = "https://mercure.rocks/")]
    namespaced: Option<MercureClaim>,
}

#[derive(Deserialize, Default)]
struct MercureClaim {
    #[serde(default)]
    publish: Option<Vec<String>>,
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

fn selectors(list: Option<Vec<String>>, name: &str) -> Result<Vec<Selector>, CredentialError> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_SELECTORS {
        return Err(CredentialError::Malformed(format!(
            "mercure.{name} lists more than {MAX_SELECTORS} selectors"
        )));
    }
    Ok(list
        .iter()
        .map(|selector| Selector::new(selector))
        .collect())
}

impl Authenticator {
    /// Verifies a Mercure token: with the role's own key when one is configured, else with
    /// Herald's keys (the shared secret, the public key, the identity provider's), as
    /// [`Authenticator::verify`] chooses them. `exp` and `nbf` are checked when present.
    pub async fn verify_mercure(
        &self,
        token: &str,
        role: MercureRole,
    ) -> Result<MercureCredential, CredentialError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| CredentialError::Malformed(err.to_string()))?;
        let own = match role {
            MercureRole::Publisher => self.mercure_publisher.as_ref(),
            MercureRole::Subscriber => self.mercure_subscriber.as_ref(),
        };
        let key = match own {
            Some(own) if own.algorithm == header.alg => std::borrow::Cow::Borrowed(&own.key),
            Some(_) => {
                return Err(CredentialError::WrongAlgorithm(format!("{:?}", header.alg)));
            }
            None => self.key_for(&header).await?,
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims::<&str>(&[]);
        let claims = jsonwebtoken::decode::<MercureTokenClaims>(token, &key, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => CredentialError::Expired,
                ErrorKind::ImmatureSignature => CredentialError::NotYetValid,
                ErrorKind::InvalidSignature => CredentialError::BadSignature,
                ErrorKind::InvalidAlgorithm => {
                    CredentialError::WrongAlgorithm(format!("{:?}", header.alg))
                }
                _ => CredentialError::Malformed(err.to_string()),
            })?
            .claims;
        for (name, time) in [("exp", claims.exp), ("nbf", claims.nbf)] {
            if time.is_some_and(|time| time > LATEST_TIME) {
                return Err(CredentialError::OutOfRange(name));
            }
        }
        let user = match claims.sub {
            Some(sub) => {
                validate_user_id(&sub)
                    .map_err(|err| CredentialError::Malformed(format!("sub: {err}")))?;
                Some(Arc::from(sub))
            }
            None => None,
        };
        let claim = claims.mercure.or(claims.namespaced).unwrap_or_default();
        Ok(MercureCredential {
            publish: selectors(claim.publish, "publish")?,
            subscribe: selectors(claim.subscribe, "subscribe")?,
            payload: claim.payload,
            user,
            expires_at: claims.exp.map(|exp| {
                UNIX_EPOCH + Duration::from_secs(exp.saturating_add(self.leeway).min(LATEST_TIME))
            }),
        })
    }
}
