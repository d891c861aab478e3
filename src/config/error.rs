//! What can be wrong with a configuration: the public [`ConfigError`] and [`KeyError`],
//! and the collector that gathers every problem in one pass.

use std::collections::HashMap;
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

/// Collects every problem found while validating, in the order found.
pub(super) struct Errors {
    list: Vec<KeyError>,
    /// Dotted key path -> the environment variable that set it, to point at the culprit.
    from_env: HashMap<String, String>,
    /// Keys a layer above checks (a rule's tool pattern), with the place in `list` where
    /// their problems go: see [`Errors::into_vec_with`].
    deferred: HashMap<String, usize>,
}

impl Errors {
    /// An empty collector; `from_env` maps dotted paths to the env var that set them.
    pub(super) fn new(from_env: HashMap<String, String>) -> Self {
        Self {
            list: Vec::new(),
            from_env,
            deferred: HashMap::new(),
        }
    }

    /// Record one problem at `path`.
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let error = self.annotated(path.into(), message.into());
        self.list.push(error);
    }

    /// The problem, naming the environment variable that set its key, if one did.
    fn annotated(&self, path: String, mut message: String) -> KeyError {
        if let Some(var) = self.from_env.get(&path) {
            message.push_str(&format!(" (set by environment variable {var})"));
        }
        KeyError { path, message }
    }

    /// Note that the key at `path` is checked later, by a layer above config (the
    /// policy parses a rule's tool pattern): its problems belong here in the list.
    pub(super) fn defer(&mut self, path: impl Into<String>) {
        self.deferred.insert(path.into(), self.list.len());
    }

    /// Record problems found elsewhere (e.g. while reading the environment).
    pub(super) fn extend(&mut self, errors: Vec<KeyError>) {
        self.list.extend(errors);
    }

    /// How many problems so far.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Paths of the problems so far.
    pub(super) fn paths(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|e| e.path.as_str())
    }

    /// The problems, in the order found.
    pub(super) fn into_vec(self) -> Vec<KeyError> {
        self.list
    }

    /// The problems with `more` (found by a layer above) merged in: each where its key
    /// was deferred, else at the end, so the list keeps the file's order. One about a key
    /// at or under a key already reported is left out: that key was never read as it is.
    pub(super) fn into_vec_with(self, more: Vec<KeyError>) -> Vec<KeyError> {
        let mut extra: Vec<(usize, KeyError)> = more
            .into_iter()
            .filter(|e| !self.list.iter().any(|r| covers(&r.path, &e.path)))
            .map(|e| {
                let at = self.deferred.get(&e.path).copied();
                (
                    at.unwrap_or(self.list.len()),
                    self.annotated(e.path, e.message),
                )
            })
            .collect();
        extra.sort_by_key(|(at, _)| *at); // Stable: same place, given order.
        let mut extra = extra.into_iter().peekable();
        let mut out = Vec::with_capacity(self.list.len() + extra.len());
        for (i, error) in self.list.into_iter().enumerate() {
            while let Some((_, e)) = extra.next_if(|(at, _)| *at <= i) {
                out.push(e);
            }
            out.push(error);
        }
        out.extend(extra.map(|(_, e)| e));
        out
    }
}

/// Whether a problem reported at `reported` covers `path`: the same key or a table above it.
fn covers(reported: &str, path: &str) -> bool {
    path.strip_prefix(reported)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}
