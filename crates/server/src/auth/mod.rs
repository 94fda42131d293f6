//! Authorization: who a request comes from and what it may do.
//!
//! [`Authenticator`] verifies JSON Web Tokens (HS256 with a shared secret, RS256 or ES256 with a
//! public key) and, with a shared secret, signs them (for `herald token` and development mode).
//! [`Principal`] is the verified caller of one request, anonymous or holding a [`Credential`],
//! and answers the permission questions, refusing with [`Denied`].

mod principal;
mod rate;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::auth::{Claims, Grants, any_selector_matches};
use herald_protocol::names::validate_user_id;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::config::Config;

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
    /// RS256 or ES256: the public key and the one algorithm it is used with.
    public: Option<(DecodingKey, Algorithm)>,
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
        let public = match &config.jwt_public_key {
            Some(path) => Some(read_public_key(path)?),
            None => None,
        };
        if secret.is_none() && public.is_none() {
            return Err(
                "no key to verify credentials with: set --jwt-secret (HS256) or \
                        --jwt-public-key (RS256/ES256), or run `herald --dev` for local \
                        development"
                    .into(),
            );
        }
        Ok(Self {
            hmac: secret.as_deref().map(hmac_keys),
            public,
            private_topics: config.private_topics.clone(),
            leeway: config.jwt_leeway.as_secs(),
        })
    }

    /// An authenticator with one HS256 secret, no private topics and no leeway, for tools and
    /// tests.
    pub fn with_secret(secret: &str) -> Self {
        Self {
            hmac: Some(hmac_keys(secret)),
            public: None,
            private_topics: Vec::new(),
            leeway: 0,
        }
    }

    /// Checks a token's algorithm, signature, `exp`, `nbf`, `iat` and `sub`. Every time must be
    /// one Herald can show (no later than the year 9999), and the token is good until `exp`
    /// plus the leeway: its connections are closed then.
    pub fn verify(&self, token: &str) -> Result<Credential, CredentialError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| CredentialError::Malformed(err.to_string()))?;
        let key = match (&self.hmac, &self.public) {
            (Some((_, key)), _) if header.alg == Algorithm::HS256 => key,
            (_, Some((key, alg))) if header.alg == *alg => key,
            _ => return Err(CredentialError::WrongAlgorithm(format!("{:?}", header.alg))),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => CredentialError::Expired,
                    ErrorKind::ImmatureSignature => CredentialError::NotYetValid,
                    ErrorKind::InvalidSignature => CredentialError::BadSignature,
                    ErrorKind::InvalidAlgorithm => {
                        CredentialError::WrongAlgorithm(format!("{:?}", header.alg))
                    }
                    _ => CredentialError::Malformed(err.to_string()),
                }
            })?;
        let claims = data.claims;
        validate_user_id(&claims.sub)
            .map_err(|err| CredentialError::Malformed(format!("sub: {err}")))?;
        self.check_times(&claims)?;
        let good_until = claims.exp.saturating_add(self.leeway).min(LATEST_TIME);
        Ok(Credential {
            user: Arc::from(claims.sub),
            grants: claims.herald,
            expires_at: UNIX_EPOCH + Duration::from_secs(good_until),
        })
    }

    /// Refuses times beyond [`LATEST_TIME`] (`exp` in milliseconds, say), and an `iat` later
    /// than now and the leeway.
    fn check_times(&self, claims: &Claims) -> Result<(), CredentialError> {
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

    /// Signs `claims` with the shared secret, if there is one.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let Some((key, _)) = &self.hmac else {
            return Err(
                "this server verifies RS256/ES256 tokens with a public key and cannot \
                        sign any: issue tokens with the matching private key"
                    .into(),
            );
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key)
            .map_err(|err| format!("cannot sign the token: {err}"))
    }

    /// Whether subscribing to `topic` needs a `subscribe` selector.
    pub fn is_private(&self, topic: &str) -> bool {
        any_selector_matches(&self.private_topics, topic)
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

/// Reads an RSA or EC (P-256) public key from a PEM file.
fn read_public_key(path: &Path) -> Result<(DecodingKey, Algorithm), String> {
    let pem = std::fs::read(path)
        .map_err(|err| format!("cannot read the public key {}: {err}", path.display()))?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, Algorithm::ES256));
    }
    Err(format!(
        "{} holds no RSA or EC public key in PEM form",
        path.display()
    ))
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

    #[test]
    fn signed_tokens_verify_and_others_do_not() {
        let auth = Authenticator::with_secret("s3cret");
        let token = auth
            .sign(&claims_for("alice", grants(), Duration::from_secs(60)))
            .unwrap();
        let credential = auth.verify(&token).unwrap();
        assert_eq!(&*credential.user, "alice");
        assert_eq!(credential.grants, grants());
        let other = Authenticator::with_secret("other");
        assert_eq!(
            other.verify(&token).unwrap_err(),
            CredentialError::BadSignature
        );
        assert!(matches!(
            auth.verify("not a token"),
            Err(CredentialError::Malformed(_))
        ));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = Authenticator::with_secret("s3cret");
        let mut claims = claims_for("alice", grants(), Duration::ZERO);
        claims.exp -= 5;
        let token = auth.sign(&claims).unwrap();
        assert_eq!(auth.verify(&token).unwrap_err(), CredentialError::Expired);
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
