//! Token sources checked before the service runs: `check-config` resolves every one
//! (env set, file readable, command runnable), and the start refuses an unset
//! `token_env`, which no later moment can fix (a process's environment is fixed).
//!
//! Values are read only to learn whether they are there: no problem message ever
//! contains one. A session's `token_file` or `token_command` that fails at run time
//! is not fatal: the session shows it as its last error and retries (see `session`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ApiTokenSource, Config, KeyError, TokenSpec};
use crate::session::token::TokenSource;

/// Where one configured secret comes from. `Debug` never shows a command.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// `token_env`: a variable of this process's environment.
    Env(String),
    /// `token_file`: a file read (trimmed).
    File(PathBuf),
    /// `token_command`: a shell command whose stdout (trimmed) is the token.
    Command(String),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Env(var) => write!(f, "Env({var:?})"),
            Source::File(path) => write!(f, "File({path:?})"),
            Source::Command(_) => f.write_str("Command(<redacted>)"),
        }
    }
}

/// A token source with the key path that configures it (`sessions[2].token_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Dotted key path.
    pub key: String,
    /// What it reads.
    pub source: Source,
}

/// Every token source of `cfg` that is read from outside the file, operator tokens
/// (`[[api.tokens]]`) first, then sessions, in the file's order. Digests and literal
/// tokens need no resolving and are left out.
pub fn sources(cfg: &Config) -> Vec<Named> {
    let mut out = Vec::new();
    for (i, spec) in cfg.api.tokens.iter().enumerate() {
        let (key, source) = match &spec.source {
            ApiTokenSource::Sha256(_) => continue,
            ApiTokenSource::Env(var) => ("token_env", Source::Env(var.clone())),
            ApiTokenSource::File(path) => ("token_file", Source::File(path.clone())),
        };
        out.push(Named {
            key: format!("api.tokens[{i}].{key}"),
            source,
        });
    }
    for (i, spec) in cfg.sessions.iter().enumerate() {
        let (key, source) = match &spec.token {
            TokenSpec::Literal(_) | TokenSpec::Refused(_) => continue,
            TokenSpec::Env(var) => ("token_env", Source::Env(var.clone())),
            TokenSpec::File(path) | TokenSpec::ConfinedFile { path, .. } => {
                ("token_file", Source::File(path.clone()))
            }
            TokenSpec::Command(cmd) => ("token_command", Source::Command(cmd.clone())),
        };
        out.push(Named {
            key: format!("sessions[{i}].{key}"),
            source,
        });
    }
    out
}

/// What is wrong with the value of environment variable `var` as a token, if anything.
fn env_problem(var: &str, value: Option<OsString>) -> Option<String> {
    match value.map(OsString::into_string) {
        None => Some(format!("environment variable {var} is not set")),
        Some(Err(_)) => Some(format!("environment variable {var} is not valid UTF-8")),
        Some(Ok(v)) if v.trim().is_empty() => Some(format!("environment variable {var} is empty")),
        Some(Ok(_)) => None,
    }
}

/// The `token_env` sources (operator and session) whose variable `lookup` finds unset,
/// empty or not UTF-8: each a problem at its key path. The start refuses these; the
/// service's own environment is `std::env::var_os`.
pub fn env_problems(cfg: &Config, lookup: impl Fn(&str) -> Option<OsString>) -> Vec<KeyError> {
    sources(cfg)
        .into_iter()
        .filter_map(|named| match &named.source {
            Source::Env(var) => env_problem(var, lookup(var)).map(|message| KeyError {
                path: named.key,
                message,
            }),
            _ => None,
        })
        .collect()
}

/// Resolve every token source of `cfg` as the service would: variables set, files
/// readable and not empty, commands exiting 0 with output within `command_timeout`
/// (run side by side). Each failure is a problem at its key path; no value is kept or shown.
pub async fn resolve(cfg: &Config, command_timeout: Duration) -> Vec<KeyError> {
    let checks = sources(cfg).into_iter().map(|named| async move {
        let message = match &named.source {
            Source::Env(var) => env_problem(var, std::env::var_os(var)),
            Source::File(path) => match std::fs::read_to_string(path) {
                Err(e) => Some(format!("cannot read {}: {e}", path.display())),
                Ok(text) if text.trim().is_empty() => Some(format!("{} is empty", path.display())),
                Ok(_) => None,
            },
            Source::Command(cmd) => TokenSource::from_spec(&TokenSpec::Command(cmd.clone()))
                .fetch(command_timeout)
                .await
                .err()
                .map(|e| e.to_string()),
        };
        message.map(|message| KeyError {
            path: named.key,
            message,
        })
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "sk-preflight-secret-value";

    fn config(extra: &str) -> Config {
        let toml = format!(
            "[sim]\nembedded = true\n[api]\nauth = \"enabled\"\n\
             [[api.tokens]]\nname = \"digest\"\nrole = \"admin\"\nsha256 = \"{}\"\n\
             [[api.tokens]]\nname = \"ops\"\nrole = \"viewer\"\ntoken_env = \"CCR_PREFLIGHT_OPS\"\n\
             {extra}",
            "0".repeat(64)
        );
        crate::config::load_from_str(&toml, HashMap::new()).expect("valid config")
    }

    fn sessions(dir: &std::path::Path) -> String {
        format!(
            "[[sessions]]\nid = \"lit\"\ntoken = \"{SECRET}\"\n\
             [[sessions]]\nid = \"env\"\ntoken_env = \"CCR_PREFLIGHT_SESSION\"\n\
             [[sessions]]\nid = \"file\"\ntoken_file = \"{}\"\n\
             [[sessions]]\nid = \"cmd\"\ntoken_command = \"echo {SECRET}; exit 3\"\n\
             [[sessions]]\nid = \"quiet\"\ntoken_command = \"true\"\n\
             [[sessions]]\nid = \"good\"\ntoken_command = \"echo {SECRET}\"\n",
            dir.join("missing-token").display()
        )
    }

    #[test]
    fn every_external_source_is_listed_with_its_key_path() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = sources(&config(&sessions(dir.path())))
            .into_iter()
            .map(|n| n.key)
            .collect();
        assert_eq!(
            keys,
            [
                "api.tokens[1].token_env",
                "sessions[1].token_env",
                "sessions[2].token_file",
                "sessions[3].token_command",
                "sessions[4].token_command",
                "sessions[5].token_command",
            ]
        );
        let cmd = Source::Command(format!("echo {SECRET}"));
        assert!(!format!("{cmd:?}").contains(SECRET));
    }

    #[test]
    fn unset_empty_and_set_variables() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&sessions(dir.path()));
        let none = env_problems(&cfg, |_| None);
        let rendered: Vec<String> = none.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "api.tokens[1].token_env: environment variable CCR_PREFLIGHT_OPS is not set",
                "sessions[1].token_env: environment variable CCR_PREFLIGHT_SESSION is not set",
            ]
        );
        let empty = env_problems(&cfg, |_| Some(" \n".into()));
        assert!(empty[0].message.ends_with("is empty"), "{empty:?}");
        assert!(env_problems(&cfg, |_| Some(SECRET.into())).is_empty());
    }

    #[actix_rt::test]
    async fn resolve_reports_each_failure_at_its_key_and_never_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&sessions(dir.path()));
        let problems = resolve(&cfg, Duration::from_secs(5)).await;
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        // The variables are unset in the test environment (never set_var).
        assert_eq!(
            paths,
            [
                "api.tokens[1].token_env",
                "sessions[1].token_env",
                "sessions[2].token_file",
                "sessions[3].token_command",
                "sessions[4].token_command",
            ],
            "{problems:?}"
        );
        assert!(
            problems[2].message.contains("missing-token"),
            "{problems:?}"
        );
        assert!(problems[3].message.contains("exit"), "{problems:?}");
        assert!(problems[4].message.contains("empty"), "{problems:?}");
        for p in &problems {
            assert!(!p.to_string().contains(SECRET), "{p}");
        }

        let readable = dir.path().join("token");
        std::fs::write(&readable, "tok\n").unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, "\n").unwrap();
        let files = format!(
            "[[sessions]]\nid = \"f1\"\ntoken_file = \"{}\"\n[[sessions]]\nid = \"f2\"\ntoken_file = \"{}\"\n",
            readable.display(),
            blank.display()
        );
        let problems = resolve(&config(&files), Duration::from_secs(5)).await;
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["api.tokens[1].token_env", "sessions[1].token_file"],
            "{problems:?}"
        );
    }
}
