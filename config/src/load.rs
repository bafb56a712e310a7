//! Reading a [`Config`]: TOML file, then environment overrides, then validation.
//!
//! An override is `POTOK_` + the field's path with `__` between sections, in any case:
//! `POTOK_EDGE__CACHE__MAX_BYTES=1GiB` sets `edge.cache.max_bytes`. The value is read as a
//! TOML value when it is one (`8080`, `true`, `["http://a:8081"]`, `"quoted"`) and as a plain
//! string otherwise (`512MiB`, `0.0.0.0:8080`). Variables without `__` (`POTOK_LOG`) are not
//! overrides. An override of a field that does not exist is an error, like a typo in the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Config, Role};

/// The prefix of every environment variable Potok reads.
pub const ENV_PREFIX: &str = "POTOK_";

/// One refused field: its dotted path and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `edge.cache.max_bytes`.
    pub path: String,
    /// Why the value was refused, e.g. `expected a size like "512MiB", got "lots"`.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded. Its `Display` is meant for the operator: one
/// line per problem, each starting with the file, variable or field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An environment override names no field or cannot be placed.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// One or more fields have values of the wrong shape or outside their limits.
    #[error("{}", lines(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The refused fields, when the error is about fields.
    pub fn fields(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid(f) => f,
            _ => &[],
        }
    }
}

fn lines(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads the configuration from `file` (built-in defaults when `None`) and the `POTOK_*`
/// variables in `env`, and validates it for running `roles`.
pub fn load<I>(file: Option<&Path>, env: I, roles: &[Role]) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?,
        None => String::new(),
    };
    load_str(&text, file, env, roles)
}

/// Like [`load`], with the file's contents already in memory. `file` only names the source
/// in error messages.
pub fn load_str<I>(
    text: &str,
    file: Option<&Path>,
    env: I,
    roles: &[Role],
) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let label = file.map_or_else(|| PathBuf::from("<config>"), Path::to_path_buf);
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: label.clone(),
                message: e.to_string().trim_end().to_owned(),
            })?;
    let overrides = apply_env(&mut table, env)?;
    let attribute = |path: String, message: String| {
        let by_env = overrides
            .iter()
            .find(|(p, _)| within(&path, p) || within(p, &path));
        let message = match by_env {
            Some((_, var)) => format!("{message} (set by {var})"),
            None => message,
        };
        FieldError { path, message }
    };

    let config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = match e.path().to_string() {
                p if p == "." => "config".to_owned(),
                p => p,
            };
            let message = e.inner().message().trim_end().to_owned();
            ConfigError::Invalid(vec![attribute(path, message)])
        })?;

    match config.validate(roles) {
        Ok(()) => Ok(config),
        Err(ConfigError::Invalid(fields)) => Err(ConfigError::Invalid(
            fields
                .into_iter()
                .map(|f| attribute(f.path, f.message))
                .collect(),
        )),
        Err(other) => Err(other),
    }
}

/// Whether the field at `path` is `outer` or lies inside it (`a.b[2]` lies inside `a.b`).
fn within(path: &str, outer: &str) -> bool {
    path.strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Writes every `POTOK_A__B=v` override into `table`; returns field path → variable name.
fn apply_env<I>(table: &mut toml::Table, env: I) -> Result<BTreeMap<String, String>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut applied = BTreeMap::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k[ENV_PREFIX.len()..].contains("__"))
        .collect();
    // Deterministic order, so that the same environment always gives the same answer.
    vars.sort();
    for (var, raw) in vars {
        let segments: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(ConfigError::Env {
                var,
                message: "not a field path (expected POTOK_SECTION__FIELD, e.g. POTOK_EDGE__CACHE__MAX_BYTES)".into(),
            });
        }
        let path = segments.join(".");
        let (last, parents) = segments.split_last().ok_or_else(|| ConfigError::Env {
            var: var.clone(),
            message: "empty field path".into(),
        })?;
        let mut cursor = &mut *table;
        let mut walked = String::new();
        for seg in parents {
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(seg);
            let entry = cursor
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("`{walked}` is a value, not a section"),
                    });
                }
            };
        }
        cursor.insert(last.clone(), env_value(&raw));
        applied.insert(path, var);
    }
    Ok(applied)
}

/// Reads an environment value as a TOML value when it is a number, boolean, array, inline
/// table or quoted string, and as a plain string otherwise.
fn env_value(raw: &str) -> toml::Value {
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(toml::Value::Datetime(_)) | None => toml::Value::String(raw.to_owned()),
        Some(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_take_toml_shapes_or_stay_strings() {
        assert_eq!(env_value("8080"), toml::Value::Integer(8080));
        assert_eq!(env_value("true"), toml::Value::Boolean(true));
        assert_eq!(env_value("512MiB"), toml::Value::String("512MiB".into()));
        assert_eq!(
            env_value("0.0.0.0:80"),
            toml::Value::String("0.0.0.0:80".into())
        );
        assert_eq!(env_value("\"a b\""), toml::Value::String("a b".into()));
        assert_eq!(
            env_value("2024-01-01"),
            toml::Value::String("2024-01-01".into())
        );
        assert!(matches!(env_value("[\"http://a:1\"]"), toml::Value::Array(a) if a.len() == 1));
    }
}
