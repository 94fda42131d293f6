//! [`MercureSettings`]: the Mercure hub at `/.well-known/mercure`: who may subscribe without a
//! credential, and the keys of Mercure publishers' and subscribers' tokens.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};

/// The Mercure hub's settings.
#[derive(Debug, Clone, Args)]
pub struct MercureSettings {
    /// Let subscribers of the Mercure hub without a credential receive public updates
    /// (development mode always does). `--mercure-anonymous=false` turns off what a file turned
    /// on.
    #[arg(
        long,
        env = "HERALD_MERCURE_ANONYMOUS",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub mercure_anonymous: bool,

    /// Announce Mercure subscriptions as they start and end (a private update on
    /// `/.well-known/mercure/subscriptions/{topic}/{subscriber}`) and serve the subscriptions
    /// API at `/.well-known/mercure/subscriptions`. `--mercure-subscriptions=false` turns off
    /// what a file turned on.
    #[arg(
        long,
        env = "HERALD_MERCURE_SUBSCRIPTIONS",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub mercure_subscriptions: bool,

    /// The key Mercure publishers' tokens are verified with, in place of Herald's own keys: a
    /// shared secret (HS256), or a public key in PEM (RS256, ES256, EdDSA).
    #[arg(long, env = "HERALD_MERCURE_PUBLISHER_JWT_KEY", value_name = "KEY")]
    pub mercure_publisher_jwt_key: Option<String>,

    /// The key Mercure subscribers' tokens are verified with, in place of Herald's own keys: a
    /// shared secret (HS256), or a public key in PEM (RS256, ES256, EdDSA).
    #[arg(long, env = "HERALD_MERCURE_SUBSCRIBER_JWT_KEY", value_name = "KEY")]
    pub mercure_subscriber_jwt_key: Option<String>,
}

impl MercureSettings {
    /// An empty key means "none".
    pub(super) fn normalize(&mut self) {
        for key in [
            &mut self.mercure_publisher_jwt_key,
            &mut self.mercure_subscriber_jwt_key,
        ] {
            *key = key.take().filter(|key| !key.is_empty());
        }
    }
}
