//! [`KeySet`]: an identity provider's signing keys, fetched from its JSON Web Key Set
//! (`--jwks-url`), kept while it cannot be reached, and fetched again periodically and when a
//! token names a key the set does not hold (a rotation), at most every [`MIN_REFRESH`].

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::CredentialError;
use crate::metrics::Metrics;

/// The shortest time between two fetches asked for by tokens naming unknown keys: a flood of
/// made-up `kid`s costs the provider one request in this time.
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
/// How long one fetch may take, connecting included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest key set read: providers publish a few keys, a few kilobytes.
const MAX_SET_BYTES: usize = 1024 * 1024;
/// The first wait before fetching again after a failed fetch; it doubles up to the refresh
/// interval.
const RETRY: Duration = Duration::from_secs(10);

/// One signing key of the set.
#[derive(Clone)]
#[allow(missing_debug_implementations, reason = "DecodingKey has no Debug")]
pub struct PublicKey {
    pub key: DecodingKey,
    /// The one algorithm tokens signed with this key may name.
    pub algorithm: Algorithm,
}

/// The keys fetched last, by `kid`.
type Keys = Vec<(Option<String>, PublicKey)>;

/// The provider's keys and how to fetch them again.
pub struct KeySet {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    keys: RwLock<Arc<Keys>>,
    /// Held while fetching, so that one fetch runs at a time; the time the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    metrics: OnceLock<Arc<Metrics>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("url", &self.url)
            .field("keys", &self.snapshot().len())
            .finish()
    }
}

#[derive(Deserialize)]
struct KeySetDocument {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// A key set at `url`, empty until [`KeySet::start`] or a token fetches it.
    pub fn new(url: &str, refresh: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| format!("cannot make an HTTP client for --jwks-url: {err}"))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            refresh,
            keys: RwLock::new(Arc::default()),
            fetching: tokio::sync::Mutex::new(None),
            metrics: OnceLock::new(),
        })
    }

    /// Fetches the set now, then every refresh interval (sooner after a failure), until
    /// `shutdown`.
    pub fn start(self: &Arc<Self>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
        let _ = self.metrics.set(metrics);
        let set = Arc::clone(self);
        tokio::spawn(async move {
            let mut wait = Duration::ZERO;
            let mut why = "start";
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                let fetched = {
                    let mut last = set.fetching.lock().await;
                    *last = Some(Instant::now());
                    set.fetch(why).await
                };
                why = "periodic";
                wait = if fetched {
                    set.refresh
                } else if wait.is_zero() || wait >= set.refresh {
                    RETRY.min(set.refresh)
                } else {
                    (wait * 2).min(set.refresh)
                };
            }
        });
    }

    /// The key a token names by `kid` (or, without one, the only key for its algorithm),
    /// fetching the set again first if it holds no such key and was not fetched in the last
    /// [`MIN_REFRESH`].
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<PublicKey, CredentialError> {
        if let Some(found) = find(&self.snapshot(), kid, algorithm)? {
            return Ok(found);
        }
        {
            let mut last = self.fetching.lock().await;
            // Another request may have fetched it while this one waited.
            if let Some(found) = find(&self.snapshot(), kid, algorithm)? {
                return Ok(found);
            }
            if last.is_none_or(|last| last.elapsed() >= MIN_REFRESH) {
                *last = Some(Instant::now());
                self.fetch("unknown key").await;
            }
        }
        find(&self.snapshot(), kid, algorithm)?.ok_or_else(|| {
            CredentialError::UnknownKey(match kid {
                Some(kid) => format!("no key {kid:?} in the key set of {}", self.url),
                None => format!(
                    "the token names no key (kid) and the key set of {} holds no single {algorithm:?} key",
                    self.url
                ),
            })
        })
    }

    /// Fetches the set once, keeping nothing: the `kid`s of its usable keys, or why there are
    /// none (for `herald config check`).
    pub async fn check(&self) -> Result<Vec<String>, String> {
        let keys = parse(self.download().await?);
        if keys.is_empty() {
            return Err(format!(
                "the key set at {} holds no signing key Herald can use",
                self.url
            ));
        }
        Ok(keys
            .into_iter()
            .map(|(kid, key)| {
                format!(
                    "{} ({:?})",
                    kid.as_deref().unwrap_or("no kid"),
                    key.algorithm
                )
            })
            .collect())
    }

    fn snapshot(&self) -> Arc<Keys> {
        match self.keys.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Fetches the set and, if it holds a usable key, puts it in place of the one held; logs and
    /// counts the outcome. Whether it was put in place.
    async fn fetch(&self, why: &'static str) -> bool {
        let result = self.download().await.and_then(|document| {
            let keys = parse(document);
            if keys.is_empty() {
                Err(
                    "it holds no signing key Herald can use (RSA, EC P-256/P-384 or Ed25519)"
                        .into(),
                )
            } else {
                Ok(keys)
            }
        });
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        let held = match result {
            Ok(keys) => {
                let ids: Vec<&str> = keys.iter().filter_map(|(kid, _)| kid.as_deref()).collect();
                tracing::info!(url = %self.url, why, keys = keys.len(), kids = ?ids, "fetched the JSON Web Key Set");
                let held = keys.len();
                let keys = Arc::new(keys);
                match self.keys.write() {
                    Ok(mut slot) => *slot = keys,
                    Err(poisoned) => *poisoned.into_inner() = keys,
                }
                held
            }
            Err(error) => {
                let held = self.snapshot().len();
                tracing::warn!(url = %self.url, why, %error, cached_keys = held, "cannot fetch the JSON Web Key Set; the keys fetched before stay in use");
                held
            }
        };
        if let Some(metrics) = self.metrics.get() {
            metrics
                .identity
                .jwks_fetches
                .get_or_create(&crate::metrics::ResultLabels { result: outcome })
                .inc();
            metrics.identity.jwks_keys.set(held as i64);
        }
        outcome == "ok"
    }

    async fn download(&self) -> Result<KeySetDocument, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|err| format!("cannot fetch {}: {}", self.url, describe(&err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{} answered {status}", self.url));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| describe(&err))? {
            if body.len() + chunk.len() > MAX_SET_BYTES {
                return Err(format!("the set is larger than {MAX_SET_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|err| format!("not a JSON Web Key Set: {err}"))
    }
}

/// The error and its causes, on one line: reqwest's own message names only the first.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The signing keys of a set, leaving out encryption keys and keys of kinds Herald cannot
/// verify with (each logged).
fn parse(document: KeySetDocument) -> Keys {
    let mut keys = Vec::new();
    for value in document.keys {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(err) => {
                tracing::debug!(%err, "skipping a key of the JSON Web Key Set");
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(algorithm) = algorithm_of(&jwk) else {
            tracing::debug!(kid = ?jwk.common.key_id, "skipping a key of the JSON Web Key Set: no signature algorithm Herald verifies");
            continue;
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => keys.push((jwk.common.key_id.clone(), PublicKey { key, algorithm })),
            Err(err) => {
                tracing::warn!(kid = ?jwk.common.key_id, %err, "skipping a key of the JSON Web Key Set that does not decode");
            }
        }
    }
    keys
}

/// The algorithm a key is used with: its `alg`, or for a key without one the usual one for its
/// kind.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm.and_then(|algorithm| {
        Some(match algorithm {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::RS384 => Algorithm::RS384,
            KeyAlgorithm::RS512 => Algorithm::RS512,
            KeyAlgorithm::PS256 => Algorithm::PS256,
            KeyAlgorithm::PS384 => Algorithm::PS384,
            KeyAlgorithm::PS512 => Algorithm::PS512,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::ES384 => Algorithm::ES384,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            _ => return None,
        })
    });
    let usual = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // Shared secrets have no place in a public key set.
        _ => return None,
    };
    let fits = |algorithm: Algorithm| match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            algorithm,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        _ => algorithm == usual,
    };
    match (jwk.common.key_algorithm, declared) {
        (None, _) => Some(usual),
        (Some(_), Some(declared)) if fits(declared) => Some(declared),
        _ => None,
    }
}

/// The key `kid` names; without a `kid`, the one key for `algorithm`, if there is one alone.
/// A key for another algorithm than the token names is a refusal, not a miss.
fn find(
    keys: &Keys,
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Result<Option<PublicKey>, CredentialError> {
    let found = match kid {
        Some(kid) => keys
            .iter()
            .find(|(id, _)| id.as_deref() == Some(kid))
            .map(|(_, key)| key),
        None => {
            let mut matching = keys.iter().filter(|(_, key)| key.algorithm == algorithm);
            match (matching.next(), matching.next()) {
                (Some((_, key)), None) => Some(key),
                _ => None,
            }
        }
    };
    match found {
        Some(key) if key.algorithm != algorithm => {
            Err(CredentialError::WrongAlgorithm(format!("{algorithm:?}")))
        }
        found => Ok(found.cloned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The P-256 key of RFC 7515's appendix A.3.
    fn ec_key(extra: serde_json::Value) -> serde_json::Value {
        let mut key = json!({
            "kty": "EC", "crv": "P-256", "kid": "ec",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        });
        key.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        key
    }

    fn rsa_key(extra: serde_json::Value) -> serde_json::Value {
        let mut key = json!({
            "kty": "RSA", "kid": "rsa", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        });
        key.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        key
    }

    fn keys_of(keys: Vec<serde_json::Value>) -> Vec<(Option<String>, Algorithm)> {
        parse(KeySetDocument { keys })
            .into_iter()
            .map(|(kid, key)| (kid, key.algorithm))
            .collect()
    }

    #[test]
    fn signing_keys_are_kept_with_their_algorithm_and_the_rest_left_out() {
        let kept = keys_of(vec![
            rsa_key(json!({})),
            rsa_key(json!({"kid": "rsa-512", "alg": "RS512"})),
            ec_key(json!({"use": "sig"})),
            // Encryption keys, shared secrets, algorithms that do not fit the key, unknown kinds.
            rsa_key(json!({"kid": "enc", "use": "enc"})),
            json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0"}),
            ec_key(json!({"kid": "confused", "alg": "RS256"})),
            json!({"kty": "XYZ", "kid": "future"}),
            json!("not a key"),
        ]);
        assert_eq!(
            kept,
            vec![
                (Some("rsa".into()), Algorithm::RS256),
                (Some("rsa-512".into()), Algorithm::RS512),
                (Some("ec".into()), Algorithm::ES256),
            ]
        );
    }

    #[test]
    fn a_key_is_found_by_kid_or_as_the_only_one_of_its_algorithm() {
        let keys = parse(KeySetDocument {
            keys: vec![rsa_key(json!({})), ec_key(json!({}))],
        });
        let found =
            |kid, algorithm| find(&keys, kid, algorithm).map(|key| key.map(|key| key.algorithm));
        assert_eq!(
            found(Some("ec"), Algorithm::ES256),
            Ok(Some(Algorithm::ES256))
        );
        assert_eq!(found(None, Algorithm::RS256), Ok(Some(Algorithm::RS256)));
        assert_eq!(found(Some("other"), Algorithm::RS256), Ok(None));
        assert_eq!(
            found(Some("rsa"), Algorithm::ES256),
            Err(CredentialError::WrongAlgorithm("ES256".into()))
        );
        let two_rsa = parse(KeySetDocument {
            keys: vec![rsa_key(json!({})), rsa_key(json!({"kid": "rsa-2"}))],
        });
        assert!(matches!(find(&two_rsa, None, Algorithm::RS256), Ok(None)));
    }
}
