use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// The settings `herald ARGS` serves with.
fn serve(args: &[&str]) -> Result<Config, ConfigError> {
    match load_from(std::iter::once("herald").chain(args.iter().copied()))? {
        Invocation::Serve(config) => Ok(config),
        other => panic!("expected serve, got {other:?}"),
    }
}

/// A config file with `text`, in a directory of its own that is removed on drop.
struct File(PathBuf);

impl File {
    fn new(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "herald-config-{}-{}",
            std::process::id(),
            crate::ids::random_u32()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("herald.toml"), text).unwrap();
        Self(dir)
    }

    fn path(&self) -> String {
        self.0.join("herald.toml").display().to_string()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn refused(args: &[&str]) -> String {
    match serve(args) {
        Ok(config) => panic!("{args:?} accepted: {config:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn defaults_parse_and_bind_loopback_8080() {
    let config = Config::default();
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.data_dir, PathBuf::from("data"));
    assert_eq!(config.static_dir, None);
    assert_eq!(config.heartbeat, Duration::from_secs(15));
    assert_eq!(config.connections_per_address(), Some(1000));
    assert_eq!(
        config.connection_lifetime(),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(config.database_limit(), Some(4 << 30));
    assert_eq!(serve(&[]).unwrap().listen, config.listen);
}

#[test]
fn flags_win_over_the_file() {
    let file = File::new("listen = \"127.0.0.1:9000\"\nheartbeat = \"2s\"\nqueue_capacity = 7\n");
    let config = serve(&["--config", &file.path(), "--heartbeat", "500ms"]).unwrap();
    assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(config.heartbeat, Duration::from_millis(500));
    assert_eq!(config.queue_capacity, 7);
}

#[test]
fn a_flag_turns_off_what_the_file_turned_on() {
    let file = File::new(
        "dev = true\ntrust_forwarded_for = true\nredis = \"redis://h:1\"\n\
         private_topics = [\"admin/*\"]\nmax_connection_lifetime = \"2h\"\n",
    );
    let on = serve(&["--config", &file.path()]).unwrap();
    assert!(on.dev && on.trust_forwarded_for);
    assert_eq!(on.redis.as_deref(), Some("redis://h:1"));
    assert_eq!(on.private_topics, ["admin/*"]);
    let off = serve(&[
        "--config",
        &file.path(),
        "--dev=false",
        "--trust-forwarded-for=false",
        "--redis=",
        "--private-topic=",
        "--max-connection-lifetime=0",
    ])
    .unwrap();
    assert!(!off.dev && !off.trust_forwarded_for);
    assert_eq!(off.redis, None);
    assert!(off.private_topics.is_empty());
    assert_eq!(off.connection_lifetime(), None);
    // A bare boolean flag still turns it on.
    assert!(serve(&["--dev"]).unwrap().dev);
}

#[test]
fn explicit_serve_command_takes_the_same_flags_and_file() {
    let file = File::new("queue_capacity = 9\n");
    let config = match load_from([
        "herald",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        &file.path(),
    ])
    .unwrap()
    {
        Invocation::Serve(config) => config,
        other => panic!("expected serve, got {other:?}"),
    };
    assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(config.queue_capacity, 9);
}

#[test]
fn herald_token_reads_its_key_settings_from_the_file_too() {
    let file = File::new("jwt_secret = \"0123456789abcdef0123456789abcdef\"\n");
    let Invocation::Token(token) =
        load_from(["herald", "token", "--sub", "ada", "--config", &file.path()]).unwrap()
    else {
        panic!("expected token");
    };
    assert_eq!(token.sub, "ada");
    assert_eq!(
        token.serve.settings.jwt_secret.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
}

#[test]
fn the_example_configuration_file_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/herald.example.toml");
    let config = serve(&["--config", example.to_str().unwrap()]).expect("the example resolves");
    assert_eq!(config.listen, Config::default().listen);
    assert_eq!(config.storage, StorageKind::Sqlite);
}

#[test]
fn the_example_configuration_file_is_what_herald_config_defaults_prints() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/herald.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    assert!(
        text == super::show::defaults(),
        "docs/herald.example.toml is not current: \
         `cargo run -p herald-server -- config defaults > docs/herald.example.toml`"
    );
}

#[test]
fn config_check_resolves_like_serving_and_redacts_secrets() {
    let file = File::new("heartbeat = \"20s\"\nprivate_topics = [\"admin/*\"]\n");
    let invocation = load_from([
        "herald",
        "config",
        "check",
        "--config",
        &file.path(),
        "--jwt-secret",
        "0123456789abcdef0123456789abcdef-secret",
        "--redis",
        "redis://app:hunter2@10.0.0.5:6379",
    ])
    .unwrap();
    let Invocation::Check { config, effective } = invocation else {
        panic!("expected config check");
    };
    assert_eq!(config.heartbeat, Duration::from_secs(20));
    assert!(effective.contains("heartbeat = \"20s\""), "{effective}");
    assert!(
        effective.contains("private_topic = [\"admin/*\"]"),
        "{effective}"
    );
    assert!(
        effective.contains("jwt_secret = \"<redacted>\""),
        "{effective}"
    );
    assert!(
        effective.contains("redis://app:<redacted>@10.0.0.5:6379"),
        "{effective}"
    );
    assert!(!effective.contains("hunter2") && !effective.contains("-secret"));
    let invalid = load_from(["herald", "config", "check", "--heartbeat", "0s"]).unwrap_err();
    assert!(invalid.to_string().contains("heartbeat"), "{invalid}");
}

#[test]
fn file_keys_are_the_flags_names_and_former_keys_still_read() {
    let current =
        File::new("private_topic = [\"admin/*\"]\ncors_origin = [\"https://a.example\"]\n");
    let config = serve(&["--config", &current.path()]).unwrap();
    assert_eq!(config.private_topics, ["admin/*"]);
    assert_eq!(config.cors_origins, ["https://a.example"]);
    let former = File::new("cors_origins = [\"https://b.example\"]\n");
    let config = serve(&["--config", &former.path()]).unwrap();
    assert_eq!(config.cors_origins, ["https://b.example"]);
}

#[test]
fn redis_switches_to_cluster_mode_with_a_prefix() {
    let config = serve(&[
        "--redis",
        "redis://10.0.0.5:6379/2",
        "--redis-prefix",
        "shop:",
    ])
    .unwrap();
    assert_eq!(config.redis.as_deref(), Some("redis://10.0.0.5:6379/2"));
    assert_eq!(config.redis_prefix, "shop:");
    assert_eq!(Config::default().redis_prefix, "herald:");
    refused(&["--redis", "redis://h:1", "--redis-prefix", "a\nb"]);
    let both = refused(&["--redis", "redis://h:1", "--storage", "memory"]);
    assert!(both.contains("two different stores"), "{both}");
}

#[test]
fn file_mistakes_are_refused_naming_the_key() {
    for (text, expected) in [
        ("listn = \"x\"", "unknown setting `listn`"),
        ("heartbeat = \"soon\"", "`heartbeat`"),
        ("queue_capacity = [1, 2]", "takes one value"),
        ("listen = { port = 1 }", "`listen` takes text"),
        ("listen = ", "invalid config file"),
    ] {
        let file = File::new(text);
        let err = refused(&["--config", &file.path()]);
        assert!(err.contains(expected), "{text}: {err}");
    }
    let missing = refused(&["--config", "/nonexistent/herald.toml"]);
    assert!(missing.contains("cannot read"), "{missing}");
}

#[test]
fn durations_take_units_or_seconds() {
    assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("soon").is_err());
    let file = File::new("heartbeat = 20\nretry = \"500ms\"\n");
    let config = serve(&["--config", &file.path()]).unwrap();
    assert_eq!(config.heartbeat, Duration::from_secs(20));
    assert_eq!(config.retry, Duration::from_millis(500));
}

#[test]
fn development_mode_stays_on_loopback() {
    let err = refused(&["--dev", "--listen", "0.0.0.0:8080"]);
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn absurd_durations_and_zero_limits_are_refused() {
    for args in [
        &["--heartbeat", "1000d"][..],
        &["--retry", "1000000h"],
        &["--write-timeout", "0"],
        &["--queue-capacity", "0"],
    ] {
        refused(args);
    }
}

#[test]
fn stream_buffers_default_to_a_small_unsent_limit_and_take_zero_for_the_kernel() {
    let config = Config::default();
    assert_eq!(config.unsent_limit(), Some(16 * 1024));
    assert_eq!(config.send_buffer(), None);
    let config = serve(&[
        "--stream-unsent-limit",
        "0",
        "--stream-send-buffer",
        "262144",
    ])
    .unwrap();
    assert_eq!(config.unsent_limit(), None);
    assert_eq!(config.send_buffer(), Some(262_144));
    for flag in ["--stream-unsent-limit", "--stream-send-buffer"] {
        refused(&[flag, "68719476736"]);
    }
}

#[cfg(unix)]
#[test]
fn the_connection_cap_leaves_open_files_in_reserve() {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let derived = Config::default().connection_cap() as u64;
    assert!(derived < soft, "{derived} of {soft} open files");
    assert!(derived >= soft - 256, "{derived} of {soft} open files");
    let config = serve(&["--max-connections", "5000"]).unwrap();
    assert_eq!(config.connection_cap(), 5000);
    refused(&["--max-connections", "0"]);
    refused(&["--header-timeout", "0"]);
    refused(&["--body-timeout", "0s"]);
    let keepalive_off = serve(&["--tcp-keepalive", "0"]).unwrap();
    assert_eq!(keepalive_off.keepalive(), None);
}
