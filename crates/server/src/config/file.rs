//! The TOML file layer: each key names a setting (a field of [`Config`]), and its value becomes
//! the same flag a user could have typed, so it is parsed and checked exactly as one.

use std::ffi::OsString;
use std::path::Path;

use clap::ArgAction;

use super::{ConfigError, settings_command};

/// The flags the file at `path` stands for, leaving out the settings `given` says a flag or
/// the environment already set. Unknown keys, values of the wrong shape and values the
/// setting's own parser refuses are errors naming the key.
pub(super) fn read(
    path: &Path,
    given: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |message: String| ConfigError::File {
        path: path.to_owned(),
        message,
    };
    let table: toml::Table = toml::from_str(&text).map_err(|err| invalid(err.to_string()))?;
    let settings = settings_command();
    let mut flags = Vec::new();
    for (key, value) in table {
        let key = current_key(key);
        let Some(arg) = settings
            .get_arguments()
            .find(|arg| arg.get_id() == key.as_str())
        else {
            return Err(invalid(format!("unknown setting `{key}`")));
        };
        if given(&key) {
            continue;
        }
        let list = matches!(arg.get_action(), ArgAction::Append);
        let values = match value {
            toml::Value::Array(items) if list => items,
            toml::Value::Array(_) => {
                return Err(invalid(format!("`{key}` takes one value, not a list")));
            }
            single => vec![single],
        };
        // Every setting has a long flag: the field's name with `-` for `_`, or its own.
        let long = arg.get_long().unwrap_or(key.as_str());
        let mut layer = Vec::with_capacity(values.len());
        for value in values {
            let text = scalar(&value).ok_or_else(|| {
                invalid(format!(
                    "`{key}` takes text, a number or a boolean, not {}",
                    value.type_str()
                ))
            })?;
            layer.push(OsString::from(format!("--{long}={text}")));
        }
        // Parsed alone first, so that a refused value is reported with its key.
        if let Err(err) = settings.clone().try_get_matches_from(&layer) {
            let message = err.to_string();
            let first = message.lines().next().unwrap_or_default();
            return Err(invalid(format!(
                "`{key}`: {}",
                first.trim_start_matches("error: ")
            )));
        }
        flags.extend(layer);
    }
    Ok(flags)
}

/// Keys settings had before each was named as its flag: still read. (former key, setting)
const FORMER_KEYS: &[(&str, &str)] = &[
    ("private_topics", "private_topic"),
    ("cors_origins", "cors_origin"),
];

/// The setting `key` names, under its current name.
fn current_key(key: String) -> String {
    FORMER_KEYS
        .iter()
        .find(|(former, _)| *former == key)
        .map_or(key, |(_, current)| (*current).to_owned())
}

/// A scalar as a flag's value would spell it.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        toml::Value::Boolean(flag) => Some(flag.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}
