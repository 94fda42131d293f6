//! [`Identity`]: tokens from an identity provider (Auth0, Keycloak, Cognito, Entra): the keys
//! they are signed with, whom they are for and who issued them, and where their claims for
//! Herald are.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_duration;

/// What a token from an identity provider must be, and where its keys are.
#[derive(Debug, Clone, Args)]
pub struct Identity {
    /// PEM file with the public key (RSA, EC P-256 or Ed25519) that tokens signed with RS256,
    /// ES256 or EdDSA are verified with.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY", value_name = "PEM_FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// URL of the identity provider's JSON Web Key Set (`https://tenant.eu.auth0.com/.well-known/jwks.json`):
    /// tokens signed with its keys (RS256, ES256, EdDSA; chosen by the token's `kid`) are
    /// accepted. The set is fetched at start, again every --jwks-refresh, and again when a
    /// token names a key it does not hold (at most every 5 seconds); when it cannot be
    /// fetched, the keys fetched last stay in use.
    #[arg(long, env = "HERALD_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// How often the key set of --jwks-url is fetched again.
    #[arg(
        long,
        env = "HERALD_JWKS_REFRESH",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = parse_duration
    )]
    pub jwks_refresh: Duration,

    /// An audience a token must name in `aud` (the API identifier, the client id); repeatable,
    /// or comma-separated: a token naming any of them is accepted. Without any, `aud` is not
    /// checked.
    #[arg(
        long,
        env = "HERALD_JWT_AUDIENCE",
        value_name = "AUDIENCE",
        value_delimiter = ','
    )]
    pub jwt_audience: Vec<String>,

    /// An issuer a token's `iss` must be (`https://tenant.eu.auth0.com/`); repeatable, or
    /// comma-separated. Without any, `iss` is not checked.
    #[arg(
        long,
        env = "HERALD_JWT_ISSUER",
        value_name = "ISSUER",
        value_delimiter = ','
    )]
    pub jwt_issuer: Vec<String>,

    /// The claim holding Herald's grants (`publish`, `subscribe`, `admin`): `herald`, or a
    /// namespaced claim such as `https://example.com/herald` for providers that require one.
    #[arg(
        long,
        env = "HERALD_JWT_CLAIMS_KEY",
        value_name = "CLAIM",
        default_value = "herald"
    )]
    pub jwt_claims_key: String,
}

impl Identity {
    /// An empty text or list entry means "none".
    pub(super) fn normalize(&mut self) {
        self.jwt_public_key = self
            .jwt_public_key
            .take()
            .filter(|path| !path.as_os_str().is_empty());
        self.jwks_url = self.jwks_url.take().filter(|url| !url.is_empty());
        self.jwt_audience.retain(|audience| !audience.is_empty());
        self.jwt_issuer.retain(|issuer| !issuer.is_empty());
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.jwks_url {
            let scheme = url.split("://").next().unwrap_or_default();
            let host = url
                .split_once("://")
                .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
                .unwrap_or_default();
            if !matches!(scheme, "http" | "https") || host.is_empty() {
                return Err(format!(
                    "jwks_url must be an http:// or https:// URL, not {url:?}"
                ));
            }
        }
        if self.jwks_refresh < Duration::from_secs(10)
            || self.jwks_refresh > Duration::from_secs(86_400)
        {
            return Err("jwks_refresh must be between 10s and 1day".into());
        }
        if self.jwt_claims_key.is_empty() || self.jwt_claims_key.len() > 256 {
            return Err("jwt_claims_key must be 1 to 256 bytes".into());
        }
        Ok(())
    }
}
