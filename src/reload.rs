//! Hot reload (`SIGHUP`, `POST /v1/admin/reload`): read the config file again and apply
//! `[[sessions]]`, `[policy]`, `[[api.tokens]]` and `[[notify]]` together, or nothing.
//!
//! Two phases. **Validate**: load the file as start-up does (every problem with its key
//! path), compile the policy, resolve the operator tokens (`token_env`, `token_file`)
//! and the sinks' URLs and secrets, and start the threads of new sinks — all before
//! anything running is touched; any failure there refuses the reload and changes nothing.
//! **Apply**, in this order: the session set (the supervisor's diff; refused while
//! shutting down, still nothing changed; in a cluster the lease loop's, see
//! [`ClusterApi::configure`]), the policy (the registry keeps the hit counts
//! of unchanged rule ids), the tokens (console sign-ins of a removed or changed token
//! are signed out), the sinks. Only the first two can fail (an actor gone while
//! shutting down); the failure then says what was applied already.
//!
//! Other keys apply at the next start; a change to one is reported in `restart_needed`
//! ([`restart_needed`] is the list), never silently ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::Addr;
use futures_util::future::LocalBoxFuture;
use tracing::{error, info};

use crate::api::admin::{Reload, ReloadFailure};
use crate::api::cookie::ConsoleSessions;
use crate::api::Authenticator;
use crate::cluster::ClusterApi;
use crate::config::{ApiConfig, Config, ConfigError, PolicyConfig};
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
use crate::policy::Policy;
use crate::registry::{PermissionRegistry, ReplacePolicy};
use crate::supervisor::{ReplaceSessions, Supervisor};
use crate::util::Swap;
use ccr_protocol::reply::{NameChanges, PolicyChanges, ReloadSummary};

/// Reads a config file as the service runs it (`app::load_config_to_run`).
pub type LoadFn = fn(&Path) -> Result<Config, ConfigError>;

/// The running pieces a reload replaces, and the config they run now.
pub struct Reloader {
    path: PathBuf,
    load: LoadFn,
    /// The config in effect: live parts as last applied, the others as at start. Held for
    /// a whole reload, so two reloads (a signal and a request) never interleave.
    running: tokio::sync::Mutex<Config>,
    /// The supervisor (the session set).
    pub supervisor: Addr<Supervisor>,
    /// The registry (the policy that answers prompts, and its hit counts).
    pub registry: Addr<PermissionRegistry>,
    /// The policy `POST /v1/policy/evaluate` reads.
    pub policy: Arc<Swap<Policy>>,
    /// The operator tokens.
    pub auth: Arc<Authenticator>,
    /// The console's sign-ins.
    pub console: Arc<ConsoleSessions>,
    /// The notification sinks.
    pub notifier: Notifier,
    /// Where new sinks register their metrics.
    pub metrics: Arc<Metrics>,
    /// In a cluster: the lease loop, which takes the new `[[sessions]]` (the supervisor's
    /// set is the loop's: these and the sessions the cluster stores).
    pub cluster: Option<ClusterApi>,
}

/// Everything a reload validated, ready to apply.
struct Validated {
    config: Config,
    policy: Arc<Policy>,
    auth: Authenticator,
    sinks: notify::PreparedSinks,
}

impl Reloader {
    /// A reloader of the file at `path`, read by `load`, for a service running `running`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: PathBuf,
        load: LoadFn,
        running: Config,
        supervisor: Addr<Supervisor>,
        registry: Addr<PermissionRegistry>,
        policy: Arc<Swap<Policy>>,
        auth: Arc<Authenticator>,
        console: Arc<ConsoleSessions>,
        notifier: Notifier,
        metrics: Arc<Metrics>,
        cluster: Option<ClusterApi>,
    ) -> Self {
        Self {
            path,
            load,
            running: tokio::sync::Mutex::new(running),
            supervisor,
            registry,
            policy,
            auth,
            console,
            notifier,
            metrics,
            cluster,
        }
    }

    /// The config file this reloader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reload: validate everything, then apply it; logs the summary (one info line) or
    /// every problem (one error line each). `trigger` (`SIGHUP`, `api`) starts each line.
    pub async fn run(&self, trigger: &'static str) -> Result<ReloadSummary, ReloadFailure> {
        let mut running = self.running.lock().await;
        let outcome = match self.validate(&running) {
            Ok(next) => self.apply(&mut running, next).await,
            Err(e) => Err(e),
        };
        log_outcome(trigger, &self.path, &outcome);
        outcome
    }

    /// Everything that can be checked before changing anything.
    fn validate(&self, running: &Config) -> Result<Validated, ReloadFailure> {
        let config = (self.load)(&self.path).map_err(|e| ReloadFailure::Invalid(problems(e)))?;
        let policy = Policy::compile(&config.policy)
            .map_err(|errs| ReloadFailure::Invalid(errs.iter().map(|e| e.to_string()).collect()))?;
        // `[api] auth` applies at the next start only: the new tokens, the running switch.
        let api = ApiConfig {
            auth_enabled: running.api.auth_enabled,
            ..config.api.clone()
        };
        let auth = Authenticator::from_config(&api)
            .map_err(|e| ReloadFailure::Invalid(vec![format!("api.tokens: {e}")]))?;
        let resolved = notify::resolve(&config.notify)
            .map_err(|errs| ReloadFailure::Invalid(errs.iter().map(|e| e.to_string()).collect()))?;
        let sinks = self
            .notifier
            .prepare(resolved, &self.metrics)
            .map_err(|e| {
                ReloadFailure::Apply(format!(
                    "cannot start a notification sink's thread: {e}; nothing changed"
                ))
            })?;
        Ok(Validated {
            config,
            policy: Arc::new(policy),
            auth,
            sinks,
        })
    }

    /// Apply what [`Reloader::validate`] accepted, in the order the module doc gives.
    async fn apply(
        &self,
        running: &mut Config,
        next: Validated,
    ) -> Result<ReloadSummary, ReloadFailure> {
        let Validated {
            config,
            policy,
            auth,
            sinks,
        } = next;
        let mut summary = ReloadSummary {
            policy: policy_changes(&running.policy, &config.policy),
            tokens: self.auth.changes(&auth),
            notify: sinks.changes.clone(),
            restart_needed: restart_needed(running, &config),
            ..ReloadSummary::default()
        };
        summary.sessions = self.apply_sessions(&config).await?;
        running.sessions = config.sessions;
        let keep_hits = unchanged_rules(&running.policy, &config.policy);
        self.registry
            .send(ReplacePolicy {
                policy: policy.clone(),
                keep_hits,
            })
            .await
            .map_err(|e| {
                ReloadFailure::Apply(format!(
                    "sessions applied, but the registry is unavailable ({e}): the policy, tokens \
                     and notification sinks were not changed"
                ))
            })?;
        self.policy.store(policy);
        running.policy = config.policy;
        self.auth.replace_tokens(auth);
        let gone = [&summary.tokens.removed[..], &summary.tokens.changed[..]].concat();
        if !gone.is_empty() {
            self.console
                .retain(|p| !gone.iter().any(|n| n.as_str() == &*p.name));
        }
        running.api.tokens = config.api.tokens;
        self.notifier.install(sinks);
        running.notify = config.notify;
        Ok(summary)
    }
}

impl Reloader {
    /// The new `[[sessions]]`: to the supervisor, or in a cluster to the lease loop (which
    /// also restores those removed with `DELETE`, cluster-wide).
    async fn apply_sessions(&self, config: &Config) -> Result<NameChanges, ReloadFailure> {
        let refused = |who: &str, e: String| {
            ReloadFailure::Apply(format!(
                "the {who} refused the sessions ({e}); nothing changed"
            ))
        };
        if let Some(cluster) = &self.cluster {
            return cluster
                .configure(config.sessions.clone())
                .await
                .map_err(|e| refused("cluster", e));
        }
        let sessions = self
            .supervisor
            .send(ReplaceSessions(config.sessions.clone()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| refused("supervisor", e))?;
        Ok(NameChanges {
            added: sessions.added,
            removed: sessions.removed,
            changed: sessions.changed,
        })
    }
}

impl Reload for Reloader {
    fn reload(
        &self,
        trigger: &'static str,
    ) -> LocalBoxFuture<'_, Result<ReloadSummary, ReloadFailure>> {
        Box::pin(self.run(trigger))
    }
}

/// Every problem of a config that failed to load, each with its key path.
fn problems(e: ConfigError) -> Vec<String> {
    match e {
        ConfigError::Invalid(list) => list.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

/// Log a reload's outcome: one info line naming what changed, or one error line per problem.
fn log_outcome(trigger: &str, path: &Path, outcome: &Result<ReloadSummary, ReloadFailure>) {
    let path = path.display();
    match outcome {
        Ok(s) => {
            let j = |v: &[String]| v.join(",");
            info!(
                %path,
                sessions_added = %j(&s.sessions.added),
                sessions_removed = %j(&s.sessions.removed),
                sessions_changed = %j(&s.sessions.changed),
                rules_added = %j(&s.policy.rules_added),
                rules_removed = %j(&s.policy.rules_removed),
                rules_changed = %j(&s.policy.rules_changed),
                policy_settings_changed = %j(&s.policy.settings_changed),
                tokens_added = %j(&s.tokens.added),
                tokens_removed = %j(&s.tokens.removed),
                tokens_changed = %j(&s.tokens.changed),
                notify_added = %j(&s.notify.added),
                notify_removed = %j(&s.notify.removed),
                notify_changed = %j(&s.notify.changed),
                restart_needed = %j(&s.restart_needed),
                "{trigger}: config reloaded"
            );
        }
        Err(ReloadFailure::Invalid(list)) => {
            for problem in list {
                error!(%path, "{trigger}: reload rejected, keeping the running config: {problem}");
            }
        }
        Err(e) => error!(%path, "{trigger}: reload failed: {e}"),
    }
}

/// How `[policy]` differs (pure): rules by id, then the other keys.
pub fn policy_changes(old: &PolicyConfig, new: &PolicyConfig) -> PolicyChanges {
    let c = crate::util::name_changes(
        old.rules.iter().map(|r| (r.id.as_str(), r)),
        new.rules.iter().map(|r| (r.id.as_str(), r)),
    );
    let mut settings = Vec::new();
    if old.ask_timeout != new.ask_timeout {
        settings.push("ask_timeout".to_owned());
    }
    if old.ask_timeout_message != new.ask_timeout_message {
        settings.push("ask_timeout_message".to_owned());
    }
    if old.remind_after != new.remind_after {
        settings.push("remind_after".to_owned());
    }
    let kept = |from: &PolicyConfig, other: &PolicyConfig| -> Vec<String> {
        from.rules
            .iter()
            .filter(|r| other.rules.iter().any(|o| o.id == r.id))
            .map(|r| r.id.clone())
            .collect()
    };
    if kept(old, new) != kept(new, old) {
        settings.push("rules order".to_owned());
    }
    PolicyChanges {
        rules_added: c.added,
        rules_removed: c.removed,
        rules_changed: c.changed,
        settings_changed: settings,
    }
}

/// Ids of the rules that are in both policies, unchanged (pure): their hit counts carry over.
pub fn unchanged_rules(old: &PolicyConfig, new: &PolicyConfig) -> Vec<String> {
    new.rules
        .iter()
        .filter(|r| old.rules.iter().any(|o| o == *r))
        .map(|r| r.id.clone())
        .collect()
}

/// Push `prefix.key` onto `out` for each listed field that differs between `old` and `new`.
macro_rules! changed_keys {
    ($out:ident, $prefix:literal, $old:expr, $new:expr; $($field:ident $(as $key:literal)?),* $(,)?) => {
        $(
            if $old.$field != $new.$field {
                $out.push(changed_keys!(@key $prefix, $field $(, $key)?));
            }
        )*
    };
    (@key $prefix:literal, $field:ident) => { format!("{}.{}", $prefix, stringify!($field)) };
    (@key $prefix:literal, $field:ident, $key:literal) => { format!("{}.{}", $prefix, $key) };
}

/// The keys that differ between the running config and the file but apply only at the
/// next start (pure): everything but `[[sessions]]`, `[policy]`, `[[api.tokens]]` and
/// `[[notify]]`. The patterns below name every field, so a new key does not compile
/// until it is placed on one side.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let Config {
        api,
        ccr,
        reconnect,
        supervisor,
        log,
        sim,
        ledger,
        sessions: _,
        policy: _,
        notify: _,
        console,
        cluster,
    } = old;
    let crate::config::ApiConfig {
        bind: _,
        event_buffer: _,
        history_events: _,
        history_bytes: _,
        history_total_bytes: _,
        stream_heartbeat: _,
        shutdown_timeout: _,
        request_body_timeout: _,
        auth_enabled: _,
        runtime_tokens: _,
        tokens: _,
        limits: _,
        metrics_auth: _,
        tls: _,
    } = api;
    changed_keys!(out, "api", api, new.api;
        bind, event_buffer, history_events, history_bytes, history_total_bytes,
        stream_heartbeat, shutdown_timeout, request_body_timeout, auth_enabled as "auth",
        metrics_auth);
    // The TLS files at the running paths are re-read on SIGHUP by the TLS module; a new
    // path (or TLS turned on or off) needs a restart.
    let (old_tls, new_tls) = (api.tls.as_ref(), new.api.tls.as_ref());
    if old_tls.map(|t| &t.cert) != new_tls.map(|t| &t.cert) {
        out.push("api.tls_cert".to_owned());
    }
    if old_tls.map(|t| &t.key) != new_tls.map(|t| &t.key) {
        out.push("api.tls_key".to_owned());
    }
    changed_keys!(out, "api", api.runtime_tokens, new.api.runtime_tokens;
        sources as "runtime_token_sources", dirs as "runtime_token_dirs",
        base_urls as "runtime_base_urls");
    let crate::config::ApiLimits {
        workers: _,
        max_connections: _,
        max_stream_subscribers: _,
        max_stream_subscribers_per_token: _,
    } = &api.limits;
    changed_keys!(out, "api", api.limits, new.api.limits;
        workers, max_connections, max_stream_subscribers, max_stream_subscribers_per_token);
    let crate::config::CcrConfig {
        base_url: _,
        organization_uuid: _,
        source_addresses: _,
        anthropic_version: _,
        anthropic_beta: _,
        max_frame_bytes: _,
        ping_interval: _,
        pong_timeout: _,
        connect_timeout: _,
        interrupt_timeout: _,
        send_timeout: _,
        token_command_timeout: _,
        initialize_on_connect: _,
        initialize_timeout: _,
        response_watchdog: _,
        supported_dialog_kinds: _,
    } = ccr;
    changed_keys!(out, "ccr", ccr, new.ccr;
        base_url, organization_uuid, source_addresses, anthropic_version, anthropic_beta,
        max_frame_bytes,
        ping_interval, pong_timeout, connect_timeout, interrupt_timeout, send_timeout,
        token_command_timeout, initialize_on_connect, initialize_timeout, response_watchdog,
        supported_dialog_kinds);
    let crate::config::ReconnectConfig {
        transient_delay: _,
        transient_attempts: _,
        not_found_delay: _,
        not_found_attempts: _,
        backoff_initial: _,
        backoff_max: _,
        jitter: _,
    } = reconnect;
    changed_keys!(out, "reconnect", reconnect, new.reconnect;
        transient_delay, transient_attempts, not_found_delay, not_found_attempts,
        backoff_initial, backoff_max, jitter);
    let crate::config::SupervisorConfig {
        arbiters: _,
        max_restarts: _,
        restart_period: _,
        restart_backoff_initial: _,
        restart_backoff_max: _,
        resolved_prompts: _,
        resolved_prompts_bytes: _,
    } = supervisor;
    changed_keys!(out, "supervisor", supervisor, new.supervisor;
        arbiters, max_restarts, restart_period, restart_backoff_initial, restart_backoff_max,
        resolved_prompts, resolved_prompts_bytes);
    let crate::config::LogConfig {
        format: _,
        level: _,
    } = log;
    changed_keys!(out, "log", log, new.log; format, level);
    let crate::config::SimConfig {
        embedded: _,
        bind: _,
        turn_pause: _,
    } = sim;
    changed_keys!(out, "sim", sim, new.sim; embedded, bind, turn_pause);
    let crate::config::LedgerConfig {
        enabled: _,
        path: _,
        retain_days: _,
        backend: _,
    } = ledger;
    changed_keys!(out, "ledger", ledger, new.ledger; enabled, path, retain_days);
    // Within PostgreSQL's settings, a changed CA file (its path or its certificates) is
    // named as such; any other change of them, or of the backend, as `backend`.
    match (ledger.postgres(), new.ledger.postgres()) {
        (Some(old_pg), Some(new_pg)) if old_pg.ca_file != new_pg.ca_file => {
            out.push("ledger.ca_file".to_owned());
            let same_but_ca = crate::config::PostgresConfig {
                ca_file: new_pg.ca_file.clone(),
                ..old_pg.clone()
            };
            if &same_but_ca != new_pg {
                out.push("ledger.backend".to_owned());
            }
        }
        _ if ledger.backend != new.ledger.backend => out.push("ledger.backend".to_owned()),
        _ => {}
    }
    let crate::config::ConsoleConfig {
        public_url: _,
        session_lifetime: _,
        max_sessions: _,
    } = console;
    changed_keys!(out, "console", console, new.console;
        public_url, session_lifetime, max_sessions);
    let crate::config::ClusterConfig {
        instance_id: _,
        advertise_url: _,
        lease_period: _,
        outage_grace: _,
        ca_file: _,
    } = cluster;
    changed_keys!(out, "cluster", cluster, new.cluster;
        instance_id, advertise_url, lease_period, outage_grace, ca_file);
    out
}

#[cfg(test)]
mod tests;
