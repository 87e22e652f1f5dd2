//! Configuration errors. Each names the key by its full dotted path, the value, where the
//! value came from, and what is allowed.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Which layer a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Built-in default (possibly derived from the profile or another key).
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag (`--set` or a dedicated flag).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The file could not be read or is not TOML.
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    /// A key, section, environment variable or flag that does not exist.
    #[error("{what} ({origin}): {hint}")]
    Unknown { what: String, origin: Origin, hint: String },
    /// A known key with a value that is not allowed.
    #[error("{key} = {value} ({origin}): {problem}")]
    Invalid { key: String, value: String, origin: Origin, problem: String },
}

impl ConfigError {
    /// The dotted key path, where the error is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Every error found in one load, in the order found. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "invalid configuration ({n} error{}):", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
