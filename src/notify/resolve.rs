//! Reading what a sink names at start: `url_env` / `url_file` and `secret_env` /
//! `secret_file`. A problem is a config problem at the key's path (never with the value),
//! so `check-config` lists it and the service refuses to start (exit 2).

use std::path::Path;

use crate::config::{KeyError, NotifySinkConfig, Secret, SecretSource, SinkUrl, UrlSource};

/// A sink with its URL and secret read.
#[derive(Debug, Clone)]
pub struct ResolvedSink {
    /// The sink as configured.
    pub config: NotifySinkConfig,
    /// Where to send (redacted in `Debug`).
    pub url: SinkUrl,
    /// The webhook's signing secret (redacted in `Debug`).
    pub secret: Option<Secret>,
}

/// Read every sink's URL and secret from the process environment and files.
pub fn resolve(sinks: &[NotifySinkConfig]) -> Result<Vec<ResolvedSink>, Vec<KeyError>> {
    resolve_with(sinks, |var| std::env::var(var).ok())
}

/// [`resolve`] with `env` standing in for the environment (tests never set variables).
pub fn resolve_with(
    sinks: &[NotifySinkConfig],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ResolvedSink>, Vec<KeyError>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for sink in sinks {
        let at = |key: &str| format!("{}.{key}", sink.key);
        let url = match &sink.url {
            UrlSource::Literal(u) => Ok(u.clone()),
            UrlSource::Env(var) => read_env(&env, var)
                .and_then(|v| SinkUrl::parse(&v).map_err(|e| format!("{var}: {e}")))
                .map_err(|e| KeyError {
                    path: at("url_env"),
                    message: e,
                }),
            UrlSource::File(path) => read_file(path)
                .and_then(|v| SinkUrl::parse(&v).map_err(|e| format!("{}: {e}", path.display())))
                .map_err(|e| KeyError {
                    path: at("url_file"),
                    message: e,
                }),
        };
        let secret = match &sink.secret {
            None => Ok(None),
            Some(SecretSource::Env(var)) => read_env(&env, var)
                .map(|v| Some(Secret::new(v)))
                .map_err(|e| KeyError {
                    path: at("secret_env"),
                    message: e,
                }),
            Some(SecretSource::File(path)) => read_file(path)
                .map(|v| Some(Secret::new(v)))
                .map_err(|e| KeyError {
                    path: at("secret_file"),
                    message: e,
                }),
        };
        match (url, secret) {
            (Ok(url), Ok(secret)) => out.push(ResolvedSink {
                config: sink.clone(),
                url,
                secret,
            }),
            (url, secret) => problems.extend(url.err().into_iter().chain(secret.err())),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A variable's value, trimmed; unset or empty is an error naming the variable only.
fn read_env(env: &impl Fn(&str) -> Option<String>, var: &str) -> Result<String, String> {
    match env(var).map(|v| v.trim().to_owned()) {
        None => Err(format!("environment variable {var} is not set")),
        Some(v) if v.is_empty() => Err(format!("environment variable {var} is empty")),
        Some(v) => Ok(v),
    }
}

/// A file's content, trimmed; unreadable or empty is an error naming the file only.
fn read_file(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path).map(|v| v.trim().to_owned()) {
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(v) if v.is_empty() => Err(format!("{} is empty", path.display())),
        Ok(v) => Ok(v),
    }
}
