//! The operator's configuration tools, run as the real binary: `herald config check` resolves
//! flags, the environment (current and former variable names) and the file as serving does,
//! redacts secrets and fails on an invalid configuration; `herald config defaults` prints the
//! example file.

use std::process::Output;

use crate::support::{TEST_SECRET, TIMEOUT, TestCertificate};

/// Runs `herald ARGS` with only the environment variables `env` of Herald's own.
pub(crate) async fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    for (name, _) in std::env::vars() {
        if name.starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    command.args(args).envs(env.iter().copied());
    tokio::time::timeout(TIMEOUT, command.output())
        .await
        .expect("herald exits in time")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let checked = herald(
        &["config", "check", "--heartbeat", "20s"],
        &[
            ("HERALD_JWT_SECRET", TEST_SECRET),
            ("HERALD_REDIS_URL", "redis://app:hunter2@10.0.0.5:6379"),
            ("HERALD_PRIVATE_TOPICS", "admin/*,billing"),
            ("HERALD_CORS_ORIGIN", "https://app.example.com"),
            // The current name wins over the former one.
            ("HERALD_CORS_ORIGINS", "https://old.example.com"),
        ],
    )
    .await;
    let text = stdout(&checked);
    assert!(checked.status.success(), "{text}");
    assert!(text.contains("heartbeat = \"20s\"  # set"), "{text}");
    assert!(text.contains("jwt_secret = \"<redacted>\""), "{text}");
    assert!(
        text.contains("redis = \"redis://app:<redacted>@10.0.0.5:6379\""),
        "{text}"
    );
    assert!(
        text.contains("private_topic = [\"admin/*\", \"billing\"]"),
        "{text}"
    );
    assert!(
        text.contains("cors_origin = [\"https://app.example.com\"]"),
        "{text}"
    );
    assert!(!text.contains("hunter2") && !text.contains(TEST_SECRET));
    assert!(!text.contains("old.example.com"), "{text}");
}

#[tokio::test]
async fn config_check_fails_with_the_reason() {
    let invalid = herald(
        &["config", "check", "--heartbeat", "0s"],
        &[("HERALD_JWT_SECRET", TEST_SECRET)],
    )
    .await;
    assert!(!invalid.status.success());
    assert!(
        String::from_utf8_lossy(&invalid.stderr).contains("heartbeat must be longer than zero")
    );

    let no_key = herald(&["config", "check"], &[]).await;
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("no key to verify credentials"));

    // What only starting can tell is checked too: the TLS pair.
    let certificate = TestCertificate::generate();
    std::fs::write(&certificate.key_file, "not a key").unwrap();
    let cert = format!("--tls-cert={}", certificate.cert_file.display());
    let key = format!("--tls-key={}", certificate.key_file.display());
    let broken = herald(
        &["config", "check", &cert, &key],
        &[("HERALD_JWT_SECRET", TEST_SECRET)],
    )
    .await;
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("no private key in"));
}

#[tokio::test]
async fn config_defaults_prints_the_example_file() {
    let defaults = herald(&["config", "defaults"], &[]).await;
    assert!(defaults.status.success());
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/herald.example.toml"),
    )
    .unwrap();
    assert_eq!(stdout(&defaults), example);
}
