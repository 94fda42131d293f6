//! The `herald` command line, and how its layers become one [`Config`]: flags and the
//! environment as clap reads them, over the file named by `--config`, over the defaults.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::{Config, ConfigError, file, parse_duration};

/// The `herald` command line.
#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald, a real-time event hub: pushes events to browsers over Server-Sent Events.",
    long_about = "Herald, a real-time event hub: pushes events to browsers over Server-Sent \
                  Events.\n\nServing is the default command. Every setting can also come from an \
                  environment variable or a TOML file (--config); flags win over the environment, \
                  which wins over the file. Durations take a unit (15s, 500ms, 2h); a bare number \
                  is seconds.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the hub, the API and the web app (the default).
    Serve(ServeArgs),
    /// Print a token signed with the configured secret (or development key), for scripts.
    Token(TokenArgs),
    /// Check a configuration, or print every setting with its default.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `herald config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Resolve the settings as serving would (flags, environment, the --config file), check
    /// them and print the effective configuration as TOML, secrets redacted. Exits with a
    /// non-zero status and the reason when they are invalid.
    Check(Box<ServeArgs>),
    /// Print every setting with its help and default, as a TOML file to start from.
    Defaults,
}

/// The settings of `herald serve`, and the file that may hold them.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML file with any of these settings, each named as its field (the long flag with `_`
    /// for `-`; `private_topics` and `cors_origins` for the repeatable flags).
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Config,
}

/// The settings of `herald token`: the claims, and where the key comes from.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// A topic selector the token may publish to (`orders`, `rooms/*`, `*`); repeatable.
    #[arg(long, value_name = "SELECTOR")]
    pub publish: Vec<String>,
    /// A topic selector the token may subscribe to when private; repeatable.
    #[arg(long, value_name = "SELECTOR")]
    pub subscribe: Vec<String>,
    /// Allow the admin endpoints (list and close clients, broadcast).
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// The key settings, as for serving (`--jwt-secret`, `--dev`, `--data-dir`, `--config`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What the command line asks for, with its settings resolved and checked.
#[derive(Debug)]
pub enum Invocation {
    Serve(Config),
    /// Print a token; its `serve.settings` locate the key.
    Token(TokenArgs),
    /// `herald config check`: the checked settings, and the effective configuration as TOML.
    Check {
        config: Config,
        effective: String,
    },
    /// `herald config defaults`: print [`show::defaults`](super::show::defaults).
    Defaults,
}

/// The invocation of this process's command line.
pub fn load() -> Result<Invocation, ConfigError> {
    load_from(std::env::args_os())
}

/// The invocation of `args` (the first being the program's name): flags and environment as
/// clap reads them, then what the `--config` file sets for the settings neither gave, then the
/// defaults; normalized and validated.
pub fn load_from<I, T>(args: I) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = Cli::command();
    let first = command.clone().try_get_matches_from(&args)?;
    // The serve settings are the top level's, or those of the innermost subcommand, which
    // comes first (top-level arguments conflict with subcommands).
    let (settings, path) = innermost(&first);
    // Settings given by an environment variable's former name, then those of the file: both
    // join the command line, where clap parses them as it parses flags, and fill only what
    // neither a flag nor the environment gave.
    let aliased = former_environment(settings);
    let mut layer: Vec<OsString> = aliased.iter().map(|(_, flag)| flag.clone()).collect();
    if let Ok(Some(path_to_file)) = settings.try_get_one::<PathBuf>("config") {
        let given = |id: &str| {
            aliased.iter().any(|(aliased, _)| *aliased == id)
                || matches!(
                    settings.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
        };
        layer.extend(file::read(path_to_file, given)?);
    }
    if !layer.is_empty() {
        let insert_at = after_subcommands(&args, &path);
        args.splice(insert_at..insert_at, layer);
    }
    let matches = command.try_get_matches_from(&args)?;
    let (settings, _) = innermost(&matches);
    let cli = Cli::from_arg_matches(&matches)?;
    let mut invocation = match cli.command {
        Some(Command::Serve(serve)) => Invocation::Serve(serve.settings),
        None => Invocation::Serve(cli.serve.settings),
        Some(Command::Token(token)) => Invocation::Token(token),
        Some(Command::Config(ConfigCommand::Check(serve))) => Invocation::Check {
            config: serve.settings,
            effective: super::show::effective(settings),
        },
        Some(Command::Config(ConfigCommand::Defaults)) => return Ok(Invocation::Defaults),
    };
    let storage_named = settings.value_source("storage") != Some(ValueSource::DefaultValue);
    let Some(config) = invocation.settings_mut() else {
        return Ok(invocation);
    };
    config.normalize();
    if config.redis.is_some() && storage_named {
        return Err(ConfigError::Invalid(
            "--redis and --storage name two different stores: cluster mode keeps everything in \
             Redis, so leave --storage out"
                .into(),
        ));
    }
    config.validate()?;
    Ok(invocation)
}

/// Environment variables settings were read from before each was named `HERALD_` + its flag:
/// still read, the current name winning. (former name, setting)
const FORMER_ENVIRONMENT: &[(&str, &str)] = &[
    ("HERALD_REDIS_URL", "redis"),
    ("HERALD_PRIVATE_TOPICS", "private_topic"),
    ("HERALD_CORS_ORIGINS", "cors_origin"),
];

/// The settings `matches` did not get from a flag or the environment but a former variable
/// name holds, each with the flag that gives it.
fn former_environment(matches: &clap::ArgMatches) -> Vec<(&'static str, OsString)> {
    FORMER_ENVIRONMENT
        .iter()
        .filter_map(|&(variable, id)| {
            let value = std::env::var_os(variable)?;
            // Not a setting of this command (`herald config defaults` has none).
            matches.try_get_raw(id).ok()?;
            if matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                return None;
            }
            let mut flag = OsString::from(format!("--{}=", id.replace('_', "-")));
            flag.push(value);
            Some((id, flag))
        })
        .collect()
}

/// The matches of the innermost subcommand (the top level's without one), and the names of
/// the subcommands leading to it.
fn innermost(matches: &clap::ArgMatches) -> (&clap::ArgMatches, Vec<String>) {
    let mut path = Vec::new();
    let mut matches = matches;
    while let Some((name, inner)) = matches.subcommand() {
        path.push(name.to_owned());
        matches = inner;
    }
    (matches, path)
}

/// Where the innermost subcommand's arguments start in `args` (after the program's name when
/// there is none).
fn after_subcommands(args: &[OsString], path: &[String]) -> usize {
    let mut at = 1;
    for name in path {
        if let Some(found) = args[at..].iter().position(|arg| arg == name.as_str()) {
            at += found + 1;
        }
    }
    at
}

impl Invocation {
    fn settings_mut(&mut self) -> Option<&mut Config> {
        match self {
            Self::Serve(config) | Self::Check { config, .. } => Some(config),
            Self::Token(token) => Some(&mut token.serve.settings),
            Self::Defaults => None,
        }
    }
}
