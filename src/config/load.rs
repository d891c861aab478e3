//! Raw config (TOML + `CCR_SUPERVISOR__SECTION__KEY` env, merged by the `config`
//! crate into a loose tree) -> validated [`Config`], collecting every problem.
//!
//! The env source never uses `try_parsing`: that would turn a token like `007`
//! into `7`. Values stay strings and the typed readers in `fields.rs` accept
//! numeric / boolean strings where a number / bool is expected.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::fields::{Errors, Table};
use super::{api_tokens, ledger, policy, runtime, sessions};
use super::{
    ApiConfig, ApiLimits, CcrConfig, Config, LogConfig, LogFormat, ReconnectConfig, SimConfig,
    SupervisorConfig,
};

/// Prefix of environment overrides: `CCR_SUPERVISOR__CCR__PING_INTERVAL=5s`.
const ENV_PREFIX: &str = "CCR_SUPERVISOR";
/// Separator between prefix, section and key in environment overrides.
const ENV_SEPARATOR: &str = "__";

/// Default of `[api] request_body_timeout`: generous for a JSON body of at most 1 MiB.
const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);

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
    let api = api(root.table(errs, "api"), errs);
    let ccr = ccr(root.table(errs, "ccr"), errs);
    let reconnect = reconnect(root.table(errs, "reconnect"), errs);
    let supervisor = supervisor(root.table(errs, "supervisor"), errs);
    let log = log(root.table(errs, "log"), errs);
    let sim = sim(root.table(errs, "sim"), errs);
    let ledger = ledger::ledger(root.table(errs, "ledger"), errs);
    let sessions = sessions::sessions(root.raw("sessions"), errs);
    let policy = policy::policy(root.table(errs, "policy"), errs);
    root.finish(errs);
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
    }
}

fn api(mut t: Table, errs: &mut Errors) -> ApiConfig {
    let default_bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 8700));
    let auth_enabled = match t.string(errs, "auth").as_deref() {
        None | Some("enabled") => true,
        Some("disabled") => false,
        Some(other) => {
            errs.push(
                t.key_path("auth"),
                format!("expected \"enabled\" or \"disabled\", got {other:?}"),
            );
            true
        }
    };
    let tokens = api_tokens::api_tokens(t.raw("tokens"), errs);
    let runtime_tokens = runtime::runtime_tokens(&mut t, errs);
    let api = ApiConfig {
        bind: t.socket_addr(errs, "bind", default_bind),
        event_buffer: t.usize(errs, "event_buffer", 262_144, 1..=usize::MAX),
        history_events: t.usize(errs, "history_events", 1000, 1..=1_000_000),
        history_bytes: t.usize(errs, "history_bytes", 1 << 20, 1024..=1 << 30),
        history_total_bytes: t.usize(errs, "history_total_bytes", 256 << 20, 1024..=1 << 40),
        stream_heartbeat: t.positive_duration(errs, "stream_heartbeat", Duration::from_secs(15)),
        shutdown_timeout: t.positive_duration(errs, "shutdown_timeout", Duration::from_secs(10)),
        request_body_timeout: t.positive_duration(
            errs,
            "request_body_timeout",
            DEFAULT_REQUEST_BODY_TIMEOUT,
        ),
        auth_enabled,
        runtime_tokens,
        tokens,
        limits: api_limits(&mut t, errs),
    };
    if api.auth_enabled
        && api.tokens.is_empty()
        && !errs_has(errs, "api.tokens")
        && !errs_has(errs, "api:")
    {
        errs.push(
            "api.tokens",
            "auth is enabled but no [[api.tokens]] are configured \
             (set [api] auth = \"disabled\" only for local development)",
        );
    }
    t.finish(errs);
    api
}

/// The `[api]` keys of [`ApiLimits`]; streams must leave connections for requests.
fn api_limits(t: &mut Table, errs: &mut Errors) -> ApiLimits {
    let d = ApiLimits::default();
    let limits = ApiLimits {
        workers: t.usize(errs, "workers", d.workers, 0..=256),
        max_connections: t.usize(errs, "max_connections", d.max_connections, 2..=10_000_000),
        max_stream_subscribers: t.usize(
            errs,
            "max_stream_subscribers",
            d.max_stream_subscribers,
            1..=10_000_000,
        ),
        max_stream_subscribers_per_token: t.usize(
            errs,
            "max_stream_subscribers_per_token",
            d.max_stream_subscribers_per_token,
            1..=10_000_000,
        ),
    };
    if limits.max_stream_subscribers >= limits.max_connections {
        errs.push(
            t.key_path("max_stream_subscribers"),
            format!(
                "must be below api.max_connections ({}): event streams would take every \
                 connection, and answers and /healthz could not connect",
                limits.max_connections
            ),
        );
    }
    limits
}

/// True when an error at `path` (or under it; `"api:"` means exactly `api`) was already reported.
fn errs_has(errs: &Errors, path: &str) -> bool {
    match path.strip_suffix(':') {
        Some(exact) => errs.paths().any(|p| p == exact),
        None => errs.paths().any(|p| p.starts_with(path)),
    }
}

fn ccr(mut t: Table, errs: &mut Errors) -> CcrConfig {
    let base_url = match t.string(errs, "base_url").filter(|s| !s.is_empty()) {
        None => String::new(),
        Some(raw) => base_url(&raw).unwrap_or_else(|e| {
            errs.push(t.key_path("base_url"), e);
            raw // Already reported: keep it non-empty so "required" is not reported too.
        }),
    };
    let organization_uuid = t.string(errs, "organization_uuid").unwrap_or_default();
    if !organization_uuid
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        errs.push(
            t.key_path("organization_uuid"),
            "may contain only letters, digits and -",
        );
    }
    let mut header = |t: &mut Table, key, default: &str| {
        let value = t.string(errs, key).unwrap_or_else(|| default.to_owned());
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
            errs.push(
                t.key_path(key),
                "must be non-empty printable ASCII without spaces",
            );
        }
        value
    };
    let anthropic_version = header(&mut t, "anthropic_version", "2023-06-01");
    let anthropic_beta = header(&mut t, "anthropic_beta", "ccr-byoc-2025-07-29");
    let secs = Duration::from_secs;
    let ccr = CcrConfig {
        base_url,
        organization_uuid,
        anthropic_version,
        anthropic_beta,
        max_frame_bytes: t.usize(
            errs,
            "max_frame_bytes",
            super::DEFAULT_MAX_FRAME_BYTES,
            1 << 10..=64 << 20,
        ),
        ping_interval: t.positive_duration(errs, "ping_interval", secs(30)),
        pong_timeout: t.positive_duration(errs, "pong_timeout", secs(10)),
        connect_timeout: t.positive_duration(errs, "connect_timeout", secs(10)),
        interrupt_timeout: t.positive_duration(errs, "interrupt_timeout", secs(10)),
        send_timeout: t.positive_duration(errs, "send_timeout", secs(30)),
        token_command_timeout: t.positive_duration(errs, "token_command_timeout", secs(10)),
        initialize_on_connect: t.bool(errs, "initialize_on_connect", true),
        initialize_timeout: t.positive_duration(errs, "initialize_timeout", secs(10)),
        response_watchdog: t.duration(errs, "response_watchdog", secs(60)),
        supported_dialog_kinds: t.strings_or_csv(errs, "supported_dialog_kinds"),
    };
    for kind in &ccr.supported_dialog_kinds {
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            errs.push(
                t.key_path("supported_dialog_kinds"),
                format!("{kind:?}: a dialog kind is letters, digits and _"),
            );
        }
    }
    t.finish(errs);
    ccr
}

/// `http(s)://host...` with trailing slashes stripped.
fn base_url(raw: &str) -> Result<String, String> {
    let url = raw.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        None => Err(format!("must start with http:// or https://, got {raw:?}")),
        Some("") => Err(format!("has no host, got {raw:?}")),
        Some(r) if r.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(format!("must not contain whitespace, got {raw:?}"))
        }
        Some(_) => Ok(url.to_owned()),
    }
}

fn reconnect(mut t: Table, errs: &mut Errors) -> ReconnectConfig {
    let d = ReconnectConfig::default();
    let r = ReconnectConfig {
        transient_delay: t.duration(errs, "transient_delay", d.transient_delay),
        transient_attempts: t.u32(
            errs,
            "transient_attempts",
            d.transient_attempts,
            0..=u32::MAX,
        ),
        not_found_delay: t.duration(errs, "not_found_delay", d.not_found_delay),
        not_found_attempts: t.u32(
            errs,
            "not_found_attempts",
            d.not_found_attempts,
            0..=u32::MAX,
        ),
        // Exponential backoff from zero would stay at zero: a reconnect storm.
        backoff_initial: t.positive_duration(errs, "backoff_initial", d.backoff_initial),
        backoff_max: t.duration(errs, "backoff_max", d.backoff_max),
        jitter: t.float(errs, "jitter", d.jitter, 0.0..=1.0),
    };
    if r.backoff_max < r.backoff_initial {
        errs.push(
            t.key_path("backoff_max"),
            "must be >= reconnect.backoff_initial",
        );
    }
    t.finish(errs);
    r
}

fn supervisor(mut t: Table, errs: &mut Errors) -> SupervisorConfig {
    let s = SupervisorConfig {
        arbiters: t.usize(errs, "arbiters", 0, 0..=256),
        max_restarts: t.u32(errs, "max_restarts", 5, 0..=u32::MAX),
        restart_period: t.positive_duration(errs, "restart_period", Duration::from_secs(60)),
        restart_backoff_initial: t.positive_duration(
            errs,
            "restart_backoff_initial",
            Duration::from_millis(500),
        ),
        restart_backoff_max: t.duration(errs, "restart_backoff_max", Duration::from_secs(30)),
        resolved_prompts: t.usize(
            errs,
            "resolved_prompts",
            super::DEFAULT_RESOLVED_PROMPTS,
            1..=100_000_000,
        ),
        resolved_prompts_bytes: t.usize(
            errs,
            "resolved_prompts_bytes",
            super::DEFAULT_RESOLVED_PROMPTS_BYTES,
            1 << 20..=1 << 40,
        ),
    };
    if s.restart_backoff_max < s.restart_backoff_initial {
        errs.push(
            t.key_path("restart_backoff_max"),
            "must be >= supervisor.restart_backoff_initial",
        );
    }
    t.finish(errs);
    s
}

fn log(mut t: Table, errs: &mut Errors) -> LogConfig {
    let format = match t.string(errs, "format") {
        None => LogFormat::Pretty,
        Some(f) if f.eq_ignore_ascii_case("pretty") => LogFormat::Pretty,
        Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
        Some(f) => {
            errs.push(
                t.key_path("format"),
                format!("expected \"pretty\" or \"json\", got {f:?}"),
            );
            LogFormat::Pretty
        }
    };
    let level = t.string(errs, "level").unwrap_or_else(|| "info".to_owned());
    if level.trim().is_empty() {
        errs.push(t.key_path("level"), "must not be empty");
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        errs.push(
            t.key_path("level"),
            format!("invalid filter {level:?}: {e}"),
        );
    }
    t.finish(errs);
    LogConfig { format, level }
}

fn sim(mut t: Table, errs: &mut Errors) -> SimConfig {
    let s = SimConfig {
        embedded: t.bool(errs, "embedded", false),
        bind: t.socket_addr(errs, "bind", SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        turn_pause: t.duration(errs, "turn_pause", Duration::from_secs(5)),
    };
    t.finish(errs);
    s
}
