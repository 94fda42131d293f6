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
    // The serve settings are the top level's, or those of the subcommand, which comes first
    // (top-level arguments conflict with subcommands).
    let (settings, insert_at) = match first.subcommand() {
        Some((name, matches)) => {
            let at = args
                .iter()
                .position(|arg| arg == name)
                .map_or(1, |at| at + 1);
            (matches, at)
        }
        None => (&first, 1),
    };
    if let Some(path) = settings.get_one::<PathBuf>("config") {
        // The file fills only what neither a flag nor the environment gave: its values join
        // the command line, where clap parses them as it parses flags.
        let given = |id: &str| {
            matches!(
                settings.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        let layer = file::read(path, given)?;
        args.splice(insert_at..insert_at, layer);
    }
    let matches = command.try_get_matches_from(&args)?;
    let settings = match matches.subcommand() {
        Some((_, matches)) => matches,
        None => &matches,
    };
    let storage_named = settings.value_source("storage") != Some(ValueSource::DefaultValue);
    let cli = Cli::from_arg_matches(&matches)?;
    let mut invocation = match cli.command {
        Some(Command::Serve(serve)) => Invocation::Serve(serve.settings),
        None => Invocation::Serve(cli.serve.settings),
        Some(Command::Token(token)) => Invocation::Token(token),
    };
    let config = invocation.settings_mut();
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

impl Invocation {
    fn settings_mut(&mut self) -> &mut Config {
        match self {
            Self::Serve(config) => config,
            Self::Token(token) => &mut token.serve.settings,
        }
    }
}
