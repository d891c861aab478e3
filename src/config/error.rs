//! What can be wrong with a configuration: [`ConfigError`] and its [`KeyError`]s.

use std::fmt;
use std::path::PathBuf;

/// Why the configuration could not be loaded. No variant ever contains a token.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file is missing or unreadable.
    #[error("cannot read config file {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The TOML is malformed (source lines are left out: they may hold a token).
    #[error("invalid TOML: {0}")]
    Parse(String),
    /// One or more keys are invalid; `Display` lists every one, one per line.
    #[error("invalid configuration ({} problem(s)):{}", .0.len(), KeyErrors(.0))]
    Invalid(Vec<KeyError>),
}

/// One invalid key: its dotted path (`sessions[2].token_env`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Dotted key path, e.g. `ccr.ping_interval` or `sessions[2].id`.
    pub path: String,
    /// What is wrong; never contains a secret value.
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Renders key errors one per indented line, after the `Invalid` header.
struct KeyErrors<'a>(&'a [KeyError]);

impl fmt::Display for KeyErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|e| write!(f, "\n  {e}"))
    }
}
