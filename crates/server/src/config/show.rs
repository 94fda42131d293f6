//! The settings as a TOML file: every one with its help and default (`herald config
//! defaults`, which `docs/herald.example.toml` is), and the effective ones of a resolved
//! command line, secrets redacted (`herald config check`).

use std::fmt::Write;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args};

use super::Config;

/// Where `herald config defaults` output opens.
const PREAMBLE: &str = "\
# Herald's settings, each with its default: the output of `herald config defaults`.
# Use it as `herald --config herald.toml`. Every key is optional and named like its flag (with
# `_` for `-`); flags win over environment variables, which win over this file. Durations take a
# unit (15s, 500ms, 2h); a bare number is seconds. Every key below is commented out at its default
# (`key =` alone: none); uncomment the ones to change.
";

/// Settings whose values are never printed.
const SECRETS: &[&str] = &[
    "jwt_secret",
    "mercure_publisher_jwt_key",
    "mercure_subscriber_jwt_key",
];

/// Every setting with its help and default, as a TOML file.
pub fn defaults() -> String {
    let mut out = String::from(PREAMBLE);
    for arg in &settings() {
        out.push('\n');
        comment(&mut out, &help(arg));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let mut entry = String::new();
        line(&mut entry, arg, &defaults);
        // Commented out: a file setting only what it changes leaves the rest to the defaults
        // of the Herald that reads it.
        match entry.strip_prefix("# ") {
            Some(unset) => out.push_str(&format!("# {unset}")),
            None => out.push_str(&format!("# {entry}")),
        }
    }
    out
}

/// The effective settings of `matches` (a resolved command line), secrets redacted.
pub fn effective(matches: &ArgMatches) -> String {
    let mut out = String::from("# The effective configuration: `herald config check`.\n");
    for arg in &settings() {
        let id = arg.get_id().as_str();
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| {
                raw.map(|value| value.to_string_lossy().into_owned())
                    .filter(|value| !value.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let values = values
            .into_iter()
            .map(|value| redact(id, value))
            .collect::<Vec<_>>();
        let origin = match matches.value_source(id) {
            Some(ValueSource::DefaultValue) | None => "",
            Some(ValueSource::EnvVariable) => "  # from the environment",
            Some(_) => "  # set",
        };
        let mut entry = String::new();
        line(&mut entry, arg, &values);
        out.push_str(entry.trim_end());
        out.push_str(origin);
        out.push('\n');
    }
    out
}

/// The settings, in declaration order, with their environment variables.
fn settings() -> Vec<Arg> {
    Config::augment_args(clap::Command::new("herald"))
        .get_arguments()
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .cloned()
        .collect()
}

/// The setting's help, with its flag and environment variable.
fn help(arg: &Arg) -> String {
    let text = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    let long = arg.get_long().unwrap_or_default();
    match arg.get_env() {
        Some(env) => format!("{text} (--{long}, {})", env.to_string_lossy()),
        None => format!("{text} (--{long})"),
    }
}

/// `key = value` for `arg`, a list for a repeatable setting, commented out without a value.
fn line(out: &mut String, arg: &Arg, values: &[String]) {
    let key = arg.get_id().as_str();
    let list = matches!(arg.get_action(), ArgAction::Append);
    let _ = match (list, values) {
        (true, values) => writeln!(
            out,
            "{key} = [{}]",
            values
                .iter()
                .map(|value| quoted(value))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (false, []) => writeln!(out, "# {key} ="),
        (false, [value, ..]) => writeln!(out, "{key} = {}", scalar(value)),
    };
}

/// A value as TOML: booleans and whole numbers bare, anything else a string.
fn scalar(value: &str) -> String {
    if value == "true" || value == "false" || value.parse::<i64>().is_ok() {
        value.to_owned()
    } else {
        quoted(value)
    }
}

fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value as it may be printed: secrets hidden, a password in a URL hidden.
fn redact(id: &str, value: String) -> String {
    if SECRETS.contains(&id) {
        return "<redacted>".into();
    }
    match value.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((credentials, host)) if credentials.contains(':') => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:<redacted>@{host}")
            }
            _ => value,
        },
        None => value,
    }
}

/// Writes `text` as comment lines of at most 100 columns.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 100 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secrets_are_not_printed() {
        assert_eq!(
            redact("redis", "redis://app:hunter2@10.0.0.5:6379/1".into()),
            "redis://app:<redacted>@10.0.0.5:6379/1"
        );
        assert_eq!(
            redact("redis", "redis://10.0.0.5:6379".into()),
            "redis://10.0.0.5:6379"
        );
        assert_eq!(redact("jwt_secret", "0123456789".into()), "<redacted>");
    }

    #[test]
    fn values_are_toml() {
        assert_eq!(scalar("8080"), "8080");
        assert_eq!(scalar("true"), "true");
        assert_eq!(scalar("15s"), "\"15s\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
