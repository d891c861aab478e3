//! Raw config (TOML + `CCR_SUPERVISOR__SECTION__KEY` env, merged by the `config`
//! crate into a loose tree) -> validated [`Config`], collecting every problem.
//!
//! The env source never uses `try_parsing`: that would turn a token like `007`
//! into `7`. Values stay strings and the typed readers in `fields.rs` accept
//! numeric / boolean strings where a number / bool is expected.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::fields::{Errors, Table};
use super::{api, ccr, cluster, console, ledger, notify, policy, service, sessions};
use super::{Config, ConfigError, KeyError};

/// Prefix of environment overrides: `CCR_SUPERVISOR__CCR__PING_INTERVAL=5s`.
const ENV_PREFIX: &str = "CCR_SUPERVISOR";
/// Separator between prefix, section and key in environment overrides.
const ENV_SEPARATOR: &str = "__";

/// Validate one `[[sessions]]` entry given as JSON, with a config-file entry's
/// rights except that a literal `token` is refused. `POST /v1/sessions` uses
/// [`runtime_session_from_json`](super::runtime_session_from_json), which also applies
/// `[api] runtime_token_sources`.
pub fn session_from_json(
    value: &Value,
) -> Result<std::sync::Arc<crate::config::SessionSpec>, Vec<KeyError>> {
    let mut errs = Errors::new(HashMap::new());
    if value.get("token").is_some() {
        errs.push(
            "token",
            "literal tokens are not accepted over the API: give token_env or token_file (as [api] runtime_token_sources allows)",
        );
    }
    let mut specs = sessions::sessions(Some(&Value::Array(vec![value.clone()])), &mut errs);
    if errs.len() > 0 {
        return Err(errs
            .into_vec()
            .into_iter()
            .map(|e| KeyError {
                path: e
                    .path
                    .strip_prefix("sessions[0].")
                    .or_else(|| e.path.strip_prefix("sessions[0]"))
                    .unwrap_or(&e.path)
                    .to_owned(),
                message: e.message,
            })
            .collect());
    }
    specs.pop().ok_or_else(|| {
        vec![KeyError {
            path: String::new(),
            message: "invalid session".into(),
        }]
    })
}

/// A configuration read as far as it goes, and every problem config found in it.
///
/// Config checks every key it knows; a part compiled by the layer that uses it is
/// checked there: the policy parses each rule's `tool` pattern (`policy::Policy::compile`).
/// [`Draft::finish`] merges those problems into config's own, each at its place in the
/// file's order, so one list names every bad key (`app::load_config` does both).
pub struct Draft {
    config: Config,
    problems: Errors,
}

impl Draft {
    /// The configuration as read. Where config found a problem, the value is a default or
    /// a placeholder: read it only to look for more problems before [`finish`](Self::finish).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration, if neither config nor the layer above (`more`) found a problem;
    /// otherwise [`ConfigError::Invalid`] with all of them.
    pub fn finish(self, more: Vec<KeyError>) -> Result<Config, ConfigError> {
        let errors = self.problems.into_vec_with(more);
        if errors.is_empty() {
            Ok(self.config)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

/// Load `path` (TOML) + env overrides `CCR_SUPERVISOR__SECTION__KEY` from the real process
/// environment, with config's own checks (see [`Draft`] for what the layer above adds).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    read(path)?.finish(Vec::new())
}

/// Same from a TOML string and an explicit env map (for tests; never use std::env::set_var).
pub fn load_from_str(toml: &str, env: HashMap<String, String>) -> Result<Config, ConfigError> {
    read_from_str(toml, env)?.finish(Vec::new())
}

/// Read `path` (TOML) + env overrides into a [`Draft`]; an error here is an unreadable
/// file or malformed TOML.
pub fn read(path: &Path) -> Result<Draft, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut env = HashMap::new();
    let mut env_errors = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().filter(|k| env_path(k).is_some()) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                env.insert(key.to_owned(), value);
            }
            Err(_) => env_errors.push(KeyError {
                path: env_path(key).unwrap_or_default(),
                message: format!("environment variable {key} is not valid UTF-8"),
            }),
        }
    }
    parse(&text, env, env_errors).map_err(|e| match e {
        ConfigError::Parse(msg) => ConfigError::Parse(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// [`read`] from a TOML string and an explicit env map (never use std::env::set_var).
pub fn read_from_str(toml: &str, env: HashMap<String, String>) -> Result<Draft, ConfigError> {
    parse(toml, env, Vec::new())
}

/// The dotted key an env var overrides (`CCR_SUPERVISOR__CCR__PING_INTERVAL` ->
/// `ccr.ping_interval`), mirroring the `config` crate; `None` if not ours.
fn env_path(var: &str) -> Option<String> {
    let lower = var.to_lowercase();
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}").to_lowercase();
    Some(lower.strip_prefix(&prefix)?.replace(ENV_SEPARATOR, "."))
}

fn parse(
    toml: &str,
    env: HashMap<String, String>,
    early: Vec<KeyError>,
) -> Result<Draft, ConfigError> {
    let from_env = env
        .keys()
        .filter_map(|k| Some((env_path(k)?, k.clone())))
        .collect();
    let tree = merge(toml, env)?;
    let mut problems = Errors::new(from_env);
    problems.extend(early);
    let config = validate(&tree, &mut problems);
    Ok(Draft { config, problems })
}

/// Merge file and env with the `config` crate into a loose JSON-like tree.
fn merge(toml: &str, env: HashMap<String, String>) -> Result<Value, ConfigError> {
    let env = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .source(Some(env.into_iter().collect()));
    config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .add_source(env)
        .build()
        .and_then(|raw| raw.try_deserialize::<Value>())
        .map_err(|e| ConfigError::Parse(without_source_lines(&e.to_string())))
}

/// Drop the quoted source lines (`3 | token = "..."`) a TOML error shows: they may hold a token.
fn without_source_lines(message: &str) -> String {
    let is_source = |line: &str| {
        let (gutter, _) = line.split_once('|').unwrap_or((line, ""));
        line.contains('|') && gutter.trim().chars().all(|c| c.is_ascii_digit())
    };
    let kept: Vec<&str> = message
        .lines()
        .filter(|l| !is_source(l) && !l.trim().is_empty())
        .collect();
    kept.join("; ")
}

fn validate(tree: &Value, errs: &mut Errors) -> Config {
    let empty = serde_json::Map::new();
    let mut root = Table::new("", Some(tree.as_object().unwrap_or(&empty)));
    let mut api = api::api(root.table(errs, "api"), errs);
    let ccr = ccr::ccr(root.table(errs, "ccr"), errs);
    let reconnect = ccr::reconnect(root.table(errs, "reconnect"), errs);
    let supervisor = service::supervisor(root.table(errs, "supervisor"), errs);
    let log = service::log(root.table(errs, "log"), errs);
    let sim = service::sim(root.table(errs, "sim"), errs);
    let ledger = ledger::ledger(root.table(errs, "ledger"), errs);
    let sessions = sessions::sessions(root.raw("sessions"), errs);
    let policy = policy::policy(root.table(errs, "policy"), errs);
    let notify = notify::notify(root.raw("notify"), errs);
    let console = console::console(root.table(errs, "console"), errs);
    let cluster = cluster::cluster(root.table(errs, "cluster"), errs);
    root.finish(errs);
    if !ccr.base_url.is_empty() {
        // Naming the shared endpoint explicitly is no wider than leaving it out.
        let rules = &mut api.runtime_tokens;
        let mut base_urls = rules.base_urls.to_vec();
        base_urls.push(ccr.base_url.clone());
        rules.base_urls = base_urls.into();
    }
    if !sim.embedded && ccr.base_url.is_empty() {
        errs.push("ccr.base_url", "required unless [sim] embedded = true");
    }
    if !sim.embedded && ccr.organization_uuid.is_empty() {
        errs.push(
            "ccr.organization_uuid",
            "required unless [sim] embedded = true",
        );
    }
    Config {
        api,
        ccr,
        reconnect,
        supervisor,
        log,
        sim,
        ledger,
        sessions,
        policy,
        notify,
        console,
        cluster,
    }
}
