//! Configuration: `config.toml` + `CCR_SUPERVISOR__SECTION__KEY` env overrides,
//! parsed raw with the `config` crate and then validated into a typed [`Config`].
//!
//! Validation reports every bad key at once, each with its dotted path. Config is plain
//! data and depends on no other module of the service: what another layer compiles from
//! it (the policy's rule patterns) is checked there, and `app::load_config` puts those
//! problems in the same list ([`Draft::finish`]).

mod api;
mod api_tokens;
pub(crate) mod ca;
mod ccr;
mod cluster;
mod console;
mod error;
mod fields;
mod ledger;
mod load;
mod notify;
mod policy;
mod runtime;
mod service;
mod sessions;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use ca::{client_config, trust_roots, CaFile, MAX_CA_FILE_BYTES};
pub use cluster::{
    default_instance_id, ClusterConfig, DEFAULT_LEASE_PERIOD, DEFAULT_OUTAGE_GRACE,
    MAX_INSTANCE_ID_LEN, MAX_LEASE_PERIOD, MAX_OUTAGE_GRACE, MIN_LEASE_PERIOD,
};
pub use console::{
    ConsoleConfig, DEFAULT_CONSOLE_MAX_SESSIONS, DEFAULT_CONSOLE_SESSION_LIFETIME,
    MAX_CONSOLE_SESSION_LIFETIME,
};
pub use error::{ConfigError, KeyError};
pub use ledger::{LedgerBackend, LedgerConfig, PgUrlSource, PostgresConfig};
pub use load::{load, load_from_str, read, read_from_str, session_from_json, Draft};
pub use notify::{
    NotifyDelivery, NotifyEvent, NotifySelector, NotifySinkConfig, SecretSource, SinkKind, SinkUrl,
    UrlSource,
};
pub use policy::{PolicyConfig, RuleAction, RuleConfig};
pub use runtime::{runtime_session_from_json, stored_json, stored_session};
pub use token::{open_confined, ConfinedError, Secret, TokenSpec, MAX_CONFINED_BYTES};

/// Default `[ccr] max_frame_bytes`: 16 MiB. Real `Write`/`Edit` prompts carry whole
/// files (1 MB and larger occur; a model's longest output, JSON-escaped, stays within a few
/// MB), and the memory is held only while such a frame is being received.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;

/// Largest `[ccr] max_frame_bytes` the config accepts: 64 MiB.
pub const MAX_MAX_FRAME_BYTES: usize = 64 << 20;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[api]`: the operator HTTP API.
    pub api: ApiConfig,
    /// `[ccr]`: how to reach the CCR endpoint.
    pub ccr: CcrConfig,
    /// `[reconnect]`: reconnect policy.
    pub reconnect: ReconnectConfig,
    /// `[supervisor]`: arbiters and restart budget.
    pub supervisor: SupervisorConfig,
    /// `[log]`: log format and filter.
    pub log: LogConfig,
    /// `[sim]`: the embedded simulator (demo mode).
    pub sim: SimConfig,
    /// `[ledger]`: the durable decision ledger.
    pub ledger: LedgerConfig,
    /// `[[sessions]]`: the sessions to join.
    pub sessions: Vec<Arc<SessionSpec>>,
    /// `[policy]`: rules that answer prompts without a human (default: none).
    pub policy: PolicyConfig,
    /// `[[notify]]`: where notifications of prompts and failed sessions go (default: none).
    pub notify: Vec<NotifySinkConfig>,
    /// `[console]`: the console's public address and sign-in sessions.
    pub console: ConsoleConfig,
    /// `[cluster]`: this instance among those that share sessions by leases.
    pub cluster: ClusterConfig,
}

/// `[api]` section.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address the operator API listens on (`bind`, default `127.0.0.1:8700`).
    pub bind: SocketAddr,
    /// How many events a live event-stream reader may lag before it is dropped (`event_buffer`, default 262144; also bounded by `history_total_bytes`).
    pub event_buffer: usize,
    /// Per-session event history, in events (`history_events`, default 1000).
    pub history_events: usize,
    /// Per-session event history, in bytes held (`history_bytes`, default 1 MiB).
    pub history_bytes: usize,
    /// All sessions' event history together, in bytes held (`history_total_bytes`, default [`DEFAULT_HISTORY_TOTAL_BYTES`]).
    pub history_total_bytes: usize,
    /// Heartbeat of event streams (`stream_heartbeat`, default 15 s).
    pub stream_heartbeat: Duration,
    /// Graceful shutdown deadline (`shutdown_timeout`, default 10 s).
    pub shutdown_timeout: Duration,
    /// How long a request body may take to arrive in full once its head is in
    /// (`request_body_timeout`, default 10 s); later is 408 `request_timeout`.
    pub request_body_timeout: Duration,
    /// `auth = "enabled"` (default) or `"disabled"` (local development only).
    pub auth_enabled: bool,
    /// `runtime_token_sources` and `runtime_token_dirs`: what sessions added over the API may use.
    pub runtime_tokens: RuntimeTokenRules,
    /// `[[api.tokens]]`: operator tokens and their roles.
    pub tokens: Vec<ApiTokenSpec>,
    /// Worker threads and connection / event-stream caps.
    pub limits: ApiLimits,
    /// Who may read `/metrics` (`metrics_auth`, default `viewer`).
    pub metrics_auth: MetricsAuth,
    /// `tls_cert` and `tls_key`: serve the API over TLS (default: plain HTTP).
    pub tls: Option<TlsFiles>,
}

/// `[api] tls_cert` / `tls_key`: the PEM files the operator API serves TLS with
/// (re-read on `SIGHUP`). Set both or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, end-entity certificate first (`tls_cert`).
    pub cert: PathBuf,
    /// Its private key, PKCS#8, PKCS#1 or SEC1 (`tls_key`).
    pub key: PathBuf,
}

/// `[api] metrics_auth`: who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsAuth {
    /// A viewer token (or any higher role), as every other read (`"viewer"`, the default).
    #[default]
    Viewer,
    /// Anyone who reaches the API: for scrapers on a private network (`"none"`).
    None,
}

/// Default of `[api] max_connections`.
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 4096;

/// Default of `[api] history_total_bytes`: 48 MiB of event history, all sessions
/// together. Bytes held are counted with each event's overhead, so this is about the
/// memory history takes (docs/events.md, "What history costs"): a full per-session
/// history (1 MiB) for 48 busy sessions, or ~48 KiB (about 40 SDK messages of 800
/// bytes) each for 1,000, and the service stays within issue #28's RSS budget at
/// 1,000 sessions (64 MiB put the roundtrip at 107 MiB of its 110).
pub const DEFAULT_HISTORY_TOTAL_BYTES: usize = 48 << 20;
/// Default of `[api] max_stream_subscribers`.
pub const DEFAULT_MAX_STREAM_SUBSCRIBERS: usize = 1024;
/// Default of `[api] max_stream_subscribers_per_token`.
pub const DEFAULT_MAX_STREAM_SUBSCRIBERS_PER_TOKEN: usize = 256;

/// `[api]` keys that bound the operator API's threads, connections and event streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// HTTP worker threads; `0` = one per core (`workers`, default 0).
    pub workers: usize,
    /// Open API connections, all workers together (`max_connections`, default 4096;
    /// lowered at start when the open-files limit is too small).
    pub max_connections: usize,
    /// Live event-stream readers in total (`max_stream_subscribers`, default 1024).
    pub max_stream_subscribers: usize,
    /// Live event-stream readers per operator token (`max_stream_subscribers_per_token`, default 256).
    pub max_stream_subscribers_per_token: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            workers: 0,
            max_connections: DEFAULT_API_MAX_CONNECTIONS,
            max_stream_subscribers: DEFAULT_MAX_STREAM_SUBSCRIBERS,
            max_stream_subscribers_per_token: DEFAULT_MAX_STREAM_SUBSCRIBERS_PER_TOKEN,
        }
    }
}

impl ApiLimits {
    /// HTTP worker threads for the `workers` value (0 = one per core).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// A token source a session added at run time may use (`[api] runtime_token_sources`).
///
/// There is deliberately no `Command`: `token_command` runs a shell command, so only
/// the config file's `[[sessions]]` may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeTokenSource {
    /// `"env"`: `token_env`, a variable of the supervisor's environment.
    Env,
    /// `"file"`: `token_file`, inside one of `runtime_token_dirs`.
    File,
}

/// What `POST /v1/sessions` may use as a session's token source, and where it may send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeTokenRules {
    /// `runtime_token_sources` (default `["env"]`).
    pub sources: Vec<RuntimeTokenSource>,
    /// `runtime_token_dirs`: absolute directories a runtime `token_file` must resolve
    /// inside, symlinks followed (default none; required when `"file"` is allowed).
    pub dirs: Arc<[PathBuf]>,
    /// The endpoints a runtime session may name as its own `base_url` (normalized):
    /// `[api] runtime_base_urls` and `[ccr] base_url`. Any other is refused, so an admin
    /// cannot have this host send a token it reads to a server of the admin's choosing.
    pub base_urls: Arc<[String]>,
}

impl Default for RuntimeTokenRules {
    fn default() -> Self {
        Self {
            sources: vec![RuntimeTokenSource::Env],
            dirs: Arc::from(Vec::new()),
            base_urls: Arc::from(Vec::new()),
        }
    }
}

impl RuntimeTokenRules {
    /// Whether `source` may be used at run time.
    pub fn allows(&self, source: RuntimeTokenSource) -> bool {
        self.sources.contains(&source)
    }

    /// Whether a runtime session may name `base_url` (normalized, as a session spec holds it).
    pub fn allows_base_url(&self, base_url: &str) -> bool {
        self.base_urls.iter().any(|u| u == base_url)
    }
}

/// Operator role; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also answer prompts, interrupt, send messages.
    Approver,
    /// Also add and remove sessions.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        })
    }
}

/// One `[[api.tokens]]` entry.
#[derive(Debug, Clone)]
pub struct ApiTokenSpec {
    /// Who this is; recorded as the decider of prompts.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Where the secret comes from.
    pub source: ApiTokenSource,
}

/// Where an operator token's secret comes from; never a plaintext token in config.
#[derive(Clone, PartialEq, Eq)]
pub enum ApiTokenSource {
    /// `sha256 = "<hex>"`: the digest of the token.
    Sha256([u8; 32]),
    /// `token_env = "VAR"`: read at start.
    Env(String),
    /// `token_file = "path"`: read at start (trimmed).
    File(PathBuf),
}

impl std::fmt::Debug for ApiTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiTokenSource::Sha256(_) => f.write_str("Sha256(<redacted>)"),
            ApiTokenSource::Env(v) => write!(f, "Env({v:?})"),
            ApiTokenSource::File(p) => write!(f, "File({p:?})"),
        }
    }
}

/// `[ccr]` section: the CCR endpoint and per-connection settings.
#[derive(Debug, Clone)]
pub struct CcrConfig {
    /// API base, `http(s)://host[:port]` (`base_url`). Ignored when `[sim] embedded = true`.
    pub base_url: String,
    /// `organization_uuid` query parameter / `x-organization-uuid` header.
    pub organization_uuid: String,
    /// Local addresses outgoing session sockets bind to, taken in turn per connect
    /// (`source_addresses`, default none: the system picks). Each address has its own
    /// ephemeral ports towards one endpoint, so more addresses hold more sessions there.
    pub source_addresses: Vec<std::net::IpAddr>,
    /// `anthropic_version` header value (default `2023-06-01`).
    pub anthropic_version: String,
    /// `anthropic_beta` header for the events POST (default `ccr-byoc-2025-07-29`).
    pub anthropic_beta: String,
    /// Larger frames are not parsed; a prompt in one is answered with the limit deny
    /// (`max_frame_bytes`, default [`DEFAULT_MAX_FRAME_BYTES`]).
    pub max_frame_bytes: usize,
    /// WebSocket ping interval (`ping_interval`, default 30 s).
    pub ping_interval: Duration,
    /// How long a pong may be late before the connection counts as dropped (`pong_timeout`, default 10 s).
    pub pong_timeout: Duration,
    /// Handshake timeout (`connect_timeout`, default 10 s).
    pub connect_timeout: Duration,
    /// How long an interrupt waits for the session's answer (`interrupt_timeout`, default 10 s).
    pub interrupt_timeout: Duration,
    /// Timeout of the events POST (`send_timeout`, default 30 s).
    pub send_timeout: Duration,
    /// Timeout for `token_command` (`token_command_timeout`, default 10 s).
    pub token_command_timeout: Duration,
    /// Send `initialize` on every (re)connect and use its pending lists
    /// (`initialize_on_connect`, default true).
    pub initialize_on_connect: bool,
    /// How long to wait for the `initialize` reply before relying on replays alone
    /// (`initialize_timeout`, default 10 s; routing never waits for it).
    pub initialize_timeout: Duration,
    /// Reconnect when nothing arrives this long after the supervisor sent an interrupt,
    /// an `initialize` or a message (`response_watchdog`, default 60 s; `0s` = off;
    /// always off for viewer-only sessions).
    pub response_watchdog: Duration,
    /// `request_user_dialog` kinds declared in `initialize` and answerable through the API
    /// (`supported_dialog_kinds`, default none: every dialog is shown read-only, never answered).
    pub supported_dialog_kinds: Vec<String>,
}

/// `[reconnect]` section; defaults are the reference client's values.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectConfig {
    /// Delay before reconnecting after a transient drop (`transient_delay`, 2 s).
    pub transient_delay: Duration,
    /// Attempts at `transient_delay` before switching to backoff (`transient_attempts`, 5).
    pub transient_attempts: u32,
    /// Base delay after close 4001, multiplied by the attempt number (`not_found_delay`, 2 s).
    pub not_found_delay: Duration,
    /// Close-4001 retries before giving up (`not_found_attempts`, 3).
    pub not_found_attempts: u32,
    /// First backoff delay for attempts that never opened (`backoff_initial`, 1 s).
    pub backoff_initial: Duration,
    /// Backoff cap (`backoff_max`, 60 s).
    pub backoff_max: Duration,
    /// Jitter fraction applied to every delay, 0..=1 (`jitter`, 0.5 → ±50 %).
    pub jitter: f64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            transient_delay: Duration::from_secs(2),
            transient_attempts: 5,
            not_found_delay: Duration::from_secs(2),
            not_found_attempts: 3,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            jitter: 0.5,
        }
    }
}

/// Default of `[supervisor] resolved_prompts`: finished prompts remembered, all sessions together.
pub const DEFAULT_RESOLVED_PROMPTS: usize = 200_000;
/// Default of `[supervisor] resolved_prompts_bytes`: 64 MiB.
pub const DEFAULT_RESOLVED_PROMPTS_BYTES: usize = 64 << 20;

/// `[supervisor]` section: arbiters and the OTP-style restart budget.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorConfig {
    /// Session arbiters (threads); `0` means half the cores, at least one (`arbiters`, default 0).
    pub arbiters: usize,
    /// At most this many restarts ... (`max_restarts`, default 5)
    pub max_restarts: u32,
    /// ... within this period per session (`restart_period`, default 60 s).
    pub restart_period: Duration,
    /// First delay before a restart (`restart_backoff_initial`, default 500 ms).
    pub restart_backoff_initial: Duration,
    /// Restart delay cap (`restart_backoff_max`, default 30 s).
    pub restart_backoff_max: Duration,
    /// Finished prompts remembered (all sessions) to match replays to their answers
    /// (`resolved_prompts`, default [`DEFAULT_RESOLVED_PROMPTS`]).
    pub resolved_prompts: usize,
    /// ... and at most this many bytes of them (`resolved_prompts_bytes`, default
    /// [`DEFAULT_RESOLVED_PROMPTS_BYTES`]).
    pub resolved_prompts_bytes: usize,
}

/// `[log]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `pretty` or `json` (`format`).
    pub format: LogFormat,
    /// An `EnvFilter` directive (`level`, default `info`); `RUST_LOG` wins when set.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[sim]` section: run the CCR simulator inside the process (the demo default).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Start the embedded simulator and point `[ccr] base_url` at it (`embedded`, default false).
    pub embedded: bool,
    /// Where the embedded simulator listens (`bind`, default `127.0.0.1:0`).
    pub bind: SocketAddr,
    /// Pause between demo turns (`turn_pause`, default 5 s).
    pub turn_pause: Duration,
}

/// One `[[sessions]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    /// The CCR session id (`id`), unique.
    pub id: Arc<str>,
    /// Free-form labels (`labels`), for selecting sessions later.
    pub labels: Vec<String>,
    /// Where the access token comes from (exactly one of `token`, `token_env`, `token_file`, `token_command`).
    pub token: TokenSpec,
    /// The reference client's `viewerOnly` (`viewer_only`): never interrupt, no response
    /// watchdog, and no user messages sent; prompts are still shown and answered.
    pub viewer_only: bool,
    /// This session's CCR API base (`base_url`), instead of `[ccr] base_url`.
    pub base_url: Option<String>,
    /// This session's organization (`organization_uuid`), instead of `[ccr] organization_uuid`.
    pub organization_uuid: Option<String>,
}

impl SessionSpec {
    /// The API base this session connects to: its own, else `default` (`[ccr] base_url`
    /// or the embedded simulator's).
    pub fn base_url<'a>(&'a self, default: &'a str) -> &'a str {
        self.base_url.as_deref().unwrap_or(default)
    }

    /// The organization this session belongs to: its own, else `default` (`[ccr] organization_uuid`).
    pub fn organization_uuid<'a>(&'a self, default: &'a str) -> &'a str {
        self.organization_uuid.as_deref().unwrap_or(default)
    }
}

/// Default path of the config file.
pub fn default_path() -> PathBuf {
    PathBuf::from("config.toml")
}

#[cfg(test)]
mod tests;
