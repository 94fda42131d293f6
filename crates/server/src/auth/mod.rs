//! Authorization: who a request comes from and what it may do.
//!
//! [`Authenticator`] verifies JSON Web Tokens (HS256 with a shared secret; RS256, ES256 or
//! EdDSA with a public key, or with the keys of an identity provider's key set, [`KeySet`]),
//! checks their audience and issuer, finds Herald's grants in the configured claim and, with a
//! shared secret, signs them (for `herald token` and development mode).
//! [`Principal`] is the verified caller of one request, anonymous or holding a [`Credential`],
//! and answers the permission questions, refusing with [`Denied`].

mod keys;
mod mercure;
mod principal;
mod rate;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::auth::{Claims, Grants, any_selector_matches};
use herald_protocol::names::validate_user_id;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;

pub use keys::KeySet;
pub use mercure::{MercureCredential, MercureRole};
pub use principal::{Denied, Principal};
pub use rate::{RateLimited, RateLimiter};

/// The file in the data directory holding the development signing key.
const DEV_SECRET_FILE: &str = "dev-secret";

/// A verified credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The token's `sub`.
    pub user: Arc<str>,
    pub grants: Grants,
    pub expires_at: SystemTime,
}

/// Verifies tokens and, when it holds a shared secret, signs them.
pub struct Authenticator {
    /// HS256: the shared secret, both ways.
    hmac: Option<(EncodingKey, DecodingKey)>,
    /// RS256, ES256 or EdDSA: the public key and the one algorithm it is used with.
    public: Option<(DecodingKey, Algorithm)>,
    /// An identity provider's keys.
    key_set: Option<Arc<KeySet>>,
    /// Audiences of which a token must name one; none: `aud` is not checked.
    audiences: Vec<String>,
    /// Issuers of which a token's must be one; none: `iss` is not checked.
    issuers: Vec<String>,
    /// The claim holding Herald's grants.
    claims_key: String,
    /// The keys of Mercure publishers' and subscribers' tokens, when they have their own.
    mercure_publisher: Option<mercure::MercureKey>,
    mercure_subscriber: Option<mercure::MercureKey>,
    /// Topics whose subscribers need a `subscribe` selector.
    private_topics: Vec<String>,
    /// How far `exp`, `nbf` and `iat` may be off, in seconds.
    leeway: u64,
}

/// The last second a token's times may name: 9999-12-31T23:59:59Z, the end of what RFC 3339
/// (and so every timestamp Herald shows) can write.
const LATEST_TIME: u64 = 253_402_300_799;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hmac.is_some())
            .field("public_key", &self.public.as_ref().map(|(_, alg)| alg))
            .field("key_set", &self.key_set)
            .field("audiences", &self.audiences)
            .field("issuers", &self.issuers)
            .field("claims_key", &self.claims_key)
            .field("mercure_publisher_key", &self.mercure_publisher.is_some())
            .field("mercure_subscriber_key", &self.mercure_subscriber.is_some())
            .field("private_topics", &self.private_topics)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("tokens signed with {0} are not accepted here")]
    WrongAlgorithm(String),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's {0} is not a time Herald can handle (after the year 9999)")]
    OutOfRange(&'static str),
    #[error("the token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the token's signing key is unknown: {0}")]
    UnknownKey(String),
    #[error("the token is not for this audience (aud)")]
    WrongAudience,
    #[error("the token is not from an accepted issuer (iss)")]
    WrongIssuer,
}

impl Authenticator {
    /// The keys the configuration names. Without any key, only development mode may run, and
    /// then signs with a key kept in the data directory so tokens survive restarts.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let secret = match (&config.jwt_secret, config.dev) {
            (Some(secret), _) => Some(secret.clone()),
            (None, true) => Some(dev_secret(&config.data_dir)?),
            (None, false) => None,
        };
        let identity = &config.identity;
        let public = match &identity.jwt_public_key {
            Some(path) => Some(read_public_key(path)?),
            None => None,
        };
        let key_set = match &identity.jwks_url {
            Some(url) => Some(Arc::new(KeySet::new(url, identity.jwks_refresh)?)),
            None => None,
        };
        let mercure_key = |key: &Option<String>, what| {
            key.as_deref()
                .map(|key| mercure::MercureKey::parse(key, what))
                .transpose()
        };
        let mercure_publisher = mercure_key(
            &config.mercure.mercure_publisher_jwt_key,
            "--mercure-publisher-jwt-key",
        )?;
        let mercure_subscriber = mercure_key(
            &config.mercure.mercure_subscriber_jwt_key,
            "--mercure-subscriber-jwt-key",
        )?;
        if secret.is_none() && public.is_none() && key_set.is_none() {
            return Err(
                "no key to verify credentials with: set --jwt-secret (HS256), \
                        --jwt-public-key (RS256/ES256/EdDSA) or --jwks-url (an identity \
                        provider's keys), or run `herald --dev` for local development"
                    .into(),
            );
        }
        Ok(Self {
            hmac: secret.as_deref().map(hmac_keys),
            public,
            key_set,
            audiences: identity.jwt_audience.clone(),
            issuers: identity.jwt_issuer.clone(),
            claims_key: identity.jwt_claims_key.clone(),
            mercure_publisher,
            mercure_subscriber,
            private_topics: config.private_topics.clone(),
            leeway: config.jwt_leeway.as_secs(),
        })
    }

    /// Fetches the identity provider's keys once, if there is one: a line saying which keys
    /// it holds, or why it cannot be used.
    pub async fn check_key_set(&self) -> Result<Option<String>, String> {
        let Some(key_set) = &self.key_set else {
            return Ok(None);
        };
        let keys = key_set.check().await?;
        Ok(Some(format!(
            "the identity provider's key set holds {} usable keys: {}",
            keys.len(),
            keys.join(", ")
        )))
    }

    /// Starts fetching the identity provider's keys, if there is one, until `shutdown`.
    pub fn start(&self, metrics: &Arc<Metrics>, shutdown: &CancellationToken) {
        if let Some(key_set) = &self.key_set {
            key_set.start(Arc::clone(metrics), shutdown.clone());
        }
    }

    /// An authenticator with one HS256 secret, no private topics and no leeway, for tools and
    /// tests.
    pub fn with_secret(secret: &str) -> Self {
        Self {
            hmac: Some(hmac_keys(secret)),
            public: None,
            key_set: None,
            audiences: Vec::new(),
            issuers: Vec::new(),
            claims_key: "herald".into(),
            mercure_publisher: None,
            mercure_subscriber: None,
            private_topics: Vec::new(),
            leeway: 0,
        }
    }

    /// Checks a token's algorithm, signature, `exp`, `nbf`, `iat`, `sub` and, when configured,
    /// `aud` and `iss`. Every time must be one Herald can show (no later than the year 9999),
    /// and the token is good until `exp` plus the leeway: its connections are closed then.
    pub async fn verify(&self, token: &str) -> Result<Credential, CredentialError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| CredentialError::Malformed(err.to_string()))?;
        let key = self.key_for(&header).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
            required.push("aud");
        }
        if !self.issuers.is_empty() {
            validation.set_issuer(&self.issuers);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<TokenClaims>(token, &key, &validation).map_err(
            |err| match err.kind() {
                ErrorKind::ExpiredSignature => CredentialError::Expired,
                ErrorKind::ImmatureSignature => CredentialError::NotYetValid,
                ErrorKind::InvalidSignature => CredentialError::BadSignature,
                ErrorKind::InvalidAudience => CredentialError::WrongAudience,
                ErrorKind::InvalidIssuer => CredentialError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(claim) => {
                    CredentialError::Malformed(format!("the token has no {claim}"))
                }
                ErrorKind::InvalidAlgorithm => {
                    CredentialError::WrongAlgorithm(format!("{:?}", header.alg))
                }
                _ => CredentialError::Malformed(err.to_string()),
            },
        )?;
        let mut claims = data.claims;
        validate_user_id(&claims.sub)
            .map_err(|err| CredentialError::Malformed(format!("sub: {err}")))?;
        self.check_times(&claims)?;
        let grants = grants_in(claims.other.remove(&self.claims_key), &self.claims_key)?;
        let good_until = claims.exp.saturating_add(self.leeway).min(LATEST_TIME);
        Ok(Credential {
            user: Arc::from(claims.sub),
            grants,
            expires_at: UNIX_EPOCH + Duration::from_secs(good_until),
        })
    }

    /// The key a token's header names: the shared secret for HS256, the public key for its
    /// algorithm, or the identity provider's key its `kid` names (fetched if new).
    pub(super) async fn key_for(
        &self,
        header: &Header,
    ) -> Result<Cow<'_, DecodingKey>, CredentialError> {
        let wrong = || CredentialError::WrongAlgorithm(format!("{:?}", header.alg));
        if header.alg == Algorithm::HS256 {
            return self
                .hmac
                .as_ref()
                .map(|(_, key)| Cow::Borrowed(key))
                .ok_or_else(wrong);
        }
        if let Some((key, algorithm)) = &self.public
            && *algorithm == header.alg
            && (self.key_set.is_none() || header.kid.is_none())
        {
            return Ok(Cow::Borrowed(key));
        }
        match &self.key_set {
            Some(key_set) => Ok(Cow::Owned(
                key_set
                    .key_for(header.kid.as_deref(), header.alg)
                    .await?
                    .key,
            )),
            None => Err(wrong()),
        }
    }

    /// Refuses times beyond [`LATEST_TIME`] (`exp` in milliseconds, say), and an `iat` later
    /// than now and the leeway.
    fn check_times(&self, claims: &TokenClaims) -> Result<(), CredentialError> {
        for (name, time) in [
            ("exp", Some(claims.exp)),
            ("nbf", claims.nbf),
            ("iat", claims.iat),
        ] {
            if time.is_some_and(|time| time > LATEST_TIME) {
                return Err(CredentialError::OutOfRange(name));
            }
        }
        let now = crate::time::now_ms() / 1000;
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(self.leeway))
        {
            return Err(CredentialError::IssuedInFuture);
        }
        Ok(())
    }

    /// Signs `claims` with the shared secret, if there is one: its grants in the configured
    /// claim, and the first configured audience and issuer as `aud` and `iss`.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let Some((key, _)) = &self.hmac else {
            return Err(
                "this server verifies tokens with public keys and holds no shared secret \
                        to sign any with: issue tokens with the matching private key"
                    .into(),
            );
        };
        let failed = |err: &dyn std::fmt::Display| format!("cannot sign the token: {err}");
        let mut body = serde_json::to_value(claims).map_err(|err| failed(&err))?;
        if let Some(object) = body.as_object_mut() {
            if self.claims_key != "herald"
                && let Some(grants) = object.remove("herald")
            {
                object.insert(self.claims_key.clone(), grants);
            }
            // What this server checks, its own tokens carry.
            if let Some(audience) = self.audiences.first() {
                object.insert("aud".into(), audience.as_str().into());
            }
            if let Some(issuer) = self.issuers.first() {
                object.insert("iss".into(), issuer.as_str().into());
            }
        }
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &body, key).map_err(|err| failed(&err))
    }

    /// Whether subscribing to `topic` needs a `subscribe` selector.
    pub fn is_private(&self, topic: &str) -> bool {
        any_selector_matches(&self.private_topics, topic)
    }
}

/// The claims of a token Herald reads: the registered ones it checks, and the rest, among
/// which the one holding Herald's grants.
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// The grants in the claim `key`: an object, or that object as JSON text (for providers
/// whose custom claims are strings). No claim: no grants.
fn grants_in(claim: Option<serde_json::Value>, key: &str) -> Result<Grants, CredentialError> {
    let malformed = |err: serde_json::Error| CredentialError::Malformed(format!("{key}: {err}"));
    match claim {
        None | Some(serde_json::Value::Null) => Ok(Grants::default()),
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text).map_err(malformed),
        Some(value) => serde_json::from_value(value).map_err(malformed),
    }
}

/// The HS256 keys of a shared secret: one to sign, one to verify.
fn hmac_keys(secret: &str) -> (EncodingKey, DecodingKey) {
    (
        EncodingKey::from_secret(secret.as_bytes()),
        DecodingKey::from_secret(secret.as_bytes()),
    )
}

/// Claims for `user` valid for `ttl` from now.
pub fn claims_for(user: &str, grants: Grants, ttl: Duration) -> Claims {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Claims {
        sub: user.to_owned(),
        exp: (now + ttl).as_secs(),
        nbf: None,
        iat: Some(now.as_secs()),
        herald: grants,
    }
}

/// Reads the development key from the data directory, creating it on first use.
fn dev_secret(data_dir: &Path) -> Result<String, String> {
    let path = data_dir.join(DEV_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => {
            owner_only(&path)?;
            return Ok(secret.trim().to_owned());
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|err| format!("cannot create {}: {err}", data_dir.display()))?;
    let secret = crate::ids::random_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // Created readable by its owner alone: anyone who reads it can sign credentials.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options
            .open(&path)
            .map_err(|err| format!("cannot create {}: {err}", path.display()))?,
        secret.as_bytes(),
    )
    .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    owner_only(&path)?;
    Ok(secret)
}

/// Makes the key file readable by its owner alone, as one written by an older Herald may not
/// be.
#[cfg(unix)]
fn owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata =
        std::fs::metadata(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|err| format!("cannot restrict {}: {err}", path.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// Reads an RSA, EC (P-256) or Ed25519 public key from a PEM file.
fn read_public_key(path: &Path) -> Result<(DecodingKey, Algorithm), String> {
    let pem = std::fs::read(path)
        .map_err(|err| format!("cannot read the public key {}: {err}", path.display()))?;
    read_public_key_pem(&pem).map_err(|err| format!("{}: {err}", path.display()))
}

/// An RSA, EC (P-256) or Ed25519 public key in PEM, and the algorithm it is used with.
fn read_public_key_pem(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok((key, Algorithm::ES256));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    Err("no RSA, EC or Ed25519 public key in PEM form".into())
}

/// Grants for tests: publish to `rooms/*`, subscribe to anything, no admin.
#[cfg(test)]
fn test_grants() -> Grants {
    Grants {
        publish: vec!["rooms/*".into()],
        subscribe: vec!["*".into()],
        admin: false,
    }
}

#[cfg(test)]
mod tests {
    use super::test_grants as grants;
    use super::*;

    #[tokio::test]
    async fn signed_tokens_verify_and_others_do_not() {
        let auth = Authenticator::with_secret("s3cret");
        let token = auth
            .sign(&claims_for("alice", grants(), Duration::from_secs(60)))
            .unwrap();
        let credential = auth.verify(&token).await.unwrap();
        assert_eq!(&*credential.user, "alice");
        assert_eq!(credential.grants, grants());
        let other = Authenticator::with_secret("other");
        assert_eq!(
            other.verify(&token).await.unwrap_err(),
            CredentialError::BadSignature
        );
        assert!(matches!(
            auth.verify("not a token").await,
            Err(CredentialError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn an_audience_is_not_checked_unless_one_is_configured() {
        let auth = Authenticator::with_secret("s3cret");
        let mut claims =
            serde_json::to_value(claims_for("alice", grants(), Duration::from_secs(60))).unwrap();
        claims["aud"] = serde_json::json!(["https://api.example.com", "account"]);
        claims["iss"] = serde_json::json!("https://id.example.com/");
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &hmac_keys("s3cret").0,
        )
        .unwrap();
        let credential = auth.verify(&token).await.unwrap();
        assert_eq!(credential.grants, grants());
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let auth = Authenticator::with_secret("s3cret");
        let mut claims = claims_for("alice", grants(), Duration::ZERO);
        claims.exp -= 5;
        let token = auth.sign(&claims).unwrap();
        assert_eq!(
            auth.verify(&token).await.unwrap_err(),
            CredentialError::Expired
        );
    }

    #[tokio::test]
    async fn own_tokens_carry_what_is_checked_and_the_grants_in_the_configured_claim() {
        let mut identity = Config::default().identity;
        identity.jwt_audience = vec!["https://api.example.com".into()];
        identity.jwt_issuer = vec!["https://id.example.com/".into()];
        identity.jwt_claims_key = "https://example.com/herald".into();
        let config = Config {
            jwt_secret: Some("a-secret-of-at-least-thirty-two-bytes".into()),
            identity,
            ..Config::default()
        };
        let auth = Authenticator::from_config(&config).unwrap();
        let token = auth
            .sign(&claims_for("alice", grants(), Duration::from_secs(60)))
            .unwrap();
        let credential = auth.verify(&token).await.unwrap();
        assert_eq!(
            credential.grants,
            grants(),
            "read from the configured claim"
        );
        // The same secret without the audience and issuer: the token has both, and its grants
        // are not in `herald`.
        let plain = Authenticator::with_secret("a-secret-of-at-least-thirty-two-bytes");
        assert_eq!(
            plain.verify(&token).await.unwrap().grants,
            Grants::default()
        );
        // A token without `aud` and `iss` is refused where they are checked, for either.
        let unaddressed = plain
            .sign(&claims_for("alice", grants(), Duration::from_secs(60)))
            .unwrap();
        let refused = auth.verify(&unaddressed).await;
        assert!(
            matches!(
                &refused,
                Err(CredentialError::Malformed(message))
                    if message.ends_with("has no aud") || message.ends_with("has no iss")
            ),
            "{refused:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_development_key_is_readable_by_its_owner_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "herald-dev-key-{}-{}",
            std::process::id(),
            crate::ids::random_u32()
        ));
        let key = dir.join(DEV_SECRET_FILE);
        let mode = || std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        let created = dev_secret(&dir).unwrap();
        assert_eq!(mode(), 0o600, "created for its owner alone");
        // A key left readable by everyone (by an older Herald, say) is restricted when read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(dev_secret(&dir).unwrap(), created, "the same key is kept");
        assert_eq!(mode(), 0o600, "restricted when found open");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
